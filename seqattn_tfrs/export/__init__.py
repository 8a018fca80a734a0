"""Export of a pruned model for TF Serving, in parts.

* :mod:`~seqattn_tfrs.export.serving`: :func:`export_for_serving` itself;
* :mod:`~seqattn_tfrs.export.signature`: the serving inputs and outputs;
* :mod:`~seqattn_tfrs.export.versions`: the versioned, atomic directory;
* :mod:`~seqattn_tfrs.export.report`: sizes and ``selection.json``;
* :mod:`~seqattn_tfrs.export.warmup`: TF Serving warm-up records.
"""

from seqattn_tfrs.export.report import SELECTION_FILE, size_report
from seqattn_tfrs.export.serving import export_for_serving
from seqattn_tfrs.export.signature import (
    EXAMPLES_INPUT,
    EXAMPLES_SIGNATURE,
    SERVING_SIGNATURE,
)
from seqattn_tfrs.export.versions import LOCK_FILE
from seqattn_tfrs.export.warmup import MAX_WARMUP_RECORDS, WARMUP_FILE

__all__ = [
    "EXAMPLES_INPUT",
    "EXAMPLES_SIGNATURE",
    "LOCK_FILE",
    "MAX_WARMUP_RECORDS",
    "SELECTION_FILE",
    "SERVING_SIGNATURE",
    "WARMUP_FILE",
    "export_for_serving",
    "size_report",
]
