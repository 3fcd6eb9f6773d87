"""Maze generation speed: the issue's goal is 50,000 size-9 mazes and 1,000 size-59 mazes, each in
under 60 s on one core. Generates both (files written, as `deepthink data mazes` does) into a
temporary directory and prints mazes/s, seconds and the ratio to the 60 s goal.

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/bench_mazes.py
    .venv/bin/python benchmarks/bench_mazes.py --jobs 9:50000 59:1000 201:100   # choose the jobs
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from deepthink.tasks import get_task

GOAL_S = 60.0


def parse_job(text: str) -> tuple[int, int]:
    try:
        size, count = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--jobs expects SIZE:COUNT such as 9:50000, got {text!r}") from None
    return size, count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=parse_job, nargs="+", default=[(9, 50000), (59, 1000)], metavar="SIZE:COUNT",
                   help="what to generate (default 9:50000 59:1000, the issue's two goals)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    task = get_task("mazes")
    print(f"{'size':>5} {'count':>7} {'seconds':>8} {'mazes/s':>9} {'MB':>7} {'x faster than 60 s goal':>24}")
    with tempfile.TemporaryDirectory(prefix="bench_mazes_") as tmp:
        for size, count in args.jobs:
            t0 = time.perf_counter()
            paths = task.generate(Path(tmp), size, "train", count, args.seed)
            dt = time.perf_counter() - t0
            mb = sum(f.stat().st_size for f in paths) / 1e6
            print(f"{size:>5} {count:>7} {dt:>8.2f} {count / dt:>9.0f} {mb:>7.0f} {GOAL_S / dt:>24.1f}", flush=True)
            for f in paths:          # keep the temp disk small between jobs
                f.unlink()


if __name__ == "__main__":
    main()
