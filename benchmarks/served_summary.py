"""Tables of the served-model benchmark from its JSON lines (no TensorFlow).

``served_quality.py`` writes one JSON line per (problem, seed, method, k) with
the served model's test AUC and the training wall time and epochs it took;
this module turns them into the tables of ``docs/benchmarks.md``. It is kept
free of TensorFlow so that a test can check its arithmetic on hand-made rows.

Row keys: ``problem``, ``seed``, ``method``, ``k``, ``auc``, ``log_loss``,
``train_seconds`` (every fit and retrain on the way to the model) and
``epochs`` (their training epochs). Method ``plain`` is the all-fields fit of
the same fixed epochs as Sequential Attention's one fit, measured in the same
process (one row per seed); ``<sa>_retrained`` is Sequential Attention's own
picks retrained from scratch.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np

SA = "sa_heldout"
# Not "another method" for the comparison of item 4: Sequential Attention's
# own variants, the no-selection model and the baseline fit.
NOT_OTHERS = {"plain", "all", "sa_heldout", "sa_train"}


def read_rows(paths: Iterable[str | pathlib.Path]) -> list[dict]:
    rows = []
    for path in paths:
        path = pathlib.Path(path)
        if path.exists():
            rows += [json.loads(line) for line in path.read_text().splitlines() if line]
    return rows


def spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = np.asarray(values, float)
    deviation = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return float(values.mean()), deviation


def is_other(method: str) -> bool:
    return method not in NOT_OTHERS and not method.endswith("_retrained")


def summarise(rows: list[dict], problem: str) -> dict:
    """Per method: per-k and over-the-sweep AUC, seconds and epochs.

    The mean over the sweep is each seed's mean over the k sweep, then its
    mean and spread over the seeds that have every k of the sweep.
    """
    rows = [r for r in rows if r["problem"] == problem and "auc" in r]
    plain = [r for r in rows if r["method"] == "plain"]
    ks = sorted({r["k"] for r in rows if r["method"] != "plain"})
    methods: dict[str, dict] = {}
    for method in dict.fromkeys(r["method"] for r in rows if r["method"] != "plain"):
        mine = [r for r in rows if r["method"] == method]
        per_k = {}
        for k in ks:
            cell = [r for r in mine if r["k"] == k]
            if cell:
                per_k[k] = {
                    key: spread([r[key] for r in cell])
                    for key in ("auc", "train_seconds", "epochs")
                } | {"seeds": len(cell)}
        by_seed: dict[int, dict[int, dict]] = {}
        for r in mine:
            by_seed.setdefault(r["seed"], {})[r["k"]] = r
        whole = [seed for seed, got in by_seed.items() if set(got) >= set(ks)]
        over = {}
        if whole:
            over = {
                key: spread([np.mean([by_seed[s][k][key] for k in ks]) for s in whole])
                for key in ("auc", "train_seconds", "epochs")
            } | {"seeds": len(whole)}
        methods[method] = {"per_k": per_k, "sweep": over}
    return {
        "problem": problem,
        "ks": ks,
        "seeds": sorted({r["seed"] for r in rows}),
        "plain": {
            key: spread([r[key] for r in plain])
            for key in ("auc", "train_seconds", "epochs")
        }
        | {"seeds": len(plain)}
        if plain
        else {},
        "methods": methods,
    }


def verdict(summary: dict) -> dict:
    """Item 4: SA's served model against the best other method's retrained one.

    Returns the best other method (by mean AUC over the sweep), the AUC and
    time differences (SA minus it; time also as a ratio), and SA served minus
    SA retrained per k and over the sweep.
    """
    methods = summary["methods"]
    sa = methods.get(SA, {}).get("sweep")
    others = {m: v["sweep"] for m, v in methods.items() if is_other(m) and v["sweep"]}
    out: dict = {}
    if sa and others:
        best = max(others, key=lambda m: others[m]["auc"][0])
        out |= {
            "best_other": best,
            "auc_gap": sa["auc"][0] - others[best]["auc"][0],
            "seconds_gap": sa["train_seconds"][0] - others[best]["train_seconds"][0],
            "seconds_ratio": sa["train_seconds"][0] / others[best]["train_seconds"][0],
            "epochs_gap": sa["epochs"][0] - others[best]["epochs"][0],
        }
    retrained = methods.get(f"{SA}_retrained")
    if sa and retrained and retrained["sweep"]:
        out["served_minus_retrained"] = {
            k: methods[SA]["per_k"][k]["auc"][0] - retrained["per_k"][k]["auc"][0]
            for k in summary["ks"]
            if k in methods[SA]["per_k"] and k in retrained["per_k"]
        } | {"sweep": sa["auc"][0] - retrained["sweep"]["auc"][0]}
    return out


def _cell(pair: tuple[float, float], digits: int = 4) -> str:
    return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"


def tables(summary: dict) -> str:
    """Markdown: AUC per k, seconds and epochs per k, the sweep, the verdict."""
    ks, methods, lines = summary["ks"], summary["methods"], []
    plain = summary["plain"]
    lines.append(f"### {summary['problem']} (seeds {summary['seeds']}, k = {ks})\n")
    if plain:
        lines.append(
            f"Plain all-fields fit (baseline, {plain['seeds']} seeds): test AUC "
            f"{_cell(plain['auc'])}, {_cell(plain['train_seconds'], 1)} s, "
            f"{plain['epochs'][0]:.0f} epochs.\n"
        )
    head = " | ".join(f"AUC k={k}" for k in ks)
    lines.append(f"| method | {head} | mean AUC over k | seeds |")
    lines.append("|---" * (len(ks) + 3) + "|")
    for method, v in methods.items():
        cells = [_cell(v["per_k"][k]["auc"]) if k in v["per_k"] else "-" for k in ks]
        sweep = _cell(v["sweep"]["auc"]) if v["sweep"] else "-"
        seeds = v["sweep"].get("seeds", "-")
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {sweep} | {seeds} |")
    lines.append("")
    base = plain["train_seconds"][0] if plain else None
    head = " | ".join(f"s (epochs) k={k}" for k in ks)
    lines.append(f"| method | {head} | mean s over k | x plain fit |")
    lines.append("|---" * (len(ks) + 3) + "|")
    for method, v in methods.items():
        cells = [
            "{:.1f} ({:.1f})".format(
                v["per_k"][k]["train_seconds"][0], v["per_k"][k]["epochs"][0]
            )
            if k in v["per_k"]
            else "-"
            for k in ks
        ]
        if v["sweep"]:
            mean = v["sweep"]["train_seconds"][0]
            sweep = _cell(v["sweep"]["train_seconds"], 1)
            ratio = f"x{mean / base:.2f}" if base else "-"
        else:
            sweep = ratio = "-"
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {sweep} | {ratio} |")
    result = verdict(summary)
    if "best_other" in result:
        lines.append(
            f"\nSA served ({SA}) minus the best other method "
            f"({result['best_other']}, retrained): mean AUC over k "
            f"{result['auc_gap']:+.4f}, training time {result['seconds_gap']:+.1f} s "
            f"(x{result['seconds_ratio']:.2f}), epochs {result['epochs_gap']:+.1f}."
        )
    if "served_minus_retrained" in result:
        parts = ", ".join(
            f"k={k} {d:+.4f}"
            for k, d in result["served_minus_retrained"].items()
            if k != "sweep"
        )
        lines.append(
            f"SA served minus SA's own picks retrained: {parts}; mean over k "
            f"{result['served_minus_retrained']['sweep']:+.4f}."
        )
    return "\n".join(lines)
