"""The selection algorithm, shared by the tf-keras and Keras 3 front-ends.

Nothing here imports TensorFlow or Keras: host-side logic uses numpy, and the
math that runs inside a compiled training step takes an ``ops`` namespace
(numpy's, :data:`seqattn_tfrs.core.ops.NUMPY`; TensorFlow's,
``seqattn_tfrs.tf_ops.TF``; or ``keras.ops``), so one source of truth serves
every backend.

Modules:
  modes: the gate modes the callback moves a layer through.
  options: :class:`AttentionOptions`, the attention settings every layer takes.
  schedule: warm-up, selection rounds and fine-tune, in epochs or steps.
  logit_rule: the attention logits' own update rule.
  signals: gate values and what the logits learn from.
  selection: which features a round commits (by count or within a budget).
  round_report: a round committed and reported, and a fit that ended before
    the last pick, alike in both callbacks.
  budget: byte-budget arithmetic.
  batch_checks: the checks of held-out data's first batch before training.
"""
