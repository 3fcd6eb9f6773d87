"""Every sweeps/*.yaml is a valid sweep: it parses, its header's numbers match what it expands to,
and `deepthink sweep FILE --dry-run` accepts it.

GPU sweeps are dry-run as if on a machine with one GPU (the planner's local GPU count is patched):
on a CPU-only machine the planner rightly refuses GPU trials, but the file itself is still valid.
"""
import importlib.util
import re
from pathlib import Path

import pytest

from deepthink.config import parse_sweep

SWEEPS = Path(__file__).resolve().parent.parent / "sweeps"
FILES = sorted(SWEEPS.glob("*.yaml"))
PAPER_FILES = [f for f in FILES if f.name.startswith("paper")]


def test_published_numbers_are_not_sweep_files():
    """sweeps/published/ holds CSVs of the papers' numbers (analysis.tables --compare): the glob
    above must not pick them up, and no sweep file may hide there."""
    assert not any("published" in f.parts[-2] for f in FILES)
    assert not list((SWEEPS / "published").glob("*.yaml"))
    assert (SWEEPS / "published" / "paper1_table1.csv").is_file()


def test_the_paper_sweep_files_exist():
    names = {f.stem for f in PAPER_FILES}
    assert names >= {"paper1_prefix_sums", "paper1_mazes", "paper1_chess",
                     "paper2_prefix_sums", "paper2_mazes", "paper2_chess"}


def _parse(path):
    from deepthink.tasks import TASKS
    import yaml
    task = yaml.safe_load(path.read_text()).get("task")
    if task not in TASKS:
        pytest.skip(f"task {task!r} is not registered yet (deepthink/tasks/{task}.py missing)")
    return parse_sweep(path)


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_parses(path):
    sweep = _parse(path)
    assert sweep.trials()
    if path in PAPER_FILES:
        assert sweep.name == path.stem, "results go to <storage>/<name>/: keep name and file name alike"


@pytest.mark.parametrize("path", PAPER_FILES, ids=[f.name for f in PAPER_FILES])
def test_header_states_trials_and_gpu_hours(path):
    sweep = _parse(path)
    header = "".join(line for line in path.read_text().splitlines(True) if line.startswith("#"))
    assert "Reproduces:" in header
    trials = re.search(r"# Trials: (\d+) \(", header)
    assert trials, "header must say '# Trials: N (...)'"
    assert int(trials.group(1)) == len(sweep.trials())
    hours = re.search(r"# Estimated GPU-hours: ([\d.]+) = (\d+) trials x ([\d.]+)", header)
    assert hours, "header must say '# Estimated GPU-hours: H = N trials x h'"
    per = sweep.cost.get("gpu_hours_per_trial")
    assert per is not None and float(hours.group(3)) == per
    assert int(hours.group(2)) == len(sweep.trials())
    assert float(hours.group(1)) == pytest.approx(per * len(sweep.trials()))


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_dry_run(path, monkeypatch, capsys):
    if importlib.util.find_spec("deepthink.sweep.cli") is None:
        pytest.skip("deepthink/sweep/cli.py (`deepthink sweep`) is not written yet")
    sweep = _parse(path)
    from deepthink.cli import main
    rc = main(["sweep", str(path), "--dry-run"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert str(len(sweep.trials())) in out
