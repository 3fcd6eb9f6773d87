"""One real sweep on embedded Ray (no mocks), with the real trainer on tiny prefix-sum trials.

`deepthink sweep` runs in a subprocess, as a user would run it. The expected rows are computed
from the sweep file alone (trials x splits x difficulties x test iterations); the trial
ids are checked against Ray's own experiment state (ray.tune.ExperimentAnalysis), and the
divergence case (lr 1e30) against Ray's failure count: a diverged trial is not retried.
"""
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from deepthink.cli import main
from deepthink.results import REQUIRED
from deepthink.sweep import state

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_KEY = ["trial_id", "split", "difficulty", "test_iters"]    # DESIGN.md section 5: one row each


def tiny_sweep(tmp_path, name="tiny", **changes):
    """4 trials of a few seconds each: two recurrent models x two learning rates (1e30 diverges)."""
    doc = {
        "name": name, "task": "prefix_sums",
        "data": {"train": 8, "eval": [10], "count": 200},
        "grid": {"model": ["dt_recall", "recur_net"], "max_iters": [2], "width": [8], "lr": [0.001, 1.0e+30]},
        "seeds": [0],
        "train": {"epochs": 2, "batch_size": 50, "clip": None},
        "test": {"iterations": 3},
        "resources": {"cpu": 1, "gpu": 0},
        "storage": str(tmp_path / "results"),
        **changes,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, doc


def run_cli(*args, timeout=300):
    env = dict(os.environ, RAY_DEDUP_LOGS="0")
    return subprocess.run([sys.executable, "-m", "deepthink.cli", "sweep", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def expected_keys(doc):
    """Every (model, lr, seed, split, difficulty, test_iters) the sweep must produce once."""
    d, g = doc["data"], doc["grid"]
    places = [("train", d["train"]), ("val", d["train"])] + [("test", e) for e in d["eval"]]
    iters = range(1, doc["test"]["iterations"] + 1)
    return sorted(itertools.product(g["model"], g["lr"], doc["seeds"], places, iters))


def observed_keys(df):
    return sorted(zip(df["model"], df["lr"], df["seed"], zip(df["split"], df["difficulty"]), df["test_iters"]))


def ray_trials(sweep_dir):
    from ray.tune import ExperimentAnalysis
    return {t.trial_id: t for t in ExperimentAnalysis(state.ray_dir(str(sweep_dir))).trials}


def test_tiny_sweep_writes_the_parquet_contract(tmp_path, capsys):
    path, doc = tiny_sweep(tmp_path)
    done = run_cli(path, "--data-root", tmp_path / "data")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 trials: 2 ok, 2 diverged, 0 failed, 0 unfinished" in done.stdout

    sweep_dir = tmp_path / "results" / "tiny"
    df = pd.read_parquet(sweep_dir)                      # the whole dataset, as a user reads it
    assert set(REQUIRED) <= set(df.columns)
    assert len(df) == len(expected_keys(doc)) == 4 * 3 * 3
    assert observed_keys(df) == expected_keys(doc)
    assert not df.duplicated(CONTRACT_KEY).any() and "metric" not in df.columns

    trials = ray_trials(sweep_dir)
    assert set(df["trial_id"]) == set(trials)
    for tid, rows in df.groupby("trial_id"):
        cfg = trials[tid].config["trial"]
        assert set(rows["model"]) == {cfg["model"]} and set(rows["lr"]) == {cfg["train"]["lr"]}
        assert trials[tid].run_metadata.num_failures == 0, "no trial was retried (diverged ones neither)"
    assert set(df.loc[df["lr"] > 1, "status"]) == {"diverged"}
    assert set(df.loc[df["lr"] < 1, "status"]) == {"ok"}
    assert df["accuracy"].between(0, 100).all() and (df["n_examples"] > 0).all()
    assert df["accuracy_max_confidence"].between(0, 100).all()
    assert df["node"].str.fullmatch(r"[\d.]+/[0-9a-f]{8}").all() and df["device"].str.startswith("cpu fp32 · ").all()

    config = Path(state.config_dir(str(sweep_dir)))
    assert (config / "sweep.yaml").exists() and (config / "trials.yaml").exists()
    log = (Path(state.log_dir(str(sweep_dir))) / "sweep.log").read_text()
    for tid in trials:
        assert re.search(rf"done +{tid} .*: (ok|diverged)", log), tid
    assert "4 trials: 0 pending, 0 running, 4 done (2 ok, 2 diverged), 0 failed" in log

    # A finished sweep is not started again over its results (refused before Ray starts).
    assert main(["sweep", str(path), "--data-root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert f"deepthink sweep {path} --data-root {tmp_path / 'data'} --resume" in err and f"delete {sweep_dir}" in err


@pytest.mark.slow     # ~30 s of Ray start-up and one failing trial
def test_a_trial_that_fails_for_good_gets_failed_rows_written_once(tmp_path):
    """Chess with no converted data fails in every attempt (a DataError); with max_failures 0 Ray
    gives up at once. The progress callback (the one path that writes failed rows,
    deepthink/results.py builds them) writes one row per (split, difficulty) with the error."""
    path, doc = tiny_sweep(tmp_path, name="fails", task="chess", max_failures=0, seeds=[0],
                           data={"train": 0, "eval": [100], "count": 50},
                           grid={"model": ["dt_net"], "max_iters": [2], "width": [8]})
    done = run_cli(path, "--data-root", tmp_path / "empty")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 trials: 0 ok, 0 diverged, 1 failed, 0 unfinished" in done.stdout
    df = pd.read_parquet(tmp_path / "results" / "fails")
    assert sorted(zip(df["split"], df["difficulty"])) == [("test", 100), ("train", 0), ("val", 0)]
    assert set(df["status"]) == {"failed"} and df["accuracy"].isna().all() and df["test_iters"].isna().all()
    assert df["error"].str.contains("chess").all() and df["trial_id"].nunique() == 1
