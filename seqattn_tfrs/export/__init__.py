"""Export of a pruned model for TF Serving, in parts.

* :mod:`~seqattn_tfrs.export.serving`: :func:`export_for_serving` itself;
* :mod:`~seqattn_tfrs.export.signature`: the serving inputs of a tf-keras model;
* :mod:`~seqattn_tfrs.export.savedmodel`: what TF Serving reads (signature
  names, ``tf.Example`` parsing, named outputs), shared with the Keras 3 export;
* :mod:`~seqattn_tfrs.export.versions`: the versioned, atomic directory;
* :mod:`~seqattn_tfrs.export.report`: sizes and ``selection.json``;
* :mod:`~seqattn_tfrs.export.warmup`: TF Serving warm-up records.

The names below load on first use, so that the Keras 3 export can import the
modules that need no tf-keras (``savedmodel``, ``versions``) without it.
"""

from seqattn_tfrs.lazy_getattr import lazy_getattr

_PUBLIC = {
    "EXAMPLES_INPUT": "seqattn_tfrs.export.savedmodel",
    "EXAMPLES_SIGNATURE": "seqattn_tfrs.export.savedmodel",
    "LOCK_FILE": "seqattn_tfrs.export.versions",
    "MAX_WARMUP_RECORDS": "seqattn_tfrs.export.warmup",
    "SELECTION_FILE": "seqattn_tfrs.export.savedmodel",
    "SERVING_SIGNATURE": "seqattn_tfrs.export.savedmodel",
    "WARMUP_FILE": "seqattn_tfrs.export.warmup",
    "export_for_serving": "seqattn_tfrs.export.serving",
    "size_report": "seqattn_tfrs.export.report",
}

__all__ = sorted(_PUBLIC)


__getattr__ = lazy_getattr(__name__, _PUBLIC, globals())


def __dir__() -> list[str]:
    return __all__
