"""Evaluate a trained checkpoint on other test difficulties, at every iteration, without retraining.

    python benchmarks/eval_checkpoint.py results/_cpu_mazes/ray/<trial>/checkpoint_000011/checkpoint.pt \
        --difficulty 59 --iterations 600 --max-examples 100 [--precision auto|fp32|bf16] [--data-root data]

Loads the trial's configuration from the checkpoint, generates (or loads) only the test set of each
--difficulty, with the trial's data seed and count, and prints the whole-sample accuracy at a few
iterations plus the best one. Used for the 59x59 maze check in docs/results/mazes_cpu.md; one
thread (`torch.set_num_threads(1)`) unless --threads says otherwise.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from deepthink.checkpoint import CheckpointError, read_checkpoint
from deepthink.config import TrialConfig
from deepthink.evaluate import evaluate_split
from deepthink.models import build_model
from deepthink.precision import resolve_precision
from deepthink.tasks import get_task, storage


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--difficulty", type=int, nargs="+", required=True)
    p.add_argument("--iterations", type=int, default=500)
    p.add_argument("--max-examples", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--precision", default=None, help="default: the precision the trial trained with")
    p.add_argument("--data-root", type=Path, default=Path("data"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        ck = read_checkpoint(args.checkpoint)
    except CheckpointError as e:
        p.error(str(e))
    cfg = TrialConfig.from_dict(ck["config"])
    task = get_task(cfg.task)
    precision = resolve_precision(args.precision or ck["precision"], "cpu")
    model = precision.prepare_model(build_model(cfg.model, width=cfg.width, max_iters=cfg.max_iters,
                                                **task.model_io()))
    model.load_state_dict(ck["model"])
    n = args.max_examples
    for difficulty in args.difficulty:
        if problem := task.check_difficulty(difficulty):
            p.error(f"--difficulty {difficulty}: expected {problem}")
        x, y = storage.load(task, args.data_root, difficulty, "test", cfg.data.count, cfg.data.seed, cfg.data.source)
        t0 = time.perf_counter()
        r = evaluate_split(model, task, x[:n], y[:n], args.iterations, batch_size=args.batch_size,
                           precision=precision)
        acc = r.accuracy("iteration")
        marks = sorted({k for k in (30, 50, 100, 200, 300, 400, 500, 600, 800, 1000) if k <= len(acc)} | {len(acc)})
        best = max(range(len(acc)), key=lambda i: acc[i])
        print(f"{cfg.trial_name} {task.name} {difficulty} ({r.n_examples} examples, {precision.name}, "
              f"{time.perf_counter() - t0:.0f} s): " + " ".join(f"{k}:{acc[k - 1]:.1f}" for k in marks)
              + f" | best {acc[best]:.1f} at {best + 1}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
