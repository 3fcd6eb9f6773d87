"""Shared by the evaluation benchmarks: build a case's net and inputs, and time `evaluate_split`
under several settings, interleaved, best of `reps` wall times in this process (the first round
warms up and is not counted)."""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch

from cpu_banner import cpu_banner
from deepthink import evaluate
from deepthink.models import build_model
from deepthink.tasks import TASKS


def parse_args(doc: str, cases: dict, argv=None) -> argparse.Namespace:
    """--cases (default all), --reps, --threads; sets torch's threads and prints the CPU banner."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(cases), choices=list(cases))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(cpu_banner(), flush=True)
    return args


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
