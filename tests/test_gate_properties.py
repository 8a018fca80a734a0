"""Property test of the gate over random sizes, round sizes and logits."""

import numpy as np
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from seqattn_tfrs import SequentialAttentionEmbedding
from seqattn_tfrs.gate import SELECTING


@st.composite
def selections(draw):
    n = draw(st.integers(1, 10))
    k = draw(st.integers(1, n))
    per_round = draw(st.integers(1, k))
    rounds = -(-k // per_round)
    logits = draw(
        st.lists(
            st.lists(st.floats(-60, 60, allow_nan=False), min_size=n, max_size=n),
            min_size=rounds,
            max_size=rounds,
        )
    )
    return n, k, per_round, logits


@settings(max_examples=40, deadline=None)
@given(selections())
def test_gates_stay_a_valid_selection(case):
    n, k, per_round, round_logits = case
    names = [f"f{i}" for i in range(n)]
    layer = SequentialAttentionEmbedding(
        {name: tf.keras.layers.Reshape((1,)) for name in names},
        k,
        selections_per_round=per_round,
    )
    layer.build(None)
    layer.gate_mode.assign(SELECTING)
    for logits in round_logits:
        layer.attention_logits.assign(np.asarray(logits, np.float32))
        gates = np.array(list(layer.gate_values().values()))
        selected = layer.selected_mask.numpy() > 0
        assert np.all(np.isfinite(gates))
        assert np.all(gates[selected] == 1.0)
        assert np.all(gates[~selected] >= 0.0)
        np.testing.assert_allclose(gates[~selected].sum(), 1.0, rtol=1e-5)
        picked = layer.commit_round()
        assert 1 <= len(picked) <= per_round
    assert layer.selection_complete
    order = layer.selected_features
    assert len(order) == k and len(set(order)) == k
    gates = layer.gate_values()
    assert sorted(name for name, g in gates.items() if g == 1.0) == sorted(order)
    assert all(gates[name] == 0.0 for name in names if name not in order)
