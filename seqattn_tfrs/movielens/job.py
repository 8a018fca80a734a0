"""The main job: select fields on MovieLens 100K, compare, prune, export, report.

Phases (each timed in the report):

1. ``prepare_data``: load MovieLens 100K, derive features, add the random
   noise fields, split 80/10/10 with the seed, build vocabularies from the
   training split only.
2. ``train_selected``: fit the gated DCN model for ``selection.epochs`` epochs
   with :class:`~seqattn_tfrs.SequentialAttentionCallback` (the validation
   split is its held-out ``selection_data``), then ``evaluate_selected`` on the
   test split. By default the callback lays warm-up, rounds and fine-tune
   inside those epochs (``within_fit=True``; checked before training, and
   refused with a ``ConfigError`` on ``selection.epochs`` when the rounds would
   be too short); an explicit schedule in the config is passed as it is.
3. ``train_baseline``: fit the same architecture on all fields without the gate
   for the same number of epochs, then ``evaluate_baseline``. Both models are
   also evaluated on the validation and test splits after every epoch
   (``per_epoch_evaluation``); the report adds the baseline's test metrics at
   its best validation-AUC epoch (an early-stopped baseline), and both fits'
   wall times and their ratio (``fit_time``: each ``model.fit`` call, tracing
   included, less its per-epoch evaluation), measured in this one process.
4. ``prune_export``: prune the unselected tables and export a SavedModel for
   TF Serving.
5. The report: ``report.json`` and ``gates.png`` in the output directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import pathlib
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

import seqattn_tfrs
from seqattn_tfrs.movielens import data as movielens
from seqattn_tfrs.movielens import report as report_lib
from seqattn_tfrs.movielens.config import (
    FROM_DATA,
    ConfigError,
    FeatureConfig,
    JobConfig,
    check_budget,
)
from seqattn_tfrs.movielens.models import (
    LABEL_KEY,
    MULTI_VALUE_PADDING,
    DCNRankingModel,
    build_model,
    embedding_table_stats,
)

__all__ = ["PreparedData", "build_vocabulary", "prepare_data", "run_job"]

SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
WARMUP_ROWS = 8


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """The three splits as in-memory columns, and the training vocabularies.

    Attributes:
      columns: split name (``"train"``, ``"val"``, ``"test"``) to feature name
        to a tensor with one row per rating (``movie_genres`` is ragged). Holds
        the model's features and the label ``user_rating``.
      vocabularies: feature name to vocabulary (bucket boundaries for
        ``"numeric"`` features), built from the training split only.
      data_dir: where the MovieLens files were read from.
    """

    columns: Mapping[str, Mapping[str, tf.Tensor | tf.RaggedTensor]]
    vocabularies: Mapping[str, list[Any]]
    data_dir: str

    def size(self, split: str) -> int:
        """Number of ratings in ``split``."""
        return int(self.columns[split][LABEL_KEY].shape[0])

    def dataset(
        self, split: str, batch_size: int, *, shuffle_seed: int | None = None
    ) -> tf.data.Dataset:
        """Batches of feature dicts (with the label) from ``split``.

        Multi-valent features come dense, padded with ``MULTI_VALUE_PADDING``
        to the batch's longest row: the form a serving signature takes.

        Args:
          split: ``"train"``, ``"val"`` or ``"test"``.
          batch_size: rows per batch (the last batch may be smaller).
          shuffle_seed: reshuffle every epoch with this seed; None keeps order.

        Returns:
          A dataset of known cardinality.
        """
        columns = dict(self.columns[split])
        n = self.size(split)
        indices = tf.data.Dataset.range(n)
        if shuffle_seed is not None:
            indices = indices.shuffle(
                n, seed=shuffle_seed, reshuffle_each_iteration=True
            )

        def gather(idx):
            batch = {name: tf.gather(col, idx) for name, col in columns.items()}
            return {
                name: value.to_tensor(default_value=MULTI_VALUE_PADDING)
                if isinstance(value, tf.RaggedTensor)
                else value
                for name, value in batch.items()
            }

        batches = indices.batch(batch_size).map(
            gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        return batches.prefetch(tf.data.AUTOTUNE)


def build_vocabulary(feature: FeatureConfig, values: np.ndarray) -> list[Any]:
    """The vocabulary of ``feature`` from its training values.

    Args:
      feature: the feature's config; an explicit vocabulary is returned as is.
      values: the training values (flattened for ``"multi_int"``).

    Returns:
      Sorted distinct values (str for ``"string"``, int for ``"int"`` and
      ``"multi_int"``), or for ``"numeric"`` the distinct quantile boundaries
      that cut the values into ``num_buckets`` buckets.

    Raises:
      ValueError: an int feature has values that are not whole numbers, or there
        are no values.
    """
    if feature.vocabulary != FROM_DATA:
        return list(feature.vocabulary)
    values = np.asarray(values)
    if values.size == 0:
        raise ValueError(f"Feature {feature.name!r} has no training values.")
    if feature.kind == "numeric":
        quantiles = np.linspace(0.0, 1.0, feature.num_buckets + 1)[1:-1]
        return sorted(
            {float(b) for b in np.quantile(values.astype(np.float64), quantiles)}
        )
    if feature.kind == "string":
        return [v.decode("utf-8") for v in np.unique(values.astype(object)).tolist()]
    if values.dtype.kind == "f" and not np.all(np.equal(np.floor(values), values)):
        raise ValueError(
            f"Feature {feature.name!r} of kind {feature.kind!r} has non-integer "
            f"values, e.g. {values[values != np.floor(values)][:3].tolist()}."
        )
    return [int(v) for v in np.unique(values.astype(np.int64))]


def _split_columns(config: JobConfig, data_dir: str) -> dict[str, dict[str, Any]]:
    dataset = movielens.load_movielens_100k(data_dir)
    if config.max_examples is not None:
        dataset = dataset.take(config.max_examples)
    parts = movielens.train_val_test_split(
        dataset, seed=config.seed, fractions=SPLIT_FRACTIONS
    )
    wanted = [f.name for f in config.features] + [LABEL_KEY]
    columns = {}
    for split, part in zip(SPLITS, parts):
        batch = (
            part.batch(1_000_000)
            .map(movielens.add_derived_features)
            .get_single_element()
        )
        for i, feature in enumerate(config.features):
            if feature.name not in batch:
                available = sorted(name for name in batch if name != LABEL_KEY)
                raise ConfigError(
                    f"features[{i}].name",
                    f"{feature.name!r} is not a MovieLens field; expected one of "
                    f"{available}",
                )
        columns[split] = {name: batch[name] for name in wanted}
    return columns


def prepare_data(config: JobConfig) -> PreparedData:
    """Loads, derives, adds noise fields, splits and builds vocabularies.

    The noise fields are drawn with ``numpy.random.default_rng(config.seed)``,
    uniformly from ``[0, noise.vocabulary_size)`` per rating, independently of
    everything else.

    Args:
      config: the (resolved) job config.

    Returns:
      The prepared splits and vocabularies.
    """
    data_dir = config.data_dir or str(movielens.fetch_movielens_100k())
    columns = _split_columns(config, data_dir)
    rng = np.random.default_rng(config.seed)
    for name in config.noise.names:
        for split in SPLITS:
            n = int(columns[split][LABEL_KEY].shape[0])
            columns[split][name] = tf.constant(
                rng.integers(0, config.noise.vocabulary_size, size=n), tf.int64
            )
    vocabularies = {}
    for feature in config.all_features:
        values = columns["train"][feature.name]
        if isinstance(values, tf.RaggedTensor):
            values = values.flat_values
        vocabularies[feature.name] = build_vocabulary(feature, values.numpy())
    return PreparedData(columns=columns, vocabularies=vocabularies, data_dir=data_dir)


@contextlib.contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] = round(time.perf_counter() - start, 3)


def _evaluate(model: DCNRankingModel, dataset: tf.data.Dataset) -> dict[str, float]:
    results = model.evaluate(dataset, return_dict=True, verbose=0)
    return {"auc": float(results["auc"]), "log_loss": float(results["log_loss"])}


class _EpochMetrics(tf.keras.callbacks.Callback):
    """Validation and test AUC / log loss after every epoch, and their cost."""

    def __init__(self, val: tf.data.Dataset, test: tf.data.Dataset) -> None:
        super().__init__()
        self.val, self.test = val, test
        self.rows: list[dict[str, float]] = []
        self.seconds = 0.0

    def on_epoch_end(self, epoch, logs=None):
        start = time.perf_counter()
        val, test = _evaluate(self.model, self.val), _evaluate(self.model, self.test)
        self.rows.append(
            {
                "epoch": epoch,
                **{f"val_{k}": v for k, v in val.items()},
                **{f"test_{k}": v for k, v in test.items()},
            }
        )
        self.seconds += time.perf_counter() - start

    def best_by_val_auc(self) -> dict[str, float]:
        """Test metrics of the epoch with the best validation AUC."""
        best = max(self.rows, key=lambda row: row["val_auc"])
        return {
            "epoch": best["epoch"],
            "auc": best["test_auc"],
            "log_loss": best["test_log_loss"],
        }


def _selection_callback(
    config: JobConfig,
    num_rounds: int,
    steps_per_epoch: int,
    selection_data: tf.data.Dataset | None,
) -> tuple[int, seqattn_tfrs.SequentialAttentionCallback]:
    """The epochs of fit and the selection callback, the schedule checked.

    Raises:
      ConfigError: on ``selection.epochs``, when the explicit schedule needs
        more epochs, or the fit-within rounds would get fewer steps than a
        round needs (the message names the numbers and the epochs needed); on
        ``selection.epochs_per_selection``, when an explicit schedule's rounds
        are too short to settle; on ``selection.selection_interval``, when
        held-out logit steps would come less often than once an epoch.
    """
    selection = config.selection
    interval = selection.selection_interval
    if selection_data is not None and interval > steps_per_epoch:
        raise ConfigError(
            "selection.selection_interval",
            f"got {interval} training steps between held-out logit steps, more "
            f"than the {steps_per_epoch} steps of an epoch (the interval counts "
            f"within each epoch); expected at most {steps_per_epoch}",
        )
    try:
        epochs = selection.fit_epochs(num_rounds)
    except ConfigError as e:
        raise ConfigError(f"selection.{e.key}", e.reason) from None
    callback = seqattn_tfrs.SequentialAttentionCallback(
        **selection.schedule_arguments(),
        settle_fraction=selection.settle_fraction,
        selection_data=selection_data,
        selection_interval=selection.selection_interval,
        verbose=1,
    )
    if selection.within_fit:
        options = callback.schedule_options
        try:
            options.schedule(num_rounds, steps_per_epoch, epochs)
        except ValueError as e:
            fewest = _fewest_epochs(options, num_rounds, steps_per_epoch)
            # The library's numbers, without its advice for fit's arguments.
            numbers = str(e).split(" Train for")[0].rstrip(".")
            raise ConfigError(
                "selection.epochs",
                f"got epochs={epochs} of {steps_per_epoch} steps, too few for the "
                f"fit-within schedule ({numbers}); expected epochs >= {fewest}, "
                "fewer rounds (selections_per_round > 1), or an explicit schedule "
                "(warmup_epochs, epochs_per_selection, finetune_epochs)",
            ) from None
    else:  # the callback's own check, at fit start, advises fit's arguments
        per_round = selection.schedule_arguments()["epochs_per_selection"]
        settle = selection.settle_fraction
        if settle > 0 and int(settle * per_round * steps_per_epoch) == 0:
            raise ConfigError(
                "selection.epochs_per_selection",
                f"rounds of {per_round} epoch(s) x "
                f"{steps_per_epoch} steps leave settle_fraction={settle} no step "
                f"to settle in; expected rounds of at least {math.ceil(1 / settle)} "
                "steps: more epochs_per_selection, more steps per epoch (a larger "
                "max_examples or a smaller batch_size), or settle_fraction 0",
            )
    return epochs, callback


def _fewest_epochs(options: Any, num_rounds: int, steps_per_epoch: int) -> int:
    """The fewest epochs in which the fit-within schedule's rounds fit."""
    epochs = 1
    while True:  # a round needs a fixed number of steps, so this ends
        try:
            options.schedule(num_rounds, steps_per_epoch, epochs)
            return epochs
        except ValueError:
            epochs += 1


def _build_before_fit(model: DCNRankingModel, batch: Mapping[str, Any]) -> None:
    """Builds every layer of ``model`` (its loss on ``batch``, no update) and
    its optimizer's variables before ``fit``. The TFRS model otherwise builds
    its dense layers, and the optimizer its moments, inside ``fit``'s first
    trace, which makes ``tf.function`` trace the training step twice
    (docs/fit_cost.md). ``fit`` resets the metrics this loss touched."""
    model.compute_loss(batch)
    model.optimizer.build(model.trainable_variables)


def _timed_fit(
    model: DCNRankingModel,
    train: tf.data.Dataset,
    epochs: int,
    callbacks: list[tf.keras.callbacks.Callback],
    verbose: int,
    batch: Mapping[str, Any],
) -> float:
    """Builds ``model`` on ``batch`` (:func:`_build_before_fit`), then fits it
    for ``epochs`` epochs; returns the wall seconds of both."""
    start = time.perf_counter()
    _build_before_fit(model, batch)
    model.fit(train, epochs=epochs, callbacks=callbacks, verbose=verbose)
    return time.perf_counter() - start


def _prune_and_export(
    model: DCNRankingModel,
    output_dir: pathlib.Path,
    test: tf.data.Dataset,
) -> tuple[DCNRankingModel, dict[str, Any]]:
    """Prunes the unselected tables and exports the pruned model for serving."""
    batch = next(iter(test))
    features = {name: value for name, value in batch.items() if name != LABEL_KEY}
    before = model(features).numpy()
    pruned = seqattn_tfrs.prune(model)
    after = pruned(features).numpy()
    kept = list(pruned.gate.embedding_layers)
    # A few real test rows, replayed by TF Serving when it loads the model.
    warmup = {name: features[name][:WARMUP_ROWS].numpy().tolist() for name in kept}
    path = pathlib.Path(
        seqattn_tfrs.export_for_serving(
            pruned, output_dir / "serving", warmup_examples=warmup
        )
    )
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return pruned, {
        "path": str(path),
        "size_bytes": int(size),
        "serving_features": kept,
        "max_abs_prediction_change_after_prune": float(np.max(np.abs(before - after))),
    }


def _table_totals(stats: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    return {
        "tables": len(stats),
        "parameters": sum(s["parameters"] for s in stats.values()),
        "bytes": sum(s["bytes"] for s in stats.values()),
        "per_feature": {name: dict(s) for name, s in stats.items()},
    }


def run_job(config: JobConfig, *, export: bool = True) -> dict[str, Any]:
    """Runs the whole job and writes its report into ``config.output_dir``.

    Args:
      config: the job config; ``smoke`` is applied here (see
        :meth:`JobConfig.resolved`).
      export: prune and export the selected model (False skips that phase).

    Returns:
      The report dict also written to ``report.json``.

    Raises:
      ConfigError: a configured feature is not in the data,
        ``selection.budget_bytes`` holds none of the embedding tables built
        from the data, or the schedule does not fit the data's steps (see
        :func:`_selection_callback`); all before training, and before
        ``output_dir`` is created.
    """
    started = time.perf_counter()
    config = config.resolved()
    output_dir = pathlib.Path(config.output_dir)
    timings: dict[str, float] = {}
    fit_verbose = 2 if config.smoke else 1

    with _timed(timings, "prepare_data"):
        data = prepare_data(config)
        check_budget(config, {n: len(v) for n, v in data.vocabularies.items()})
        train = data.dataset("train", config.batch_size, shuffle_seed=config.seed)
        val = data.dataset("val", config.batch_size).cache()
        test = data.dataset("test", config.batch_size).cache()
    selection = config.selection

    with _timed(timings, "train_selected"):
        tf.keras.utils.set_random_seed(config.seed)
        model = build_model(config, data.vocabularies, use_gate=True)
        steps_per_epoch = -(-data.size("train") // config.batch_size)
        # Under a byte budget the gate reserves the rounds, from the tables' sizes.
        epochs, callback = _selection_callback(
            config,
            model.gate.num_rounds,
            steps_per_epoch,
            selection_data=val if selection.use_selection_data else None,
        )
        output_dir.mkdir(parents=True, exist_ok=True)  # the checks passed
        print(
            f"Data: {data.size('train')} train / {data.size('val')} val / "
            f"{data.size('test')} test ratings from {data.data_dir}; "
            f"{len(config.all_features)} fields; {epochs} epochs of "
            f"{steps_per_epoch} steps per model.",
            flush=True,
        )
        selected_epochs = _EpochMetrics(val, test)
        # Not from the cached `val`: a partly read cache is discarded.
        first_batch = next(iter(data.dataset("val", config.batch_size)))
        selected_fit = _timed_fit(
            model, train, epochs, [callback, selected_epochs], fit_verbose, first_batch
        )
    with _timed(timings, "evaluate_selected"):
        selected_metrics = _evaluate(model, test)

    with _timed(timings, "train_baseline"):
        tf.keras.utils.set_random_seed(config.seed)
        baseline = build_model(config, data.vocabularies, use_gate=False)
        baseline_epochs = _EpochMetrics(val, test)
        baseline_fit = _timed_fit(
            baseline, train, epochs, [baseline_epochs], fit_verbose, first_batch
        )
    with _timed(timings, "evaluate_baseline"):
        baseline_metrics = _evaluate(baseline, test)
    # Per-epoch evaluation is its own phase, not training time.
    for phase, evaluation in (
        ("train_selected", selected_epochs),
        ("train_baseline", baseline_epochs),
    ):
        timings[phase] = round(timings[phase] - evaluation.seconds, 3)
    timings["per_epoch_evaluation"] = round(
        selected_epochs.seconds + baseline_epochs.seconds, 3
    )
    fit_time = {
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "selected_seconds": round(selected_fit - selected_epochs.seconds, 3),
        "baseline_seconds": round(baseline_fit - baseline_epochs.seconds, 3),
    }

    tables_before = embedding_table_stats(model)
    round_gates = model.gate.gate_history()
    export_info = None
    tables_after = {name: tables_before[name] for name in model.gate.selected_features}
    if export:
        with _timed(timings, "prune_export"):
            pruned, export_info = _prune_and_export(model, output_dir, test)
            tables_after = embedding_table_stats(pruned)
    timings["total"] = round(time.perf_counter() - started, 3)

    report = report_lib.build_report(
        config=config,
        selected_features=list(model.gate.selected_features),
        noise_features=list(config.noise.names),
        selection_events=callback.events,
        schedule=model.gate.schedule_record,
        fit_time=fit_time,
        metrics={
            "baseline": baseline_metrics,
            "baseline_best_val_epoch": baseline_epochs.best_by_val_auc(),
            "selected": selected_metrics,
        },
        per_epoch={"selected": selected_epochs.rows, "baseline": baseline_epochs.rows},
        tables_before=_table_totals(tables_before),
        tables_after=_table_totals(tables_after),
        export=export_info,
        timings=timings,
        data={
            "data_dir": data.data_dir,
            **{f"{split}_examples": data.size(split) for split in SPLITS},
            "epochs_per_model": epochs,
            "steps_per_epoch": steps_per_epoch,
        },
    )
    report_lib.write_report(
        report, callback.gate_history, output_dir, round_gates=round_gates
    )
    print(report_lib.format_report(report), flush=True)
    return report
