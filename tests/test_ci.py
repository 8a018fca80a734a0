"""CI proves the README's first command: `.ci/run` as a check on its text."""

from __future__ import annotations

import pathlib
import re

CI = pathlib.Path(__file__).resolve().parents[1] / ".ci" / "run"


def commands() -> list[str]:
    lines = [line.split("#")[0].strip() for line in CI.read_text().splitlines()]
    return [line for line in lines if line]


def test_ci_runs_the_smoke_job_from_the_movielens_extra_alone():
    steps = commands()
    installs = [s for s in steps if re.search(r"pip\"? install", s)]
    assert len(installs) == 2, installs
    readme, suite = installs
    assert '-e ".[movielens]"' in readme and "[test]" not in readme
    assert '-e ".[test]"' in suite
    # Its own fresh environment, then the job's smoke configuration with it.
    venv = re.search(
        r'python3 -m venv "?(\S+?)/venv"?$', steps[steps.index(readme) - 1]
    )
    assert venv, steps
    smoke = steps[steps.index(readme) + 1]
    assert '/bin/seqattn-tfrs" --smoke --output_dir' in smoke
    assert smoke.startswith(f'"{venv.group(1)}/venv/bin/')
    assert steps.index(smoke) < steps.index(suite)
    assert steps[-1] == ".venv/bin/python -m pytest -q"


def test_every_ci_step_fails_the_script():
    # `set -e` ignores a failure anywhere in an `a && b` list but its end.
    assert "set -euo pipefail" in commands()
    assert not [s for s in commands() if "&&" in s or "||" in s]
