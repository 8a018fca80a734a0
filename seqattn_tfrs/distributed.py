"""What the export needs from models trained under ``tf.distribute``.

``MirroredStrategy`` and ``MultiWorkerMirroredStrategy`` keep a full copy of
every variable on each replica; a SavedModel made from one serves as is. Under
``ParameterServerStrategy`` the variables live on the parameter servers, and a
table created under a ``variable_partitioner`` is a ``ShardedVariable`` whose
shards sit on several of them. TensorFlow saves such a variable in a form that
``tf.saved_model.load`` cannot load (see the strategy's documentation), and a
function traced against remote variables captures handles to the cluster. The
export therefore traces its serving functions against local copies instead.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

PARAMETER_SERVER_JOB = "/job:ps/"  # where ParameterServerStrategy puts variables


def _is_remote(value: Any) -> bool:
    if isinstance(value, tf.__internal__.distribute.ShardedVariable):
        return True
    return isinstance(value, tf.Variable) and PARAMETER_SERVER_JOB in value.device


def _local_copy(value: Any) -> tf.Variable:
    """A plain variable on this host with ``value``'s current contents.

    The shards of a ``ShardedVariable`` are concatenated along the first axis
    (TensorFlow partitions that axis only, in order).
    """
    if isinstance(value, tf.__internal__.distribute.ShardedVariable):
        shards = value.variables
        initial = tf.concat([shard.read_value() for shard in shards], axis=0)
        name = shards[0].name.split(":")[0].rsplit("/part_", 1)[0]
    else:
        initial = value.read_value()
        name = value.name.split(":")[0]
    return tf.Variable(initial, trainable=False, name=name)


def check_no_remote_captures(functions: list[Any]) -> None:
    """Raises if a traced function still reads a variable on a parameter server.

    Raises:
      ValueError: naming the function and the remote device.
    """
    for function in functions:
        for captured in function.captured_inputs:
            device = getattr(captured, "device", "") or ""
            if PARAMETER_SERVER_JOB in device:
                raise ValueError(
                    f"The serving function {function.name!r} reads a variable on "
                    f"the parameter server {device!r}, so its SavedModel would not "
                    "serve without the cluster. The export copies to this host "
                    "only the variables that the model's layers hold as "
                    "attributes (as Keras layers hold their weights); expected "
                    "every variable the model reads to be held that way."
                )


class LocalVariables:
    """A context in which ``model``'s layers read local copies of remote variables.

    Every variable that a module of ``model`` holds as an attribute and that
    lives on a parameter server (a ``ShardedVariable``, gathered into one, or a
    variable of the ``ps`` job) is replaced by a plain ``tf.Variable`` on this
    host with its current value; the attributes are restored on exit. The
    copies are made on the first entry and reused on every later one, so a
    function traced in one entry and traced again while saving (which
    ``tf.saved_model.save`` may do) reads the same copies. Nothing changes for
    a model whose variables are local (no strategy, ``MirroredStrategy``,
    ``MultiWorkerMirroredStrategy``).

    Use it outside ``strategy.scope()``, where the copies are not placed on the
    parameter servers again.

    Args:
      model: the model (or any ``tf.Module``) about to be traced.

    Example:
      >>> model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
      >>> model.build([None, 2])
      >>> with LocalVariables(model) as local:  # no strategy: nothing to copy
      ...     pass
      >>> local.copies
      []
    """

    def __init__(self, model: tf.Module) -> None:
        self._model = model
        self._copies: dict[int, tuple[Any, tf.Variable]] = {}
        self._swapped: list[tuple[Any, str, Any]] = []

    @property
    def copies(self) -> list[tf.Variable]:
        """The local copies made so far."""
        return [copy for _, copy in self._copies.values()]

    def __enter__(self) -> LocalVariables:
        if isinstance(
            tf.distribute.get_strategy(), tf.distribute.ParameterServerStrategy
        ):
            raise RuntimeError(
                "Export a model trained under ParameterServerStrategy outside "
                "`strategy.scope()`: its tables are gathered into variables on "
                "this host, which inside the scope would be placed on the "
                "parameter servers again."
            )
        try:
            for module in [self._model, *self._model.submodules]:
                for attribute, value in list(vars(module).items()):
                    if not _is_remote(value):
                        continue
                    if id(value) not in self._copies:
                        self._copies[id(value)] = (value, _local_copy(value))
                    object.__setattr__(module, attribute, self._copies[id(value)][1])
                    self._swapped.append((module, attribute, value))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for module, attribute, value in reversed(self._swapped):
            object.__setattr__(module, attribute, value)
        self._swapped = []
