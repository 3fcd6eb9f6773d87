"""Issue 12 on a real Ray cluster (slow; needs ray[default], the `cluster` extra): `ray start --head`
on free ports of 127.0.0.1 with its own --temp-dir and token authentication (tests/services.py,
stopped by its own pids, never `ray stop`), `ray status` and `ray job submit/status/logs`, and the
drill of issue 13: a sweep job resubmitted while the first still runs is refused by the lock and
loses nothing; relative storage inside a job is one line.
"""
from __future__ import annotations

import re
import time

import pytest

from services import BIN, RayHead
from test_sweep import expected_keys
from test_sweep_faults import check_complete, medium_sweep

pytestmark = pytest.mark.slow


def _ray_default_missing() -> str | None:
    try:
        import ray.dashboard.optional_deps  # noqa: F401   (Ray's own test of a ray[default] install)
    except ImportError as e:
        return f"needs ray[default] for `ray start`'s dashboard and `ray job` (pip install -e '.[cluster]'): {e}"
    return None


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    missing = _ray_default_missing()
    if missing:
        pytest.skip(missing)
    with RayHead(tmp_path_factory.mktemp("rayhead"), num_cpus=2) as h:
        yield h


def deepthink(*args) -> list[str]:
    return [str(BIN / "deepthink"), "sweep", *map(str, args)]


def test_ray_status_needs_the_token_and_the_mode(head):
    """Ray 2.60: a cluster with token auth answers `ray status` only to a client that has the token
    AND sets RAY_AUTH_MODE=token; with the mode unset the client does not even send it."""
    deadline = time.monotonic() + 60       # right after start: "No cluster status. It may take a few seconds..."
    while True:
        ok = head.ray("status", "--address", head.address)
        if "Active:" in ok.stdout or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert ok.returncode == 0 and "Active:" in ok.stdout and "2.0 CPU" in ok.stdout, ok.stdout + ok.stderr
    no_mode = {k: v for k, v in head.env().items() if k != "RAY_AUTH_MODE"}
    refused = head.ray("status", "--address", head.address, env=no_mode, timeout=120)
    assert refused.returncode != 0
    assert "RAY_AUTH_MODE is currently 'disabled'" in refused.stdout + refused.stderr
    jobs = head.ray("job", "list", "--address", head.dashboard, env=no_mode)
    assert jobs.returncode != 0 and "Missing authentication token" in jobs.stdout + jobs.stderr


def test_a_resubmitted_sweep_job_is_refused_and_loses_nothing(tmp_path, head):
    # 30 epochs (about a minute): the first job must still be running when the second is submitted
    # (with MEDIUM's 5 epochs an idle machine finished it before the second job started)
    path, doc = medium_sweep(tmp_path, "drill", train={"epochs": 30, "batch_size": 50})
    data = tmp_path / "data"
    first = head.submit(*deepthink(path, "--data-root", data))
    t0 = time.monotonic()
    while not re.search(r"epoch +\w+ ", head.job_logs(first)):      # the first job is training
        assert head.job_status(first) in ("PENDING", "RUNNING"), head.job_logs(first)[-3000:]
        assert time.monotonic() - t0 < 300, head.job_logs(first)[-3000:]
        time.sleep(2)
    second = head.submit(*deepthink(path, "--data-root", data, "--resume"))
    assert head.wait_job(second) == "FAILED", head.job_logs(second)[-2500:] + "\n=== first ===\n" + head.job_logs(first)[-1500:]
    assert head.cli_job_status(second) == "FAILED"
    logs = head.cli_job_logs(second)
    assert "Traceback" not in logs, logs
    refusals = [line for line in logs.splitlines() if line.startswith("deepthink sweep: error:")]
    assert len(refusals) == 1 and "is in use by another driver (pid" in refusals[0], logs
    assert refusals[0].endswith("--resume --wait")
    assert head.job_status(first) in ("RUNNING", "SUCCEEDED"), "the refusal did not disturb the first job"

    assert head.wait_job(first) == "SUCCEEDED", head.job_logs(first)[-3000:]
    assert "4 trials: 4 ok, 0 diverged, 0 failed, 0 unfinished" in head.cli_job_logs(first)
    df = check_complete(tmp_path / "results" / "drill", doc)        # every trial once, all ok
    assert len(df) == len(expected_keys(doc))
    assert df["node"].str.startswith("127.0.0.1/").all(), "trials ran on the `ray start` cluster"


@pytest.mark.parametrize("dry", [True, False], ids=["dry-run", "run"])
def test_relative_storage_inside_a_job_is_one_line(tmp_path, head, dry):
    """`--storage ./results` in a job with --working-dir would land in the copy Ray deletes."""
    work = tmp_path / "job"
    work.mkdir()
    path, _ = medium_sweep(work, "rel")
    sid = head.submit(*deepthink(path.name, "--storage", "./results", "--data-root", tmp_path / "data",
                                 *(["--dry-run"] if dry else [])), working_dir=work)
    assert head.wait_job(sid) == "FAILED"
    logs = head.job_logs(sid)
    assert "Traceback" not in logs, logs
    errors = [line for line in logs.splitlines() if line.startswith("deepthink sweep: error:")]
    assert len(errors) == 1, logs
    assert (f"key 'storage' (--storage): found './results': a relative path inside Ray job {sid} resolves "
            f"against the job's working directory") in errors[0]
    assert "a copy of --working-dir that Ray deletes when the job ends" in errors[0]
    assert not (work / "results").exists()
