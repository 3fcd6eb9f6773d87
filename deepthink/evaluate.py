"""Per-iteration evaluation whose memory does not grow with the number of test iterations.

The reference code keeps every iteration's output (B, K, 2, *S) before scoring it: at 512 bits or
201x201 mazes and 1,000 iterations that is gigabytes. Here the model is driven one iteration at a
time (`model.project` / `model.step` / `model.head`) and only running counters are kept:

- `iteration_correct[i]`: examples solved after exactly i+1 iterations (whole-sample metric of the
  task, `task.correct`);
- `max_conf_correct[i]`: examples whose most confident output among iterations 1..i+1
  (`task.confidence`; earliest wins a tie) is right. The running maximum makes every prefix K'
  cost nothing extra.

Large inputs are processed in chunks of `batch_size` examples; counters stay on the device and are
read once per split (no host synchronisation per iteration). Memory: one chunk's input, state and
logits, whatever K is.

    from deepthink.evaluate import evaluate_split
    res = evaluate_split(model, task, x, y, iters=100, batch_size=500, precision=p)
    res.accuracy("iteration")      # [percent after 1, 2, ..., 100 iterations]
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Annotated, Callable

import torch
from pydantic import Field, PlainValidator

from deepthink.configfile import Section
from deepthink.models import ThinkingNet
from deepthink.precision import Precision, cast_for_autocast
from deepthink.tasks.base import Task


CAP = "a positive integer (every split) or a mapping difficulty: positive integer, e.g. {13: 1000, 59: 100}"


def _examples_cap(v):
    """test.max_examples: None, n >= 1, or {difficulty: n >= 1}; the keys as difficulties (YAML gives
    59, JSON -- a command line echoed back -- gives '59'). One error message for every wrong form."""
    def positive(n) -> bool:
        return isinstance(n, int) and not isinstance(n, bool) and n >= 1
    if v is None or positive(v):
        return v
    if isinstance(v, dict):
        caps = {int(k) if isinstance(k, str) and k.strip().isdigit() else k: n for k, n in v.items()}
        if all(positive(k) and positive(n) for k, n in caps.items()):
            return caps
    raise ValueError(CAP)


ExamplesCap = Annotated[int | dict[int, int] | None, PlainValidator(
    _examples_cap, json_schema_input_type=Annotated[int, Field(ge=1)] | dict[int, Annotated[int, Field(ge=1)]] | None)]


class TestConfig(Section):
    """Section `test:` of a sweep file: how trained models are evaluated."""
    __test__ = False      # not a pytest test class
    iterations: Annotated[int, Field(ge=1, le=10_000)] = Field(
        60, description="evaluate at every iteration 1..iterations (at most 10,000)")
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = Field(500, description="examples per evaluation chunk, 1..10^6")
    max_examples: ExamplesCap = Field(
        None, description="evaluate at most this many examples per split: one number for every split, or "
                          "a mapping difficulty: number ({13: 1000, 59: 100}; a difficulty left out is "
                          "evaluated whole); null: all")
    train_val_iterations: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        None, description="evaluate the train and val splits only at iterations 1..this (at most "
                          "`iterations`; null: every test iteration); the test splits always go to `iterations`")

    def examples_cap(self, difficulty: int) -> int | None:
        """How many examples of a split of this difficulty are evaluated (None: all of them)."""
        m = self.max_examples
        return m.get(difficulty) if isinstance(m, dict) else m

    def split_iterations(self, split: str) -> int:
        """How many iterations a split is evaluated at: `iterations` for test splits; for the others
        (train, val) `train_val_iterations` when set (capped at `iterations`)."""
        if split != "test" and self.train_val_iterations is not None:
            return min(self.train_val_iterations, self.iterations)
        return self.iterations


@dataclass
class SplitResult:
    n_examples: int
    iteration_correct: list[int]     # [correct after 1 iteration, ..., after K]
    max_conf_correct: list[int]      # [correct of the most confident of 1..1, ..., of 1..K]

    @property
    def iterations(self) -> int:
        return len(self.iteration_correct)

    def accuracy(self, metric: str) -> list[float]:
        """Whole-sample accuracy in percent per test iteration; metric 'iteration' | 'max_confidence'."""
        counts = {"iteration": self.iteration_correct, "max_confidence": self.max_conf_correct}[metric]
        return [100.0 * c / self.n_examples for c in counts]


class EvalProgress:
    """Progress lines of a long evaluation, through `log`:

        evaluating: 40%, now test 512 at iteration 240/1000, 5.2 min so far, about 7.8 min left

    The percentage is of the work: every split's examples x their size (positions or cells) x
    the iterations evaluated, so a split of long strings counts for what it costs (counting
    batches, a 1000-iteration evaluation read 70% when 80% of its time was still to come). The
    time left assumes the rest runs at the pace so far. Silent for the first `quiet_s` seconds
    (short evaluations print nothing; default $DEEPTHINK_EVAL_PROGRESS_S, else 10); after that a
    line each time another `step_pct` percent is done, and one at least every `every_s` seconds
    while it runs; never two lines at the same percentage."""

    def __init__(self, total: float, log: Callable[[str], None], *, quiet_s: float | None = None,
                 step_pct: int = 10, every_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.total, self.log, self.clock = max(1, total), log, clock
        self.quiet_s = float(os.environ.get("DEEPTHINK_EVAL_PROGRESS_S", 10)) if quiet_s is None else quiet_s
        self.step_pct, self.every_s = step_pct, every_s
        self.done, self.place = 0, ""
        self.t0 = self._last_t = clock()
        self._next_pct, self._last_pct = step_pct, -1

    def step(self, work: float = 1, place: str | None = None) -> None:
        """`work` more units done (examples x size for one iteration of one batch); `place` says
        where the evaluation is now ("test 512 at iteration 240/1000")."""
        self.done += work
        if place is not None:
            self.place = place
        now = self.clock()
        if now - self.t0 < self.quiet_s:
            return
        pct = min(100, int(100 * self.done // self.total))
        if pct == self._last_pct or (pct < self._next_pct and now - self._last_t < self.every_s):
            return
        self._last_pct, self._last_t = pct, now
        self._next_pct = (pct // self.step_pct + 1) * self.step_pct
        where = f", now {self.place}" if self.place else ""
        spent = now - self.t0
        left = spent * (self.total - self.done) / self.done if 0 < self.done < self.total else 0.0
        tail = f", about {_duration(left)} left" if left > 0 else ""
        self.log(f"evaluating: {pct}%{where}, {_duration(spent)} so far{tail}")


def _duration(seconds: float) -> str:
    """'35 s', '5.2 min', '1.4 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# On a CPU an evaluation batch is run in chunks whose state tensor (chunk x width x positions) stays
# at or under this many bytes. glibc's malloc serves blocks above its mmap ceiling (32 MiB on 64-bit
# Linux) with fresh pages from the kernel every time, so each iteration of a bigger batch pays page
# faults for every new activation: evaluating 500 strings of 512 bits at width 64 ran 1.4-1.7x
# faster in chunks of 128 than in one batch of 500 (benchmarks/bench_eval_chunk.py, docs/training.md).
# A GPU takes the batch whole. The results are the same: each example is evaluated on its own
# (eval mode: no batch statistics), and a test checks chunked == whole.
CPU_CHUNK_BYTES = 16 * 2**20


def eval_chunk(batch_size: int, model: ThinkingNet, inputs: torch.Tensor, precision: Precision) -> int:
    """Examples per forward pass over `inputs` (N, C, *S): `batch_size`, cut on a CPU so that one
    state tensor of `width` channels over an input's positions takes at most CPU_CHUNK_BYTES."""
    width = getattr(getattr(model, "cfg", None), "width", None)
    if inputs.device.type != "cpu" or width is None:
        return batch_size
    itemsize = 2 if precision.name == "bf16" else 4
    per_example = width * max(1, math.prod(inputs.shape[2:])) * itemsize
    return max(1, min(batch_size, CPU_CHUNK_BYTES // per_example))


def runnable_iterations(model: ThinkingNet, iters: int) -> int:
    """Iterations a model can be evaluated at: all of them for recurrent nets, the block count for
    feed-forward nets."""
    cap = model.max_test_iters
    return iters if cap is None else min(iters, cap)


@torch.inference_mode()
def evaluate_split(model: ThinkingNet, task: Task, inputs: torch.Tensor, targets: torch.Tensor,
                   iters: int, *, batch_size: int, precision: Precision,
                   on_step: Callable[[int, int, int], None] | None = None) -> SplitResult:
    """Score `inputs` (N, C, *S) against `targets` (N, *S) after every iteration 1..iters.
    `on_step(examples in the batch, iteration, iterations)` is called after each iteration of each
    batch (for EvalProgress)."""
    was_training = model.training
    model.eval()
    k = runnable_iterations(model, iters)
    device = inputs.device
    it_correct = torch.zeros(k, dtype=torch.long, device=device)    # (K,)
    mc_correct = torch.zeros(k, dtype=torch.long, device=device)    # (K,)
    chunk = eval_chunk(batch_size, model, inputs, precision)
    try:
        for start in range(0, inputs.shape[0], chunk):
            x = precision.prepare_inputs(inputs[start:start + chunk])        # (b, C, *S)
            y = targets[start:start + chunk]                                  # (b, *S)
            best_conf = torch.full((x.shape[0],), -1.0, device=device)        # (b,)
            best_ok = torch.zeros(x.shape[0], dtype=torch.bool, device=device)
            with precision.autocast():
                x = cast_for_autocast(x)                                      # once per chunk
                state = model.project(x)                                      # (b, w, *S)
                for i in range(k):
                    state = model.step(state, x, i)
                    logits = model.head(state)                                # (b, 2, *S)
                    ok = task.correct(logits, x, y)                           # (b,) bool
                    conf = task.confidence(logits, x).float()                 # (b,)
                    better = conf > best_conf          # strict: the earliest iteration wins ties
                    best_conf = torch.where(better, conf, best_conf)
                    best_ok = torch.where(better, ok, best_ok)
                    it_correct[i] += ok.sum()
                    mc_correct[i] += best_ok.sum()
                    if on_step is not None:
                        on_step(x.shape[0], i + 1, k)
    finally:
        model.train(was_training)
    return SplitResult(int(inputs.shape[0]), it_correct.tolist(), mc_correct.tolist())


@torch.inference_mode()
def accuracy_at(model: ThinkingNet, task: Task, inputs: torch.Tensor, targets: torch.Tensor,
                iters: int, *, batch_size: int, precision: Precision) -> float:
    """Whole-sample accuracy (percent) after exactly `iters` iterations (the per-epoch log)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=inputs.device)
    chunk = eval_chunk(batch_size, model, inputs, precision)
    try:
        for start in range(0, inputs.shape[0], chunk):
            x = precision.prepare_inputs(inputs[start:start + chunk])
            with precision.autocast():
                logits = model(x, runnable_iterations(model, iters)).logits      # (b, 2, *S)
            correct += task.correct(logits, x, targets[start:start + chunk]).sum()
    finally:
        model.train(was_training)
    return 100.0 * correct.item() / max(1, inputs.shape[0])
