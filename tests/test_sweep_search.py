"""Early stopping and search on real embedded Ray (no mocks), with the real trainer on tiny
prefix-sum trials (issue 12 parts 3 and 4).

- ASHA stops the trials that cannot learn (lr 1e-9) at their first rung while a good one runs on;
  the stopped trial's rows say status 'stopped' with the epochs it completed and carry its
  per-iteration accuracies (its last weights were evaluated); nothing is retried.
- A random search of N samples writes N configurations x seeds trials, its sampled values in the
  normal columns (analysis.tables groups by them).
- Slow: an interrupted random search (with early stopping) and an interrupted Optuna (TPE) search
  are finished by --resume without duplicate rows and without drawing new configurations; a
  further --resume treats stopped trials as finished.

The order of trials is fixed with --max-concurrent 1 so that ASHA's comparisons are known: the
good configuration (search seed 1 draws it first) reaches the rung (epoch 2) with both seeds before
the bad one. ASHA (reduction factor 2) never stops the first trial at a rung; it stops the second
good seed only if that one is worse than the first (CPU-dependent, so not asserted); each bad trial
is worse than the median of those before it (loss 0.693, untrained, against ~0.55), so both stop.
"""
import re

import pandas as pd
import pytest

from deepthink.config import parse_sweep
from test_sweep import CONTRACT_KEY, ray_trials, run_cli, tiny_sweep

SEARCH = {
    "data": {"train": 10, "eval": [12], "count": 1000},
    "grid": {"model": ["dt_recall"], "max_iters": [2], "width": [8]},
    "seeds": [0, 1],
    "train": {"epochs": 4, "batch_size": 25, "clip": 1.0},
    "test": {"iterations": 3},
    # search seed 1 draws lr 0.03 first, then 1e-9 (checked below)
    "search": {"num_samples": 2, "seed": 1, "space": {"train.lr": {"choice": [0.03, 1.0e-9]},
                                                     "train.weight_decay": {"loguniform": [1.0e-5, 1.0e-3]}}},
    "scheduler": {"metric": "loss", "grace_period": 2, "reduction_factor": 2},
}


def search_sweep(tmp_path, name, **changes):
    return tiny_sweep(tmp_path, name=name, **{**SEARCH, **changes})


def check_search_rows(sweep_dir, path, doc):
    """Every planned trial exactly once, with its sampled values; the bad configuration stopped
    at the first rung (epoch 2) and evaluated, the good one's first seed trained to the end."""
    planned = parse_sweep(path).trials()
    df = pd.read_parquet(sweep_dir)
    assert not df.duplicated(CONTRACT_KEY).any()
    assert df["trial_id"].nunique() == len(planned) == doc["search"]["num_samples"] * len(doc["seeds"])
    per_trial = df.groupby("trial_id").agg(lr=("lr", "first"), wd=("weight_decay", "first"), seed=("seed", "first"),
                                           status=("status", "first"), epochs=("epochs_completed", "first"),
                                           n=("accuracy", "size"), acc_null=("accuracy", lambda s: s.isna().sum()))
    assert sorted(zip(per_trial["lr"], per_trial["wd"], per_trial["seed"])) == \
        sorted((t.train.lr, t.train.weight_decay, t.seed) for t in planned)
    rows_per_trial = 3 * doc["test"]["iterations"]          # train, val, test 12 bits x iterations 1..3
    assert (per_trial["n"] == rows_per_trial).all() and (per_trial["acc_null"] == 0).all()
    good, bad = per_trial[per_trial["lr"] == 0.03], per_trial[per_trial["lr"] == 1e-9]
    assert len(good) == len(bad) == 2
    first = good[good["seed"] == 0].iloc[0]
    assert first["status"] == "ok" and first["epochs"] == doc["train"]["epochs"], "the first trial runs on"
    assert set(bad["status"]) == {"stopped"} and set(bad["epochs"]) == {2}, "stopped at the first rung"
    for _, t in per_trial.iterrows():   # ok: all epochs; stopped: fewer
        assert (t["status"], t["epochs"] == doc["train"]["epochs"]) in (("ok", True), ("stopped", False)), t
    return df


def test_random_search_with_asha_stops_the_hopeless_trials_and_records_them(tmp_path):
    path, doc = search_sweep(tmp_path, "srch")
    planned = parse_sweep(path).trials()
    assert [t.train.lr for t in planned] == [0.03, 0.03, 1e-9, 1e-9], "search seed 1 draws the good lr first"
    done = run_cli(path, "--data-root", tmp_path / "data", "--max-concurrent", "1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sweep_dir = tmp_path / "results" / "srch"
    per_trial = check_search_rows(sweep_dir, path, doc).drop_duplicates("trial_id")
    ok, stopped = (per_trial["status"] == "ok").sum(), (per_trial["status"] == "stopped").sum()
    assert f"4 trials: {ok} ok, 0 diverged, {stopped} stopped, 0 failed, 0 unfinished" in done.stdout

    trials = ray_trials(sweep_dir)
    assert all(t.run_metadata.num_failures == 0 for t in trials.values()), "a stopped trial is not a failure"
    assert {t.status for t in trials.values()} == {"TERMINATED"}
    beside = tmp_path / "results" / "_srch"        # everything but the results (state.state_dir)
    log = (beside / "logs" / "sweep.log").read_text()
    assert len(re.findall(r"done +\w+ .*: stopped, stopped early after 2 of 4 epochs, last weights evaluated",
                          log)) == stopped
    assert f"4 done ({ok} ok, 0 diverged, {stopped} stopped early)" in log
    assert re.search(r"\d\d:\d\d:\d\d stop +\w+ after epoch 2: ASHA: loss 0\.69\d* above the cutoff [\d.]+ at the "
                     r"rung of epoch 2", log)
    assert len(list((beside / "stops").glob("*.json"))) == stopped
    assert {p.suffix for p in sweep_dir.rglob("*") if p.is_file()} == {".parquet"}, "results hold only Parquet"

    # the tables group by the sampled values, stopped trials reported apart
    from analysis.tables import main as tables
    import io
    import contextlib
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert tables([str(sweep_dir), "--cols", "lr"]) == 0
    text = out.getvalue()
    assert "0.03" in text and "stopped" in text, text


@pytest.mark.slow      # two Ray starts and an interruption: ~1-2 min
def test_interrupted_random_search_with_early_stopping_resumes_without_duplicates(tmp_path):
    from test_sweep_faults import Sweep
    path, doc = search_sweep(tmp_path, "cut")
    data = tmp_path / "data"
    run = Sweep(tmp_path, path, "--data-root", data, "--max-concurrent", "1")
    run.wait_for(r"done +\w+ ")                      # the first trial finished, three to go
    run.proc.send_signal(2)
    assert run.finish() == 130, run.text()[-3000:]
    assert "--resume" in run.text()
    resumed = run_cli(path, "--data-root", data, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    sweep_dir = tmp_path / "results" / "cut"
    df = check_search_rows(sweep_dir, path, doc)
    files = {p.name: p.stat().st_mtime_ns for p in sweep_dir.glob("trial-*.parquet")}

    # finished (stopped ones included): a further --resume trains nothing and rewrites nothing
    again = run_cli(path, "--data-root", data, "--resume")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "4 trials, 4 already done" in again.stdout
    assert not re.search(r"^\S+ start ", again.stdout, re.M)
    assert {p.name: p.stat().st_mtime_ns for p in sweep_dir.glob("trial-*.parquet")} == files
    assert pd.read_parquet(sweep_dir).sort_values(CONTRACT_KEY).reset_index(drop=True).equals(
        df.sort_values(CONTRACT_KEY).reset_index(drop=True))


@pytest.mark.slow      # two Ray starts, 6 trials one at a time: ~1.5-2 min
def test_interrupted_optuna_search_resumes_the_same_study(tmp_path):
    pytest.importorskip("optuna")
    from test_sweep_faults import Sweep
    path, doc = search_sweep(
        tmp_path, "tpe", scheduler=None, train={"epochs": 4, "batch_size": 25},
        search={"algorithm": "optuna", "num_samples": 3, "seed": 0, "metric": "loss",
                "space": {"train.lr": {"loguniform": [1.0e-4, 1.0e-1]}, "width": {"choice": [4, 8]}}},
        grid={"model": ["dt_recall"], "max_iters": [2]})
    data = tmp_path / "data"
    run = Sweep(tmp_path, path, "--data-root", data, "--max-concurrent", "1")
    run.wait_for(r"done +\w+ ")
    run.proc.send_signal(2)
    assert run.finish() == 130, run.text()[-3000:]
    sweep_dir = tmp_path / "results" / "tpe"
    before = pd.read_parquet(sweep_dir)
    resumed = run_cli(path, "--data-root", data, "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "6 trials: 6 ok, 0 diverged, 0 failed, 0 unfinished" in resumed.stdout
    df = pd.read_parquet(sweep_dir)
    assert not df.duplicated(CONTRACT_KEY).any() and df["trial_id"].nunique() == 6
    configs = df.groupby(["width", "lr"])["seed"].agg(lambda s: tuple(sorted(set(s))))
    assert len(configs) == 3 and set(configs) == {(0, 1)}, configs     # 3 proposals, each with both seeds
    assert set(df["lr"]).issubset({v for v in df["lr"]}) and df["lr"].between(1e-4, 1e-1).all()
    # the configuration finished before the interruption is kept, not proposed again
    kept = before.drop_duplicates("trial_id")[["trial_id", "width", "lr", "seed"]]
    merged = kept.merge(df.drop_duplicates("trial_id")[["trial_id", "width", "lr", "seed"]], on="trial_id")
    assert len(merged) == len(kept) and (merged["lr_x"] == merged["lr_y"]).all()
    trials = ray_trials(sweep_dir)
    assert set(trials) == set(df["trial_id"])
