"""Ways out of broken sweep directories (deepthink/sweep/repair.py), without Ray: unreadable trial
files are told apart from finished and failed ones and set aside; the refusal and resume checks do
not trip over them; a checkpoint that does not load falls back to the newest older one that does,
or to none.
"""
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from deepthink.checkpoint import FILENAME, save_checkpoint
from deepthink.results import read_results, write_trial
from deepthink.sweep import repair, state

from test_sweep_lock import _rows


@pytest.fixture
def sweep_dir(tmp_path):
    d = tmp_path / "s"
    write_trial(str(d), "a_00000", _rows("a_00000"))
    write_trial(str(d), "a_00001", _rows("a_00001", "diverged"))
    write_trial(str(d), "a_00002", _rows("a_00002", "failed"))
    (d / "trial-a_00003.parquet").write_bytes(b"PAR1 cut short")
    return d


def test_statuses_tell_unreadable_files_apart(sweep_dir):
    assert repair.trial_statuses(str(sweep_dir)) == {"a_00000": "ok", "a_00001": "diverged",
                                                     "a_00002": "failed", "a_00003": "corrupt"}
    assert state.finished_trials(str(sweep_dir)) == {"a_00000", "a_00001"}
    assert not state.trial_finished(str(sweep_dir), "a_00003")


def test_refusal_names_the_way_out_despite_an_unreadable_file(sweep_dir):
    Path(state.ray_dir(str(sweep_dir))).mkdir(parents=True)
    (Path(state.ray_dir(str(sweep_dir))) / state.TUNER_STATE).write_bytes(b"")
    with pytest.raises(state.SweepError) as e:
        state.check_start(str(sweep_dir), 4, False, "s.yaml", resume_command="deepthink sweep s.yaml --resume")
    assert "2 of 4 trials finished" in str(e.value) and "To finish it: deepthink sweep s.yaml --resume" in str(e.value)


def test_unreadable_files_are_set_aside(sweep_dir):
    notes = []
    assert repair.set_aside_corrupt(str(sweep_dir), notes.append) == ["a_00003"]
    assert not (sweep_dir / "trial-a_00003.parquet").exists()
    set_aside = Path(state.state_dir(str(sweep_dir))) / repair.CORRUPT_DIR
    assert len(list(set_aside.glob("trial-a_00003.*.parquet.corrupt"))) == 1
    assert not list(sweep_dir.parent.glob("**/*.parquet.corrupt/")) and \
        sorted(p.name for p in sweep_dir.rglob("*") if p.suffix != ".parquet") == [], "results dir: Parquet only"
    assert "a_00003" in notes[0] and "runs the trial again" in notes[0]
    assert sorted(set(read_results(str(sweep_dir))["trial_id"])) == ["a_00000", "a_00001", "a_00002"]


CONFIG = {"model": "dt_recall", "width": 8, "train": {"lr": 0.001}}


def _ray_checkpoints(tmp_path, n):
    """Ray's layout: <trial dir>/checkpoint_000000 ... each holding a deepthink checkpoint.pt."""
    dirs = []
    for i in range(n):
        d = tmp_path / "trial" / f"checkpoint_{i:06d}"
        save_checkpoint(d, {"config": CONFIG, "epoch": i + 1})
        dirs.append(d)
    return dirs


def _truncate(d: Path):
    f = d / FILENAME
    f.write_bytes(f.read_bytes()[:50])


def test_an_intact_latest_checkpoint_is_used(tmp_path):
    dirs = _ray_checkpoints(tmp_path, 2)
    notes = []
    assert repair.intact_checkpoint(pafs.LocalFileSystem(), str(dirs[-1]), CONFIG, notes.append) == str(dirs[-1])
    assert notes == []


def test_a_truncated_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path):
    dirs = _ray_checkpoints(tmp_path, 3)
    _truncate(dirs[2])
    _truncate(dirs[1])
    notes = []
    got = repair.intact_checkpoint(pafs.LocalFileSystem(), str(dirs[2]), CONFIG, notes.append)
    assert got == str(dirs[0])
    assert "cannot read checkpoint" in notes[0] and notes[0].endswith(f"older checkpoint {dirs[0]}")


@pytest.mark.parametrize("damage", ["truncated", "missing", "other config"])
def test_no_usable_checkpoint_means_the_trial_starts_over(tmp_path, damage):
    (d,) = _ray_checkpoints(tmp_path, 1)
    if damage == "truncated":
        _truncate(d)
    elif damage == "missing":
        (d / FILENAME).unlink()
    else:
        save_checkpoint(d, {"config": {**CONFIG, "width": 16}, "epoch": 1})
    notes = []
    assert repair.intact_checkpoint(pafs.LocalFileSystem(), str(d), CONFIG, notes.append) is None
    assert "training this trial from the start" in notes[0]
