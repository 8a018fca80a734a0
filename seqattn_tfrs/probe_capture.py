"""What a gate layer's call hands the held-out probe's pass
(:mod:`seqattn_tfrs.heldout_probe`): its gated outputs, watched on the pass's
tape, and its rows' hash buckets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from seqattn_tfrs import tf_ops
from seqattn_tfrs.core import probe


class ProbeCapture:
    """What the last call of a gate layer hands the held-out probe: its gated
    outputs (watched on ``tape`` where one is set) and, per feature, its rows'
    hash buckets (None for a feature without values to hash)."""

    def __init__(self) -> None:
        self.tape: tf.GradientTape | None = None
        self.outputs: dict[str, tf.Tensor] = {}
        self.buckets: dict[str, tf.Tensor | None] = {}
        self.embeddings: dict[str, tf.Tensor] = {}

    def capture(
        self,
        outputs: Mapping[str, tf.Tensor],
        features: Mapping[str, Any],
        embeddings: Mapping[str, tf.Tensor] | None = None,
    ) -> dict[str, tf.Tensor]:
        """Keeps ``outputs`` (returned as watched copies), the buckets and the
        ungated ``embeddings``."""
        self.embeddings = dict(embeddings or {})
        self.outputs = {name: tf.identity(value) for name, value in outputs.items()}
        if self.tape is not None:
            self.tape.watch(list(self.outputs.values()))
        self.buckets = {
            name: tf_ops.row_keys(features[name], probe.PROBE_BUCKETS)
            for name in self.outputs
        }
        return self.outputs
