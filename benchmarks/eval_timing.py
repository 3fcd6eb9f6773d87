"""Shared by the evaluation benchmarks: build a case's net and inputs, and time `evaluate_split`
under several settings, interleaved, best of `reps` wall times in this process (the first round
warms up and is not counted)."""
from __future__ import annotations

import time
from typing import Callable

import torch

from deepthink import evaluate
from deepthink.models import build_model
from deepthink.tasks import TASKS


def build_case(task_name: str, model_name: str, width: int, spatial: tuple, batch: int, precision):
    """(task, net in eval mode, x, y) for one benchmark case, seeded."""
    task = TASKS[task_name]
    torch.manual_seed(0)
    net = precision.prepare_model(build_model(model_name, width=width, max_iters=30,
                                              in_channels=task.in_channels, dims=task.dims).eval())
    x = (torch.rand(batch, task.in_channels, *spatial) > 0.5).float()
    y = torch.randint(0, 2, (batch, *spatial))
    return task, net, x, y


def interleaved(modes: dict[str, Callable[[], None]], task, net, x, y, iters: int, batch: int, precision,
                reps: int) -> tuple[dict, dict]:
    """For each rep, each mode: call its setup, time one evaluate_split. Returns (counts, best seconds) per mode."""
    results, best = {}, {}
    for rep in range(reps + 1):
        for mode, setup in modes.items():
            setup()
            t = time.perf_counter()
            results[mode] = evaluate.evaluate_split(net, task, x, y, iters, batch_size=batch, precision=precision)
            dt = time.perf_counter() - t
            if rep:
                best[mode] = min(best.get(mode, float("inf")), dt)
    return results, best
