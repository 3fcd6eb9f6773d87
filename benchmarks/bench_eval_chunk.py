"""Evaluation on a CPU: a batch run whole vs in chunks of <= CPU_CHUNK_BYTES per state tensor.

Not a test. For each case, times `evaluate_split` (the trainer's evaluation: every iteration scored)
with the default chunking and with chunking off (the whole batch in one pass), interleaved, best
of `--reps` wall times in this process, checks that both give the same counts, and prints the
ratio. The CPU and its ISA flags head the table (benchmarks/cpu_banner.py).

    taskset -c 1 .venv/bin/python benchmarks/bench_eval_chunk.py
    taskset -c 1 .venv/bin/python benchmarks/bench_eval_chunk.py --cases prefix512 --reps 5

Why chunks help: glibc's malloc gives blocks above its mmap ceiling (32 MiB) fresh pages from the
kernel on every allocation, so a state tensor of 500 x 64 x 512 fp32 values (64 MiB) costs page
faults at every iteration; chunks of <= 16 MiB are reused from the heap.
"""
from __future__ import annotations

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_timing import build_case, interleaved, parse_args  # noqa: E402

from deepthink import evaluate  # noqa: E402
from deepthink.precision import resolve_precision  # noqa: E402

# name -> (task, model, width, spatial size of one input, batch, iterations)
CASES = {
    "prefix512": ("prefix_sums", "dt_recall", 64, (512,), 500, 10),
    "prefix512_gn": ("prefix_sums", "dt_l_relu_gn", 64, (512,), 500, 10),
    "prefix128_w400": ("prefix_sums", "dt_recall", 400, (128,), 500, 4),
    "maze33": ("mazes", "dt_recall", 128, (72, 72), 20, 3),
}


def main(argv=None) -> int:
    args = parse_args(__doc__, CASES, argv)      # --cases --reps --threads; sets the threads, prints the CPU
    fp32 = resolve_precision("fp32", "cpu")
    default = evaluate.CPU_CHUNK_BYTES
    print("| case | model | width | input | batch | chunk | iterations | whole batch s | chunked s | speed-up | same counts |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.cases:
        task_name, model_name, width, spatial, batch, iters = CASES[name]
        task, net, x, y = build_case(task_name, model_name, width, spatial, batch, fp32)
        modes = {"whole": lambda: setattr(evaluate, "CPU_CHUNK_BYTES", 2**62),
                 "chunked": lambda: setattr(evaluate, "CPU_CHUNK_BYTES", default)}
        results, best = interleaved(modes, task, net, x, y, iters, batch, fp32, args.reps)
        evaluate.CPU_CHUNK_BYTES = default
        chunk = evaluate.eval_chunk(batch, net, x, fp32)
        print(f"| {name} | {model_name} | {width} | {'x'.join(map(str, spatial))} | {batch} | {chunk} | {iters} | "
              f"{best['whole']:.2f} | {best['chunked']:.2f} | {best['whole'] / best['chunked']:.2f}x | "
              f"{'yes' if results['whole'] == results['chunked'] else 'NO'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
