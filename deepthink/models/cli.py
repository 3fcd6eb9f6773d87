"""List every registered model with its parameter count for a task.

    deepthink models --task prefix_sums --width 400 --max-iters 30
    deepthink models --task mazes --width 128 --depth 44
"""
from __future__ import annotations

import argparse

from deepthink.models import MODELS, build_model, count_parameters, model_iterations
from deepthink.tasks import TASKS, get_task


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default=None, choices=sorted(TASKS), help="task (default: every task)")
    p.add_argument("--width", type=int, default=None, help="channels (default: the task's reference width)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--depth", type=int, default=None, help="paper 1 effective depth 4k+4")
    g.add_argument("--max-iters", type=int, default=None, help="training iterations (default 30)")


def run(args: argparse.Namespace) -> int:
    if args.depth is not None:
        try:
            iters = model_iterations(args.depth)
        except ValueError as e:
            raise SystemExit(f"deepthink models: --depth {args.depth}: expected {e}")
    else:
        iters = args.max_iters or 30
    tasks = [get_task(args.task)] if args.task else list(TASKS.values())
    mw = max(len(name) for name in MODELS)            # the model column fits the longest name
    print(f"{'task':<12} {'model':<{mw}} {'width':>6} {'iters':>6} {'depth':>6} {'parameters':>12}  description")
    for task in tasks:
        width = args.width or task.reference_width
        for spec in MODELS.values():
            net = build_model(spec.name, width=width, max_iters=iters, **task.model_io())
            print(f"{task.name:<12} {spec.name:<{mw}} {width:>6} {iters:>6} {4 * iters + 4:>6} "
                  f"{count_parameters(net):>12,}  {spec.description}")
    return 0
