"""torch.compile (inductor, CPU) of the recurrent block against eager, in one process.

Not a test. One model (dt_recall, prefix sums 32 bits, alpha 1, max_iters 30, batch 100, fp32)
copied twice; one copy's RecurBlock goes through `module.compile(dynamic=False)` (forward and
backward graphs, and a no-grad graph for the progressive loss's warm-up iterations). Prints:
- compile cost: the first training step of the compiled copy (wall; this process's CPU; the C++
  compiler's CPU in child processes), with an empty inductor cache (a fresh TORCHINDUCTOR_CACHE_DIR
  unless one is set: then whatever it holds, e.g. a warm cache);
- steady state: deepthink's train_epoch over the same batches, compiled and eager alternating
  (A B A B ...), process CPU time per repetition, the median ratio; and whether the losses agree.

    taskset -c 1 .venv/bin/python benchmarks/bench_compile.py --widths 64 128 --reps 4

Measured results and the decision (compile stays off: it does not win here) are in the README's
speed section and docs/training.md.
"""
from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:       # cold compile unless asked otherwise
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-cold-")
os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_banner import cpu_banner  # noqa: E402

from deepthink.config import DataConfig, TestConfig, TrainConfig, TrialConfig  # noqa: E402
from deepthink.models import build_model  # noqa: E402
from deepthink.optim import build_optimizer  # noqa: E402
from deepthink.precision import resolve_precision  # noqa: E402
from deepthink.train import train_epoch  # noqa: E402

BATCH, BITS, ITERS = 100, 32, 30


def children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def run(width: int, reps: int, steps: int) -> str:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 2, (BATCH * steps, 1, BITS), generator=g).float()
    y = (x.cumsum(-1) % 2).long().squeeze(1)
    x = x - 0.5
    cfg = TrialConfig(sweep="bench", task="prefix_sums", model="dt_recall", width=width, max_iters=ITERS,
                      depth=4 * ITERS + 4, seed=0, data=DataConfig(train=BITS),
                      train=TrainConfig(batch_size=BATCH, alpha=1.0, warmup=0, schedule="none"), test=TestConfig())
    prec = resolve_precision("fp32", "cpu")
    torch.manual_seed(0)
    base = prec.prepare_model(build_model("dt_recall", width=width, max_iters=ITERS, in_channels=1, dims=1))
    nets = {"eager": copy.deepcopy(base), "compiled": copy.deepcopy(base)}
    nets["compiled"].blocks[0].compile(dynamic=False)
    opts = {k: build_optimizer(n, cfg.train) for k, n in nets.items()}
    xs = prec.prepare_inputs(x)
    first = {}
    for k in ("compiled", "eager"):       # first step: the compiled copy compiles here
        w, c, ch = time.perf_counter(), time.process_time(), children_cpu()
        train_epoch(nets[k], opts[k], cfg, 1.0, 0, (xs[:BATCH], y[:BATCH], None),
                    torch.Generator().manual_seed(0), random.Random(0), prec)
        first[k] = (time.perf_counter() - w, time.process_time() - c, children_cpu() - ch)
    times = {k: [] for k in nets}
    losses = {k: [] for k in nets}
    for rep in range(reps + 1):                           # rep 0: warm-up, not counted
        for k in nets:
            c = time.process_time()
            loss, _ = train_epoch(nets[k], opts[k], cfg, 1.0, 0, (xs, y, None),
                                  torch.Generator().manual_seed(rep), random.Random(rep), prec)
            if rep:
                times[k].append(time.process_time() - c)
            losses[k].append(loss)
    ratios = [e / c for e, c in zip(times["eager"], times["compiled"])]
    wc, cc, chc = first["compiled"]
    step_eager = statistics.median(times["eager"]) / steps
    same = "bit-identical" if losses["eager"] == losses["compiled"] else \
        f"max |diff| {max(abs(a - b) for a, b in zip(losses['eager'], losses['compiled'])):.2e}"
    return (f"| {width} | {wc:.1f} | {cc:.1f} + {chc:.1f} | {step_eager:.3f} | "
            f"{statistics.median(times['compiled']) / steps:.3f} | {statistics.median(ratios):.3f} "
            f"({', '.join(f'{r:.2f}' for r in ratios)}) | {((cc + chc) / step_eager):.0f} | {same} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="optimizer steps per repetition")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_banner())
    print(f"inductor cache: {os.environ['TORCHINDUCTOR_CACHE_DIR']}; dt_recall prefix sums {BITS} bits, "
          f"alpha 1, max_iters {ITERS}, batch {BATCH}, fp32, {args.reps} x {args.steps} steps each way\n")
    print("| width | compile: first step wall s | compile CPU s (process + C++ compiler) | eager CPU s/step | "
          "compiled CPU s/step | eager/compiled (per rep) | compile CPU in eager steps | losses |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for w in args.widths:
        print(run(w, args.reps, args.steps), flush=True)


if __name__ == "__main__":
    main()
