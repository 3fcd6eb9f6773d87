"""Training speed and evaluation memory: a reference-style loop vs deepthink's, in one run.

Not a test. Same initial weights, same number of optimizer steps, same progressive-loss draws
(n, k) both ways; every table starts with the CPU, its ISA flags and the ONEDNN_MAX_CPU_ISA setting
(benchmarks/cpu_banner.py).

  reference  the aks2203/deep-thinking training loop as it is written (deepthinking/utils/
             training.py `train_progressive`, models/dt_net_{1d,2d}.py, blocks.py), rebuilt here
             from reading it (RefStyleNet, reference_train_steps; nothing is copied):
             - data: the easy_to_hard_data Dataset class -> random_split 80/20 (generator seed 42)
               -> DataLoader(num_workers=0, shuffle=True, drop_last=True), one example per
               __getitem__ and default collation, tqdm around the loader;
             - model: nn.Conv1d (NCW) in 1D / nn.Conv2d (NCHW) in 2D, fp32, the reference's
               BasicBlock (empty nn.Sequential "norms" and shortcut, `out += x`, out-of-place ReLU);
               every forward call runs the projection, allocates the (B, iters, 2, *S) output
               tensor, and runs and stores the head at every iteration;
             - step: the full max_iters forward with autograd even at alpha = 1 (its output feeds the
               training accuracy), then n ~ randrange(0, max_iters), k ~ randrange(1, max_iters - n + 1)
               from Python's global `random`, the n warm-up iterations recorded by autograd and
               detached, k more; per-position CE (reduction none), mazes masked by indexing
               `loss[mask > 0]`; (1 - alpha) * mean + alpha * mean, backward, clip_grad_norm_ when
               the recipe clips (prefix sums 1.0; mazes none), Adam (weight decay 2e-4; mazes with
               the recurrent parameters in a second group at lr / max_iters, `lr_throttle`);
             - `loss.item()` and the accuracy's `.item()` every batch.
             How it was checked: `--check-reference DIR` imports the real code from a checkout of
             aks2203/deep-thinking (DIR; icecream/einops stubbed when missing: only its chess path
             and error messages use them) and runs its own `train_progressive` over the same
             DataLoader pattern, weights and draws against reference_train_steps, alternating, in
             one process: the per-epoch loss and accuracy must agree and the times are printed
             (README speed section has the result). Not charged to the reference: its per-epoch
             validation pass over the whole val split (conservative: the reference looks faster).
  deepthink  deepthink.train.train_epoch (+ its per-epoch train/val accuracy on 256+256 examples,
             charged pro rata: steps / steps-per-epoch of the published data set) at `--precision`
             (default auto: bf16 where the CPU has native bf16, else fp32) with channels-last;
             evaluation by deepthink.evaluate.evaluate_split.

Timing: the machine is shared, so the two loops alternate in chunks of `steps` optimizer steps
(reference, deepthink, reference, deepthink, ... after one warm-up step each), and every chunk is
timed by process CPU time (time.process_time) and by wall time; the table gives samples/s from
the CPU-time medians and the median of the per-chunk ratios (CPU and wall).

Parts (default: all), with the numbers in docs/training.md and the README:
  speed     samples/s both ways and their ratio (prefix sums at widths 128 and 400, mazes at 128)
  memory    peak RSS of a child process evaluating 100 and 1,000 test iterations, both ways
  accuracy  bf16 vs fp32 on a small prefix-sums problem: same seeds, same epochs (run_trial;
            recur_net width 48, 6 iterations, 16 -> 24 bits, 25 epochs)

    taskset -c 1 .venv/bin/python benchmarks/bench_train.py --part speed --threads 1 --reps 3
    ONEDNN_MAX_CPU_ISA=AVX2 taskset -c 1 .venv/bin/python benchmarks/bench_train.py --part speed --threads 1
    taskset -c 1 .venv/bin/python benchmarks/bench_train.py --part speed --quick          # smoke run
    git clone https://github.com/aks2203/deep-thinking /tmp/deep-thinking
    taskset -c 1 .venv/bin/python benchmarks/bench_train.py --check-reference /tmp/deep-thinking
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset, random_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_banner import cpu_banner  # noqa: E402

from deepthink.config import DataConfig, TestConfig, TrainConfig, TrialConfig  # noqa: E402
from deepthink.evaluate import accuracy_at, evaluate_split  # noqa: E402
from deepthink.models import build_model  # noqa: E402
from deepthink.optim import build_optimizer  # noqa: E402
from deepthink.precision import resolve_precision  # noqa: E402
from deepthink.tasks import get_task, storage  # noqa: E402
from deepthink.train import EPOCH_EVAL_EXAMPLES, run_trial, train_epoch  # noqa: E402

# (task, difficulty, width, max_iters, alpha, batch, steps per chunk, steps per epoch with the
# published data, clip): the reference recipes (prefix sums: 10,000 strings -> 8,000 train / 100;
# mazes: 50,000 -> 40,000 / 50, no clipping), except that mazes run 10 iterations so that the fp32
# reference finishes in minutes. deepthink's per-epoch accuracy (256 train + 256 val examples) is
# charged pro rata: steps / (steps per epoch) of one epoch's evaluation.
SPEED = [("prefix_sums", 32, 128, 30, 1.0, 100, 4, 80, 1.0),
         ("prefix_sums", 32, 400, 30, 1.0, 100, 2, 80, 1.0),
         ("mazes", 9, 128, 10, 0.01, 50, 1, 800, None)]
TASKS_RUN = ["prefix_sums", "mazes"]        # --tasks
WIDTHS_RUN: list[int] = []                  # --widths (empty: all)
MEMORY = [("prefix_sums", 128, 128, 30), ("mazes", 9, 128, 2)]      # (task, difficulty, width, examples)


# ---- the reference-style loop ----------------------------------------------------------------

class RefBasicBlock(nn.Module):
    """The reference's residual block: relu(gn1(conv1 x)), gn2(conv2 .), `out += shortcut(x)`,
    relu; gn1, gn2 and the shortcut are empty nn.Sequential modules (no group norm, same width)."""

    def __init__(self, conv_cls, width: int):
        super().__init__()
        self.conv1 = conv_cls(width, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.gn1 = nn.Sequential()
        self.conv2 = conv_cls(width, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.gn2 = nn.Sequential()
        self.shortcut = nn.Sequential()

    def forward(self, x):
        out = F.relu(self.gn1(self.conv1(x)))
        out = self.gn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class RefStyleNet(nn.Module):
    """The reference DT-Recall net as the reference builds and runs it (see the module docstring)."""

    def __init__(self, dims: int, width: int, in_channels: int):
        super().__init__()
        c = nn.Conv1d if dims == 1 else nn.Conv2d

        def conv(cin, cout):
            return c(cin, cout, kernel_size=3, stride=1, padding=1, bias=False)
        a, b = (width, width // 2) if dims == 1 else (32, 8)
        recall = [conv(width + in_channels, width)] + ([nn.ReLU()] if dims == 1 else [])
        self.projection = nn.Sequential(conv(in_channels, width), nn.ReLU())
        self.recur_block = nn.Sequential(*recall, nn.Sequential(RefBasicBlock(c, width), RefBasicBlock(c, width)))
        self.head = nn.Sequential(conv(width, a), nn.ReLU(), conv(a, b), nn.ReLU(), conv(b, 2))

    @classmethod
    def like(cls, net, dims: int, width: int, in_channels: int) -> "RefStyleNet":
        """Same weights as deepthink's dt_recall `net` (same parameter order; 1D (o, i, 1, 3) -> (o, i, 3))."""
        ref = cls(dims, width, in_channels)
        load_by_position(ref, net)
        return ref

    def forward(self, x, iters_to_do, interim_thought=None, **kwargs):
        initial_thought = self.projection(x)              # run even when interim_thought is given
        if interim_thought is None:
            interim_thought = initial_thought
        all_outputs = torch.zeros((x.size(0), iters_to_do, 2, *x.shape[2:])).to(x.device)
        for i in range(iters_to_do):
            interim_thought = self.recur_block(torch.cat([interim_thought, x], 1))
            out = self.head(interim_thought)
            all_outputs[:, i] = out
        if self.training:
            return out, interim_thought
        return all_outputs


def load_by_position(dst: nn.Module, src: nn.Module) -> None:
    """Copy src's parameters into dst's, in registration order, reshaping (o, i, 1, 3) <-> (o, i, 3)."""
    dp, sp = list(dst.parameters()), list(src.parameters())
    assert len(dp) == len(sp) and all(a.numel() == b.numel() for a, b in zip(dp, sp)), "models differ"
    with torch.no_grad():
        for a, b in zip(dp, sp):
            a.copy_(b.reshape(a.shape))


def reference_dataset(task_name: str, root: Path, difficulty: int):
    """The easy_to_hard_data Dataset the reference loads (files generated by deepthink beforehand)."""
    import easy_to_hard_data as e2h
    with contextlib.redirect_stdout(io.StringIO()):      # it prints "Loading data with 32 bits."
        if task_name == "prefix_sums":
            return e2h.PrefixSumDataset(str(root), num_bits=difficulty, download=False)
        if task_name == "mazes":
            return e2h.MazeDataset(str(root), train=True, size=difficulty, download=False)
    raise ValueError(task_name)


def reference_loader(task_name: str, root: Path, difficulty: int, batch: int, examples: int) -> DataLoader:
    """The reference's train loader (prepare_prefix_loader / prepare_maze_loader), limited to the
    first `examples` of its 80% training split so that one pass is `examples // batch` steps."""
    ds = reference_dataset(task_name, root, difficulty)
    n_train = int(0.8 * len(ds))
    trainset, _ = random_split(ds, [n_train, len(ds) - n_train], generator=torch.Generator().manual_seed(42))
    return DataLoader(Subset(trainset, range(examples)), num_workers=0, batch_size=batch, shuffle=True,
                      drop_last=True)


def reference_optimizer(net: nn.Module, task_name: str, max_iters: int) -> torch.optim.Optimizer:
    """get_optimizer: Adam, weight decay 2e-4; mazes (`lr_throttle`) put the parameters whose
    name contains "recur" in a second group at lr / max_iters."""
    if task_name == "mazes":
        groups = [{"params": [p for n, p in net.named_parameters() if "recur" not in n]},
                  {"params": [p for n, p in net.named_parameters() if "recur" in n], "lr": 1e-3 / max_iters}]
    else:
        groups = [{"params": [p for n, p in net.named_parameters()]}]
    return torch.optim.Adam(groups, lr=1e-3, weight_decay=2e-4)


def reference_train_steps(net, loader: DataLoader, opt, alpha: float, max_iters: int, problem: str,
                          clip: float | None, steps: int | None = None) -> tuple[float, float]:
    """One pass of `loader` (or its first `steps` batches) the way train_progressive runs it.
    Draws come from Python's global `random` and the shuffle from torch's global generator, as in
    the reference: seed both before calling. Returns (mean loss, accuracy %)."""
    from tqdm import tqdm
    net.train()
    criterion = nn.CrossEntropyLoss(reduction="none")
    train_loss = correct = total = 0
    batches = 0
    with open(os.devnull, "w") as sink:
        for inputs, targets in tqdm(loader, leave=False, file=sink):
            if steps is not None and batches == steps:
                break
            batches += 1
            inputs, targets = inputs.to("cpu"), targets.to("cpu").long()
            targets = targets.view(targets.size(0), -1)
            mask = None
            if problem == "mazes":
                mask = inputs.view(inputs.size(0), inputs.size(1), -1).max(dim=1)[0] > 0
            opt.zero_grad()
            outputs_max_iters, _ = net(inputs, iters_to_do=max_iters)       # with autograd, always
            if alpha != 1:
                outputs_max_iters = outputs_max_iters.view(outputs_max_iters.size(0), outputs_max_iters.size(1), -1)
                loss_max_iters = criterion(outputs_max_iters, targets)
            else:
                loss_max_iters = torch.zeros_like(targets).float()
            if alpha != 0:
                n = random.randrange(0, max_iters)
                k = random.randrange(1, max_iters - n + 1)
                interim = None
                if n > 0:
                    _, interim = net(inputs, iters_to_do=n)                 # recorded by autograd
                    interim = interim.detach()
                outputs, _ = net(inputs, iters_elapsed=n, iters_to_do=k, interim_thought=interim)
                outputs = outputs.view(outputs.size(0), outputs.size(1), -1)
                loss_progressive = criterion(outputs, targets)
            else:
                loss_progressive = torch.zeros_like(targets).float()
            if mask is not None:
                loss_max_iters = (loss_max_iters * mask)[mask > 0]
                loss_progressive = (loss_progressive * mask)[mask > 0]
            loss = (1 - alpha) * loss_max_iters.mean() + alpha * loss_progressive.mean()
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            train_loss += loss.item()
            predicted = reference_predicted(inputs, outputs_max_iters, problem)
            correct += torch.amin(predicted == targets, dim=[-1]).sum().item()
            total += targets.size(0)
    return train_loss / max(batches, 1), 100.0 * correct / max(total, 1)


def reference_predicted(inputs, outputs, problem):
    """get_predicted for prefix sums and mazes: argmax over classes, mazes masked by the input."""
    predicted = outputs.clone().argmax(1)
    predicted = predicted.view(predicted.size(0), -1)
    if problem == "mazes":
        predicted = predicted * (inputs.max(1)[0].view(inputs.size(0), -1))
    return predicted


def reference_evaluate(net, task, x, y, iters, batch):
    """test_default: every iteration's output kept (B, K, 2, *S), then scored one by one with .item()."""
    net.eval()
    corrects = torch.zeros(iters)
    with torch.no_grad():
        for s in range(0, x.shape[0], batch):
            inputs, targets = x[s:s + batch], y[s:s + batch]
            all_outputs = net(inputs, iters_to_do=iters)                   # (B, K, 2, *S)
            targets = targets.reshape(targets.size(0), -1)
            for i in range(all_outputs.size(1)):
                predicted = reference_predicted(inputs, all_outputs[:, i], task.name)
                corrects[i] += torch.amin(predicted == targets, dim=[1]).sum().item()
    return corrects


# ---- parts -----------------------------------------------------------------------------------

def load(task, difficulty, count, root):
    return storage.load(task, root, difficulty, "train", count, 0)     # exactly `count`, generated on demand


def published_count(task_name: str, batch: int, steps: int) -> int:
    """Examples to generate so that the reference's 80% split holds `steps` full batches."""
    return max(int((batch * steps) / 0.8) + batch, 2 * EPOCH_EVAL_EXAMPLES)


def speed(quick: bool, root: Path, reps: int, precision: str) -> list[str]:
    print(cpu_banner(), flush=True)
    lines = ["| task | width | max_iters | alpha | batch | steps x reps | reference samples/s | deepthink samples/s "
             "(precision) | speedup, CPU time: median (per rep) | speedup, wall | deepthink per-epoch accuracy "
             "CPU s (charged per rep) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name, diff, width, iters, alpha, batch, steps, epoch_steps, clip in SPEED:
        if name not in TASKS_RUN or (WIDTHS_RUN and width not in WIDTHS_RUN):
            continue
        if quick and width != 128:
            continue
        if quick:
            width, iters, steps = 16, 3, 2
        task = get_task(name)
        x, y = load(task, diff, published_count(name, batch, steps), root)   # generates the files
        torch.manual_seed(0)
        net = build_model("dt_recall", width=width, max_iters=iters, in_channels=task.in_channels, dims=task.dims)
        ref_net = RefStyleNet.like(net, task.dims, width, task.in_channels)
        ref_opt = reference_optimizer(ref_net, name, iters)
        loader = reference_loader(name, root, diff, batch, batch * steps)

        cfg = TrialConfig(sweep="bench", task=name, model="dt_recall", width=width, max_iters=iters,
                          depth=4 * iters + 4, seed=0, data=DataConfig(train=diff),
                          train=TrainConfig(batch_size=batch, alpha=alpha, warmup=0, schedule="none", clip=clip,
                                            precision=precision),
                          test=TestConfig())
        prec = resolve_precision(precision, "cpu")
        dt_net = prec.prepare_model(copy.deepcopy(net))
        opt = build_optimizer(dt_net, cfg.train)
        xs = prec.prepare_inputs(x[:batch * steps])
        data = (xs, y[:batch * steps], task.loss_mask(xs))

        def run_reference(seed: int, n_steps: int | None = None) -> None:
            random.seed(seed)                  # the reference's (n, k) draws: global `random`
            torch.manual_seed(seed)            # its shuffle: torch's global generator
            reference_train_steps(ref_net, loader, ref_opt, alpha, iters, name, clip, n_steps)

        def run_deepthink(seed: int, n: int | None = None) -> None:
            d = data if n is None else tuple(t if t is None else t[:batch * n] for t in data)
            train_epoch(dt_net, opt, cfg, alpha, 0, d, torch.Generator().manual_seed(seed), random.Random(seed), prec)

        run_reference(10_000, 1)               # warm-up step each (first calls pick kernels)
        run_deepthink(10_000, 1)
        cpu = {"ref": [], "dt": []}
        wall = {"ref": [], "dt": []}
        for rep in range(reps):                # A B A B ..., the same draws both ways in each rep
            for way, fn in (("ref", run_reference), ("dt", run_deepthink)):
                w, c = time.perf_counter(), time.process_time()
                fn(rep)
                cpu[way].append(time.process_time() - c)
                wall[way].append(time.perf_counter() - w)
        w, c = time.perf_counter(), time.process_time()
        x_eval = prec.prepare_inputs(x[:EPOCH_EVAL_EXAMPLES])     # the per-epoch train/val accuracy
        for _ in range(2):                                            # of run_trial (256 + 256 examples)
            accuracy_at(dt_net, task, x_eval, y[:EPOCH_EVAL_EXAMPLES], iters, batch_size=500, precision=prec)
        eval_cpu, eval_wall = time.process_time() - c, time.perf_counter() - w
        charge = steps / epoch_steps
        dt_cpu = [t + eval_cpu * charge for t in cpu["dt"]]
        dt_wall = [t + eval_wall * charge for t in wall["dt"]]
        ratios = [r / d for r, d in zip(cpu["ref"], dt_cpu)]
        wall_ratio = statistics.median(r / d for r, d in zip(wall["ref"], dt_wall))
        n = steps * batch
        lines.append(f"| {name} | {width} | {iters} | {alpha:g} | {batch} | {steps} x {reps} | "
                     f"{n / statistics.median(cpu['ref']):.1f} | {n / statistics.median(dt_cpu):.1f} ({prec.name}) | "
                     f"{statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)}) | {wall_ratio:.2f}x | "
                     f"{eval_cpu:.2f} ({eval_cpu * charge:.3f}) |")
        print(lines[-1], flush=True)
    return lines


# ---- checking the reference-style loop against the real reference code ------------------------

def import_reference(checkout: Path) -> types.SimpleNamespace:
    """Import the real training loop and models from a checkout of aks2203/deep-thinking without
    running its package __init__ (which needs hydra-era packages): namespace packages pointing at
    its folders; icecream and einops stubbed if absent (used by its error messages and chess only)."""
    pkg = checkout / "deepthinking"
    if not (pkg / "utils" / "training.py").exists():
        raise SystemExit(f"{checkout}: not a checkout of aks2203/deep-thinking (no deepthinking/utils/training.py)")
    for name in ("icecream", "einops"):
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.ic = types.SimpleNamespace(format=lambda *a: "")
            stub.repeat = None
            sys.modules[name] = stub
    for name, path in (("deepthinking", pkg), ("deepthinking.utils", pkg / "utils"),
                       ("deepthinking.models", pkg / "models")):
        mod = types.ModuleType(name)
        mod.__path__ = [str(path)]
        sys.modules[name] = mod
    return types.SimpleNamespace(
        training=importlib.import_module("deepthinking.utils.training"),
        warmup=importlib.import_module("deepthinking.utils.warmup"),
        dt_1d=importlib.import_module("deepthinking.models.dt_net_1d"),
        dt_2d=importlib.import_module("deepthinking.models.dt_net_2d"))


def check_reference(checkout: Path, root: Path, reps: int, quick: bool) -> list[str]:
    """The real train_progressive against reference_train_steps: same weights, loader pattern,
    draws and shuffles; alternating, process CPU time; loss and accuracy must agree."""
    real = import_reference(checkout)
    print(cpu_banner(), flush=True)
    lines = [f"real reference: {checkout} (git HEAD {git_head(checkout)})",
             "| task | width | max_iters | alpha | batch | steps x reps | real loss, acc (rep 0) | reference-style "
             "loss, acc (rep 0) | agree | real CPU s | reference-style CPU s | reference-style / real, CPU: median "
             "(per rep) |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    cases = [("prefix_sums", 32, 128, 30, 1.0, 100, 4, 1.0), ("mazes", 9, 32, 10, 0.01, 50, 2, None)]
    for name, diff, width, iters, alpha, batch, steps, clip in cases:
        if quick:
            width, iters, steps = 16, 3, 2
        task = get_task(name)
        load(task, diff, published_count(name, batch, steps), root)
        torch.manual_seed(0)
        net = build_model("dt_recall", width=width, max_iters=iters, in_channels=task.in_channels, dims=task.dims)
        if task.dims == 1:
            real_net = real.dt_1d.dt_net_recall_1d(width=width)
        else:
            real_net = real.dt_2d.dt_net_recall_2d(width=width, in_channels=task.in_channels)
        load_by_position(real_net, net)
        ref_net = RefStyleNet.like(net, task.dims, width, task.in_channels)
        loader = reference_loader(name, root, diff, batch, batch * steps)
        real_opt, ref_opt = reference_optimizer(real_net, name, iters), reference_optimizer(ref_net, name, iters)
        lr_sched = torch.optim.lr_scheduler.MultiStepLR(real_opt, milestones=[10_000], gamma=0.1)
        setup = real.training.TrainingSetup(optimizer=real_opt, scheduler=lr_sched,
                                            warmup=real.warmup.ExponentialWarmup(real_opt, warmup_period=0),
                                            clip=clip, alpha=alpha, max_iters=iters, problem=name)
        times = {"real": [], "ref": []}
        results = {"real": [], "ref": []}
        for rep in range(reps + 1):            # rep 0: also the warm-up, timed but not in the medians
            for way in ("real", "ref"):
                random.seed(rep)
                torch.manual_seed(rep)
                c = time.process_time()
                with contextlib.redirect_stderr(io.StringIO()):       # its tqdm bar
                    if way == "real":
                        out = real.training.train_progressive(real_net, {"train": loader}, setup, "cpu")
                    else:
                        out = reference_train_steps(ref_net, loader, ref_opt, alpha, iters, name, clip)
                times[way].append(time.process_time() - c)
                results[way].append(out)
        agree = all(abs(a[0] - b[0]) <= 1e-5 * max(1.0, abs(a[0])) and a[1] == b[1]
                    for a, b in zip(results["real"], results["ref"]))
        exact = results["real"] == results["ref"]
        ratios = [b / a for a, b in zip(times["real"][1:], times["ref"][1:])]
        (rl, ra), (fl, fa) = results["real"][0], results["ref"][0]
        lines.append(f"| {name} | {width} | {iters} | {alpha:g} | {batch} | {steps} x {reps} | {rl:.6f}, {ra:.1f} | "
                     f"{fl:.6f}, {fa:.1f} | {'bit-identical' if exact else ('yes' if agree else 'NO')} "
                     f"(all {reps + 1} reps) | {statistics.median(times['real'][1:]):.2f} | "
                     f"{statistics.median(times['ref'][1:]):.2f} | {statistics.median(ratios):.3f} "
                     f"({', '.join(f'{r:.2f}' for r in ratios)}) |")
        print(lines[-1], flush=True)
    return lines


def git_head(checkout: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


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
        net = RefStyleNet.like(net, task.dims, args.width, task.in_channels)
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
    print(cpu_banner(), flush=True)
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
    print(cpu_banner(), flush=True)
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
    p.add_argument("--widths", nargs="+", type=int, default=[], help="speed: only these widths (default all)")
    p.add_argument("--reps", type=int, default=3, help="speed / --check-reference: alternating repetitions")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="speed: deepthink's precision")
    p.add_argument("--check-reference", type=Path, metavar="DIR",
                   help="run the real reference loop from this aks2203/deep-thinking checkout against the "
                        "reference-style loop (then nothing else)")
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
    WIDTHS_RUN[:] = args.widths
    if args.memory_child:
        return memory_child(args)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        root = Path(tmp)
        if args.check_reference:
            check_reference(args.check_reference.resolve(), root, args.reps, args.quick)
            return
        parts = (("speed", lambda q, r: speed(q, r, args.reps, args.precision)), ("memory", memory),
                 ("accuracy", accuracy))
        for part, fn in parts:
            if args.part in (part, "all"):
                t0 = time.perf_counter()
                fn(args.quick, root)          # prints its markdown table row by row
                print(f"({part}: {time.perf_counter() - t0:.0f}s)\n", flush=True)


if __name__ == "__main__":
    main()
