"""The main job's report: a dict, a readable table, report.json and gates.png.

Epochs are counted from 1 everywhere in the report (``report.json``, the
printed table and the plot), as Keras' progress bar counts them; the callback
and ``model.fit``'s hooks count from 0, and :func:`build_report` and
:func:`write_report` shift them once.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from seqattn_tfrs.movielens.config import JobConfig

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "build_report",
    "field_table",
    "format_report",
    "gates_figure",
    "plot_gates",
    "write_report",
]

REPORT_FILE = "report.json"
GATES_FILE = "gates.png"
#: The number of the first epoch in the report (Keras hooks count from 0).
FIRST_EPOCH = 1


def _counted_from_one(row: Mapping[str, Any]) -> dict[str, Any]:
    """``row`` with its Keras (0-based) ``"epoch"`` counted from ``FIRST_EPOCH``."""
    row = dict(row)
    if row.get("epoch") is not None:
        row["epoch"] += FIRST_EPOCH
    return row


def build_report(
    *,
    config: JobConfig,
    selected_features: Sequence[str],
    noise_features: Sequence[str],
    selection_events: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, Mapping[str, float]],
    tables_before: Mapping[str, Any],
    tables_after: Mapping[str, Any],
    export: Mapping[str, Any] | None,
    timings: Mapping[str, float],
    data: Mapping[str, Any],
    per_epoch: Mapping[str, Sequence[Mapping[str, float]]] | None = None,
    schedule: Mapping[str, Any] | None = None,
    fit_time: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Assembles the job report.

    Args:
      config: the config that ran (smoke already applied).
      selected_features: the selected fields, in pick order.
      noise_features: the names of the random fields.
      selection_events: the callback's ``events`` (one per round; their
        ``"epoch"`` counted from 0, as Keras does).
      metrics: ``{"baseline": {...}, "selected": {...}}`` test metrics, each
        with ``"auc"`` and ``"log_loss"``; optionally also
        ``"baseline_best_val_epoch"`` (with its 0-based ``"epoch"``).
      tables_before: embedding tables of the gated model before pruning
        (``tables``, ``parameters``, ``bytes``, ``per_feature``).
      tables_after: the same after pruning.
      export: ``path``, ``size_bytes`` (and more) of the SavedModel export, or
        None when nothing was exported.
      timings: wall seconds per phase, with ``"total"``.
      data: data set facts (sizes, source directory, epochs).
      per_epoch: optional per-model lists of per-epoch validation and test
        metrics (each row's ``"epoch"`` counted from 0).
      schedule: the gated layer's ``schedule_record`` (``unit``, ``warmup``,
        ``rounds``, ``per_round``, ``finetune``, ``within_fit``).
      fit_time: the two fits' wall seconds, measured in the same run:
        ``selected_seconds`` (the selection run), ``baseline_seconds`` (the
        all-fields fit of the same ``epochs``), and ``epochs`` and
        ``steps_per_epoch``; the report adds ``ratio`` (selected / baseline).

    Returns:
      A JSON-ready dict, its epochs counted from ``FIRST_EPOCH`` (1).
    """
    baseline, selected = metrics["baseline"], metrics["selected"]
    before, after = tables_before["parameters"], tables_after["parameters"]
    return {
        "budget_bytes": config.selection.budget_bytes,
        "fields": field_table(tables_before, tables_after),
        "selected_features": list(selected_features),
        "num_selected": len(selected_features),
        "noise_features": list(noise_features),
        "noise_features_selected": [
            f for f in selected_features if f in noise_features
        ],
        "selection_events": [_counted_from_one(e) for e in selection_events],
        "metrics": {
            **{name: _counted_from_one(values) for name, values in metrics.items()},
            "auc_selected_minus_baseline": selected["auc"] - baseline["auc"],
        },
        "per_epoch": {
            name: [_counted_from_one(row) for row in rows]
            for name, rows in (per_epoch or {}).items()
        },
        "embedding_tables": {
            "before": dict(tables_before),
            "after": dict(tables_after),
            "parameter_fraction_kept": after / before if before else None,
        },
        "export": None if export is None else dict(export),
        "schedule": None if schedule is None else dict(schedule),
        "fit_time": None if fit_time is None else _with_ratio(fit_time),
        "timings_seconds": dict(timings),
        "data": dict(data),
        "config": config.to_dict(),
    }


def _with_ratio(fit_time: Mapping[str, float]) -> dict[str, Any]:
    """``fit_time`` with ``ratio``: the selection run's fit over the baseline's.

    Example:
      >>> _with_ratio({"selected_seconds": 3.0, "baseline_seconds": 2.0})["ratio"]
      1.5
    """
    ratio = fit_time["selected_seconds"] / fit_time["baseline_seconds"]
    return {**fit_time, "ratio": round(ratio, 3)}


def field_table(
    tables_before: Mapping[str, Any], tables_after: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Per field: its width, the columns kept and its table's bytes.

    Args:
      tables_before: ``{"per_feature": {name: {"dim", "bytes", ...}}}`` of the
        gated model before pruning.
      tables_after: the same for the kept tables.

    Example:
      >>> field_table({"per_feature": {"a": {"dim": 2, "bytes": 40},
      ...                              "b": {"dim": 3, "bytes": 60}}},
      ...             {"per_feature": {"a": {"dim": 2, "bytes": 40}}})
      ... # doctest: +NORMALIZE_WHITESPACE
      {'a': {'width': 2, 'kept_columns': [0, 1], 'bytes_before': 40, 'bytes': 40},
       'b': {'width': 3, 'kept_columns': [], 'bytes_before': 60, 'bytes': 0}}
    """
    after = tables_after.get("per_feature", {})
    fields = {}
    for name, stats in tables_before.get("per_feature", {}).items():
        kept = after.get(name)
        fields[name] = {
            "width": stats["dim"],
            "kept_columns": list(range(kept["dim"])) if kept else [],
            "bytes_before": stats["bytes"],
            "bytes": kept["bytes"] if kept else 0,
        }
    return fields


def _size(num_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(num_bytes) < 1024 or unit == "GiB":
            return (
                f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
            )
        num_bytes /= 1024
    raise AssertionError("unreachable")


def format_report(report: Mapping[str, Any]) -> str:
    """The report as a readable plain-text table.

    Example:
      >>> print(format_report({"selected_features": ["a"], "noise_features": [],
      ...     "metrics": {"baseline": {"auc": 0.7, "log_loss": 0.6},
      ...                 "selected": {"auc": 0.75, "log_loss": 0.55}},
      ...     "embedding_tables": {"before": {"tables": 2, "parameters": 20,
      ...                                     "bytes": 80},
      ...                          "after": {"tables": 1, "parameters": 10,
      ...                                    "bytes": 40}},
      ...     "schedule": {"unit": "steps", "warmup": 4, "rounds": 1,
      ...                  "per_round": 32, "finetune": 4, "within_fit": True},
      ...     "fit_time": {"epochs": 4, "steps_per_epoch": 10,
      ...                  "selected_seconds": 1.1, "baseline_seconds": 1.0,
      ...                  "ratio": 1.1},
      ...     "export": None, "timings_seconds": {"total": 1.5}}))
      ... # doctest: +NORMALIZE_WHITESPACE
      Selected features (in pick order)
        1. a
      <BLANKLINE>
      Test metrics                AUC  log loss
        baseline (all)         0.7000    0.6000
        selected               0.7500    0.5500
      <BLANKLINE>
      Schedule (fit-within, in steps): warm-up 4, 1 round x 32, fine-tune 4
      <BLANKLINE>
      Fit wall time (s), both 4 epochs of 10 steps
        selection run             1.1
        baseline (all fields)     1.0
        ratio                   x1.10
      <BLANKLINE>
      Embedding tables  tables  parameters      bytes
        before               2          20       80 B
        after                1          10       40 B
      <BLANKLINE>
      Export: skipped
      <BLANKLINE>
      Wall time (s)
        total                 1.5
    """
    noise = set(report.get("noise_features", ()))
    lines = ["Selected features (in pick order)"]
    for i, name in enumerate(report["selected_features"], 1):
        lines.append(f"  {i}. {name}" + ("   <- NOISE FIELD" if name in noise else ""))
    metrics = report["metrics"]
    lines += ["", f"{'Test metrics':<24}{'AUC':>9}{'log loss':>10}"]
    rows = [("baseline", "baseline (all)"), ("selected", "selected")]
    if "baseline_best_val_epoch" in metrics:
        epoch = metrics["baseline_best_val_epoch"]["epoch"]
        rows.insert(1, ("baseline_best_val_epoch", f"baseline, epoch {epoch} *"))
    for key, label in rows:
        m = metrics[key]
        lines.append(f"  {label:<22}{m['auc']:>9.4f}{m['log_loss']:>10.4f}")
    if "baseline_best_val_epoch" in metrics:
        lines.append("  * the baseline's epoch with the best validation AUC")
    schedule = report.get("schedule")
    if schedule:
        kind = "fit-within" if schedule["within_fit"] else "explicit"
        rounds = f"{schedule['rounds']} round{'s' * (schedule['rounds'] != 1)}"
        lines += [
            "",
            f"Schedule ({kind}, in {schedule['unit']}): warm-up "
            f"{schedule['warmup']}, {rounds} x {schedule['per_round']}, "
            f"fine-tune {schedule['finetune']}",
        ]
        events = report.get("selection_events") or []
        closed = [e for e in events if "fit_but_not_picked" in e]
        if closed and closed[-1]["round"] < schedule["rounds"]:
            lines.append(
                f"  the budget closed after round {closed[-1]['round']}: "
                f"{sorted(closed[-1]['fit_but_not_picked'])} still fit, but none "
                "passed the score test (entry_z) or each copies a selected "
                "field; the rounds left went to the fine-tune"
            )
    fit_time = report.get("fit_time")
    if fit_time:
        lines += [
            "",
            f"Fit wall time (s), both {fit_time['epochs']} epochs of "
            f"{fit_time['steps_per_epoch']} steps",
            f"  {'selection run':<22}{fit_time['selected_seconds']:>7.1f}",
            f"  {'baseline (all fields)':<22}{fit_time['baseline_seconds']:>7.1f}",
            f"  {'ratio':<22}{'x' + format(fit_time['ratio'], '.2f'):>7}",
        ]
    tables = report["embedding_tables"]
    lines += [
        "",
        f"{'Embedding tables':<18}{'tables':>6}{'parameters':>12}{'bytes':>11}",
    ]
    for key in ("before", "after"):
        t = tables[key]
        lines.append(
            f"  {key:<16}{t['tables']:>6}{t['parameters']:>12,}{_size(t['bytes']):>11}"
        )
    fields = report.get("fields")
    if fields:
        budget = report.get("budget_bytes")
        title = "Fields" + (f" (budget {_size(budget)})" if budget else "")
        lines += ["", f"{title:<32}{'columns kept':>14}{'bytes':>11}"]
        for name, field in fields.items():
            kept = f"{len(field['kept_columns'])}/{field['width']}"
            lines.append(f"  {name:<30}{kept:>14}{_size(field['bytes']):>11}")
    export = report.get("export")
    lines.append("")
    if export:
        lines.append(
            f"Export: {export['path']} ({_size(export['size_bytes'])} on disk)"
        )
    else:
        lines.append("Export: skipped")
    lines += ["", "Wall time (s)"]
    for phase, seconds in report["timings_seconds"].items():
        lines.append(f"  {phase:<22}{seconds:>7.1f}")
    return "\n".join(lines)


def _style(
    name: str, order: Mapping[str, int], noise: Sequence[str], i: int
) -> tuple[str, dict[str, Any]]:
    """Legend label and line style: picks numbered, every noise field marked."""
    mark = " (noise)" if name in noise else ""
    if name in order:
        style = {"linewidth": 2.2, "color": f"C{(order[name] - 1) % 10}"}
        if mark:
            style["linestyle"] = "--"
        return f"#{order[name]} {name}{mark}", style
    if mark:
        return f"{name}{mark}", {"linewidth": 1.2, "linestyle": "--", "color": "0.3"}
    return name, {"linewidth": 0.9, "alpha": 0.55, "color": f"C{i % 10}"}


def _legend_key(label: str) -> tuple[int, int]:
    return (0, int(label[1:].split()[0])) if label.startswith("#") else (1, 0)


def plot_gates(
    gate_history: Sequence[Mapping[str, Any]],
    selected_features: Sequence[str],
    path: str | os.PathLike,
    *,
    noise_features: Sequence[str] = (),
    round_gates: Sequence[Mapping[str, float]] | None = None,
) -> None:
    """Writes :func:`gates_figure` of the same arguments into the PNG ``path``."""
    figure = gates_figure(
        gate_history,
        selected_features,
        noise_features=noise_features,
        round_gates=round_gates,
    )
    figure.savefig(os.fspath(path), dpi=110)


def gates_figure(
    gate_history: Sequence[Mapping[str, Any]],
    selected_features: Sequence[str],
    *,
    noise_features: Sequence[str] = (),
    round_gates: Sequence[Mapping[str, float]] | None = None,
) -> Figure:
    """Plots every feature's gate values.

    The top panel shows each feature's gate at the end of every epoch (after
    that epoch's pick, if any). The optional bottom panel shows, for each
    selection round, the softmax gates of the features still competing just
    before the pick (the evidence the pick was made on), the winner starred.
    Selected features are drawn thick and labelled with their pick order, the
    others thin; every noise field, selected or not, is dashed and labelled
    "(noise)". Epochs are counted from 1.

    Args:
      gate_history: the callback's ``gate_history`` (``{"epoch", "layer",
        "gates"}`` per epoch and gated layer, epochs from 0); only the first
        layer is drawn.
      selected_features: the selected features, in pick order.
      noise_features: names of random fields, drawn dashed.
      round_gates: the layer's ``gate_history()``: gate values just before each
        round's pick.

    Returns:
      A matplotlib ``Figure`` on the Agg canvas (no pyplot state).

    Raises:
      ValueError: ``gate_history`` is empty.
    """
    # The object-oriented API with the Agg canvas: no pyplot, no global backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not gate_history:
        raise ValueError("gate_history is empty: nothing to plot.")
    layer = gate_history[0]["layer"]
    rows = [row for row in gate_history if row["layer"] == layer]
    epochs = [row["epoch"] + FIRST_EPOCH for row in rows]
    names = list(rows[0]["gates"])
    order = {name: i for i, name in enumerate(selected_features, 1)}

    panels = 2 if round_gates else 1
    figure = Figure(figsize=(11, 4.5 * panels), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, squeeze=False)[:, 0]

    top = axes[0]
    for i, name in enumerate(names):
        label, style = _style(name, order, noise_features, i)
        values = [row["gates"][name] for row in rows]
        top.plot(epochs, values, marker="o", markersize=3, label=label, **style)
    top.set_xlabel("epoch")
    top.set_ylabel("gate value at end of epoch")
    top.set_title(f"Sequential Attention gates per epoch ({layer})")
    top.set_xticks(epochs)
    top.grid(alpha=0.3)

    if round_gates:
        bottom = axes[1]
        rounds = list(range(1, len(round_gates) + 1))
        for i, name in enumerate(names):
            label, style = _style(name, order, noise_features, i)
            points = [
                (r, gates[name])
                for r, gates in zip(rounds, round_gates)
                if gates[name] < 1.0
            ]
            if points:
                xs, ys = zip(*points)
                bottom.plot(xs, ys, marker="o", markersize=3, label=label, **style)
            if name in order and points:
                # The round it was picked in: the last one where it competed.
                bottom.plot(
                    *points[-1], marker="*", markersize=14, color=style["color"]
                )
        bottom.set_xlabel("selection round")
        bottom.set_ylabel("softmax gate just before the pick")
        bottom.set_title("Competing features' gates at each pick (star: picked)")
        bottom.set_xticks(rounds)
        bottom.grid(alpha=0.3)

    handles, labels = top.get_legend_handles_labels()
    ranked = sorted(zip(handles, labels), key=lambda hl: _legend_key(hl[1]))
    top.legend(
        [h for h, _ in ranked],
        [lbl for _, lbl in ranked],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
    )
    return figure


def write_report(
    report: dict[str, Any],
    gate_history: Sequence[Mapping[str, Any]],
    output_dir: str | os.PathLike,
    *,
    round_gates: Sequence[Mapping[str, float]] | None = None,
) -> dict[str, pathlib.Path]:
    """Writes ``report.json`` and ``gates.png`` into ``output_dir``.

    Adds to ``report`` the per-epoch gate values (``gate_history``), the gates
    just before each pick (``round_gates``, if given) and the files' paths
    (``files``).

    Args:
      report: from :func:`build_report`; updated in place.
      gate_history: the callback's ``gate_history``.
      output_dir: created if needed.
      round_gates: the gated layer's ``gate_history()``.

    Returns:
      ``{"report": path, "gates_plot": path}``.
    """
    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"report": output_dir / REPORT_FILE, "gates_plot": output_dir / GATES_FILE}
    plot_gates(
        gate_history,
        report["selected_features"],
        paths["gates_plot"],
        noise_features=report.get("noise_features", ()),
        round_gates=round_gates,
    )
    report["gate_history"] = [
        _counted_from_one(
            {"epoch": row["epoch"], "layer": row["layer"], "gates": dict(row["gates"])}
        )
        for row in gate_history
    ]
    if round_gates is not None:
        report["round_gates"] = [dict(gates) for gates in round_gates]
    report["files"] = {key: str(path) for key, path in paths.items()}
    paths["report"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return paths
