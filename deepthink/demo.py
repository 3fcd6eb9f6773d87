"""The quickstart, end to end: what `make demo` runs.

    deepthink demo                 # sweeps/quickstart.yaml on embedded Ray (~5 min on 2 CPU cores)
    deepthink demo --smoke         # the same pipeline shrunk to seconds (what CI runs); also
                                   # DEEPTHINK_SMOKE=1
    deepthink demo --fresh         # discard earlier quickstart results and run again

It trains the sweep's recurrent and feed-forward nets over several seeds (Ray Tune, Parquet
results), prints the table at the trained iteration count and at each trial's best iteration, draws
accuracy against test iterations, and then says — computed from the results, whatever they are —
whether the papers' two claims held at this scale:
  1. the recurrent net beats the feed-forward net of the same effective depth on the hardest test set;
  2. the recurrent net's accuracy rises when it runs more iterations than it was trained with.
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "sweeps" / "quickstart.yaml"
# --smoke: the same pipeline (data, Ray, Parquet, tables, figure), shrunk to run in seconds.
SMOKE_OVERRIDES = {"name": "quickstart_smoke", "train.epochs": 2, "data.count": 300,
                   "test.iterations": 8, "seeds": [0, 1]}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from deepthink.tasks.storage import add_data_root_argument
    p.add_argument("--file", type=Path, default=QUICKSTART, help=f"sweep file (default {QUICKSTART.relative_to(REPO)})")
    p.add_argument("--smoke", action="store_true", default=os.environ.get("DEEPTHINK_SMOKE") == "1",
                   help="shrink epochs/data/iterations so the whole pipeline runs in seconds (CI); "
                        "also set by DEEPTHINK_SMOKE=1")
    p.add_argument("--fresh", action="store_true", help="delete earlier results of this sweep first")
    p.add_argument("--storage", default=None, help="results directory (default: the file's storage)")
    add_data_root_argument(p)
    p.add_argument("--out", type=Path, default=None, help="figure path (default <storage>/_<name>/figures/accuracy.png, beside the results)")


def run(args: argparse.Namespace) -> int:
    from deepthink.config import parse_sweep
    from deepthink.results import read_results
    from deepthink.sweep import state
    from deepthink.sweep.runner import run_sweep
    from deepthink.tasks.storage import resolve_data_root

    overrides = dict(SMOKE_OVERRIDES) if args.smoke else {}
    if args.storage:
        overrides["storage"] = args.storage
    sweep = parse_sweep(args.file, overrides)
    uri = state.sweep_uri(sweep.storage, sweep.name)
    try:
        state.move_old_layout(uri)           # results of an earlier version: their state goes beside them
    except state.SweepError as e:
        print(f"deepthink demo: error: {e}")
        return 2
    if args.fresh and (Path(uri).exists() or Path(state.state_dir(uri)).exists()):
        from deepthink.sweep.lock import running_driver
        holder = running_driver(uri)
        if holder is not None:   # never delete results a running driver is writing
            print(f"deepthink demo: error: {uri} is in use by a running driver ({holder.describe()}); "
                  f"wait for it to end, then run `deepthink demo --fresh` again")
            return 2
        shutil.rmtree(uri, ignore_errors=True)
        shutil.rmtree(state.state_dir(uri), ignore_errors=True)
    resume = state.has_ray_state(uri)    # an earlier run, finished or interrupted: finish it
    if resume:
        print(f"deepthink demo: {uri} holds an earlier run: finishing it with --resume "
              f"(use --fresh to start over)")
    try:
        rc = run_sweep(sweep, sweep.trials(), sweep_file=str(args.file), uri=uri,
                       data_root=resolve_data_root(args.data_root), address=os.environ.get("RAY_ADDRESS") or None,
                       resume=resume, max_concurrent=None, source_text=Path(args.file).read_text(),
                       rerun=lambda **_: command_line(args))
    except state.SweepError as e:
        print(f"deepthink demo: error: {e}")
        return 2
    if rc not in (0, 1):
        return rc

    from analysis import figures, tables
    print("\n## Accuracy at the trained iteration count (test sets)\n")
    tables.main([uri, "--iteration", "train"])
    print("\n## Accuracy at each trial's best test iteration (thinking longer)\n")
    tables.main([uri, "--iteration", "best"])
    out = args.out or Path(state.state_dir(uri)) / "figures" / "accuracy.png"   # not among the results
    figures.main([uri, "--out", str(out)])
    print()
    for line in claims(read_results(uri)):
        print(line)
    return rc


def command_line(args: argparse.Namespace) -> str:
    """This demo command again, every option given repeated and shell-quoted: what the interruption
    and error messages suggest (run again, the demo finishes an earlier run by itself; after another
    driver of the same directory has ended, too). --fresh is left out: it would delete what the
    interrupted run finished."""
    import shlex
    words = ["deepthink", "demo"]
    if Path(args.file) != QUICKSTART:
        words += ["--file", str(args.file)]
    if args.smoke:
        words += ["--smoke"]
    if args.storage:
        words += ["--storage", str(args.storage)]
    if args.data_root:
        words += ["--data-root", str(args.data_root)]
    if args.out:
        words += ["--out", str(args.out)]
    return shlex.join(words)


def claims(df: pd.DataFrame) -> list[str]:
    """The papers' two claims, checked on these results (mean over ok seeds, hardest test set)."""
    from deepthink.models import get_model_spec
    df = df[(df.status == "ok") & (df.split == "test")]
    if df.empty:
        return ["claims: no finished trials to check"]
    hardest = df.difficulty.max()
    d = df[df.difficulty == hardest]
    curve = d.groupby(["model", "test_iters"]).accuracy.mean()          # mean over seeds
    trained = int(d.max_iters.iloc[0])
    recurrent = sorted(m for m in d.model.unique() if get_model_spec(m).recurrent)      # the registry says
    feedforward = sorted(set(d.model.unique()) - set(recurrent))
    lines = [f"Claims on the hardest test set ({hardest}), mean over seeds, trained with {trained} iterations:"]
    for r in recurrent:
        rc = curve[r]
        best_k, best = int(rc.idxmax()), float(rc.max())
        at_train = float(rc.get(trained, float("nan")))
        for f in feedforward:
            ff = float(curve[f].max())
            verdict = "HOLDS" if best > ff else "DOES NOT HOLD"
            lines.append(f"  1. {r} beats {f} of the same depth: {verdict} "
                         f"({r} {best:.2f}% at iteration {best_k} vs {f} best {ff:.2f}%)")
        verdict = "HOLDS" if best_k > trained and best > at_train else "DOES NOT HOLD"
        lines.append(f"  2. {r} improves by thinking longer: {verdict} "
                     f"({at_train:.2f}% at {trained} iterations -> {best:.2f}% at {best_k})")
    return lines
