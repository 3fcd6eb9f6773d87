"""Per-iteration evaluation against an independent oracle that keeps every iteration's output
(the reference code's way), for every task and model; chunking; memory flat in the iterations.

    .venv/bin/python -m pytest tests/test_evaluate.py -q
"""
import gc
import math

import pytest
import torch

from deepthink.evaluate import accuracy_at, evaluate_split, runnable_iterations
from deepthink.models import MODELS, build_model
from deepthink.precision import resolve_precision
from deepthink.tasks import TASKS

SPATIAL = {1: (9,), 2: (6, 6)}
FP32 = resolve_precision("fp32", "cpu")


pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py


def setup(task, model_name, n=12, iters=4):
    torch.manual_seed(0)
    net = build_model(model_name, width=8, max_iters=iters, in_channels=task.in_channels, dims=task.dims).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand((n, task.in_channels, *SPATIAL[task.dims]), generator=g) - 0.3   # (N, C, *S)
    with torch.no_grad():
        # Targets = the net's own answer at iteration 2 for half the examples, random for the rest:
        # so some iterations score every example and the counts differ between iterations.
        y = net(x, 2).logits.argmax(1)
        y[n // 2:] = torch.randint(0, 2, y[n // 2:].shape, generator=g)
    return net, x, y


def oracle(net, task, x, y, iters):
    """Store all outputs, then score: per-iteration counts and max-confidence counts."""
    with torch.no_grad():
        outs = [net(x, k).logits for k in range(1, iters + 1)]                        # K x (N, 2, *S)
    ok = torch.stack([task.correct(o, x, y) for o in outs])                            # (K, N)
    conf = torch.stack([task.confidence(o, x) for o in outs])                          # (K, N)
    per_iter = ok.sum(1).tolist()
    max_conf = []
    for k in range(1, iters + 1):
        best = conf[:k].argmax(0)            # first maximum = earliest iteration on ties
        max_conf.append(int(ok[best, torch.arange(x.shape[0])].sum()))
    return per_iter, max_conf


@pytest.mark.parametrize("task_name", sorted(TASKS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_matches_oracle_for_every_task_and_model(task_name, model_name):
    task = TASKS[task_name]
    net, x, y = setup(task, model_name)
    k = runnable_iterations(net, 6)              # feed-forward nets stop at their 4 blocks
    assert k == (6 if MODELS[model_name].shared else 4)
    res = evaluate_split(net, task, x, y, 6, batch_size=5, precision=FP32)   # 3 chunks: 5, 5, 2
    per_iter, max_conf = oracle(net, task, x, y, k)
    assert res.n_examples == 12 and res.iterations == k
    assert res.iteration_correct == per_iter
    assert res.max_conf_correct == max_conf
    assert res.accuracy("iteration") == [100.0 * c / 12 for c in per_iter]
    if task.name == "prefix_sums":           # targets = iteration-2 answers for half the examples
        assert per_iter[1] >= 6
    assert accuracy_at(net, task, x, y, 2, batch_size=7, precision=FP32) == pytest.approx(100.0 * per_iter[1] / 12)


def test_max_confidence_picks_the_most_confident_iteration():
    """A stub net whose iteration 2 is confident and right, iteration 3 unsure and wrong."""
    task = TASKS["prefix_sums"]

    class Stub(torch.nn.Module):
        max_test_iters = None

        def project(self, x):
            return torch.zeros(x.shape[0], 1, x.shape[2])

        def step(self, state, x, i):
            return state + 1

        def head(self, state):
            it = int(state[0, 0, 0])
            right = torch.tensor([0.0, 5.0 if it == 2 else 0.5]).view(1, 2, 1)
            wrong = torch.tensor([0.2, 0.0]).view(1, 2, 1)
            logits = right if it == 2 else wrong
            return logits.expand(state.shape[0], 2, state.shape[2])

    x = torch.zeros(4, 1, 3)
    y = torch.ones(4, 3, dtype=torch.long)
    res = evaluate_split(Stub(), task, x, y, 4, batch_size=4, precision=FP32)
    assert res.iteration_correct == [0, 4, 0, 0]
    assert res.max_conf_correct == [0, 4, 4, 4]


def test_result_rows_carry_both_readouts_in_one_row_per_iteration():
    """results.trained_rows: one row per (split, difficulty, test_iters), `accuracy` from the
    per-iteration counts and `accuracy_max_confidence` from the max-confidence counts."""
    from deepthink.config import DataConfig, TestConfig as EvalConfig, TrainConfig, TrialConfig
    from deepthink.evaluate import SplitResult
    from deepthink.results import ROW_KEY, to_table, trained_rows
    cfg = TrialConfig(sweep="t", task="prefix_sums", model="dt_recall", width=8, max_iters=2, depth=12,
                      seed=0, data=DataConfig(train=8, eval=[10], count=16), train=TrainConfig(),
                      test=EvalConfig())
    results = [("train", 8, SplitResult(4, [0, 4, 0, 0], [0, 4, 4, 4])),
               ("test", 10, SplitResult(4, [1, 2, 3, 2], [1, 3, 3, 4]))]
    rows = trained_rows(cfg, "t_00000", results, status="ok", epochs_completed=1,
                        n_params=10, train_seconds=1.0, node="n", device="cpu")
    assert [(r["split"], r["test_iters"]) for r in rows] == [("train", i) for i in (1, 2, 3, 4)] + \
        [("test", i) for i in (1, 2, 3, 4)]
    assert [r["accuracy"] for r in rows] == [0.0, 100.0, 0.0, 0.0, 25.0, 50.0, 75.0, 50.0]
    assert [r["accuracy_max_confidence"] for r in rows] == [0.0, 100.0, 100.0, 100.0, 25.0, 75.0, 75.0, 100.0]
    df = to_table(rows).to_pandas()
    assert "metric" not in df.columns and not df.duplicated(ROW_KEY).any()


def test_chunk_size_does_not_change_counts():
    task = TASKS["prefix_sums"]
    net, x, y = setup(task, "dt_recall", n=20)
    a = evaluate_split(net, task, x, y, 5, batch_size=20, precision=FP32)
    b = evaluate_split(net, task, x, y, 5, batch_size=3, precision=FP32)
    assert a == b


@pytest.mark.parametrize("task_name", sorted(TASKS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_cpu_memory_chunks_do_not_change_results(task_name, model_name, monkeypatch):
    """A batch cut to CPU_CHUNK_BYTES (here: 3 examples' worth, so 12 examples run as 3+3+3+3) gives
    the same counts as the whole batch, for every model (BatchNorm and GroupNorm in eval mode
    are per example) and task; the chunk follows width x positions x bytes per value."""
    from deepthink import evaluate
    task = TASKS[task_name]
    net, x, y = setup(task, model_name)
    whole = evaluate_split(net, task, x, y, 5, batch_size=12, precision=FP32)
    per_example = 8 * math.prod(x.shape[2:]) * 4            # width 8, fp32
    assert evaluate.eval_chunk(12, net, x, FP32) == 12  # 16 MiB: no cut at this size
    monkeypatch.setattr(evaluate, "CPU_CHUNK_BYTES", 3 * per_example + 1)
    assert evaluate.eval_chunk(12, net, x, FP32) == 3
    assert evaluate.eval_chunk(12, net, x, resolve_precision("bf16", "cpu")) == 6
    steps = []
    cut = evaluate_split(net, task, x, y, 5, batch_size=12, precision=FP32,
                         on_step=lambda b, i, k: steps.append(b))
    assert cut == whole
    assert steps == [3] * (4 * runnable_iterations(net, 5))
    assert accuracy_at(net, task, x, y, 3, batch_size=12, precision=FP32) == pytest.approx(
        100.0 * whole.iteration_correct[2] / 12)


def test_live_tensors_do_not_grow_with_iterations():
    """The reference keeps every iteration's output; here the number of live tensors while
    iterating must not depend on how many iterations have run."""
    base = TASKS["prefix_sums"]
    net, x, y = setup(base, "dt_recall", n=6)
    counts = {}

    class Spy(type(base)):
        def correct(self, logits, inputs, targets):
            gc.collect()
            counts.setdefault("n", []).append(sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects()))
            return super().correct(logits, inputs, targets)

    evaluate_split(net, Spy(), x, y, 15, batch_size=6, precision=FP32)
    n = counts["n"]
    assert len(n) == 15 and max(n[3:]) == min(n[3:]), n


def test_bf16_evaluation_runs_and_restores_train_mode():
    task = TASKS["prefix_sums"]
    net, x, y = setup(task, "dt_net")
    net.train()
    res = evaluate_split(net, task, x, y, 3, batch_size=4, precision=resolve_precision("bf16", "cpu"))
    assert res.iterations == 3 and net.training
