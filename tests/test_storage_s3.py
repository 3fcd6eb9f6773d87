"""Issue 12 (and 13's leftovers) without Ray, against a real S3 endpoint (moto's server on
127.0.0.1, tests/services.py): a custom endpoint given in the URI or by AWS_ENDPOINT_URL; an
unreachable, missing or read-only bucket and a relative storage inside a Ray job each one line
before Ray starts, in --dry-run too; the object-storage lock on S3; max_trials kept for --resume;
a storage failure before Tune saved anything suggests the plain command, not --resume.
"""
from __future__ import annotations

import json
import os
import secrets
import time

import pytest
import yaml

from deepthink.cli import main
from deepthink.results import join_uri, state_dir
from deepthink.sweep import lock, state
from deepthink.sweep.lock import DriverLock, SweepLocked

GOOD = {"name": "s3t", "task": "prefix_sums", "data": {"train": 8, "eval": [10], "count": 200},
        "grid": {"model": ["dt_recall"], "width": [8], "max_iters": [2]}, "seeds": [0, 1],
        "train": {"epochs": 1}, "test": {"iterations": 2}, "resources": {"cpu": 1, "gpu": 0}}


def write(tmp_path, **changes):
    path = tmp_path / "s3t.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "storage": str(tmp_path / "results"), **changes}, sort_keys=False))
    return path


def run(capsys, *args, within: float = 20) -> tuple[int, str, str]:
    """`deepthink sweep ...` in-process: (exit status, stdout, stderr); never a traceback."""
    t0 = time.perf_counter()
    rc = main(["sweep", *map(str, args)])
    out, err = capsys.readouterr()
    assert time.perf_counter() - t0 < within
    assert "Traceback" not in out + err, out + err
    return rc, out, err


def one_line(err: str) -> str:
    err = err.strip()
    assert err.startswith("deepthink sweep: error: ") and len(err.splitlines()) == 1, err
    return err


def bucket(s3) -> str:
    name = f"dt-{secrets.token_hex(4)}"
    s3.make_bucket(name)
    return name


def test_join_uri_keeps_the_query_string_last():
    q = "?endpoint_override=127.0.0.1:9000&scheme=http"
    assert join_uri(f"s3://b/runs{q}", "tiny", "_ray") == f"s3://b/runs/tiny/_ray{q}"
    assert join_uri(f"s3://b/runs/{q}", "x") == f"s3://b/runs/x{q}"
    assert join_uri("s3://b/runs", "x") == "s3://b/runs/x"
    assert join_uri("/tmp/a?b", "x") == "/tmp/a?b/x"            # a local path: '?' is a character
    assert state.sweep_uri(f"s3://b/runs{q}", "tiny") == f"s3://b/runs/tiny{q}"
    # the sweep's state lies beside its results, the query string last there too
    assert state_dir(f"s3://b/runs/tiny{q}") == f"s3://b/runs/_tiny{q}"
    assert state_dir(f"s3://b/runs/tiny/{q}") == f"s3://b/runs/_tiny{q}"
    assert state_dir("s3://b/runs/tiny") == "s3://b/runs/_tiny"
    assert state.ray_dir(f"s3://b/runs/tiny{q}") == f"s3://b/runs/_tiny/ray{q}"
    assert state.stop_marker(f"s3://b/runs/tiny{q}", "t1") == f"s3://b/runs/_tiny/stops/t1.json{q}"
    assert lock.lock_file(f"s3://b/runs/tiny{q}") == f"s3://b/runs/_tiny/{lock.LOCK_NAME}{q}"
    assert state.log_path(f"s3://b/runs/tiny{q}").endswith("/tiny/sweep.log")   # local, copied there at the end
    assert state_dir("/tmp/a?b/tiny") == "/tmp/a?b/_tiny"     # a local path: '?' is a character


@pytest.mark.parametrize("how", ["uri", "env"])
def test_dry_run_with_a_custom_endpoint(tmp_path, capsys, s3, monkeypatch, how):
    """The issue's crash: the sweep name went after the query string (ArrowInvalid 'Invalid S3
    connection scheme http/s3tiny/_ray/tuner.pkl'), a raw traceback in --dry-run too."""
    b = bucket(s3)
    if how == "uri":
        storage = s3.uri(b, "runs")
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
        storage = f"s3://{b}/runs"
    rc, out, err = run(capsys, write(tmp_path), "--dry-run", "--storage", storage)
    assert rc == 0, err
    assert f"results: {state.sweep_uri(storage, 's3t')}" in out
    assert s3.list(b) == [], "the write probe removed its object again"


@pytest.mark.parametrize("dry", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["dry-run", "run"])
def test_unreachable_endpoint_is_one_line_before_ray(tmp_path, capsys, s3, dry):
    """Nothing listens on the port: the AWS SDK retries for ~6 s, then one line (exit 2)."""
    from services import free_ports
    closed = f"s3://bucket/runs?endpoint_override=127.0.0.1:{free_ports(1)[0]}&scheme=http"
    rc, out, err = run(capsys, write(tmp_path), *(["--dry-run"] if dry else []), "--storage", closed,
                       "--data-root", tmp_path / "data")
    assert rc == 2
    err = one_line(err)
    assert "key 'storage' (--storage)" in err and "cannot reach it" in err and "endpoint_override" in err
    assert "Could not connect" in err


def test_missing_bucket_is_one_line(tmp_path, capsys, s3):
    rc, out, err = run(capsys, write(tmp_path, storage=s3.uri("no-such-bucket-here", "runs")), "--dry-run")
    assert rc == 2 and "bucket 'no-such-bucket-here' not found" in one_line(err) and "key 'storage':" in err


def test_a_bucket_these_credentials_cannot_write_is_one_line(tmp_path, capsys, s3, monkeypatch):
    """Reading the bucket is not enough: the probe writes. moto refuses a write under a deny-all
    bucket policy."""
    b = bucket(s3)
    import boto3
    client = boto3.client("s3", endpoint_url=s3.url, region_name="us-east-1")
    client.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{b}/*"}]}))
    rc, out, err = run(capsys, write(tmp_path, storage=s3.uri(b, "runs")), "--dry-run")
    if rc == 0:
        pytest.skip("this moto does not enforce bucket policies")
    assert rc == 2 and "cannot write into it" in one_line(err), err


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_relative_storage_inside_a_ray_job_is_refused(tmp_path, capsys, monkeypatch, dry):
    """What Ray 2.60's job supervisor sets for a job's entrypoint (seen in a real job: see
    tests/test_cluster_real.py, which also submits one)."""
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(
        {"runtime_env": {"working_dir": "gcs://_ray_pkg_abc.zip"}, "metadata": {"job_submission_id": "raysubmit_1"}}))
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, write(tmp_path), *(["--dry-run"] if dry else []), "--storage", "./results")
    assert rc == 2
    err = one_line(err)
    assert "key 'storage' (--storage): found './results': a relative path inside Ray job raysubmit_1" in err
    assert "a copy of --working-dir that Ray deletes when the job ends" in err and "s3://" in err
    assert not (tmp_path / "results").exists()
    # an absolute path is fine in a job; outside a job a relative one is fine
    assert run(capsys, write(tmp_path), "--dry-run", "--storage", str(tmp_path / "abs"))[0] == 0
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    assert run(capsys, write(tmp_path), "--dry-run", "--storage", "./results")[0] == 0


# ---- the sweep lock on S3 ------------------------------------------------------------------------------
def test_object_lock_on_s3_refuses_a_second_driver(tmp_path, capsys, s3, monkeypatch):
    """Issue 13's leftover: the object-storage lock, so far tested through pyarrow's local
    filesystem, against a real S3 endpoint: a second driver (in-process and the CLI, before Ray)
    is refused with one line naming the first while it holds the lock; released, it is free."""
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(lock, "SETTLE_S", 0.2)
    b = bucket(s3)
    uri = state.sweep_uri(s3.uri(b, "runs"), "s3t")
    first = DriverLock(uri, log=lambda m: None)
    assert type(first.impl).__name__ == "_ObjectLock"
    first.acquire()
    try:
        assert s3.list(b) == [f"{b}/runs/_s3t/{lock.LOCK_NAME}"]   # beside the results
        with pytest.raises(SweepLocked, match=f"pid {os.getpid()} on "):
            DriverLock(uri, log=lambda m: None).acquire()
        time.sleep(0.5)
        assert first.impl.still_mine(first.me), "heartbeats keep the lock"
        path = write(tmp_path, storage=s3.uri(b, "runs"))
        rc, out, err = run(capsys, path, "--data-root", tmp_path / "data")
        assert rc == 2 and "is in use by another driver (pid" in one_line(err)
        assert err.strip().endswith(f"--resume --wait")
        rc, out, err = run(capsys, path, "--dry-run")
        assert rc == 0 and "note: a driver is running this sweep now" in out
    finally:
        first.release()
    assert s3.list(b) == [], "released: the lock object is gone"
    second = DriverLock(uri, log=lambda m: None)
    second.acquire()
    second.release()


# ---- max_trials kept for --resume ----------------------------------------------------------------------
def test_max_trials_is_saved_and_resume_allows_what_the_start_allowed(tmp_path, capsys):
    """A sweep started with --max-trials 2 above the file's max_trials 1: the cap is saved in
    _s3t/config/sweep.yaml (beside the results), and --resume without the flag is not refused by the cap."""
    from deepthink.config import parse_sweep
    path = write(tmp_path, max_trials=1)
    rc, out, err = run(capsys, path, "--dry-run")
    assert rc == 2 and "key 'max_trials'" in err
    sweep = parse_sweep(path)
    sweep.max_trials = 2                        # what `deepthink sweep --max-trials 2` saves
    uri = state.sweep_uri(sweep.storage, sweep.name)
    state.save_config(uri, sweep, sweep.trials(), path.read_text())
    assert yaml.safe_load((tmp_path / "results" / "_s3t" / "config" / "sweep.yaml").read_text())["max_trials"] == 2
    assert state.saved_max_trials(uri) == 2
    rc, out, err = run(capsys, path, "--dry-run", "--resume")
    assert rc == 0 and "trials: 2 (" in out, err
    rc, out, err = run(capsys, path, "--dry-run")           # a fresh start still needs the flag
    assert rc == 2 and "--max-trials 2" in err


def test_the_cli_saves_the_flags_cap(tmp_path, monkeypatch, capsys):
    """The real start path: `--max-trials 2` reaches _<name>/config/sweep.yaml (Ray's start stubbed: the
    config is written before Tune builds anything that needs it)."""
    from deepthink.sweep import runner

    class Stop(Exception):
        pass

    def stop_after_config(uri, *a, **kw):
        real_save(uri, *a, **kw)
        raise Stop
    real_save = state.save_config
    monkeypatch.setattr(runner, "start_ray", lambda address: runner.plan.local_capacity())
    monkeypatch.setattr(runner, "stop_ray", lambda: None)
    monkeypatch.setattr(state, "save_config", stop_after_config)
    path = write(tmp_path, max_trials=1)
    with pytest.raises(Stop):
        main(["sweep", str(path), "--max-trials", "2", "--data-root", str(tmp_path / "data")])
    capsys.readouterr()
    assert state.saved_max_trials(str(tmp_path / "results" / "s3t")) == 2


# ---- a storage failure before the first trial ----------------------------------------------------------
@pytest.mark.parametrize("tune_saved", [False, True], ids=["before-tune-saved", "after"])
def test_storage_failure_before_the_first_trial_does_not_suggest_resume(tmp_path, capsys, monkeypatch, tune_saved):
    """The config write fails (ENOSPC) before Tune saved its experiment: nothing to resume, so the
    message suggests the same command again; once Tune's state is there, --resume."""
    from deepthink.sweep import runner
    monkeypatch.setattr(runner, "start_ray", lambda address: runner.plan.local_capacity())
    monkeypatch.setattr(runner, "stop_ray", lambda: None)

    def full(uri, *a, **kw):
        if tune_saved:
            (tmp_path / "results" / "_s3t" / "ray").mkdir(parents=True)
            (tmp_path / "results" / "_s3t" / "ray" / state.TUNER_STATE).write_bytes(b"x")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(state, "save_config", full)
    path = write(tmp_path)
    rc, out, err = run(capsys, path, "--data-root", tmp_path / "data")
    assert rc == 130 and "No space left on device" in err
    if tune_saved:
        assert f"finish it with: deepthink sweep {path} --data-root {tmp_path / 'data'} --resume" in err
    else:
        assert "--resume" not in err
        assert f"start it again with: deepthink sweep {path} --data-root {tmp_path / 'data'} (no trial" in err
        assert main(["sweep", str(path), "--data-root", str(tmp_path / "data"), "--resume"]) == 2
        assert "nothing to resume" in capsys.readouterr().err      # what --resume would have said
