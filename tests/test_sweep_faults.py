"""Sweep fault tolerance on real Ray (slow; run with `-m slow`): interrupt + --resume, a crashed
trial retried from its checkpoint, two Ray nodes on this machine (ray.cluster_utils.Cluster), and
a node removed mid-sweep.

Every test checks the end state against the sweep file alone: every expected (trial config, split,
difficulty, test_iters) exactly once. Trials are a few seconds each (width 32, 2000
strings) so that an interruption or a node loss lands while some trial is training.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from test_sweep import CONTRACT_KEY, ROOT, expected_keys, observed_keys, ray_trials, tiny_sweep

pytestmark = pytest.mark.slow

MEDIUM = {"data": {"train": 16, "eval": [20], "count": 2000},
          "grid": {"model": ["dt_recall"], "max_iters": [4], "width": [32], "lr": [0.001, 0.002]},
          "seeds": [0, 1], "train": {"epochs": 5, "batch_size": 50}, "test": {"iterations": 4}}


def medium_sweep(tmp_path, name, **changes):
    return tiny_sweep(tmp_path, name=name, **{**MEDIUM, **changes})


class Sweep:
    """`deepthink sweep` in a subprocess whose output we can watch while it runs."""

    def __init__(self, tmp_path, *args):
        self.out = tmp_path / f"out-{time.monotonic_ns()}.txt"
        env = dict(os.environ, RAY_DEDUP_LOGS="0")
        self.proc = subprocess.Popen([sys.executable, "-m", "deepthink.cli", "sweep", *map(str, args)],
                                     cwd=ROOT, env=env, stdout=open(self.out, "w"), stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.out.read_text()

    def wait_for(self, pattern: str, timeout: float = 240) -> re.Match:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            m = re.search(pattern, self.text())
            if m:
                return m
            assert self.proc.poll() is None, f"sweep ended before {pattern!r}:\n{self.text()[-4000:]}"
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {pattern!r}:\n{self.text()[-4000:]}")

    def finish(self, timeout: float = 400) -> int:
        return self.proc.wait(timeout)


def check_complete(sweep_dir: Path, doc: dict) -> pd.DataFrame:
    df = pd.read_parquet(sweep_dir)
    assert observed_keys(df) == expected_keys(doc), "every trial x split x difficulty x iteration once"
    assert not df.duplicated(CONTRACT_KEY).any()
    assert set(df["status"]) == {"ok"}
    assert set(df["trial_id"]) == set(ray_trials(sweep_dir))
    return df


def config_key(df):
    cols = ["model", "width", "max_iters", "lr", "seed", "split", "difficulty", "test_iters"]
    return df.set_index(cols)[["accuracy", "accuracy_max_confidence"]].sort_index()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_then_resume_gives_the_rows_of_an_uninterrupted_sweep(tmp_path, sig):
    data = tmp_path / "data"
    path, doc = medium_sweep(tmp_path, "cut")
    run = Sweep(tmp_path, path, "--data-root", data)
    run.wait_for(r"done +\w+ ")                         # one trial finished, others still to go
    run.proc.send_signal(sig)
    assert run.finish() == 130, run.text()[-3000:]
    assert "--resume" in run.text()
    finished_before = len(list((tmp_path / "results" / "cut").glob("trial-*.parquet")))
    assert 1 <= finished_before < 4, "the interruption must land mid-sweep"

    resumed = Sweep(tmp_path, path, "--data-root", data, "--resume")
    assert resumed.finish() == 0, resumed.text()[-3000:]
    assert f"{finished_before} already done" in resumed.text()
    cut = check_complete(tmp_path / "results" / "cut", doc)

    ref_path, ref_doc = medium_sweep(tmp_path, "ref")
    ref = Sweep(tmp_path, ref_path, "--data-root", data)
    assert ref.finish() == 0, ref.text()[-3000:]
    whole = check_complete(tmp_path / "results" / "ref", ref_doc)
    # Same rows, same numbers: a trial resumed from its checkpoint ends where an unbroken one does.
    pd.testing.assert_frame_equal(config_key(cut), config_key(whole))


def test_crashed_trial_is_retried_from_its_last_checkpoint(tmp_path):
    path, doc = medium_sweep(tmp_path, "crash")
    run = Sweep(tmp_path, path, "--data-root", tmp_path / "data")
    m = run.wait_for(r"epoch +(\w+) \S+ 2/5 .* pid (\d+)")
    trial_id, pid = m.group(1), int(m.group(2))
    os.kill(pid, signal.SIGKILL)                          # the trial's worker process (ours, by id)
    assert run.finish() == 0, run.text()[-3000:]
    out = run.text()
    assert re.search(rf"RETRY +{trial_id} .*retrying from its last checkpoint", out)
    assert re.search(rf"info   {trial_id} \S+: resumed from .* after epoch [2-5]", out), "not from scratch"
    df = check_complete(tmp_path / "results" / "crash", doc)
    assert ray_trials(tmp_path / "results" / "crash")[trial_id].run_metadata.num_failures == 1
    assert set(df.loc[df["trial_id"] == trial_id, "epochs_completed"]) == {5}


@pytest.fixture
def two_nodes():
    """Two Ray nodes of 1 CPU each on this machine; the sweep joins them with --address."""
    from ray.cluster_utils import Cluster
    store = 80 * 2**20
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store})
    worker = cluster.add_node(num_cpus=1, object_store_memory=store)
    cluster.wait_for_nodes()
    yield cluster, worker
    cluster.shutdown()


def test_trials_land_on_both_nodes(tmp_path, two_nodes):
    cluster, worker = two_nodes
    path, doc = medium_sweep(tmp_path, "two", train={"epochs": 2, "batch_size": 50})
    run = Sweep(tmp_path, path, "--data-root", tmp_path / "data", "--address", cluster.address)
    assert run.finish() == 0, run.text()[-3000:]
    df = check_complete(tmp_path / "results" / "two", doc)
    nodes = {n.split("/")[1] for n in df["node"]}
    assert nodes == {cluster.head_node.node_id[:8], worker.node_id[:8]}
    assert "on the cluster at" in run.text()


def test_removing_a_node_mid_sweep_still_completes_every_trial_once(tmp_path, two_nodes):
    cluster, worker = two_nodes
    path, doc = medium_sweep(tmp_path, "lose")
    run = Sweep(tmp_path, path, "--data-root", tmp_path / "data", "--address", cluster.address)
    m = run.wait_for(rf"epoch +(\w+) \S+ 1/5 .* on [\d.]+/{worker.node_id[:8]} ")
    lost = m.group(1)
    cluster.remove_node(worker)
    assert run.finish() == 0, run.text()[-3000:]
    df = check_complete(tmp_path / "results" / "lose", doc)
    head = cluster.head_node.node_id[:8]
    assert {n.split("/")[1] for n in df.loc[df["trial_id"] == lost, "node"]} == {head}
    assert re.search(rf"info   {lost} \S+: resumed from", run.text()), "continued from its checkpoint"
