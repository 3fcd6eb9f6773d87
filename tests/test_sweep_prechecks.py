"""Issue 13: every bad input is caught before Ray (in --dry-run too) as one line naming the file,
key, value and fix; the driver survives its own storage failing; a truncated Parquet is named."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import yaml

from deepthink.cli import main

GOOD = {"name": "t", "task": "prefix_sums", "data": {"count": 10},
        "grid": {"model": ["dt_net"], "width": [8], "max_iters": [2]}, "seeds": [0],
        "train": {"epochs": 1}}


def write(tmp_path, doc=None, text=None, **changes) -> Path:
    path = tmp_path / "sweep.yaml"
    if text is None:
        doc = {**(doc or GOOD), "storage": str(tmp_path / "results"), **changes}
        text = yaml.safe_dump(doc, sort_keys=False)
    path.write_text(text)
    return path


def sweep(capsys, path, *args) -> tuple[int, str, str]:
    """Run `deepthink sweep` in-process; (exit status, stdout, stderr). Fails on a traceback."""
    t0 = time.perf_counter()
    rc = main(["sweep", str(path), *args])
    out, err = capsys.readouterr()
    assert time.perf_counter() - t0 < 5, "a hostile file must be refused within seconds"
    assert "Traceback" not in out + err
    return rc, out, err


def refused(capsys, path, *args, dry_run=True) -> str:
    rc, out, err = sweep(capsys, path, *(("--dry-run",) if dry_run else ()), *args)
    assert rc == 2, (out, err)
    assert err.startswith("deepthink sweep: error: ") and str(path) in err, err
    return err


# ---- YAML --------------------------------------------------------------------------------------
def test_nested_anchors_billion_laughs_are_refused_in_milliseconds(tmp_path, capsys):
    lines = ["name: t", "task: prefix_sums", "l0: &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    lines += ["grid: {model: [dt_net], width: [*l8], max_iters: [2]}"]
    err = refused(capsys, write(tmp_path, text="\n".join(lines) + "\n"))
    assert "expand to more than 100,000 values" in err and err.count("\n") == 1


def test_more_than_100_aliases_are_refused(tmp_path, capsys):
    text = "name: t\ntask: prefix_sums\nx: &x 1\ny: [" + ", ".join(["*x"] * 101) + "]\n"
    assert "found 101 YAML aliases" in refused(capsys, write(tmp_path, text=text))


def test_a_few_aliases_still_work_and_lines_are_kept(tmp_path):
    from deepthink.configfile import ConfigLoader, load_file
    assert ConfigLoader.__mro__[1] is getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    path = write(tmp_path, text="w: &w [8, 16]\ngrid:\n  width: *w\nlr: 1e-3\n")
    raw, lines = load_file(path)
    assert raw["grid"]["width"] == [8, 16] and raw["lr"] == 0.001
    assert lines[("grid", "width")] == 3 and lines[("lr",)] == 4


# ---- values --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed, expected", [(-1, "an integer >= 0"), (2**32, "an integer < 4294967296"),
                                            (2**64, "an integer < 4294967296")])
def test_seeds_outside_what_torch_and_numpy_take_are_refused(tmp_path, capsys, seed, expected):
    err = refused(capsys, write(tmp_path, seeds=[seed]))
    assert "key 'seeds[0]' (line" in err and f"found {seed}; expected {expected}" in err


@pytest.mark.parametrize("key, changes, expected", [
    ("grid.width[0]", {"grid": {**GOOD["grid"], "width": [10**9]}}, "<= 4096"),
    ("grid.max_iters[0]", {"grid": {**GOOD["grid"], "max_iters": [10**8]}}, "<= 10000"),
    ("train.epochs", {"train": {"epochs": 10**23}}, "<= 100000"),
    ("test.iterations", {"test": {"iterations": 10**6}}, "<= 10000"),
    ("data.count", {"data": {"count": 10**9}}, "<= 10000000"),
])
def test_sizes_beyond_sane_bounds_are_refused(tmp_path, capsys, key, changes, expected):
    err = refused(capsys, write(tmp_path, **changes))
    assert f"key '{key}'" in err and expected in err, err


@pytest.mark.parametrize("name", ["a\x00b", "a\nb", "\x1b[31mred", "a b", "../up", ".hidden"])
def test_sweep_names_are_restricted_to_a_safe_character_set(tmp_path, capsys, name):
    err = refused(capsys, write(tmp_path, name=name))
    assert "key 'name'" in err and "letters, digits and . _ -" in err
    assert err.count("\n") == 1 and "\x1b" not in err and "\x00" not in err


# ---- the trial cap ----------------------------------------------------------------------------------
def big_grid(tmp_path) -> Path:     # 100 x 100 x 100 = 10^6 trials
    grid = {"model": ["dt_net"], "width": list(range(1, 101)), "max_iters": list(range(1, 101))}
    return write(tmp_path, grid=grid, seeds=list(range(100)))


def test_a_million_trial_grid_is_summarised_by_the_dry_run_and_refused(tmp_path, capsys):
    path = big_grid(tmp_path)
    rc, out, err = sweep(capsys, path, "--dry-run")
    assert rc == 2 and "trials: 1,000,000" in out and len(out.splitlines()) < 5
    assert "key 'max_trials': found a grid of 1,000,000 trials" in err and "--max-trials 1000000" in err
    assert "1,000,000" in refused(capsys, path, dry_run=False)   # a real run: refused before Ray
    assert not (tmp_path / "results").exists()


def test_the_cap_is_raised_by_the_file_or_the_flag(tmp_path, capsys):
    grid = {"model": ["dt_net"], "width": list(range(1, 11)), "max_iters": [1, 2]}
    path = write(tmp_path, grid=grid, seeds=[0, 1], max_trials=5)            # 40 trials
    assert "expected at most 5" in refused(capsys, path)
    rc, out, _ = sweep(capsys, path, "--dry-run", "--max-trials", "40")
    assert rc == 0 and "trials: 40 " in out


def test_a_large_grid_dry_run_shows_the_first_and_last_rows(tmp_path, capsys):
    path = write(tmp_path, grid={**GOOD["grid"], "width": list(range(1, 101))})
    rc, out, _ = sweep(capsys, path, "--dry-run")
    assert rc == 0 and "... 60 more trials (the first and last 20 shown) ..." in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == [str(i) for i in list(range(20)) + list(range(80, 100))]


# ---- storage ---------------------------------------------------------------------------------------
def test_storage_that_is_a_file_or_under_a_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for storage in (afile, afile / "sub"):
        for dry in (True, False):
            err = refused(capsys, write(tmp_path, storage=str(storage)), dry_run=dry)
            assert f"key 'storage': found '{storage}'" in err and "is a file, not a directory" in err, err
    # the sweep directory itself a file
    (tmp_path / "t").write_text("x")
    err = refused(capsys, write(tmp_path, storage=str(tmp_path)))
    assert "is a file, not a directory" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through chmod (the file cases above cover it)")
def test_read_only_storage_is_refused(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        err = refused(capsys, write(tmp_path, storage=str(ro)))
        assert "is not writable" in err
    finally:
        ro.chmod(0o700)


def test_storage_override_is_named_as_the_command_line(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    err = refused(capsys, write(tmp_path), "--storage", str(afile))
    assert "key 'storage' (--storage)" in err


def test_unreachable_bucket_is_one_line(tmp_path, capsys, monkeypatch):
    from deepthink.sweep import precheck

    def unreachable(uri):
        raise OSError("AWS Error NETWORK_CONNECTION during HeadBucket operation")
    monkeypatch.setattr(precheck, "filesystem", unreachable)
    err = refused(capsys, write(tmp_path, storage="s3://no-such-bucket/x"))
    assert "cannot reach it (OSError: AWS Error NETWORK_CONNECTION" in err and err.count("\n") == 1


def test_a_bucket_that_does_not_answer_times_out(tmp_path, capsys, monkeypatch):
    from deepthink.sweep import precheck
    monkeypatch.setattr(precheck, "STORAGE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(precheck, "filesystem", lambda uri: time.sleep(3))
    err = refused(capsys, write(tmp_path, storage="s3://slow-bucket/x"))
    assert "no answer from s3://slow-bucket/x/t within 0.2 s" in err


# ---- the driver's own storage failing mid-run ---------------------------------------------------------
class FakeTrial:
    trial_id = "abc_00000"
    config = {}
    num_failures = 3
    last_result = {}
    error_file = None

    def get_error(self):
        return "RuntimeError: boom"


def test_a_progress_log_write_failing_stops_the_sweep_with_a_message(tmp_path, capsys, monkeypatch):
    import builtins
    import signal
    from deepthink.sweep import progress
    kills = []
    monkeypatch.setattr(progress.os, "kill", lambda pid, sig: kills.append(sig))
    real_open = builtins.open

    def full_disk(path, *a, **kw):
        if str(path).endswith("sweep.log"):
            raise OSError(28, "No space left on device")
        return real_open(path, *a, **kw)
    monkeypatch.setattr(builtins, "open", full_disk)
    cb = progress.SweepProgress(str(tmp_path / "sweep"), 2)
    cb.setup()
    cb.emit("start  x")
    cb.emit("done   x")                     # a second failure: no second message, no second stop
    out, err = capsys.readouterr()
    assert "start  x" in out and "done   x" in out
    assert err.count("storage failed while writing the log") == 1 and "No space left on device" in err
    assert kills == [signal.SIGINT] and progress.storage_error and cb.storage_error


def test_failed_rows_that_cannot_be_written_do_not_crash_the_driver(tmp_path, capsys, monkeypatch):
    from deepthink.sweep import progress
    monkeypatch.setattr(progress.os, "kill", lambda pid, sig: None)

    def read_only(*a, **kw):
        raise OSError(30, "Read-only file system")
    monkeypatch.setattr(progress, "write_failed", read_only)
    cb = progress.SweepProgress(str(tmp_path / "sweep"), 2)
    cb.on_trial_error(0, [], FakeTrial())
    out, err = capsys.readouterr()
    assert "could NOT write its rows" in out and "Read-only file system" in err


def test_the_runner_ends_a_storage_failure_with_resume_instructions(capsys):
    from deepthink.sweep.runner import _storage_failed
    rc = _storage_failed("writing the log x: OSError: [Errno 28] No space left on device", "/r/t",
                         lambda resume, wait=False: "deepthink sweep s.yaml --resume")
    err = capsys.readouterr().err
    assert rc == 130 and "No space left on device" in err
    assert "finish it with: deepthink sweep s.yaml --resume" in err


# ---- a truncated trial Parquet -------------------------------------------------------------------------
def test_a_truncated_trial_parquet_is_named_by_analysis_tables(tmp_path, capsys):
    good = Path(__file__).parents[1] / "docs/results/data/cpu_paper1_table1/trial-f4522_00000.parquet"
    d = tmp_path / "sweep"
    d.mkdir()
    (d / good.name).write_bytes(good.read_bytes())
    bad = d / "trial-truncated.parquet"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    from analysis import tables
    rc = tables.main([str(d)])
    out, err = capsys.readouterr()
    assert rc != 0 and str(bad) in out + err, out + err
    assert "Traceback" not in out + err


def test_unwritable_storage_is_refused_even_as_root(tmp_path, capsys, monkeypatch):
    """What a read-only mount does to root too: the probe file cannot be created."""
    from deepthink.sweep import precheck

    def read_only(*a, **kw):
        raise PermissionError(30, "Read-only file system")
    monkeypatch.setattr(precheck.tempfile, "mkstemp", read_only)
    err = refused(capsys, write(tmp_path))
    assert f"{tmp_path} is not writable (Read-only file system)" in err


def test_dry_run_estimates_memory_and_warns_above_the_machine(tmp_path, capsys, monkeypatch):
    from deepthink.sweep import plan
    rc, out, _ = sweep(capsys, write(tmp_path), "--dry-run")
    assert rc == 0 and "memory per trial (rough, largest trial): ~" in out and "warning" not in out
    monkeypatch.setattr(plan, "machine_memory", lambda: 2.0**20)       # a 1 MiB machine
    rc, out, _ = sweep(capsys, write(tmp_path), "--dry-run")
    assert rc == 0 and "more than this machine's 0.000977 GiB: lower grid.width" in out
