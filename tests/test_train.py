"""The trainer: progressive loss at alpha 0 / 1 / between, learning rate schedule, a tiny model that
learns 8-bit prefix sums beside its feed-forward twin, divergence, checkpoints and resume, and the
`deepthink train` command end to end.

    .venv/bin/python -m pytest tests/test_train.py -q
"""
import dataclasses
import random

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from deepthink.checkpoint import FILENAME, CheckpointError
from deepthink.config import DataConfig, TrainConfig, TrialConfig
from deepthink.config import TestConfig as EvalConfig   # a Test* name would be collected by pytest
from deepthink.models import MODELS, ThinkOutput, build_model
from deepthink.optim import lr_at
from deepthink.results import REQUIRED, to_table
from deepthink.tasks import TASKS, Split
from deepthink.train import progressive_loss, run_trial


pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def tiny(model="dt_net", alpha=1.0, epochs=3, width=32, **train):
    t = dict(epochs=epochs, lr=0.005, batch_size=32, alpha=alpha, warmup=0, schedule="none", precision="fp32")
    t.update(train)
    return TrialConfig(sweep="t", task="prefix_sums", model=model, width=width, max_iters=3, depth=16, seed=0,
                       data=DataConfig(train=8, eval=[10], count=256), train=TrainConfig(**t),
                       test=EvalConfig(iterations=5, batch_size=100))


def quiet(_msg):
    pass


# ---- progressive loss ------------------------------------------------------------------------

class Counting(torch.nn.Module):
    """Wraps a net and counts step() calls, with and without autograd."""

    def __init__(self, net):
        super().__init__()
        self.net, self.grad_steps, self.nograd_steps = net, 0, 0

    def project(self, x):
        return self.net.project(x)

    def step(self, state, x, i):
        if torch.is_grad_enabled():
            self.grad_steps += 1
        else:
            self.nograd_steps += 1
        return self.net.step(state, x, i)

    def head(self, state):
        return self.net.head(state)

    def forward(self, x, iters, state=None, start=0):
        state = self.project(x) if state is None else state
        for i in range(start, start + iters):
            state = self.step(state, x, i)
        return ThinkOutput(self.head(state), state)


def batch(n=8, bits=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (n, 1, bits), generator=g).float()
    return x - 0.5, (x.cumsum(-1) % 2).long().squeeze(1)          # (B, 1, L), (B, L)


def fresh(name="dt_recall", iters=6):
    torch.manual_seed(0)
    return build_model(name, width=8, max_iters=iters, in_channels=1, dims=1)


def test_alpha_zero_is_plain_loss_at_max_iters_and_draws_nothing():
    x, y = batch()
    net = Counting(fresh())
    rng = random.Random(5)
    loss = progressive_loss(net, x, y, None, 0.0, 6, rng)
    assert rng.getstate() == random.Random(5).getstate()             # no progressive draw
    assert net.grad_steps == 6 and net.nograd_steps == 0
    expected = F.cross_entropy(fresh()(x, 6).logits, y)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_alpha_one_runs_n_without_autograd_then_k_and_never_max_iters():
    x, y = batch()
    for seed in range(6):
        draws = random.Random(seed)
        n = draws.randrange(0, 6)
        k = draws.randrange(1, 6 - n + 1)
        net = Counting(fresh())
        loss = progressive_loss(net, x, y, None, 1.0, 6, random.Random(seed))
        assert (net.nograd_steps, net.grad_steps) == (n, k)
        ref = fresh()
        with torch.no_grad():
            start = ref(x, n).state if n else None
        expected = F.cross_entropy(ref(x, k, state=start, start=n).logits, y)
        assert torch.allclose(loss, expected, atol=1e-6)
        loss.backward()
        proj_grad = net.net.projection[0].weight.grad
        # The projection is trained by the progressive term only when the k steps start from it.
        assert (proj_grad is not None and proj_grad.abs().sum() > 0) == (n == 0)


def test_alpha_between_reuses_the_full_pass_for_the_first_n_iterations():
    x, y = batch()
    seed = 3
    draws = random.Random(seed)
    n = draws.randrange(0, 6)
    k = draws.randrange(1, 6 - n + 1)
    assert n > 0
    net = Counting(fresh())
    loss = progressive_loss(net, x, y, None, 0.25, 6, random.Random(seed))
    assert (net.nograd_steps, net.grad_steps) == (0, 6 + k)
    ref = fresh()
    with torch.no_grad():
        start = ref(x, n).state
    expected = 0.75 * F.cross_entropy(ref(x, 6).logits, y) + 0.25 * F.cross_entropy(
        ref(x, k, state=start, start=n).logits, y)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_masked_positions_do_not_count():
    x, y = batch()
    mask = torch.ones_like(y, dtype=torch.bool)
    mask[:, :4] = False
    y2 = y.clone()
    y2[:, :4] = 1 - y2[:, :4]                                       # change only masked targets
    a = progressive_loss(fresh(), x, y, mask, 0.0, 6, random.Random(0))
    b = progressive_loss(fresh(), x, y2, mask, 0.0, 6, random.Random(0))
    assert torch.equal(a, b)
    assert not torch.equal(a, progressive_loss(fresh(), x, y2, None, 0.0, 6, random.Random(0)))


def test_learning_rate_schedule():
    step = TrainConfig(lr=1.0, epochs=10, warmup=2, schedule="step", milestones=[5, 8], gamma=0.1)
    assert lr_at(step, 0, 0, 4) == pytest.approx(1 / 8)             # first batch of an 8-batch warmup
    assert lr_at(step, 1, 3, 4) == pytest.approx(1.0)               # warmup done
    assert lr_at(step, 5, 0, 4) == pytest.approx(0.1) and lr_at(step, 9, 3, 4) == pytest.approx(0.01)
    cos = step.replace(schedule="cosine", warmup=0)
    assert lr_at(cos, 0, 0, 4) == pytest.approx(1.0) and lr_at(cos, 5, 0, 4) == pytest.approx(0.5)
    assert lr_at(cos, 9, 3, 4) < 0.01


# ---- whole trials ----------------------------------------------------------------------------

# Learning tests (marked `learning`; `make test-isa` / `make test-learning-isa` run them under
# ONEDNN_MAX_CPU_ISA=AVX2 too): CPUs round differently along their kernel paths, so a test that
# learns must hold across seeds and ISAs, not on one CPU's rounding. Measured on a 2-core Xeon with
# AVX-512 (no AMX), recur_net width 32, 8 bits, 30 epochs, whole-sample train accuracy (%) / first
# over last epoch's loss, seeds 0..5:
#   fp32 native ISA:                 98.0/95  96.6/43  97.1/79  97.1/60  84.4/13  100/928
#   fp32 ONEDNN_MAX_CPU_ISA=AVX2:    98.0/80  96.1/43  97.1/81  97.6/57  86.3/14  100/737
#   fp32 ATEN_CPU_CAPABILITY=avx2:   98.0/95  96.6/47  97.1/76  97.1/61  86.8/16  100/2835
#   bf16 native ISA (seeds 0..4):    98.5/103 91.7/28  96.6/82  99.5/184 100/152
#   bf16 ONEDNN_MAX_CPU_ISA=AVX2:    99.0/112 90.7/27  97.6/108 99.5/259 86.3/14
# The earlier lr 0.01 gave 36-100% (seeds 0..7 native: 71.7 100 100 84.4 36.1 100 67.3 100), so
# it passed or failed by CPU. Thresholds: >= 75% (every run above: >= 84.4) and loss / 5 (all >= 13x).
LEARN = dict(epochs=30, lr=0.003, batch_size=16, schedule="cosine", warmup=3)
LEARNED = 75.0


@pytest.mark.learning
def test_tiny_recurrent_net_learns_8_bit_prefix_sums_beside_feed_forward_twin(root, tmp_path):
    cfg = tiny("recur_net", alpha=0.0, **LEARN)
    seen = []
    out = run_trial(cfg, root, trial_id="rec", checkpoint_dir=tmp_path / "rec", log=quiet,
                    on_epoch=lambda m, d: seen.append((m, d)))
    assert out.status == "ok" and out.epochs_completed == 30 and len(seen) == 30
    assert set(seen[-1][0]) == {"epoch", "loss", "train_acc", "val_acc", "lr", "seconds"}
    assert seen[-1][0]["train_acc"] >= LEARNED, seen[-1][0]
    assert seen[-1][0]["loss"] < seen[0][0]["loss"] / 5
    assert (seen[-1][1] / FILENAME).is_file()
    rows = out.rows
    assert set(REQUIRED) <= set(rows[0]) and to_table(rows).num_rows == len(rows)
    train_acc = {r["test_iters"]: r["accuracy"] for r in rows if r["split"] == "train"}
    assert sorted(train_acc) == [1, 2, 3, 4, 5] and train_acc[3] >= LEARNED
    assert {(r["split"], r["difficulty"]) for r in rows} == {("train", 8), ("val", 8), ("test", 10)}
    assert "metric" not in rows[0] and len(rows) == 3 * 5       # one row per (split, difficulty, test_iters)
    assert len({(r["split"], r["difficulty"], r["test_iters"]) for r in rows}) == len(rows)
    for r in rows:
        assert 0.0 <= r["accuracy_max_confidence"] <= 100.0
        if r["test_iters"] == 1:     # the most confident of iteration 1 alone is iteration 1
            assert r["accuracy_max_confidence"] == r["accuracy"]

    twin = run_trial(dataclasses.replace(cfg, model="ff_net", train=cfg.train.replace(epochs=10)),
                     root, trial_id="ff",
                     checkpoint_dir=tmp_path / "ff", log=quiet)
    assert twin.n_params > out.n_params and twin.status == "ok"
    assert {r["test_iters"] for r in twin.rows} == {1, 2, 3}        # feed-forward: its 3 blocks only


@pytest.mark.parametrize("model_name", sorted(MODELS))
@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_one_epoch_on_every_task_with_synthetic_data(task_name, model_name, tmp_path, monkeypatch):
    """Every registered model trains and evaluates on every registered task (data replaced by
    random tensors of the task's shape)."""
    task = TASKS[task_name]
    spatial = (12,) if task.dims == 1 else (8, 8)
    g = torch.Generator().manual_seed(0)

    def synthetic(data, root, split_seed=0):
        def make(split, n):
            x = torch.rand((n, task.in_channels, *spatial), generator=g).round()       # (N, C, *S)
            return Split(split, 3, x, torch.randint(0, 2, (n, *spatial), generator=g))
        return [make("train", 24), make("val", 8), make("test", 10)]
    monkeypatch.setattr(task, "splits", synthetic)
    alpha = 0.5 if MODELS[model_name].recurrent else 0.0           # the planner gives ff nets alpha 0
    cfg = dataclasses.replace(tiny(model_name, alpha=alpha, epochs=1, width=8), task=task_name)
    out = run_trial(cfg, tmp_path / "data", trial_id="s", checkpoint_dir=tmp_path, log=quiet)
    iters = 5 if MODELS[model_name].recurrent else 3                  # feed-forward: its 3 blocks
    assert out.status == "ok" and to_table(out.rows).num_rows == 3 * iters
    assert {r["task"] for r in out.rows} == {task_name}


def test_feed_forward_alpha_is_planned_once_as_zero_and_refused_otherwise(root, tmp_path, capsys):
    """A model x alpha grid trains the feed-forward net once, with (and recording) alpha 0."""
    from deepthink.config import ConfigError, parse_sweep
    f = tmp_path / "s.yaml"
    f.write_text("name: t\ntask: prefix_sums\ndata: {train: 8, eval: [10], count: 100}\n"
                 "grid: {model: [dt_net, ff_net], max_iters: [2], width: [8], alpha: [0, 0.5, 1]}\n")
    sweep = parse_sweep(f)
    planned = sorted((t.model, t.train.alpha) for t in sweep.trials())
    assert planned == [("dt_net", 0.0), ("dt_net", 0.5), ("dt_net", 1.0), ("ff_net", 0.0)]
    assert any("alpha: not used by ff_net" in line for line in sweep.unused_settings())
    from deepthink.cli import main
    assert main(["sweep", str(f), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "trials: 4 (" in out and "alpha: not used by ff_net (separate blocks)" in out, out
    with pytest.raises(ConfigError, match="ff_net has separate blocks"):
        run_trial(tiny("ff_net", alpha=0.5, epochs=1), root, trial_id="ff", checkpoint_dir=tmp_path / "a", log=quiet)
    zero = run_trial(tiny("ff_net", alpha=0.0, epochs=1), root, trial_id="ff", checkpoint_dir=tmp_path / "b", log=quiet)
    assert {r["alpha"] for r in zero.rows} == {0.0}


@pytest.mark.parametrize("model", ["dt_net", "dt_l"])      # dt_l: normalized weights, BatchNorm
def test_huge_learning_rate_diverges_and_evaluates_the_last_good_weights(root, tmp_path, model):
    # Two normal epochs, then the learning rate jumps by 1e12 (step schedule) and the loss overflows.
    sgd = dict(alpha=0.0, clip=None, optimizer="sgd", schedule="step", milestones=[2], gamma=1e12)
    lines = []
    out = run_trial(tiny(model, epochs=4, **sgd), root, trial_id="nan", checkpoint_dir=tmp_path / "nan",
                    log=lines.append)
    assert out.status == "diverged" and out.epochs_completed == 2
    assert any("diverged" in line for line in lines)
    assert {r["status"] for r in out.rows} == {"diverged"} and {r["epochs_completed"] for r in out.rows} == {2}
    # Oracle: the same training stopped after 2 epochs (the jump never reached) scores the same.
    two = run_trial(tiny(model, epochs=2, **sgd), root, trial_id="nan", checkpoint_dir=tmp_path / "two", log=quiet)
    assert [r["accuracy"] for r in out.rows] == [r["accuracy"] for r in two.rows]
    # The saved checkpoint says so: resuming it re-evaluates without training again.
    again = run_trial(tiny(model, epochs=4, **sgd), root, trial_id="nan", checkpoint_dir=tmp_path / "again",
                      resume_from=tmp_path / "nan", log=quiet)
    assert again.status == "diverged" and again.rows == out.rows


def test_checkpoint_every_and_on_epoch_directories(root, tmp_path):
    seen = []
    run_trial(tiny(epochs=3, checkpoint_every=2), root, trial_id="e", checkpoint_dir=tmp_path / "c",
              on_epoch=lambda m, d: seen.append((m["epoch"], d)), log=quiet)
    assert seen == [(1, None), (2, tmp_path / "c"), (3, tmp_path / "c")]   # and always the last epoch
    ckpt = torch.load(tmp_path / "c" / FILENAME, weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["precision"] == "fp32" and ckpt["status"] == "training"


class Stop(Exception):
    pass


@pytest.mark.parametrize("model,alpha", [("dt_recall", 0.5), ("dt_recall", 1.0),
                                         ("dt_l", 0.5)])    # dt_l: BatchNorm and spectral-norm buffers
def test_interrupted_then_resumed_equals_uninterrupted(root, tmp_path, model, alpha):
    cfg = tiny(model, alpha=alpha, epochs=4, warmup=1, schedule="cosine")
    full = run_trial(cfg, root, trial_id="r", checkpoint_dir=tmp_path / "full", log=quiet)

    def stop_after_2(metrics, ckpt_dir):
        if metrics["epoch"] == 2:
            raise Stop
    with pytest.raises(Stop):
        run_trial(cfg, root, trial_id="r", checkpoint_dir=tmp_path / "cut", on_epoch=stop_after_2, log=quiet)
    random.random(), torch.rand(3)                                  # disturb the global RNGs
    resumed = run_trial(cfg, root, trial_id="r", checkpoint_dir=tmp_path / "cut2",
                        resume_from=tmp_path / "cut", log=quiet)
    assert resumed.epochs_completed == 4

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in rows]
    assert strip(resumed.rows) == strip(full.rows)
    a = torch.load(tmp_path / "full" / FILENAME, weights_only=True)["model"]
    b = torch.load(tmp_path / "cut2" / FILENAME, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_corrupt_or_mismatched_checkpoint_is_a_clear_error(root, tmp_path):
    cfg = tiny(epochs=1)
    run_trial(cfg, root, trial_id="c", checkpoint_dir=tmp_path / "ok", log=quiet)
    with pytest.raises(CheckpointError, match="lr is 0.005 in the checkpoint but 0.001 now") as e:
        run_trial(tiny(epochs=1, lr=0.001), root, trial_id="c", checkpoint_dir=tmp_path / "x",
                  resume_from=tmp_path / "ok", log=quiet)
    assert str(tmp_path / "ok" / FILENAME) in str(e.value)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / FILENAME).write_bytes((tmp_path / "ok" / FILENAME).read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as e:
        run_trial(cfg, root, trial_id="c", checkpoint_dir=tmp_path / "y", resume_from=bad, log=quiet)
    assert str(bad / FILENAME) in str(e.value)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        run_trial(cfg, root, trial_id="c", checkpoint_dir=tmp_path / "z", resume_from=tmp_path / "none", log=quiet)
    assert not list((tmp_path / "ok").glob(".*tmp"))                # atomic write left no temp file


@pytest.mark.learning
def test_bf16_autocast_learns_too(root, tmp_path):
    """bf16 autocast with LEARN: per-seed numbers above LEARN (the same threshold as fp32).
    benchmarks/bench_train.py compares fp32 and bf16 on a larger problem."""
    out = run_trial(tiny("recur_net", alpha=0.0, precision="bf16", **LEARN), root, trial_id="b",
                    checkpoint_dir=tmp_path, log=quiet)
    acc = max(r["accuracy"] for r in out.rows if r["split"] == "train")
    assert acc >= LEARNED


# ---- deepthink train ---------------------------------------------------------------------------

RUN_YAML = """
name: tiny
task: prefix_sums
data: {{train: 8, eval: [10], count: 256}}
grid: {{model: [dt_net], max_iters: [3], width: [16], alpha: [{alpha}]}}
seeds: [0]
train: {{epochs: 3, lr: 0.005, batch_size: 32, warmup: 0}}
test: {{iterations: 4}}
storage: {storage}
"""


def test_train_cli_end_to_end_writes_parquet_config_and_checkpoint(root, tmp_path, capsys):
    from deepthink.cli import main
    from deepthink.results import read_results
    run = tmp_path / "run.yaml"
    run.write_text(RUN_YAML.format(alpha="1.0", storage=tmp_path / "results"))
    argv = ["train", str(run), "--data-root", str(root), "--train.epochs", "2", "--precision=fp32"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "epoch    2/2" in first and "status ok" in first
    out_dir = tmp_path / "results" / "tiny"
    df = read_results(str(out_dir))
    (trial_id,) = set(df["trial_id"])
    assert len(df) == 3 * 4 and df[REQUIRED].notna().all().all()
    assert not pd.read_parquet(out_dir).duplicated(["trial_id", "split", "difficulty", "test_iters"]).any()
    assert set(df["epochs"]) == {2} and set(df["status"]) == {"ok"}
    beside = out_dir.parent / f"_{out_dir.name}"          # everything but the results, beside them
    saved = (beside / "config" / f"train-{trial_id}.yaml").read_text()
    assert "precision: fp32" in saved and "epochs: 2" in saved
    assert (beside / "checkpoints" / trial_id / FILENAME).is_file()
    # The same command again continues from the checkpoint: nothing retrained, same rows, one file.
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "resumed" in second and "epoch    1/2" not in second
    again = read_results(str(out_dir))
    assert len(again) == len(df) and list(again["accuracy"]) == list(df["accuracy"])
    assert list(again["accuracy_max_confidence"]) == list(df["accuracy_max_confidence"])
    # A truncated checkpoint: a clear error whose suggested way out works when followed.
    ckpt = beside / "checkpoints" / trial_id / FILENAME
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot read checkpoint" in err and f"rm {ckpt} and run the same command again" in err
    ckpt.unlink()
    assert main(argv) == 0 and "status ok" in capsys.readouterr().out


def test_train_cli_refuses_a_grid(tmp_path, capsys):
    from deepthink.cli import main
    run = tmp_path / "run.yaml"
    run.write_text(RUN_YAML.format(alpha="0.0, 1.0", storage=tmp_path / "results"))
    assert main(["train", str(run)]) == 2
    err = capsys.readouterr().err
    assert "expands to 2 trials" in err and "deepthink sweep" in err


def test_train_cli_override_parsing():
    from deepthink.train_cli import parse_overrides, trial_hash
    overrides, special = parse_overrides(["--train.lr", "1e-3", "--width=64", "--device", "cpu",
                                          "--data.eval", "[40, 48]", "--max-iters", "20", "--data_root", "/d"])
    assert overrides == {"train.lr": 0.001, "width": 64, "data.eval": [40, 48], "max_iters": 20}
    assert special == {"device": "cpu", "data-root": "/d"}
    cfg = tiny().to_dict()
    assert trial_hash(cfg) == trial_hash({**cfg, "storage": "/elsewhere"}) != trial_hash({**cfg, "seed": 1})
    # evaluation settings do not change what is trained: same id, so the checkpoint is reused
    assert trial_hash(cfg) == trial_hash({**cfg, "test": {**cfg["test"], "iterations": 999}})


def test_masked_loss_is_the_mean_over_counted_positions_only():
    # oracle: the reference's loss[mask > 0].mean(), computed independently
    from deepthink.train import masked_cross_entropy
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 5, 5, generator=g)
    y = torch.randint(0, 2, (3, 5, 5), generator=g)
    mask = torch.rand(3, 5, 5, generator=g) > 0.6
    per_pos = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(masked_cross_entropy(logits, y, mask), per_pos[mask].mean())


def test_train_val_iterations_stops_train_and_val_early_and_test_goes_on(root, tmp_path):
    """test.train_val_iterations: the train and val splits get rows for iterations 1..3 only, the
    test split for 1..7, and the first 3 iterations of each split are what a full evaluation gives."""
    cfg = tiny(epochs=1)
    full = run_trial(dataclasses.replace(cfg, test=EvalConfig(iterations=7, batch_size=100)), root,
                     trial_id="full", checkpoint_dir=tmp_path / "full", log=quiet)
    short = run_trial(dataclasses.replace(cfg, test=EvalConfig(iterations=7, batch_size=100, train_val_iterations=3)),
                      root, trial_id="full", checkpoint_dir=tmp_path / "short", log=quiet)
    iters = {}
    for r in short.rows:
        iters.setdefault(r["split"], set()).add(r["test_iters"])
    assert iters == {"train": {1, 2, 3}, "val": {1, 2, 3}, "test": set(range(1, 8))}
    want = {(r["split"], r["difficulty"], r["test_iters"]): r["accuracy"] for r in full.rows}
    for r in short.rows:
        assert r["accuracy"] == want[(r["split"], r["difficulty"], r["test_iters"])]
    # capped at test.iterations; null keeps every split at test.iterations
    assert EvalConfig(iterations=5, train_val_iterations=50).split_iterations("val") == 5
    assert EvalConfig(iterations=5).split_iterations("train") == 5
    assert EvalConfig(iterations=5, train_val_iterations=2).split_iterations("test") == 5


def test_max_examples_per_difficulty(root, tmp_path):
    """test.max_examples as a mapping caps each difficulty's splits on its own (train and val are the
    training difficulty, 8; test 10); a difficulty left out is evaluated whole; the capped test rows
    are what one cap for every split gives."""
    cfg = tiny(epochs=1)
    rows = {}
    for name, cap in (("map", {10: 17, 8: 40}), ("one", 17), ("part", {10: 17})):
        out = run_trial(dataclasses.replace(cfg, test=EvalConfig(iterations=4, batch_size=100, max_examples=cap)),
                        root, trial_id=name, checkpoint_dir=tmp_path / name, log=quiet)
        rows[name] = {(r["split"], r["test_iters"]): r for r in out.rows}
    n = {name: {split: r["n_examples"] for (split, _), r in got.items()} for name, got in rows.items()}
    assert n["map"] == {"train": 40, "val": 40, "test": 17}
    assert n["one"] == {"train": 17, "val": 17, "test": 17}
    assert n["part"]["test"] == 17 and n["part"]["val"] > 40 and n["part"]["train"] > n["part"]["val"]
    for k in range(1, 5):
        assert rows["map"][("test", k)]["accuracy"] == rows["one"][("test", k)]["accuracy"]
