"""DT-L evaluation: the Lipschitz block's interpolation in place (what evaluation runs) vs out of
place (the expression training differentiates), in the trainer's evaluation.

Not a test. For each case, times `evaluate_split` (every iteration scored, chunked as the trainer
chunks) with BasicBlock's no-grad path in place and with it forced out of place, interleaved, best
of `--reps` wall times in this process; checks that both give the same counts and prints the ratio.
The CPU and its ISA flags head the table (benchmarks/cpu_banner.py).

    taskset -c 1 .venv/bin/python benchmarks/bench_interp_inplace.py
    taskset -c 1 .venv/bin/python benchmarks/bench_interp_inplace.py --cases maze59_gn --reps 5
"""
from __future__ import annotations

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_timing import build_case, interleaved, parse_args  # noqa: E402

from deepthink.models import blocks  # noqa: E402
from deepthink.precision import resolve_precision  # noqa: E402

# name -> (task, model, width, spatial size of one input, batch, iterations)
CASES = {
    "prefix512_gn": ("prefix_sums", "dt_l_relu_gn", 64, (512,), 500, 10),
    "maze59_gn": ("mazes", "dt_l_relu_gn", 32, (128, 128), 100, 3),
    "maze59_elu": ("mazes", "dt_l", 32, (128, 128), 100, 3),
}


def out_of_place(self, x):
    """BasicBlock.forward's lipschitz branch as training runs it (allocating every elementwise result)."""
    out = self.conv2(self.act(self.conv1(x)))
    lam = self.interpolation_weight()
    return self.act(x + lam * (out - x))


def main(argv=None) -> int:
    args = parse_args(__doc__, CASES, argv)      # --cases --reps --threads; sets the threads, prints the CPU
    fp32 = resolve_precision("fp32", "cpu")
    in_place = blocks.BasicBlock.forward
    print("| case | model | width | input | batch | iterations | out of place s | in place s | speed-up | same counts |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.cases:
        task_name, model_name, width, spatial, batch, iters = CASES[name]
        task, net, x, y = build_case(task_name, model_name, width, spatial, batch, fp32)
        modes = {"out": lambda: setattr(blocks.BasicBlock, "forward", out_of_place),
                 "in": lambda: setattr(blocks.BasicBlock, "forward", in_place)}
        results, best = interleaved(modes, task, net, x, y, iters, batch, fp32, args.reps)
        blocks.BasicBlock.forward = in_place
        print(f"| {name} | {model_name} | {width} | {'x'.join(map(str, spatial))} | {batch} | {iters} | "
              f"{best['out']:.2f} | {best['in']:.2f} | {best['out'] / best['in']:.2f}x | "
              f"{'yes' if results['out'] == results['in'] else 'NO'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
