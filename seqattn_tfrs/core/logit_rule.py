"""The update rule of the attention logits, owned by this package.

The attention logits never go to the optimizer the user passed to ``compile``.
Adaptive optimizers (Adam, Adagrad, RMSprop) divide each coordinate's step by
that coordinate's own gradient scale, which erases the magnitude differences
greedy selection relies on. The rule here keeps them:

    m_t = beta1 * m_{t-1} + (1 - beta1) * g_t             (per logit)
    v_t = beta2 * v_{t-1} + (1 - beta2) * mean_U(g_t ** 2)  (one scalar)
    w_t = w_{t-1} - lr * m_hat_t / (sqrt(v_hat_t) + eps)

``m_hat`` and ``v_hat`` are the bias-corrected moments and ``U`` is the set of
logits still competing. Because the second moment is one scalar shared by all
logits, the step is invariant to the scale of the loss (so one learning rate
works whatever the model and its optimizer), while the logits still move in
proportion to their own gradients.
"""

from __future__ import annotations

from typing import Any

BETA2 = 0.999
EPSILON = 1e-12


def normalized_momentum_step(
    ops: Any,
    grad: Any,
    active: Any,
    momentum: Any,
    second_moment: Any,
    step: Any,
    *,
    learning_rate: float,
    beta1: float,
) -> tuple[Any, Any, Any]:
    """One step of the shared-scale momentum rule.

    Args:
      ops: the array namespace (see :mod:`seqattn_tfrs.core.ops`).
      grad: ``[N]`` gradient of the loss with respect to the logits.
      active: ``[N]`` float mask, 1 for logits still competing.
      momentum: ``[N]`` first moment before this step.
      second_moment: scalar second moment before this step.
      step: the 1-based index of this step (float scalar).
      learning_rate: the step size in logit units.
      beta1: the momentum decay.

    Returns:
      ``(delta, new_momentum, new_second_moment)``; add ``delta`` to the logits.

    Example:
      >>> import numpy as np
      >>> from seqattn_tfrs.core.ops import NUMPY
      >>> delta, m, v = normalized_momentum_step(
      ...     NUMPY, np.array([2.0, 1.0]), np.array([1.0, 1.0]), np.zeros(2),
      ...     0.0, 1.0, learning_rate=0.1, beta1=0.9)
      >>> [round(float(x), 4) for x in delta]
      [-0.1265, -0.0632]
    """
    grad = ops.where(active > 0, grad, ops.zeros_like(grad))
    count = ops.maximum(ops.sum(active), 1.0)
    new_momentum = beta1 * momentum + (1.0 - beta1) * grad
    new_second_moment = BETA2 * second_moment + (1.0 - BETA2) * (
        ops.sum(ops.square(grad)) / count
    )
    m_hat = new_momentum / (1.0 - ops.power(beta1, step))
    v_hat = new_second_moment / (1.0 - ops.power(BETA2, step))
    delta = -learning_rate * m_hat / (ops.sqrt(v_hat) + EPSILON) * active
    return delta, new_momentum, new_second_moment
