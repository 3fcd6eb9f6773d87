"""Training speed and evaluation memory: a reference-style loop vs deepthink's, in one run.

Not a test. Same model (same initial weights), same data, same number of optimizer steps, same
progressive-loss draws (n, k) both ways:

  reference  the aks2203/deep-thinking loop: fp32, NCHW, torch DataLoader, the full max_iters
             forward with autograd at every step (even at alpha = 1, for the train accuracy), the
             n warm-up iterations recorded by autograd, the head run and stored at every
             iteration, loss.item() and accuracy .item() per batch; evaluation keeps every
             iteration's output (B, K, 2, *S) before scoring.
  deepthink  deepthink.train.train_epoch (+ its per-epoch train/val accuracy on 256+256 examples)
             at precision 'auto' with channels-last; evaluation by deepthink.evaluate.evaluate_split.

Parts (default: all), with the numbers in docs/training.md:
  speed     samples/s both ways and their ratio (prefix sums and mazes, width 128)
  memory    peak RSS of a child process evaluating 100 and 1,000 test iterations, both ways
  accuracy  bf16 vs fp32 on a small prefix-sums problem: same seeds, same epochs (run_trial;
            recur_net width 48, 6 iterations, 16 -> 24 bits, 25 epochs)

    .venv/bin/python benchmarks/bench_train.py                  # everything, ~5-10 min on 2 cores
    .venv/bin/python benchmarks/bench_train.py --part speed --quick   # smoke run, seconds
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from deepthink.config import DataConfig, TestConfig, TrainConfig, TrialConfig
from deepthink.evaluate import accuracy_at, evaluate_split
from deepthink.models import build_model
from deepthink.optim import build_optimizer
from deepthink.precision import resolve_precision
from deepthink.tasks import get_task, storage
from deepthink.train import EPOCH_EVAL_EXAMPLES, run_trial, train_epoch

# (task, difficulty, width, max_iters, alpha, batch, steps, steps per epoch with the published data):
# reference hyperparameters, except that mazes run 10 iterations and 2 steps so that the fp32
# reference finishes in about a minute. deepthink's per-epoch accuracy (256 train + 256 val
# examples) is charged pro rata: steps / (steps per epoch) of one epoch's evaluation.
SPEED = [("prefix_sums", 32, 128, 30, 1.0, 100, 16, 80), ("mazes", 9, 128, 10, 0.01, 50, 2, 800)]
TASKS_RUN = ["prefix_sums", "mazes"]        # --tasks
MEMORY = [("prefix_sums", 128, 128, 30), ("mazes", 9, 128, 2)]      # (task, difficulty, width, examples)


# ---- the reference-style loop ----------------------------------------------------------------

def reference_forward(model, x, iters, state=None, start=0):
    """Reference DTNet.forward: the head at every iteration, all outputs kept: (B, iters, 2, *S)."""
    state = model.project(x) if state is None else state
    outs = torch.zeros((x.shape[0], iters, 2, *x.shape[2:]), device=x.device)
    for i in range(iters):
        state = model.step(state, x, start + i)
        outs[:, i] = model.head(state)
    return outs, state


def reference_train(model, task, x, y, steps, batch, alpha, max_iters, seed):
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=2e-4)
    rng = random.Random(seed)
    train_loss = correct = 0
    for step, (inputs, targets) in enumerate(loader):
        if step == steps:
            break
        b = inputs.shape[0]
        targets = targets.view(b, -1)
        mask = task.loss_mask(inputs)
        opt.zero_grad()
        out_max = reference_forward(model, inputs, max_iters)[0][:, -1].reshape(b, 2, -1)
        loss_max = F.cross_entropy(out_max, targets, reduction="none") if alpha != 1 else torch.zeros_like(targets).float()
        loss_prog = torch.zeros_like(targets).float()
        if alpha != 0:
            n = rng.randrange(0, max_iters)
            k = rng.randrange(1, max_iters - n + 1)
            interim = reference_forward(model, inputs, n)[1].detach() if n > 0 else None   # autograd recorded
            out = reference_forward(model, inputs, k, state=interim, start=n)[0][:, -1].reshape(b, 2, -1)
            loss_prog = F.cross_entropy(out, targets, reduction="none")
        if mask is not None:
            loss_max, loss_prog = loss_max * mask.view(b, -1), loss_prog * mask.view(b, -1)
        loss = (1 - alpha) * loss_max.mean() + alpha * loss_prog.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        train_loss += loss.item()
        correct += (out_max.argmax(1) == targets).all(1).sum().item()
    return train_loss


def reference_evaluate(model, task, x, y, iters, batch):
    corrects = torch.zeros(iters)
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            outs = reference_forward(model, x[s:s + batch], iters)[0]          # (B, K, 2, *S)
            for i in range(iters):
                corrects[i] += task.correct(outs[:, i], x[s:s + batch], y[s:s + batch]).sum().item()
    return corrects


# ---- parts -----------------------------------------------------------------------------------

def load(task, difficulty, count, root):
    return storage.load(task, root, difficulty, "train", count, 0)     # exactly `count`, generated on demand


def speed(quick: bool, root: Path) -> list[str]:
    lines = ["| task | width | max_iters | alpha | batch | steps | reference samples/s | deepthink samples/s "
             "(precision) | speedup | deepthink per-epoch accuracy s (charged) |", "|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name, diff, width, iters, alpha, batch, steps, epoch_steps in [s for s in SPEED if s[0] in TASKS_RUN]:
        if quick:
            width, iters, steps = 16, 3, 2
        task = get_task(name)
        x, y = load(task, diff, batch * (steps + 1), root)
        torch.manual_seed(0)
        net = build_model("dt_recall", width=width, max_iters=iters, in_channels=task.in_channels, dims=task.dims)
        ref_net, dt_net = copy.deepcopy(net), copy.deepcopy(net)
        reference_train(ref_net, task, x[:batch], y[:batch], 1, batch, alpha, iters, 1)   # warm-up step
        t0 = time.perf_counter()
        reference_train(ref_net, task, x[batch:], y[batch:], steps, batch, alpha, iters, 0)
        ref_s = time.perf_counter() - t0

        cfg = TrialConfig(sweep="bench", task=name, model="dt_recall", width=width, max_iters=iters,
                          depth=4 * iters + 4, seed=0, data=DataConfig(train=diff),
                          train=TrainConfig(batch_size=batch, alpha=alpha, warmup=0, schedule="none"),
                          test=TestConfig())
        prec = resolve_precision("auto", "cpu")
        dt_net = prec.prepare_model(dt_net)
        opt = build_optimizer(dt_net, cfg.train)
        xs, ys = prec.prepare_inputs(x), y
        gen, rng = torch.Generator().manual_seed(0), random.Random(0)
        warm = (xs[:batch], ys[:batch], task.loss_mask(xs[:batch]))
        train_epoch(dt_net, opt, cfg, alpha, 0, warm, gen, rng, prec)                    # warm-up step
        data = (xs[batch:], ys[batch:], task.loss_mask(xs[batch:]))
        gen, rng = torch.Generator().manual_seed(0), random.Random(0)
        t0 = time.perf_counter()
        train_epoch(dt_net, opt, cfg, alpha, 0, data, gen, rng, prec)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        sub = slice(0, EPOCH_EVAL_EXAMPLES)   # the per-epoch train/val accuracy of run_trial
        for _ in range(2):
            accuracy_at(dt_net, task, xs[sub], ys[sub], iters, batch_size=500, precision=prec)
        eval_s = time.perf_counter() - t0
        dt_s = train_s + eval_s * steps / epoch_steps
        n = steps * batch
        lines.append(f"| {name} | {width} | {iters} | {alpha:g} | {batch} | {steps} | {n / ref_s:.1f} | "
                     f"{n / dt_s:.1f} ({prec.name}) | {ref_s / dt_s:.2f}x | {eval_s:.1f} ({eval_s * steps / epoch_steps:.2f}) |")
        print(lines[-1], flush=True)
    return lines


def memory_child(args) -> None:
    """Runs in a subprocess: load, warm up, then evaluate; print RSS high-water marks (MB)."""
    task = get_task(args.task)
    x, y = load(task, args.difficulty, args.examples, Path(args.root))
    torch.manual_seed(0)
    net = build_model("dt_recall", width=args.width, max_iters=30, in_channels=task.in_channels, dims=task.dims)
    prec = resolve_precision("auto", "cpu")
    if args.way == "deepthink":
        net = prec.prepare_model(net)
        evaluate_split(net, task, x, y, 2, batch_size=len(x), precision=prec)           # warm-up
    else:
        reference_evaluate(net, task, x, y, 2, len(x))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if args.way == "deepthink":
        evaluate_split(net, task, x, y, args.iters, batch_size=len(x), precision=prec)
    else:
        reference_evaluate(net, task, x, y, args.iters, len(x))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"before_mb": before, "peak_mb": peak, "seconds": time.perf_counter() - t0}))


def memory(quick: bool, root: Path) -> list[str]:
    lines = ["| task | size | width | examples | test iterations | way | peak RSS MB | growth during eval MB | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name, diff, width, examples in [m for m in MEMORY if m[0] in TASKS_RUN]:
        if quick:
            width, examples = 16, 2
        load(get_task(name), diff, examples, root)      # generate here: children only load
        for iters in (10, 20) if quick else (100, 1000):
            for way in ("reference", "deepthink"):
                cmd = [sys.executable, __file__, "--memory-child", "--task", name, "--difficulty", str(diff),
                       "--width", str(width), "--examples", str(examples), "--iters", str(iters),
                       "--way", way, "--root", str(root), "--threads", str(torch.get_num_threads())]
                r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
                lines.append(f"| {name} | {diff} | {width} | {examples} | {iters} | {way} | {r['peak_mb']:.0f} | "
                             f"{r['peak_mb'] - r['before_mb']:.0f} | {r['seconds']:.1f} |")
                print(lines[-1], flush=True)
    return lines


def accuracy(quick: bool, root: Path) -> list[str]:
    lines = ["| precision | seed | train acc % | val acc % | test (24 bits) best % | train seconds |",
             "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for seed in (0, 1, 2):
        for prec in ("fp32", "bf16"):
            cfg = TrialConfig(sweep="bench", task="prefix_sums", model="recur_net", width=48, max_iters=6,
                              depth=28, seed=seed, data=DataConfig(train=16, eval=[24], count=2000),
                              train=TrainConfig(epochs=1 if quick else 25, lr=0.003, batch_size=50, alpha=0.0,
                                                warmup=1, schedule="cosine", precision=prec),
                              test=TestConfig(iterations=10))
            with tempfile.TemporaryDirectory() as ckpt:
                out = run_trial(cfg, root, trial_id="b", checkpoint_dir=Path(ckpt), log=lambda m: None)

            def acc(split, best=False):
                vals = [r["accuracy"] for r in out.rows if r["split"] == split
                        and (best or r["test_iters"] == cfg.max_iters)]
                return max(vals)
            lines.append(f"| {prec} | {seed} | {acc('train'):.1f} | {acc('val'):.1f} | {acc('test', True):.1f} | "
                         f"{out.train_seconds:.0f} |")
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["speed", "memory", "accuracy", "all"], default="all")
    p.add_argument("--quick", action="store_true", help="tiny sizes: check that the script runs")
    p.add_argument("--tasks", nargs="+", choices=TASKS_RUN, default=TASKS_RUN, help="speed/memory tasks")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's choice; 1 gives steadier numbers on a busy shared CPU)")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    for flag in ("--task", "--way", "--root"):
        p.add_argument(flag, help=argparse.SUPPRESS)
    for flag in ("--difficulty", "--width", "--examples", "--iters"):
        p.add_argument(flag, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    TASKS_RUN[:] = args.tasks
    if args.memory_child:
        return memory_child(args)
    caps = torch.cpu.get_capabilities()
    print(f"CPU {caps.get('cpu_name')} ({torch.backends.cpu.get_cpu_capability()}, avx512_bf16 "
          f"{caps.get('avx512_bf16')}, amx_bf16 {caps.get('amx_bf16')}), {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        root = Path(tmp)
        for part, fn in (("speed", speed), ("memory", memory), ("accuracy", accuracy)):
            if args.part in (part, "all"):
                t0 = time.perf_counter()
                fn(args.quick, root)          # prints its markdown table row by row
                print(f"({part}: {time.perf_counter() - t0:.0f}s)\n", flush=True)


if __name__ == "__main__":
    main()
