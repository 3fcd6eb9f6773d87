"""Nothing lost, ever (slow; run with `-m slow`): real `deepthink sweep` drivers in subprocesses on
tiny prefix-sum trials.

- two drivers started at the same moment, then a --resume beside the running one: one runs, the
  others are refused with one line naming it; the command that line suggests succeeds; every trial
  exactly once, all ok;
- a driver killed with SIGKILL: --resume takes its lock over and finishes;
- a deleted results file and a truncated latest checkpoint: --resume says so, re-runs the one and
  falls back to the older checkpoint for the other; every trial once, all ok;
- an embedded sweep's Ray processes listen on 127.0.0.1 only, and its Ray session directory is
  gone when it ends.
Only processes these tests start are signalled, by pid.
"""
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from deepthink.sweep import state
from deepthink.sweep.lock import lock_file
from test_sweep import ROOT, tiny_sweep
from test_sweep_faults import Sweep, check_complete

pytestmark = pytest.mark.slow

OK_GRID = {"model": ["dt_recall"], "max_iters": [2], "width": [8], "lr": [0.001, 0.002]}
LOCKED = r"deepthink sweep: error: sweep directory \S+ is in use by another driver \(pid (\d+) on \S+ since [^)]+\)"


def ok_sweep(tmp_path, name, **changes):
    """4 trials (2 lrs x 2 seeds) that all end ok, a few seconds each."""
    return tiny_sweep(tmp_path, name=name, grid=OK_GRID, seeds=[0, 1], **changes)


def run_suggestion(command: str, timeout=400) -> subprocess.CompletedProcess:
    """Run a command a message suggested (`deepthink sweep ...`) exactly as written."""
    words = shlex.split(command)
    assert words[0] == "deepthink"
    return subprocess.run([sys.executable, "-m", "deepthink.cli", *words[1:]], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=dict(os.environ, RAY_DEDUP_LOGS="0"))


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def session_roots(driver_pid: int) -> set[Path]:
    """The deepthink-ray-* directories holding this driver's Ray session (session_<time>_<pid>)."""
    return {d.parent for d in Path(tempfile.gettempdir()).glob(f"deepthink-ray-*/session_*_{driver_pid}")}


def test_one_driver_per_sweep_directory(tmp_path):
    path, doc = ok_sweep(tmp_path, "both", train={"epochs": 2, "batch_size": 50, "clip": None})
    data = tmp_path / "data"
    a, b = Sweep(tmp_path, path, "--data-root", data), Sweep(tmp_path, path, "--data-root", data)
    t0 = time.monotonic()
    while a.proc.poll() is None and b.proc.poll() is None:
        assert time.monotonic() - t0 < 120, a.text()[-2000:] + b.text()[-2000:]
        time.sleep(0.1)
    refused, runner = (a, b) if a.proc.poll() is not None else (b, a)
    assert refused.proc.returncode == 2, refused.text()[-3000:]
    errors = [line for line in refused.text().splitlines() if "error" in line]
    assert len(errors) == 1 and re.match(LOCKED, errors[0]), refused.text()
    assert int(re.match(LOCKED, errors[0]).group(1)) == runner.proc.pid

    assert runner.proc.poll() is None, "the runner must still be running for the --resume below"
    beside = Sweep(tmp_path, path, "--data-root", data, "--resume")
    assert beside.finish(120) == 2, beside.text()[-3000:]
    line = next(line for line in beside.text().splitlines() if "error" in line)
    assert int(re.match(LOCKED, line).group(1)) == runner.proc.pid
    suggestion = line.split("To run after it ends: ", 1)[1]
    assert suggestion.endswith("--resume --wait")
    waited = run_suggestion(suggestion)          # waits for the runner, then finds nothing left to do
    assert waited.returncode == 0, waited.stdout[-3000:] + waited.stderr[-3000:]
    assert "waiting for the driver" in waited.stdout
    assert runner.finish() == 0, runner.text()[-3000:]

    sweep_dir = tmp_path / "results" / "both"
    check_complete(sweep_dir, doc)
    assert len(list(sweep_dir.glob("trial-*.parquet"))) == 4
    assert not Path(lock_file(str(sweep_dir))).exists()

    # A fresh start over the finished directory is refused; the way to finish it that it names works.
    again = run_suggestion(f"deepthink sweep {path} --data-root {data}")
    assert again.returncode == 2, again.stdout[-2000:] + again.stderr[-2000:]
    finish = re.search(r"To finish it: (.+)", again.stderr).group(1)
    finished = run_suggestion(finish)
    assert finished.returncode == 0 and "4 trials: 4 ok, 0 diverged, 0 failed, 0 unfinished" in finished.stdout
    check_complete(sweep_dir, doc)


def test_a_killed_drivers_lock_is_taken_over_by_resume(tmp_path):
    path, doc = ok_sweep(tmp_path, "killed", train={"epochs": 2, "batch_size": 50, "clip": None})
    data = tmp_path / "data"
    run = Sweep(tmp_path, path, "--data-root", data)
    run.wait_for(r"done +\w+ ")
    ray_procs = descendants(run.proc.pid)          # GCS, raylet, workers: started by our driver
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.wait()
    for p in ray_procs:                             # what kill -9 of a driver leaves behind, by pid
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(ray_procs, timeout=20)
    roots = session_roots(run.proc.pid)
    assert len(roots) == 1, "a killed driver cannot remove its session directory"
    shutil.rmtree(roots.pop())                      # so we do, as docs/sweeps.md tells users to
    assert Path(lock_file(str(tmp_path / "results" / "killed"))).exists(), "the killed driver left its lock"
    resumed = Sweep(tmp_path, path, "--data-root", data, "--resume")
    assert resumed.finish() == 0, resumed.text()[-3000:]
    assert re.search(rf"took over the lock \S+ left by pid {run.proc.pid} on \S+ since .*no longer running",
                     resumed.text())
    check_complete(tmp_path / "results" / "killed", doc)


def _latest_checkpoint(sweep_dir: Path, trial_id: str) -> Path | None:
    from ray.tune import ExperimentAnalysis
    trial = next(t for t in ExperimentAnalysis(state.ray_dir(str(sweep_dir))).trials if t.trial_id == trial_id)
    return Path(trial.checkpoint.path) if trial.checkpoint else None


def test_resume_repairs_lost_results_and_a_truncated_checkpoint(tmp_path):
    # one trial at a time, 6 epochs of 1000 strings: an interruption after the third trial's second
    # epoch leaves two finished trials and an unfinished one with two checkpoints
    path, doc = ok_sweep(tmp_path, "repair", data={"train": 10, "eval": [12], "count": 1000},
                         train={"epochs": 6, "batch_size": 50, "clip": None})
    data = tmp_path / "data"
    sweep_dir = tmp_path / "results" / "repair"
    run = Sweep(tmp_path, path, "--data-root", data, "--max-concurrent", "1")
    gone, broken = run.wait_for(r"done +(\w+) [\s\S]*done +(\w+) ").groups()
    cut = run.wait_for(rf"done +{broken} [\s\S]*epoch +(\w+) \S+ 2/6 ").group(1)     # the next trial's
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130, run.text()[-3000:]
    assert not (sweep_dir / f"trial-{cut}.parquet").exists()
    said = run.text()
    # 4 trials, 1 not created yet by Tune when it stopped (it creates one ahead): counted as pending
    assert "Stop signal received" not in said and re.search(r"^\S+ interrupted: stopping the running trials", said, re.M)
    assert re.search(r"== 4 trials: 1 pending, 0 running, 2 done \(2 ok, 0 diverged\), 0 failed, 1 interrupted$", said, re.M), said[-2000:]

    (sweep_dir / f"trial-{gone}.parquet").unlink()                  # a finished trial's results deleted
    damaged = sweep_dir / f"trial-{broken}.parquet"                 # another's truncated
    damaged.write_bytes(damaged.read_bytes()[:100])
    latest = _latest_checkpoint(sweep_dir, cut) / "checkpoint.pt"
    older = sorted(p for p in latest.parent.parent.glob("checkpoint_*") if p.name < latest.parent.name)
    assert older, "the unfinished trial has an older checkpoint to fall back to"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])   # its newest checkpoint truncated

    suggestion = re.search(r"finish the remaining trials with: (.+)", run.text()).group(1)
    words = shlex.split(suggestion)
    assert words[:2] == ["deepthink", "sweep"] and "--resume" in words
    resumed = Sweep(tmp_path, *words[2:])                            # the suggested command, as written
    assert resumed.finish() == 0, resumed.text()[-3000:]
    out = resumed.text()
    assert re.search(rf"results file of trial {broken} cannot be read; moved it to \S+/_repair/corrupt/", out)
    for tid in (gone, broken):
        assert f"trial {tid} finished but its results file is missing: this --resume runs it again" in out
        assert re.search(rf"info   {tid} \S+: resumed from .* after epoch 6 \(finished\)", out), "evaluated again"
    assert re.search(rf"info   {cut} \S+: latest checkpoint unusable .*cannot read checkpoint.*; resuming from "
                     rf"the older checkpoint \S+{older[-1].name}", out), out[-3000:]
    df = check_complete(sweep_dir, doc)
    assert set(df["epochs_completed"]) == {6}
    # the suggested --resume has no --max-concurrent, yet the start line says the one Ray kept: 1
    assert re.search(r"^sweep repair: 4 trials, \d+ already done, up to 1 at once", out, re.M), out[:2000]
    again = Sweep(tmp_path, *words[2:], "--max-concurrent", "2")     # everything done: nothing to train
    assert again.finish() == 0, again.text()[-3000:]
    assert ("note: --max-concurrent 2 ignored: --resume keeps the setting the sweep started with (1)"
            in again.text()), again.text()[:2000]
    for trial_dir in Path(state.ray_dir(str(sweep_dir))).glob("*_dt_recall*"):      # a finished trial keeps one checkpoint
        assert len(list(trial_dir.glob("checkpoint_*"))) == 1, trial_dir


def test_embedded_ray_listens_on_localhost_only_and_removes_its_session(tmp_path):
    path, doc = ok_sweep(tmp_path, "local", train={"epochs": 2, "batch_size": 50, "clip": None})
    run = Sweep(tmp_path, path, "--data-root", tmp_path / "data")
    run.wait_for(r"epoch +\w+ ")                  # Ray is up and a trial worker reports
    procs = [psutil.Process(run.proc.pid), *descendants(run.proc.pid)]
    listening = []
    for p in procs:
        try:
            listening += [(p.pid, p.name(), c.laddr) for c in p.net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            pass
    temp_dirs = session_roots(run.proc.pid)
    assert run.finish() == 0, run.text()[-3000:]
    names = {name for _, name, _ in listening}
    assert len(listening) >= 3 and any("gcs" in n for n in names) and any("raylet" in n for n in names), listening
    assert all(addr.ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for _, _, addr in listening), listening
    assert len(temp_dirs) == 1, temp_dirs
    time.sleep(5)                      # nothing of Ray lingers to write into it again after exit
    assert not Path(temp_dirs.pop()).exists(), "the sweep's Ray session directory is removed on exit"
    lingering = [p for p in procs[1:] if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not lingering, lingering
    assert not list(Path("/tmp/ray").glob(f"session_*_{run.proc.pid}")), "nothing of it under /tmp/ray"
    check_complete(tmp_path / "results" / "local", doc)
