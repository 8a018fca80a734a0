"""The main job's CLI and the examples, each run in smoke mode in a subprocess.

The six processes start together (one module fixture) and run side by side;
each test waits for its own.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from seqattn_tfrs.movielens import data

REPO = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 240
BUDGET_BYTES = 50_000  # about a fifth of the smoke job's 272 KiB of tables
EXAMPLES = (
    "add_layer_to_tfrs_model",
    "select_with_callback",
    "export_for_tf_serving",
    "movielens_retrieval",
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Starts the CLI smoke job and every example; yields name -> (process, dir)."""
    data.fetch_movielens_100k()  # once, before the processes that read the cache
    env = {
        **os.environ,
        "TF_USE_LEGACY_KERAS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    started = {}
    job_dir = tmp_path_factory.mktemp("job")
    commands = {
        "cli": [
            sys.executable,
            "-m",
            "seqattn_tfrs.movielens.cli",
            "--smoke",
            "--output_dir",
            "out",
        ],
        "cli_budget": [
            sys.executable,
            "-m",
            "seqattn_tfrs.movielens.cli",
            "--smoke",
            "--budget_bytes",
            str(BUDGET_BYTES),
            "--noexport",
            "--output_dir",
            "out_budget",
        ],
    }
    for name in EXAMPLES:
        commands[name] = [
            sys.executable,
            str(REPO / "examples" / f"{name}.py"),
            "--smoke",
        ]
    commands["export_for_tf_serving"] += ["--export_base", str(job_dir / "ranker")]
    commands["movielens_retrieval"] += ["--export_base", str(job_dir / "retrieval")]
    for name, command in commands.items():
        started[name] = subprocess.Popen(
            command,
            cwd=job_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    yield {name: (process, job_dir) for name, process in started.items()}
    for process in started.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def finish(runs, name: str) -> tuple[str, pathlib.Path]:
    process, directory = runs[name]
    output, _ = process.communicate(timeout=TIMEOUT_SECONDS)
    assert process.returncode == 0, f"{name} failed:\n{output[-6000:]}"
    return output, directory


def test_cli_smoke_job_writes_report_and_plot(runs):
    output, directory = finish(runs, "cli")
    out = directory / "out"
    report = json.loads((out / "report.json").read_text())
    config = report["config"]
    assert config["smoke"] is True
    k = config["selection"]["num_selected"]
    assert report["num_selected"] == k == len(report["selected_features"])
    assert len(set(report["selected_features"])) == k
    picks = [name for e in report["selection_events"] for name in e["features"]]
    assert picks == report["selected_features"]
    assert report["noise_features"] == ["noise_0", "noise_1", "noise_2"]
    for model in ("baseline", "selected"):
        metrics = report["metrics"][model]
        assert 0.0 <= metrics["auc"] <= 1.0
        assert metrics["log_loss"] > 0.0
    tables = report["embedding_tables"]
    assert tables["before"]["tables"] == 16 and tables["after"]["tables"] == k
    assert 0 < tables["after"]["bytes"] < tables["before"]["bytes"]
    assert sorted(tables["after"]["per_feature"]) == sorted(report["selected_features"])
    export = report["export"]
    assert pathlib.Path(export["path"]).is_dir()
    assert (pathlib.Path(export["path"]) / "saved_model.pb").is_file()
    assert export["size_bytes"] > 0
    assert export["max_abs_prediction_change_after_prune"] < 1e-5
    assert sorted(export["serving_features"]) == sorted(report["selected_features"])
    timings = report["timings_seconds"]
    for phase in ("prepare_data", "train_selected", "train_baseline", "prune_export"):
        assert timings[phase] > 0
    assert timings["total"] >= sum(v for p, v in timings.items() if p != "total")
    assert len(report["gate_history"]) == report["data"]["epochs_per_model"]
    # report.json counts epochs from 1, as the printed text and Keras do.
    epochs = list(range(1, report["data"]["epochs_per_model"] + 1))
    assert [row["epoch"] for row in report["gate_history"]] == epochs
    for model in ("selected", "baseline"):
        assert [row["epoch"] for row in report["per_epoch"][model]] == epochs
    assert all(event["epoch"] in epochs for event in report["selection_events"])
    best = report["metrics"]["baseline_best_val_epoch"]["epoch"]
    assert best in epochs and f"baseline, epoch {best} *" in output
    assert (out / "gates.png").read_bytes().startswith(b"\x89PNG")
    assert "Selected features (in pick order)" in output
    # Smoke mode keeps an explicit schedule: one epoch a phase.
    assert report["schedule"] == {
        "unit": "epochs",
        "warmup": 1,
        "rounds": k,
        "per_round": 1,
        "finetune": 1,
        "within_fit": False,
    }
    fit_time = report["fit_time"]
    assert fit_time["epochs"] == report["data"]["epochs_per_model"] == 1 + k + 1
    assert fit_time["steps_per_epoch"] == report["data"]["steps_per_epoch"]
    assert 0 < fit_time["selected_seconds"] <= timings["train_selected"]
    assert 0 < fit_time["baseline_seconds"] <= timings["train_baseline"]
    ratio = fit_time["selected_seconds"] / fit_time["baseline_seconds"]
    assert abs(fit_time["ratio"] - ratio) < 1e-3
    assert f"x{fit_time['ratio']:.2f}" in output


def test_cli_budget_flag_selects_fields_that_fit(runs):
    output, directory = finish(runs, "cli_budget")
    report = json.loads((directory / "out_budget" / "report.json").read_text())
    selection = report["config"]["selection"]
    assert selection["num_selected"] is None
    assert report["budget_bytes"] == selection["budget_bytes"] == BUDGET_BYTES
    tables = report["embedding_tables"]
    assert 0 < tables["after"]["bytes"] <= BUDGET_BYTES < tables["before"]["bytes"]
    fields = report["fields"]
    kept = {name for name, field in fields.items() if field["kept_columns"]}
    assert (
        kept == set(report["selected_features"]) == set(tables["after"]["per_feature"])
    )
    assert sum(field["bytes"] for field in fields.values()) == tables["after"]["bytes"]
    # Greedy under a budget stops when no unselected field fits any more or,
    # by default (entry_z "auto": 3 under a budget), when none that fits
    # passes the score test; the last round's event names those.
    assert selection["entry_z"] == "auto"
    room = BUDGET_BYTES - tables["after"]["bytes"]
    fitting = {
        name
        for name in fields
        if name not in kept and tables["before"]["per_feature"][name]["bytes"] <= room
    }
    last = report["selection_events"][-1]
    assert set(last.get("fit_but_not_picked", {})) == fitting
    assert all(z <= 3.0 for z in last.get("fit_but_not_picked", {}).values())
    assert "Fields (budget 48.8 KiB)" in output
    assert report["export"] is None


def test_cli_rejects_a_bad_flag_value_naming_the_key(tmp_path):
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "seqattn_tfrs.movielens.cli", "--num_selected", "99"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )
    assert result.returncode == 2
    assert "selection.num_selected" in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_in_smoke_mode(runs, name):
    output, directory = finish(runs, name)
    if name == "export_for_tf_serving":
        assert "saved_model_cli show --dir" in output
        assert list((directory / "ranker").glob("*/saved_model.pb"))
    elif name == "movielens_retrieval":
        summary = json.loads(output.strip().splitlines()[-1])
        assert len(summary["query_features"]) == 3, summary
        assert len(summary["candidate_features"]) == 2, summary
        # The exported index takes the kept query features only, and the
        # SavedModel, loaded back, returns the movies the in-process index did.
        assert summary["serving_inputs"] == sorted(summary["query_features"])
        assert summary["served_top_10_match"] is True, summary
        assert pathlib.Path(summary["export"]).parent == directory / "retrieval"
        for model in ("selected", "all_features"):
            assert 0.0 < summary[model]["test_top_100_accuracy"] <= 1.0, summary
    else:
        assert "Selected" in output


def run_cli(cwd: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    """Runs the CLI as the ``seqattn-tfrs`` console script does."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "PYTHONPATH": str(REPO)}
    script = (
        "import sys; sys.argv[0] = 'seqattn-tfrs'; "
        "from seqattn_tfrs.movielens.cli import run; sys.exit(run())"
    )
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
    )


def test_help_lists_the_jobs_own_flags(tmp_path):
    result = run_cli(tmp_path, "--help")
    listed = {line.split(":")[0].strip() for line in result.stdout.splitlines()}
    for flag in ("--num_selected", "--budget_bytes", "--output_dir", "--[no]smoke"):
        assert flag in listed, result.stdout[-3000:]
    for flag in ("--noise_fields", "--config", "--[no]export", "--attention_momentum"):
        assert flag in listed, result.stdout[-3000:]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["--budget_bytes", "10"],
            ["selection.budget_bytes", "10 bytes hold no embedding table"],
        ),
        (["--output_dir", "a_file"], ["output_dir", "'a_file' is an existing file"]),
        (["--output_dir", "a_file/run"], ["output_dir", "is an existing file"]),
        (["--seed", "x"], ["flag --seed=x"]),
        (["stray"], ["unexpected positional arguments ['stray']"]),
        ([], ["data_dir:", "'no_such_dir' does not hold MovieLens 100K files"]),
    ],
    ids=[
        "budget_too_small",
        "output_dir_is_a_file",
        "under_a_file",
        "bad_int",
        "positional",
        "no_data",
    ],
)
def test_cli_refuses_before_reading_data_with_a_clean_error(tmp_path, args, fragments):
    (tmp_path / "a_file").write_text("not a folder")
    result = run_cli(tmp_path, "--smoke", "--data_dir", "no_such_dir", *args)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith("seqattn-tfrs: error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        # 130 bytes may hold a 2-row table of 16 floats (128), but the smallest
        # table built from the data, user_gender's, has 3 rows (192 bytes).
        (
            ["--budget_bytes", "130"],
            ["selection.budget_bytes:", "'user_gender', needs 192 bytes"],
        ),
        # 8 training rows: one step an epoch, nothing for a round to settle in.
        (
            ["--max_examples", "10"],
            ["selection.epochs_per_selection:", "rounds of 1 epoch(s) x 1 steps"],
        ),
        (
            ["--selection_interval", "20"],
            ["selection.selection_interval:", "more than the 13 steps of an epoch"],
        ),
        (
            ["--config", "unknown_feature.json"],
            ["features[0].name:", "'user_foo' is not a MovieLens field"],
        ),
    ],
    ids=["budget_vs_built_tables", "rounds_too_short", "interval", "unknown_feature"],
)
def test_cli_refuses_what_the_data_shows_before_training(tmp_path, args, fragments):
    data.fetch_movielens_100k()
    (tmp_path / "unknown_feature.json").write_text(
        json.dumps(
            {
                "features": [{"name": "user_foo", "kind": "string"}],
                "selection": {"num_selected": 2},
            }
        )
    )
    result = run_cli(tmp_path, "--smoke", "--noexport", *args)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "Epoch 1/" not in result.stdout  # refused before training
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("seqattn-tfrs: error: config "), last
    for fragment in fragments:
        assert fragment in last
    assert not (tmp_path / "runs").exists()  # nothing left behind
