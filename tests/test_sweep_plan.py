"""Sweep planning and the sweep directory, without Ray: capacity and fractional-GPU packing,
resources that can never exist, storage rules, the dry-run report, refusing to start over old
results, resume checks, and the shape of a failed trial's rows.
"""
import subprocess
import sys
from pathlib import Path

import re

import pandas as pd
import pytest
import yaml

from deepthink.cli import main
from deepthink.config import ConfigError, parse_sweep
from deepthink.results import REQUIRED, failed_rows, read_results, write_trial
from deepthink.sweep import plan, state

SWEEP = {
    "name": "plan",
    "task": "prefix_sums",
    "data": {"train": 8, "eval": [10, 12], "count": 200},
    "grid": {"model": ["dt_recall", "recur_net"], "max_iters": [2], "width": [8]},
    "seeds": [0, 1],
    "train": {"epochs": 1},
    "test": {"iterations": 3},
    "resources": {"cpu": 1, "gpu": 0},
    "cost": {"gpu_hours_per_trial": 0.5, "usd_per_gpu_hour": 3},
}


@pytest.fixture
def sweep_file(tmp_path):
    def make(**changes):
        doc = {**SWEEP, "storage": str(tmp_path / "results"), **changes}
        path = tmp_path / f"{doc['name']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path
    return make


@pytest.mark.parametrize("cpu,gpu,node,expected", [
    (1, 0, {"CPU": 2}, 2),
    (1, 0.25, {"CPU": 16, "GPU": 1}, 4),      # four trials share one GPU
    (1, 0.5, {"CPU": 16, "GPU": 2}, 4),
    (1, 1, {"CPU": 16, "GPU": 2}, 2),
    (4, 0.25, {"CPU": 8, "GPU": 1}, 2),       # CPUs bound before the GPU does
    (1, 0.2, {"CPU": 16, "GPU": 1}, 5),       # 5 x 0.2 sums to 1.0000000000000002 in floats
    (2, 0, {"CPU": 1}, 0),
])
def test_slots_per_node(cpu, gpu, node, expected):
    assert plan.slots(node, cpu, gpu) == expected


def test_concurrency_sums_nodes_and_autoscaling():
    cap = plan.Capacity("the cluster at x", [{"CPU": 4}, {"CPU": 4, "GPU": 1}], [({"CPU": 4, "GPU": 1}, 3)])
    assert plan.concurrency(cap, 1, 0.25) == (4, 16)
    assert plan.concurrency(cap, 1, 0) == (8, 20)


def test_gpus_on_a_machine_without_any_fail_fast(sweep_file, monkeypatch, capsys):
    path = sweep_file(resources={"cpu": 1, "gpu": 0.25})
    monkeypatch.setattr(plan, "local_gpu_count", lambda: 0)
    # the real run refuses before starting Ray
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "resources.gpu" in err and "0.25" in err and "no GPU" in err
    # a local dry run (checking a cluster's file on a laptop) reports and warns, exit 0
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "warning: this machine cannot run it" in out and "resources.gpu" in out and "no GPU" in out


def test_more_cpus_than_any_node_fails_fast(sweep_file, monkeypatch):
    path = sweep_file(resources={"cpu": 64, "gpu": 0})
    monkeypatch.setattr(plan, "local_cpu_count", lambda: 2)
    with pytest.raises(ConfigError, match="resources.*64.*largest: 2 CPUs"):
        plan.check_feasible(parse_sweep(path), plan.local_capacity())


def test_dry_run_report(sweep_file, monkeypatch, capsys):
    path = sweep_file(resources={"cpu": 1, "gpu": 0.25})
    monkeypatch.setattr(plan, "local_gpu_count", lambda: 1)
    monkeypatch.setattr(plan, "local_cpu_count", lambda: 16)
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    table = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0].isdigit()
             and len(line.split()) > 1 and line.split()[1] in ("dt_recall", "recur_net")]
    assert [r[0] for r in table] == ["0", "1", "2", "3"]
    assert sorted((r[1], r[-1]) for r in table) == [("dt_recall", "0"), ("dt_recall", "1"),
                                                    ("recur_net", "0"), ("recur_net", "1")]
    assert "trials: 4 " in out
    assert "resources per trial: 1 CPU, 0.25 GPU (4 trials share a GPU)" in out
    assert "at once: 4 on this machine: 16 CPUs, 1 GPUs" in out
    assert "4 trials x 0.5 GPU-hours = 2 GPU-hours = $6.00 at $3/GPU-hour" in out
    storage = Path(yaml.safe_load(path.read_text())["storage"])
    assert not storage.exists(), "a dry run writes nothing"


def test_dry_run_and_help_do_not_import_ray(sweep_file):
    path = sweep_file()
    code = ("import sys; from deepthink.cli import main, build_parser; build_parser(); "
            f"rc = main(['sweep', {str(path)!r}, '--dry-run']); "
            "assert rc == 0, rc; assert 'ray' not in sys.modules, 'ray was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _rows(trial_id, status="ok"):
    return [{"sweep": "plan", "trial_id": trial_id, "task": "prefix_sums", "model": "dt_recall", "width": 8,
             "depth": 12, "max_iters": 2, "alpha": 0.0, "seed": 0, "train_difficulty": 8, "split": "test",
             "difficulty": 10, "test_iters": 1, "accuracy": 50.0, "accuracy_max_confidence": 60.0, "n_examples": 10,
             "status": status, "epochs": 1, "lr": 0.001, "n_params": 10, "train_seconds": 1.0}]


def test_refuses_to_start_over_old_results_and_says_how_to_go_on(tmp_path):
    uri = str(tmp_path / "s")
    assert state.check_start(uri, 2, resume=False, sweep_file="f.yaml") == set()
    with pytest.raises(state.SweepError, match="nothing to resume"):
        state.check_start(uri, 2, resume=True, sweep_file="f.yaml")
    write_trial(uri, "a_00000", _rows("a_00000"))
    with pytest.raises(state.SweepError) as info:
        state.check_start(uri, 2, resume=False, sweep_file="f.yaml")
    assert f"delete {uri}" in str(info.value) and "change `name:`" in str(info.value)
    Path(state.ray_dir(uri)).mkdir(parents=True)
    (Path(state.ray_dir(uri)) / state.TUNER_STATE).write_bytes(b"")
    with pytest.raises(state.SweepError, match="deepthink sweep f.yaml --resume"):
        state.check_start(uri, 2, resume=False, sweep_file="f.yaml")
    assert state.check_start(uri, 2, resume=True, sweep_file="f.yaml") == {"a_00000"}


def test_failed_rows_do_not_count_as_finished(tmp_path):
    uri = str(tmp_path / "s")
    write_trial(uri, "a_00000", _rows("a_00000"))
    write_trial(uri, "a_00001", _rows("a_00001", status="diverged"))
    write_trial(uri, "a_00002", _rows("a_00002", status="failed"))
    assert state.finished_trials(uri) == {"a_00000", "a_00001"}
    assert state.trial_finished(uri, "a_00001") and not state.trial_finished(uri, "a_00002")
    assert not state.trial_finished(uri, "a_00009")


def test_resume_refuses_a_changed_file(sweep_file, tmp_path):
    sweep = parse_sweep(sweep_file())
    uri = state.sweep_uri(sweep.storage, sweep.name)
    state.save_config(uri, sweep, sweep.trials(), "source")
    state.check_same_trials(uri, sweep.trials(), "f.yaml")          # unchanged: fine
    changed = parse_sweep(sweep_file(train={"epochs": 3}))
    with pytest.raises(state.SweepError, match=r"differs in \['train'\]"):
        state.check_same_trials(uri, changed.trials(), "f.yaml")
    fewer = parse_sweep(sweep_file(seeds=[0]))
    with pytest.raises(state.SweepError, match="now gives 2 trials, the sweep was started with 4"):
        state.check_same_trials(uri, fewer.trials(), "f.yaml")
    saved = yaml.safe_load((Path(state.config_dir(uri)) / "sweep.yaml").read_text())
    assert saved["train"]["lr"] == 0.001 and saved["name"] == "plan"      # defaults resolved
    assert "order" not in saved        # the default is not written: sweeps saved before the key still match
    reordered = parse_sweep(sweep_file(order="seed"))
    with pytest.raises(state.SweepError, match=r"the same trials in another order: was `order:` changed\?"):
        state.check_same_trials(uri, reordered.trials(), "f.yaml")


def test_failed_trial_rows_are_one_per_split_and_difficulty(sweep_file, tmp_path):
    cfg = parse_sweep(sweep_file()).trials()[0]
    uri = str(tmp_path / "f")
    write_trial(uri, "x_00003", failed_rows(cfg, "x_00003", "RuntimeError: boom", epochs_completed=1,
                                            node="10.0.0.1/abcd"))
    df = read_results(uri)
    assert set(REQUIRED) <= set(df.columns)
    assert sorted(zip(df["split"], df["difficulty"])) == [("test", 10), ("test", 12), ("train", 8), ("val", 8)]
    assert set(df["status"]) == {"failed"} and df["accuracy"].isna().all() and df["test_iters"].isna().all()
    assert df["accuracy_max_confidence"].isna().all() and "metric" not in df.columns
    assert not pd.read_parquet(uri).duplicated(["trial_id", "split", "difficulty", "test_iters"]).any()
    assert set(df["error"]) == {"RuntimeError: boom"}


def test_storage_rules(tmp_path):
    local = plan.Capacity("this machine", [{"CPU": 2}])
    two = plan.Capacity("the cluster at x", [{"CPU": 2}, {"CPU": 2}])
    assert plan.storage_problem(str(tmp_path), local, None) is None
    assert plan.storage_problem(str(tmp_path), two, []) is None                    # every node saw it
    problem = plan.storage_problem(str(tmp_path), two, ["10.0.0.2/ab12cd34"])
    assert "10.0.0.2/ab12cd34" in problem and "s3://" in problem
    assert plan.storage_problem("gs://bucket/x", two, ["10.0.0.2/ab12cd34"]) is None
    assert plan.filesystem_type("/proc/self") == "proc"


def test_set_overrides_keys_and_grid(sweep_file, capsys):
    path = sweep_file(resources={"cpu": 1, "gpu": 0})
    assert main(["sweep", str(path), "--dry-run", "--set", "train.epochs=7", "--set", "seeds=[5, 6, 7]",
                 "--set", "width=16"]) == 0
    out = capsys.readouterr().out
    assert "7 epochs" in out
    n_trials = int(re.search(r"trials: (\d+)", out).group(1))
    assert n_trials == 3 * n_trials_per_seed(path)
    assert re.search(r"\b16\b", out)


def test_set_rejects_a_malformed_pair(sweep_file, capsys):
    path = sweep_file(resources={"cpu": 1, "gpu": 0})
    with pytest.raises(SystemExit):
        main(["sweep", str(path), "--dry-run", "--set", "train.epochs"])
    assert "KEY=VALUE" in capsys.readouterr().err


def n_trials_per_seed(path) -> int:
    sweep = parse_sweep(path)
    return len(sweep.trials()) // len(sweep.seeds)
