"""Sweep overhead and fractional-GPU packing (numbers for the README; not a test).

Overhead (default): N identical trials (same config, seeds 0..N-1) run
  (b) through `deepthink sweep` in a subprocess, timed from launch to exit: Python start, ray.init,
      Tune, checkpoints, Parquet writes and shutdown all counted; resources.cpu = 1, so as many
      trials run at once as there are cores, each on one thread;
and, as --baselines asks (default: threads),
  threads    (a)  back to back in this one process, torch using every core: the issue's baseline,
                  efficiency = (a) / (b), goal >= 0.85 for ~1-minute trials;
  single     (a1) back to back on one thread: (a1 / cores) / (b) is the efficiency against a
                  perfect parallel machine;
  processes  (c)  the same trials as plain processes, `cores` at once, one thread each, no Ray:
                  (c) / (b) isolates what Ray costs from what the machine's cores can give
                  (on shared or memory-bound machines two processes do not run twice as fast).

    .venv/bin/python benchmarks/bench_sweep.py                                  # 4 trials of ~1 minute
    .venv/bin/python benchmarks/bench_sweep.py --baselines single processes      # Ray's own cost
    .venv/bin/python benchmarks/bench_sweep.py --trials 2 --epochs 2             # a quick look

Packing (--packing, on a GPU machine): the same sweep of small trials with resources.gpu 1, 0.5
and 0.25; prints trials per minute for each and the ratio to gpu 1 (goal >= 2.5x at 0.25).

    .venv/bin/python benchmarks/bench_sweep.py --packing --trials 8 --width 128 --epochs 5
Data are generated once, before any timing, into a temporary directory.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def sweep_doc(args, name: str, storage: Path, gpu: float) -> dict:
    return {
        "name": name, "task": "prefix_sums",
        "data": {"train": args.bits, "eval": [args.bits + 8], "count": args.count},
        "grid": {"model": ["dt_recall"], "max_iters": [args.max_iters], "width": [args.width]},
        "seeds": list(range(args.trials)),
        "train": {"epochs": args.epochs, "batch_size": 100},
        "test": {"iterations": args.test_iters},
        "resources": {"cpu": 1, "gpu": gpu},
        "storage": str(storage),
    }


def write_sweep(tmp: Path, doc: dict) -> Path:
    path = tmp / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _train(cfg, data_root: Path, trial_id: str, out: Path, threads: int) -> None:
    """One trial as the sweep runs it (minus Ray): train, evaluate, write its Parquet file."""
    import torch

    from deepthink.results import write_trial
    from deepthink.train import run_trial
    torch.set_num_threads(threads)
    outcome = run_trial(cfg, data_root, trial_id=trial_id, checkpoint_dir=out / f"ckpt-{trial_id}",
                        log=lambda m: None)
    write_trial(str(out / "results"), trial_id, outcome.rows)


def run_sequential(path: Path, data_root: Path, threads: int, tmp: Path) -> float:
    """All trials of the file back to back in this process."""
    from deepthink.config import parse_sweep
    out = tmp / f"sequential-{threads}"
    t0 = time.perf_counter()
    for i, cfg in enumerate(parse_sweep(path).trials()):
        _train(cfg, data_root, f"seq{i}", out, threads)
    return time.perf_counter() - t0


def run_processes(path: Path, data_root: Path, cores: int, tmp: Path) -> float:
    """The trials as plain processes, `cores` at once, one thread each (process start counted)."""
    import multiprocessing as mp

    from deepthink.config import parse_sweep
    out = tmp / "processes"
    jobs = [(cfg, data_root, f"proc{i}", out, 1) for i, cfg in enumerate(parse_sweep(path).trials())]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(cores, maxtasksperchild=1) as pool:   # fresh process per trial, as Ray's
        pool.starmap(_train, jobs, chunksize=1)
    return time.perf_counter() - t0


def run_sweep(path: Path, data_root: Path, tmp: Path) -> float:
    log = tmp / f"{path.stem}.log"
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.call([sys.executable, "-m", "deepthink.cli", "sweep", str(path), "--data-root", str(data_root)],
                             cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"sweep {path} failed (exit {rc}); see the end of {log}:\n{log.read_text()[-3000:]}")
    return seconds


def prepare_data(args, data_root: Path) -> None:
    from deepthink.tasks import get_task, storage
    task = get_task("prefix_sums")
    for bits in (args.bits, args.bits + 8):
        storage.ensure(task, data_root, bits, "train", args.count, 0)


def overhead(args, tmp: Path, data_root: Path) -> None:
    from deepthink.sweep.plan import local_cpu_count
    cores = local_cpu_count()
    path = write_sweep(tmp, sweep_doc(args, "bench_overhead", tmp / "results", gpu=0))
    print(f"{args.trials} trials: prefix sums dt_recall width {args.width}, max_iters {args.max_iters}, "
          f"{args.count} strings of {args.bits} bits, {args.epochs} epochs, test 1..{args.test_iters}; {cores} cores")
    times = {}
    if "threads" in args.baselines:
        times["a"] = run_sequential(path, data_root, cores, tmp)
        print(f"(a)  back to back, one process, {cores} threads:  {times['a']:7.1f} s  "
              f"({times['a'] / args.trials:.1f} s/trial)", flush=True)
    if "single" in args.baselines:
        times["a1"] = run_sequential(path, data_root, 1, tmp)
        print(f"(a1) back to back, one process, 1 thread:   {times['a1']:7.1f} s  "
              f"({times['a1'] / args.trials:.1f} s/trial)", flush=True)
    if "processes" in args.baselines:
        times["c"] = run_processes(path, data_root, cores, tmp)
        print(f"(c)  plain processes, {cores} at once, no Ray:    {times['c']:7.1f} s", flush=True)
    swept = run_sweep(path, data_root, tmp)
    print(f"(b)  deepthink sweep, embedded Ray, {cores} at once: {swept:7.1f} s  (start-up and shutdown included)")
    if "a" in times:
        print(f"efficiency (a)/(b) = {times['a'] / swept:.2f}  (goal >= 0.85)")
    if "a1" in times:
        print(f"efficiency vs a perfect {cores}-core machine (a1/{cores})/(b) = {times['a1'] / cores / swept:.2f}")
    if "c" in times:
        print(f"efficiency vs the same parallelism without Ray (c)/(b) = {times['c'] / swept:.2f}")


def packing(args, tmp: Path, data_root: Path) -> None:
    import torch
    if not torch.cuda.is_available():
        sys.exit("--packing needs a CUDA GPU (torch.cuda.is_available() is False here)")
    print(f"{args.trials} trials: prefix sums dt_recall width {args.width}, {args.epochs} epochs on "
          f"{torch.cuda.get_device_name(0)}")
    print(f"{'gpu/trial':>9} {'at once':>8} {'seconds':>8} {'trials/min':>11} {'x gpu 1':>8}")
    base = None
    for gpu in (1.0, 0.5, 0.25):
        name = f"bench_packing_{str(gpu).replace('.', '_')}"
        seconds = run_sweep(write_sweep(tmp, sweep_doc(args, name, tmp / "results", gpu)), data_root, tmp)
        rate = args.trials / seconds * 60
        base = base or rate
        print(f"{gpu:>9g} {round(1 / gpu):>8} {seconds:>8.1f} {rate:>11.2f} {rate / base:>8.2f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--max-iters", type=int, default=10)
    p.add_argument("--bits", type=int, default=24, help="training string length (test: bits + 8)")
    p.add_argument("--count", type=int, default=5000, help="strings per length")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--test-iters", type=int, default=20)
    p.add_argument("--baselines", nargs="+", choices=["threads", "single", "processes"], default=["threads"],
                   help="what to compare the sweep with (default: threads; see above)")
    p.add_argument("--packing", action="store_true", help="fractional-GPU packing instead of overhead")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        tmp = Path(tmp)
        data_root = tmp / "data"
        prepare_data(args, data_root)
        (packing if args.packing else overhead)(args, tmp, data_root)


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    main()
