"""Where one training step spends its time: torch.profiler over deepthink's train_epoch.

Not a test. Prints the CPU, the ops by self CPU time, and the share of the step spent outside
convolutions (forward and backward), everything else grouped by kind (elementwise, concatenation,
optimizer, clipping, loss, layout/dtype copies, autograd and Python overhead = step time minus the
time inside profiled ops).

    taskset -c 1 .venv/bin/python benchmarks/profile_step.py --width 128 --steps 8
    taskset -c 1 .venv/bin/python benchmarks/profile_step.py --task mazes --width 128 --max-iters 10 --alpha 0.01 --batch 50
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_banner import cpu_banner  # noqa: E402

from deepthink.config import DataConfig, TestConfig, TrainConfig, TrialConfig  # noqa: E402
from deepthink.models import build_model  # noqa: E402
from deepthink.optim import build_optimizer  # noqa: E402
from deepthink.precision import resolve_precision  # noqa: E402
from deepthink.tasks import get_task  # noqa: E402
from deepthink.train import train_epoch  # noqa: E402

CONV = ("convolution", "conv2d", "mkldnn_conv")      # forward and backward kernels and their wrappers
KINDS = [  # (kind, substrings of the op name), first match wins; self time only, so no double count
    ("convolution", CONV),
    ("optimizer (Adam)", ("adam", "_foreach", "addcdiv", "addcmul", "lerp", "sqrt")),
    ("concatenation", ("cat", "narrow", "slice")),
    ("elementwise (relu, add, threshold_backward)", ("relu", "clamp", "threshold", "add", "mul", "div", "sub")),
    ("loss (cross entropy, log_softmax, nll)", ("nll", "softmax", "cross_entropy")),
    ("layout/dtype copies", ("copy_", "_to_copy", "clone", "contiguous")),
    ("clip (norm)", ("norm", "linalg")),
    ("allocation, views, other", ("",)),
]


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, keys in KINDS:
        if any(k in low for k in keys):
            return kind
    return "allocation, views, other"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="prefix_sums")
    p.add_argument("--difficulty", type=int, default=32)
    p.add_argument("--model", default="dt_recall")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--max-iters", type=int, default=30)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=8, help="profiled optimizer steps (after 2 warm-up steps)")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--top", type=int, default=18)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_banner())
    task = get_task(args.task)
    g = torch.Generator().manual_seed(0)
    n = args.batch * args.steps
    if task.dims == 1:
        x = torch.randint(0, 2, (n, 1, args.difficulty), generator=g).float()
        y = (x.cumsum(-1) % 2).long().squeeze(1)
        x = x - 0.5
    else:
        from deepthink.tasks import storage
        import tempfile
        root = Path(tempfile.mkdtemp(prefix="profile-data-"))
        x, y = storage.load(task, root, args.difficulty, "train", n, 0)
    cfg = TrialConfig(sweep="profile", task=args.task, model=args.model, width=args.width,
                      max_iters=args.max_iters, depth=4 * args.max_iters + 4, seed=0,
                      data=DataConfig(train=args.difficulty),
                      train=TrainConfig(batch_size=args.batch, alpha=args.alpha, warmup=0, schedule="none"),
                      test=TestConfig())
    prec = resolve_precision(args.precision, "cpu")
    torch.manual_seed(0)
    net = prec.prepare_model(build_model(args.model, width=args.width, max_iters=args.max_iters,
                                         in_channels=task.in_channels, dims=task.dims))
    opt = build_optimizer(net, cfg.train)
    xs = prec.prepare_inputs(x)
    data = (xs, y, task.loss_mask(xs))
    warm = (xs[:2 * args.batch], y[:2 * args.batch], task.loss_mask(xs[:2 * args.batch]))
    train_epoch(net, opt, cfg, args.alpha, 0, warm, torch.Generator().manual_seed(1), random.Random(1), prec)
    gen, rng = torch.Generator().manual_seed(0), random.Random(0)
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_epoch(net, opt, cfg, args.alpha, 0, data, gen, rng, prec)
    wall, cpu = time.perf_counter() - t_wall, time.process_time() - t_cpu
    rng = random.Random(0)
    draws = [(a := rng.randrange(0, args.max_iters), rng.randrange(1, args.max_iters - a + 1)) for _ in range(args.steps)]
    print(f"{args.task} {args.model} width {args.width} max_iters {args.max_iters} alpha {args.alpha:g} "
          f"batch {args.batch} {prec.name}, {args.steps} steps (n, k draws {draws}), {args.threads} thread(s), "
          f"profiled: wall {wall:.2f}s, process CPU {cpu:.2f}s")
    events = [e for e in prof.key_averages()]
    op_total = sum(e.self_cpu_time_total for e in events) / 1e6          # seconds inside ops
    by_kind = defaultdict(float)
    for e in events:
        by_kind[kind_of(e.key)] += e.self_cpu_time_total / 1e6
    # the profiler's clock is wall time on this thread; charge the rest of the profiled wall time
    # to Python/autograd overhead (time between ops)
    overhead = max(wall - op_total, 0.0)
    total = op_total + overhead
    print(f"\n| kind | seconds | share of the step |\n|---|---|---|")
    for kind, _ in KINDS:
        if by_kind[kind]:
            print(f"| {kind} | {by_kind[kind]:.3f} | {100 * by_kind[kind] / total:.1f}% |")
    print(f"| Python, autograd engine, profiler (wall time outside ops) | {overhead:.3f} | {100 * overhead / total:.1f}% |")
    print(f"\noutside convolutions: {100 * (total - by_kind['convolution']) / total:.1f}% of the profiled step "
          f"({100 * (op_total - by_kind['convolution']) / op_total:.1f}% of the time inside ops)")
    print(f"\ntop {args.top} ops by self CPU time:")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top,
                                    max_name_column_width=40))


if __name__ == "__main__":
    main()
