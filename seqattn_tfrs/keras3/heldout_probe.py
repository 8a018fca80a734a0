"""The Keras 3 callback's held-out probe pass and pair test.

In each round after the first (by count, with ``selection_data``) whose
settle sums the probe's training side (``learning.gate_and_learn``), one
pass over up to ``MAX_ROWS`` rows of ``selection_data`` with the layer's
candidates at 0 (settling), as the settle ends, tests each keyed feature's
held-out gradients against those sums (:mod:`seqattn_tfrs.core.probe`); the
commit reads the z. A layer with no values to group (floats, booleans),
whose settle ran the score test on its training rows instead, gets the same
test on the held-out rows from the pass (``learning.gate_and_learn``).
Where the commit asks for pairs
(:meth:`SequentialAttentionEmbedding.pairs_to_test`), a second pass, at the
commit, hands back each row's projected gradient and bucket key, and
:func:`seqattn_tfrs.core.pairs.named_pair_scores` tests the pairs. Each pass
is a held-out step traced with the layer's ``probe_pass`` or ``pair_pass``
set (:func:`seqattn_tfrs.keras3.heldout.make_step`): it changes no weight,
logit or metric.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from seqattn_tfrs.core import pairs, probe
from seqattn_tfrs.core.modes import SETTLING
from seqattn_tfrs.keras3 import heldout, learning
from seqattn_tfrs.keras3.gate import SequentialAttentionEmbedding

MAX_ROWS = 50_000  # held-out rows of one pass at most, as in tf-keras


class HeldoutProbe:
    """The held-out probe's passes for the gated ``layers`` of ``model``.

    Args:
      model: the model ``fit`` trains.
      layers: its gated layers.
      example: on JAX, ``selection_data``'s first batch: where a layer is
        known to hash values (it was called), the probe's pass is compiled
        ahead for its shapes (see ``heldout.make_step``); otherwise it is
        traced at its first use.
    """

    def __init__(
        self,
        model: keras.Model,
        layers: Sequence[SequentialAttentionEmbedding],
        example: Any = None,
    ) -> None:
        self.model = model
        self.layers = list(layers)
        self._probe_step = None
        if example is not None and any(
            g.probe_features or g.score_probe_features for g in self.layers
        ):
            self._probe_step = self._make_probe_step(example)
        self._pair_steps: dict[int, Any] = {}  # per layer, traced at first use

    def _make_probe_step(self, example: Any = None) -> Any:
        return heldout.make_step(self.model, self.layers, example, flag="probe_pass")

    def run_pass(
        self, layers: Sequence[SequentialAttentionEmbedding], data: Any
    ) -> None:
        """One pass over up to ``MAX_ROWS`` rows of ``data`` with ``layers``'
        candidates at 0: the held-out side of their probes, which
        :meth:`scores` reads; other layers' pass sums are kept.

        The callback runs it as the settle that summed the training side
        ends, before the round's selecting part trains the candidates'
        columns: the training side's sums are steps along the gradients of
        the model as it settled, and after the selecting part the model can
        map them the other way (docs/keras3.md, "The probe at the settle's
        end")."""
        if self._probe_step is None:
            self._probe_step = self._make_probe_step()
        layers = list(layers)
        others = [g for g in self.layers if all(g is not x for x in layers)]
        kept = [_pass_sums(g) for g in others]
        with _settling(self.model, layers):
            for layer in layers:
                for variable in layer.learning_state[learning.PASS_SUMS]:
                    variable.assign(np.zeros(variable.shape, np.float32))
            for batch in _rows(data):
                self._probe_step(batch)
        for layer, sums in zip(others, kept):  # the pass adds to every layer's
            for variable, value in zip(layer.learning_state[learning.PASS_SUMS], sums):
                variable.assign(value)

    def scores(self, layer: SequentialAttentionEmbedding) -> dict[str, float]:
        """The probe's z of each of ``layer``'s unselected features with
        values to hash (in a layer with none, each candidate's held-out score
        test z), from its last pass (:meth:`run_pass`); handed to the layer's
        next commit. Empty where the pass tested no candidate."""
        total, squares = (v.astype(np.float64) for v in _pass_sums(layer))
        z = probe.probe_z(total, squares)
        selected = set(layer.selected_features)
        tested = set(layer.probe_features or layer.score_probe_features)
        scores = {
            name: float(z[i])
            for i, name in enumerate(layer.feature_names)
            if name in tested and name not in selected
        }
        layer.set_probe_scores(scores)
        return scores

    def pair_scores(
        self,
        layer: SequentialAttentionEmbedding,
        data: Any,
        candidate_pairs: Sequence[tuple[str, str]],
    ) -> dict[tuple[str, str], float]:
        """The held-out pair test's z of each of ``candidate_pairs`` whose
        features both have values to hash, from one pass over the probe
        pass's rows of ``data``; handed to the layer's next commit. The pass
        overwrites the probe's training sums, which the commit zeroes.

        Raises:
          ValueError: a batch of ``data`` has too many rows for the sums to
            hold its rows (2 x rows x keyed features).
        """
        if not layer.probe_features:  # no values to hash: no pair
            layer.set_pair_scores({})
            return {}
        if id(layer) not in self._pair_steps:
            self._pair_steps[id(layer)] = heldout.make_step(
                self.model, [layer], flag="pair_pass"
            )
        step = self._pair_steps[id(layer)]
        keyed = list(layer.probe_features)
        sums = layer.learning_state[learning.LEARNED]
        room = int(np.prod(sums.shape))
        keys, projected = [], []
        with _settling(self.model, [layer]):
            for batch in _rows(data):
                rows = len(keras.tree.flatten(batch[0])[0])
                if 2 * rows * len(keyed) > room:
                    raise ValueError(
                        f"{layer.name}: `selection_data` has a batch of {rows} "
                        f"rows; the pair test holds at most {room // 2 // len(keyed)}"
                        f" rows a batch for {len(keyed)} features with values "
                        "to hash. Expected smaller batches."
                    )
                step(batch)
                flat = keras.ops.convert_to_numpy(sums)[: 2 * rows * len(keyed)]
                block = flat.reshape(2, rows, len(keyed))
                projected.append(block[0])
                keys.append(block[1].astype(np.int64))
        scores = pairs.named_pair_scores(
            keyed, np.concatenate(keys), np.concatenate(projected), candidate_pairs
        )
        layer.set_pair_scores(scores)
        return scores


def _rows(data: Any):
    """``data``'s batches, once, until ``MAX_ROWS`` rows are read."""
    rows = 0
    for batch in heldout.one_pass(data):
        yield batch
        rows += len(keras.tree.flatten(batch[0])[0])
        if rows >= MAX_ROWS:
            return


def _pass_sums(layer: SequentialAttentionEmbedding) -> list[np.ndarray]:
    """Host copies of ``layer``'s probe-pass sums (``sum(a)``, ``sum(a^2)``)."""
    return [
        keras.ops.convert_to_numpy(v) for v in layer.learning_state[learning.PASS_SUMS]
    ]


@contextlib.contextmanager
def _settling(model: keras.Model, layers: Sequence[SequentialAttentionEmbedding]):
    """Sets ``layers``' gates to settle (their candidates at 0) for a pass,
    then back; on JAX, ``fit``'s latest state is in the variables first."""
    _sync(model)
    modes = [int(keras.ops.convert_to_numpy(g.gate_mode)) for g in layers]
    for layer in layers:
        layer.gate_mode.assign(SETTLING)
    try:
        yield
    finally:
        _sync(model)
        for layer, mode in zip(layers, modes):
            layer.gate_mode.assign(mode)


def _sync(model: keras.Model) -> None:
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()
