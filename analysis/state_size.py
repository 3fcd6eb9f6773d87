"""How big does a trained net's recurrent state get as it thinks longer? Read from checkpoints.

    python -m analysis.state_size CHECKPOINT [CHECKPOINT ...] [--difficulty 512] [--examples 20]
        [--iterations 1000] [--marks 30 100 200 500 1000] [--lipschitz [--power-iterations 50]]
        [--data-root DIR] [--format markdown|csv]

Unlike the other analysis scripts this one reads trained weights, not results: CHECKPOINT is what
`deepthink evaluate` takes (a checkpoint.pt, a directory holding one, a Ray trial directory). For
the first --examples test examples of --difficulty (default: the trial's largest), it runs the
recurrence to --iterations and reports at each mark the size of the state: per example the mean
|state| over channels and positions, then the largest over the examples, and how many examples'
states are no longer finite. A net whose state settles reads flat; one whose state grows without
bound shows it long before it overflows — an overthinking curve in the results can be that. One
thread, fp32 unless the trial trained in bf16 (its precision is kept).

--lipschitz adds, at each mark, one step's local Lipschitz constant at the state it reached: the
largest singular value of d step(h) / dh (--power-iterations rounds on J^T J over the examples
together, which for a step acting on each example alone is the largest over the examples; a lower
bound, close after 50 rounds). Below 1: the step contracts every nearby pair of states there; above
1 some direction is stretched by one step, whatever a spectral norm promises (a settled state can
still be stable: convergence needs the Jacobian's spectral radius below 1, not its largest singular
value). docs/results/mazes_dt_l_cpu.md has DT-L maze nets measured with it, one whose state blew up.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
import torch

from analysis.common import AnalysisError

DEFAULT_MARKS = (30, 100, 200, 500, 1000)


def state_sizes(model, inputs: torch.Tensor, iterations: int, marks: list[int], precision,
                lipschitz: int = 0) -> list[dict]:
    """[{iteration, max_mean_abs, non_finite[, lipschitz]}] at each mark <= iterations; `inputs`
    (N, C, *S). lipschitz > 0: also local_lipschitz(step at that iteration, at the state reached)
    with that many power iterations."""
    from deepthink.precision import cast_for_autocast
    model.eval()
    out = []
    # no_grad, not inference_mode: the Lipschitz estimate differentiates through a step at the states
    with torch.no_grad(), precision.autocast():
        x = cast_for_autocast(precision.prepare_inputs(inputs))
        state = model.project(x)
        for i in range(1, iterations + 1):
            state = model.step(state, x, i - 1)
            if i in marks:
                flat = state.float().flatten(1)                     # (N, width x positions)
                finite = torch.isfinite(flat).all(1)                # (N,)
                size = flat.abs().mean(1)                           # (N,)
                big = size[finite].max().item() if finite.any() else math.nan
                row = {"iteration": i, "max_mean_abs": big, "non_finite": int((~finite).sum())}
                if lipschitz:
                    ok = finite.nonzero().flatten()
                    row["lipschitz"] = (local_lipschitz(lambda h: model.step(h, x[ok], i), state[ok], lipschitz)
                                        if len(ok) else math.nan)
                out.append(row)
    return out


def local_lipschitz(step, h: torch.Tensor, iterations: int = 30, seed: int = 0) -> float:
    """Largest singular value of the Jacobian of `step` at `h` ((N, ...) -> same shape), by power
    iteration on J^T J (`iterations` rounds of a Jacobian-vector and a vector-Jacobian product). A
    lower bound that tightens with `iterations` (slowly where the top two singular values are close)."""
    from torch.autograd.functional import jvp, vjp      # jvp by double backward: no forward-mode AD needed
    h = h.detach().float().clone()
    v = torch.randn(h.shape, generator=torch.Generator().manual_seed(seed))
    with torch.enable_grad():
        for _ in range(iterations):
            v = v / v.norm()
            _, jv = jvp(step, h, v)
            _, v = vjp(step, h, jv)                          # J^T J v
        _, jv = jvp(step, h, v / v.norm())
    return jv.norm().item()


def measure(path: str, *, difficulty: int | None, examples: int, iterations: int, marks: list[int],
            data_root: Path, lipschitz: int = 0) -> list[dict]:
    from deepthink.checkpoint import CheckpointError, find_checkpoint, read_checkpoint
    from deepthink.tasks import get_task, storage
    from deepthink.train import load_trained
    try:
        file = find_checkpoint(Path(path))
        ckpt = read_checkpoint(file)
        cfg, model, precision, _ = load_trained(file, ckpt, device="cpu")
    except CheckpointError as e:
        raise AnalysisError(str(e)) from None
    task = get_task(cfg.task)
    if model.max_test_iters is not None:
        raise AnalysisError(f"{file}: {cfg.model} is a feed-forward net ({model.max_test_iters} blocks); "
                            f"it has no recurrent state to run longer")
    d = max(cfg.data.eval) if difficulty is None else difficulty
    if problem := task.check_difficulty(d):
        raise AnalysisError(f"--difficulty {d}: expected {problem}")
    x, _ = storage.load(task, data_root, d, "test", cfg.data.count, cfg.data.seed, cfg.data.source)
    rows = state_sizes(model, x[:examples], iterations, marks, precision, lipschitz)
    epochs = f"{ckpt['epoch']}/{cfg.train.epochs}"      # a checkpoint of unfinished training is shown as such
    return [{"model": cfg.model, "width": cfg.width, "seed": cfg.seed, "epochs": epochs, "difficulty": d,
             "examples": min(examples, len(x)), **r, "checkpoint": str(file)} for r in rows]


def _table(df: pd.DataFrame, marks: list[int], cell) -> str:
    """One markdown row per checkpoint, one column per mark; cell(row at that mark) -> text."""
    head = ("| model | width | seed | epochs | " + " | ".join(f"@{m}" for m in marks) + " |\n|---|---|---|---|"
            + "---|" * len(marks) + "\n")
    lines = []
    for (model, width, seed, epochs, _), g in df.groupby(["model", "width", "seed", "epochs", "checkpoint"],
                                                         sort=False):
        at = g.set_index("iteration")
        lines.append(f"| {model} | {width} | {seed} | {epochs} | "
                     + " | ".join(cell(at.loc[m]) for m in marks) + " |\n")
    return head + "".join(lines)


def _size_cell(r) -> str:
    cell = f"{r['max_mean_abs']:.3g}"
    if r["non_finite"]:
        cell += f" ({r['non_finite']} of {r['examples']} non-finite)"
    return cell


def to_markdown(df: pd.DataFrame) -> str:
    marks = sorted(df["iteration"].unique())
    first = df.iloc[0]
    text = (f"state size: largest per-example mean |state| over the first {first['examples']} test examples of "
            f"difficulty {first['difficulty']}\n\n" + _table(df, marks, _size_cell))
    if "lipschitz" in df:
        text += ("\none step's local Lipschitz constant at the state reached (largest singular value of "
                 "d step / d state; < 1: contracts there)\n\n" + _table(df, marks, lambda r: f"{r['lipschitz']:.3g}"))
    return text


def build_parser() -> argparse.ArgumentParser:
    from deepthink.tasks.storage import add_data_root_argument
    p = argparse.ArgumentParser(prog="python -m analysis.state_size", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    p.add_argument("--difficulty", type=int, default=None, help="test difficulty (default: the trial's largest)")
    p.add_argument("--examples", type=int, default=20, help="first N test examples (default 20)")
    p.add_argument("--iterations", type=int, default=None, help="default: the largest mark")
    p.add_argument("--marks", type=int, nargs="+", default=list(DEFAULT_MARKS), help="iterations to report")
    p.add_argument("--lipschitz", action="store_true",
                   help="also one step's local Lipschitz constant at each mark (a lower bound by power iteration)")
    p.add_argument("--power-iterations", type=int, default=50, metavar="N",
                   help="power iterations per --lipschitz estimate (default 50)")
    p.add_argument("--format", default="markdown", choices=("markdown", "csv"))
    add_data_root_argument(p)
    return p


def main(argv: list[str] | None = None) -> int:
    from deepthink.tasks.storage import DataError, resolve_data_root
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    iterations = args.iterations or max(args.marks)
    marks = sorted(m for m in set(args.marks) if 1 <= m <= iterations)
    if not marks or args.examples < 1:
        print("analysis.state_size: error: --marks: expected iterations between 1 and --iterations; "
              "--examples >= 1", file=sys.stderr)
        return 2
    rows, failed = [], 0
    for path in args.checkpoints:       # one bad checkpoint (or a feed-forward net) does not stop the rest
        try:
            rows += measure(path, difficulty=args.difficulty, examples=args.examples, iterations=iterations,
                            marks=marks, data_root=resolve_data_root(args.data_root),
                            lipschitz=args.power_iterations if args.lipschitz else 0)
        except (AnalysisError, DataError) as e:
            print(f"analysis.state_size: error: {e}", file=sys.stderr)
            failed += 1
    if rows:
        df = pd.DataFrame(rows)
        sys.stdout.write(to_markdown(df) if args.format == "markdown" else df.to_csv(index=False))
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
