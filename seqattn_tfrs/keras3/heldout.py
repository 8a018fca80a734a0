"""Held-out logit steps: the gates' backward pass on a held-out batch.

The attention logits may learn from held-out batches only (``selection_data``):
the loss on such a batch is differentiated with respect to the gates' learning
state alone, whose "gradients" are their new values (see ``learning.py``), and
those are assigned. The model's other weights and metrics are untouched. Taking
a gradient is the one thing ``keras.ops`` does not offer, so this module holds
one small function per backend.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import keras
import numpy as np

from seqattn_tfrs.core import batch_checks


def one_pass(data: Any) -> Iterator[Any]:
    """``data``'s batches once, as numpy structures.

    ``data``: a ``tf.data.Dataset`` or any re-iterable of batches (a list, a
    ``keras.utils.PyDataset``), each ``(x, y)`` or ``(x, y, sample_weight)``.
    """
    if hasattr(data, "as_numpy_iterator"):
        source: Iterable[Any] = data.as_numpy_iterator()
    elif isinstance(data, keras.utils.PyDataset):
        source = (data[i] for i in range(len(data)))
    else:
        source = data
    for batch in source:
        yield keras.tree.map_structure(_as_array, batch)


def _as_array(value: Any) -> Any:
    """``value`` as a numpy array; None (no sample weights) stays None."""
    return None if value is None else np.asarray(value)


# On JAX, held-out batches up to this many bytes in all stay on the device
# after their first use (a step then copies nothing from the host).
DEVICE_BYTES = 256 * 2**20


class Batches:
    """Cycles forever over ``data``'s batches (see :func:`one_pass`).

    With ``device_bytes`` > 0 (JAX only), the first pass also puts each batch
    on the device; if the whole pass fits in ``device_bytes`` and holds only
    numbers, later passes yield those device copies instead of reading
    ``data`` again, else every pass reads ``data``. ``pass_batches`` is the
    number of batches in one pass once the first has ended (None before).

    Example:
      >>> cycle = Batches([(np.zeros(2), np.ones(2))] * 3)
      >>> first = [next(cycle) for _ in range(3)]
      >>> cycle.pass_batches  # the pass has not ended yet
      >>> fourth = next(cycle)
      >>> cycle.pass_batches
      3
    """

    def __init__(self, data: Any, device_bytes: int = 0):
        self.pass_batches: int | None = None
        self._cycle = self._batches(data, device_bytes)

    def __iter__(self) -> Batches:
        return self

    def __next__(self) -> Any:
        return next(self._cycle)

    def _batches(self, data: Any, device_bytes: int) -> Iterator[Any]:
        kept: list[Any] | None = [] if device_bytes > 0 else None
        size = 0
        while True:
            count = 0
            for batch in one_pass(data):
                count += 1
                if kept is not None:
                    leaves = [v for v in keras.tree.flatten(batch) if v is not None]
                    size += sum(leaf.nbytes for leaf in leaves)
                    if size > device_bytes or not all(map(_numeric, leaves)):
                        kept = None
                    else:
                        batch = _on_device(batch)
                        kept.append(batch)
                yield batch
            if count == 0:
                raise ValueError(
                    "`selection_data` yielded no batch; expected held-out batches."
                )
            self.pass_batches = count
            if kept is not None:
                break
        while True:
            yield from kept


def check_reiterable(data: Any) -> None:
    """Raises unless ``data`` can be read once a round: a ``tf.data.Dataset``,
    a ``keras.utils.PyDataset`` or another re-iterable of batches.

    Raises:
      TypeError: ``data`` is not iterable.
      ValueError: ``data`` is a tuple or dict (whole arrays, as Keras'
        ``validation_data`` takes them, not batches), or a one-pass iterator
        (a generator), which the first read would use up.

    Example:
      >>> check_reiterable(x for x in [(np.zeros(2), np.ones(2))])
      Traceback (most recent call last):
      ...
      ValueError: `selection_data` is a generator, which can be read once; ...
    """
    if not hasattr(data, "__iter__"):
        raise TypeError(
            "`selection_data` must be a tf.data.Dataset or an iterable of "
            f"held-out batches, got {type(data).__name__}."
        )
    if isinstance(data, (tuple, Mapping)):
        raise ValueError(
            f"`selection_data` is {batch_checks.describe(data)}, not batches; "
            "expected an iterable of held-out (x, y) batches: a list such as "
            "`[(x_val, y_val)]` (one batch), a keras.utils.PyDataset or a batched "
            "tf.data.Dataset."
        )
    if isinstance(data, Iterator):  # (without starting a dataset's iterator)
        raise ValueError(
            f"`selection_data` is a {type(data).__name__}, which can be read "
            "once; the callback reads it before training and in every round. "
            "Expected a re-iterable: a list of batches, a keras.utils.PyDataset "
            "or a tf.data.Dataset."
        )


def check_first_batch(model: keras.Model, data: Any, needed: Iterable[str]) -> Any:
    """``data``'s first batch, checked before training: there is one, it holds
    a label, the ``needed`` features (in a dict at any depth) and rows, and,
    where ``model`` declares its inputs, text where they take text and numbers
    where they take numbers.

    Raises:
      ValueError: with the problem and the fix.
    """
    batch = next(one_pass(data), None)
    if batch is None:
        raise ValueError(
            "`selection_data` yielded no batch; expected held-out batches."
        )
    features = batch_checks.check_labelled(
        batch, model.name, "`[(x_val, y_val)]` or a keras.utils.PyDataset"
    )
    batch_checks.check_features(features, needed, rank=lambda v: np.ndim(v))
    declared = {t.name: t.dtype for t in getattr(model, "inputs", None) or []}
    for values in batch_checks.nested_dicts(features):
        for name, value in values.items():
            if name not in declared or not hasattr(value, "dtype"):
                continue
            if _is_text(value.dtype) != _is_text(declared[name]):
                raise ValueError(
                    f"`selection_data`'s feature {name!r} is {value.dtype}, but "
                    f"model {model.name!r} takes {declared[name]} there; expected "
                    "the training data's dtypes."
                )
    return batch


def _is_text(dtype: Any) -> bool:
    if isinstance(dtype, str) and dtype == "string":  # a Keras input's
        return True
    return np.dtype(dtype).kind in "USO"


def _numeric(leaf: Any) -> bool:
    """Whether a batch's leaf is an array a device can hold (numbers, bools)."""
    return leaf.dtype.kind in "biuf"


def _on_device(batch: Any) -> Any:
    """``batch``'s arrays on JAX's default device."""
    import jax

    return jax.device_put(batch)


# The name of the thread that compiles a JAX held-out step ahead of time.
COMPILE_THREAD = "seqattn-heldout-compile"


def make_step(
    model: keras.Model,
    layers: list[Any],
    example: Any = None,
    flag: str = "heldout_pass",
) -> Callable[[Any], None]:
    """A function that runs one held-out logit step of every gate on a batch.

    With ``flag="probe_pass"``, one batch of the held-out probe's pass
    instead (``learning.gate_and_learn``: the probe's sums alone change).

    On JAX, given an ``example`` batch (``selection_data``'s first), the step
    is traced now and compiled in a background thread, so that the compile
    overlaps the training before the first held-out step instead of
    stalling it; batches of another shape take the ordinary ``jax.jit``
    path.

    Raises:
      NotImplementedError: the backend is not jax, tensorflow or torch.
    """
    state = [v for g in layers for v in g.learning_state]

    @contextlib.contextmanager
    def heldout_pass():
        for layer in layers:  # read while tracing: the logits learn regardless
            setattr(layer, flag, True)
        try:
            yield
        finally:
            for layer in layers:
                setattr(layer, flag, False)

    backend = keras.backend.backend()
    makers = {
        "jax": functools.partial(
            _jax_step, heldout_pass=heldout_pass, example=_unpacked(example)
        ),
        "tensorflow": _tf_step,
        "torch": _torch_step,
    }
    if backend not in makers:
        raise NotImplementedError(
            "Held-out selection steps support the jax, tensorflow and torch "
            f"backends; got {backend!r}."
        )
    compiled = makers[backend](model, state)

    def step(batch: Any) -> None:
        with heldout_pass():
            compiled(*_unpacked(batch))

    return step


def _unpacked(batch: Any) -> tuple | None:
    """``(x, y, sample_weight)`` of a batch (None for None)."""
    if batch is None:
        return None
    return keras.utils.unpack_x_y_sample_weight(tuple(batch))


def _jax_step(
    model: keras.Model,
    state: list[Any],
    heldout_pass: Callable[[], Any],
    example: tuple | None,
) -> Callable[..., None]:
    import jax

    trainable = model.trainable_variables
    inference = _inference_arguments(model)
    position = {id(v): i for i, v in enumerate(trainable)}
    index = [position[id(v)] for v in state]

    def loss_of(state_values, trainable_values, non_trainable, metrics, x, y, sw):
        values = list(trainable_values)
        for i, value in zip(index, state_values):
            values[i] = value
        y_pred, _ = model.stateless_call(values, non_trainable, x, **inference)
        loss, _ = model.stateless_compute_loss(
            values,
            non_trainable,
            metrics,
            x=x,
            y=y,
            y_pred=y_pred,
            sample_weight=sw,
            training=False,
        )
        return loss

    new_state = jax.jit(jax.grad(loss_of))
    # Fixed for the fit (the model is built and compiled when training
    # begins); the properties walk every layer on each read.
    non_trainable = model.non_trainable_variables
    metrics = model.metrics_variables

    def arguments(x: Any, y: Any, sample_weight: Any) -> tuple:
        return (
            [v.value for v in state],
            [v.value for v in trainable],
            [v.value for v in non_trainable],
            [v.value for v in metrics],
            x,
            y,
            sample_weight,
        )

    ahead = None
    if example is not None and keras.distribution.distribution() is None:
        ahead = _AheadOfTime(new_state, arguments(*example), example, heldout_pass)

    def compiled(x: Any, y: Any, sample_weight: Any) -> None:
        model.jax_state_sync()  # fit's latest values into the variables
        function = None
        if ahead is not None:
            function = ahead.for_batch((x, y, sample_weight))
        new = (function or new_state)(*arguments(x, y, sample_weight))
        for variable, value in zip(state, new):
            variable.assign(value)

    return compiled


class _AheadOfTime:
    """A jitted function traced now for one batch's shapes and compiled in a
    background thread (XLA's compile runs outside Python's lock, so the
    training in the main thread goes on meanwhile). Only a batch's shapes
    can differ from call to call: the variables' are fixed for the fit."""

    def __init__(
        self, jitted: Any, args: tuple, batch: tuple, tracing: Callable[[], Any]
    ):
        import jax

        def spec(value: Any) -> Any:
            return jax.ShapeDtypeStruct(np.shape(value), _dtype(value))

        self._signature = self._signature_of(batch)
        with tracing():
            lowered = jitted.lower(*jax.tree_util.tree_map(spec, args))
        self._compiled = None
        self._error: BaseException | None = None

        def compile_now() -> None:
            try:
                self._compiled = lowered.compile()
            except BaseException as error:  # noqa: BLE001  (raised on first use)
                self._error = error

        self._thread = threading.Thread(
            target=compile_now, name=COMPILE_THREAD, daemon=True
        )
        self._thread.start()

    @staticmethod
    def _signature_of(batch: tuple) -> tuple:
        import jax

        leaves, structure = jax.tree_util.tree_flatten(batch)
        return structure, tuple((np.shape(v), _dtype(v)) for v in leaves)

    def for_batch(self, batch: tuple) -> Callable[..., Any] | None:
        """The compiled function where ``batch`` (``(x, y, sample_weight)``)
        has the traced shapes and dtypes (waits for the compile), else None."""
        if self._signature_of(batch) != self._signature:
            return None
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._compiled


def _dtype(value: Any) -> Any:
    """The dtype JAX computes ``value`` in (64-bit numpy narrowed unless x64)."""
    import jax

    return jax.dtypes.canonicalize_dtype(
        np.asarray(value).dtype if not hasattr(value, "dtype") else value.dtype
    )


def _inference_arguments(model: keras.Model) -> dict[str, bool]:
    """``training=False`` where the model's ``call`` takes it: Keras's
    trainers pass it only then, and ``stateless_call`` hands its keyword
    arguments to ``call`` as they are."""
    return {"training": False} if "training" in model.call_signature_parameters else {}


def _inference_loss(model: keras.Model) -> Callable[..., Any]:
    """``model.compute_loss(x, y, y_pred, sample_weight)`` in inference mode;
    an override that takes no ``training`` is called without it, as Keras's
    trainers do (its signature read once, not at every step)."""
    if "training" in inspect.signature(model.compute_loss).parameters:
        return functools.partial(model.compute_loss, training=False)
    return model.compute_loss


def _tf_step(model: keras.Model, state: list[Any]) -> Callable[..., None]:
    import tensorflow as tf

    metrics = model.metrics_variables
    loss_of = _inference_loss(model)

    @tf.function(reduce_retracing=True)
    def compiled(x: Any, y: Any, sample_weight: Any) -> None:
        saved = [tf.identity(v.value) for v in metrics]
        with tf.GradientTape() as tape:
            y_pred = model(x, training=False)
            loss = loss_of(x, y, y_pred, sample_weight)
        for variable, value in zip(state, tape.gradient(loss, state)):
            variable.assign(value)
        for variable, value in zip(metrics, saved):
            variable.assign(value)

    return compiled


def _torch_step(model: keras.Model, state: list[Any]) -> Callable[..., None]:
    import torch

    metrics = model.metrics_variables
    loss_of = _inference_loss(model)

    def compiled(x: Any, y: Any, sample_weight: Any) -> None:
        saved = [keras.ops.convert_to_numpy(v) for v in metrics]
        with torch.enable_grad():
            y_pred = model(x, training=False)
            loss = loss_of(x, y, y_pred, sample_weight)
            new = torch.autograd.grad(loss, [v.value for v in state])
        with torch.no_grad():
            for variable, value in zip(state, new):
                variable.assign(value)
            for variable, value in zip(metrics, saved):
                variable.assign(value)

    return compiled
