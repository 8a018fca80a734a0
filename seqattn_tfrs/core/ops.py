"""The array namespace the shared math is written against.

Functions in :mod:`seqattn_tfrs.core.signals` and
:mod:`seqattn_tfrs.core.logit_rule` take an ``ops`` argument with these names,
spelled as in ``keras.ops`` (which can be passed as it is):
``where, sum, mean, square, sqrt, exp, max, maximum, power, matmul, transpose,
solve, eye, trace, isfinite, all, logical_and, logical_or, logical_not,
equal, zeros_like, ones_like, full_like, shape, cast``. :data:`NUMPY` is
numpy's, used for tests and host-side checks.
"""

from __future__ import annotations

import types

import numpy as np

NUMPY = types.SimpleNamespace(
    where=np.where,
    sum=np.sum,
    mean=np.mean,
    square=np.square,
    sqrt=np.sqrt,
    exp=np.exp,
    max=np.max,
    maximum=np.maximum,
    power=np.power,
    matmul=np.matmul,
    transpose=np.transpose,
    solve=np.linalg.solve,
    eye=lambda n, dtype="float32": np.eye(n, dtype=dtype),
    trace=np.trace,
    isfinite=np.isfinite,
    all=np.all,
    logical_and=np.logical_and,
    logical_or=np.logical_or,
    logical_not=np.logical_not,
    equal=np.equal,
    zeros_like=np.zeros_like,
    ones_like=np.ones_like,
    full_like=np.full_like,
    shape=np.shape,
    cast=lambda x, dtype: np.asarray(x).astype(dtype),
)
