"""A whole sweep on a real S3 endpoint (slow; moto's server on a free port of 127.0.0.1): started
with the endpoint in the URI, a second driver refused while it runs, Ctrl-C (SIGINT to the driver),
`--resume` with the endpoint given by AWS_ENDPOINT_URL instead, every trial exactly once, then
`python -m analysis.tables` and `analysis.figures` reading the bucket in both forms. The embedded
Ray of these runs leaves no ~/.ray/auth_token behind.
"""
from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys

import pandas as pd
import pytest

from deepthink.results import read_results
from deepthink.sweep import lock, state
from test_sweep import CONTRACT_KEY, ROOT, expected_keys, observed_keys, run_cli
from test_sweep_faults import Sweep, medium_sweep

pytestmark = pytest.mark.slow


def analysis(module: str, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"analysis.{module}", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_sweep_on_s3_interrupted_resumed_and_read_back(tmp_path, s3, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))       # every process below: no ~/.ray/auth_token may appear
    monkeypatch.setattr(lock, "SETTLE_S", lock.SETTLE_S)
    bucket = f"dt-{secrets.token_hex(4)}"
    s3.make_bucket(bucket)
    in_uri = s3.uri(bucket, "runs")                 # s3://B/runs?endpoint_override=127.0.0.1:P&scheme=http
    data = tmp_path / "data"
    path, doc = medium_sweep(tmp_path, "cut")

    run = Sweep(tmp_path, path, "--data-root", data, "--storage", in_uri)
    run.wait_for(r"done +\w+ ")                     # one trial finished, others still to go
    second = run_cli(path, "--data-root", data, "--storage", in_uri, "--resume")
    assert second.returncode == 2, second.stdout + second.stderr
    err = second.stderr.strip()
    assert len(err.splitlines()) == 1 and "is in use by another driver (pid" in err, err
    assert "Traceback" not in second.stdout + second.stderr
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130, run.text()[-3000:]
    suggested = re.search(r"finish the remaining trials with: (.*)", run.text())
    assert suggested and "--resume" in suggested.group(1), run.text()[-3000:]
    parquet = [k for k in s3.list(f"{bucket}/runs/cut") if re.search(r"/trial-[^/]+\.parquet$", k)]
    assert 1 <= len(parquet) < 4, "the interruption must land mid-sweep"

    # --resume with the endpoint from the environment and a plain s3:// URI: the same directory
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.url)
    plain = f"s3://{bucket}/runs"
    resumed = Sweep(tmp_path, path, "--data-root", data, "--storage", plain, "--resume")
    assert resumed.finish() == 0, resumed.text()[-3000:]
    assert f"{len(parquet)} already done" in resumed.text()
    assert "4 trials: 4 ok, 0 diverged, 0 failed, 0 unfinished" in resumed.text()

    df = read_results(state.sweep_uri(plain, "cut"))
    assert observed_keys(df) == expected_keys(doc), "every trial x split x difficulty x iteration once"
    assert not df.duplicated(CONTRACT_KEY).any() and set(df["status"]) == {"ok"}
    assert df["trial_id"].nunique() == 4
    keys = s3.list(f"{bucket}/runs/cut")
    assert keys and all(re.search(r"/runs/cut/trial-[^/]+\.parquet$", k) for k in keys), "results hold only Parquet"
    beside = s3.list(f"{bucket}/runs/_cut")      # everything else: <storage>/_<name>/ (state.state_dir)
    assert f"{bucket}/runs/_cut/logs/sweep.log" in beside and f"{bucket}/runs/_cut/config/sweep.yaml" in beside
    assert any(k.startswith(f"{bucket}/runs/_cut/ray/") for k in beside), beside
    assert not any(lock.LOCK_NAME in k or ".deepthink-probe-" in k for k in keys + beside), beside

    # the analysis scripts read the bucket: endpoint in the URI (no AWS_ENDPOINT_URL), and by the env
    uri_env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    for where, env in ((state.sweep_uri(in_uri, "cut"), uri_env), (state.sweep_uri(plain, "cut"), dict(os.environ))):
        table = analysis("tables", where, env=env)
        assert table.returncode == 0, table.stdout + table.stderr
        assert "dt_recall" in table.stdout and "±" in table.stdout, table.stdout
        out = tmp_path / f"fig-{len(where)}.png"
        fig = analysis("figures", where, "--out", out, env=env)
        assert fig.returncode == 0 and out.stat().st_size > 1000, fig.stdout + fig.stderr
    pd.testing.assert_frame_equal(read_results(state.sweep_uri(in_uri, "cut")).sort_values(CONTRACT_KEY)
                                  .reset_index(drop=True), df.sort_values(CONTRACT_KEY).reset_index(drop=True))
    assert not (home / ".ray" / "auth_token").exists(), "embedded Ray left a token in ~/.ray"
