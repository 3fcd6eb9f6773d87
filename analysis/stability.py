"""Per-seed stability of thinking longer: does every seed reach a threshold and stay there?

    python -m analysis.stability RESULTS_DIR [RESULTS_DIR ...] [--difficulty 512] [--threshold 99]
        [--from 200] [--to K] [--flat 0.5] [--learned 99] [--format markdown|csv]

For one test difficulty (default: the largest present) and a window of test iterations
[--from, --to] (default: 1/5 of the last tested iteration .. the last), one line per trial:

  training      `train_seconds` (the trial's training time, evaluation excluded)
  fit           accuracy on the training split at the training iteration count (max_iters)
  holds from    the first iteration from which accuracy stays >= --threshold at every tested
                iteration up to the last one ("never" if the last iteration is below it)
  min / max     the lowest and highest accuracy in the window; spread = max - min
  verdict       diverged | failed | stopped   (the trial's status; it has no usable curve)
                reaches      min in the window >= --threshold
                short        fit >= --learned (it learned its training strings) but the window dips
                             below the threshold: it learned, it does not extrapolate that far
                not learned  fit < --learned
                flat is a second yes/no: spread in the window <= --flat points

Under the table, per model: how many seeds of each verdict, the window minimum as mean ± std over
the seeds with a curve, and the range of training times. This is issue 9's stability claim
measured: "every seed >= 99% on 512 bits from iteration 200 to 1000, flat within 0.5 points" is
`--difficulty 512 --threshold 99 --from 200 --to 1000 --flat 0.5`, and every line reads
`reaches` and `flat yes`.
"""
from __future__ import annotations

import argparse
import math
import sys

import pandas as pd

from analysis.common import AnalysisError, choose, difficulty_label, fmt_value, load, trials

VERDICT_ORDER = ["reaches", "short", "not learned", "stopped", "diverged", "failed"]


def holds_from(curve: pd.Series, threshold: float) -> int | None:
    """The first iteration from which `curve` (accuracy indexed by iteration, sorted) stays
    >= threshold to its end; None if its last value is below the threshold."""
    below = curve.index[curve < threshold]
    if len(below) == 0:
        return int(curve.index[0])
    after = curve.index[curve.index > below.max()]
    return int(after[0]) if len(after) else None


def stability(df: pd.DataFrame, *, difficulty: int | None = None, threshold: float = 99.0,
              start: int | None = None, end: int | None = None, flat: float = 0.5,
              learned: float = 99.0) -> tuple[pd.DataFrame, dict]:
    """One row per trial (see the module docstring) and the window used: {'difficulty', 'from', 'to'}."""
    test = choose(df, "split", "test", "--split")
    if difficulty is None:
        difficulty = int(test["difficulty"].max())
    test = choose(test, "difficulty", difficulty, "--difficulty")
    last = int(test["test_iters"].max())
    end = last if end is None else end
    start = max(1, last // 5) if start is None else start
    if not 1 <= start <= end:
        raise AnalysisError(f"--from {start} --to {end}: expected 1 <= from <= to")
    if end > last:
        raise AnalysisError(f"--to {end}: the results are tested to iteration {last} at most")
    train = df[(df["split"] == "train") & (df["test_iters"] == df["max_iters"])]
    fit = train.groupby("trial")["accuracy"].mean()
    out = []
    for _, t in trials(df).iterrows():
        curve = (test[test["trial"] == t["trial"]].set_index("test_iters")["accuracy"]
                 .sort_index().astype(float))
        window = curve.loc[start:end]
        row = {"model": t["model"], "width": t["width"], "seed": int(t["seed"]), "status": t["status"],
               "train_seconds": float(df.loc[df["trial"] == t["trial"], "train_seconds"].max()),
               "fit": float(fit.get(t["trial"], math.nan)), "holds_from": None,
               "min": math.nan, "max": math.nan, "spread": math.nan, "flat": None}
        if t["status"] == "ok" and len(window) and int(window.index.max()) >= end:
            row.update(holds_from=holds_from(curve, threshold), min=float(window.min()),
                       max=float(window.max()), spread=float(window.max() - window.min()))
            row["flat"] = bool(row["spread"] <= flat)
            if row["min"] >= threshold:
                row["verdict"] = "reaches"
            elif row["fit"] >= learned:
                row["verdict"] = "short"
            else:
                row["verdict"] = "not learned"
        elif t["status"] == "ok":
            # Tested to fewer iterations than the window (e.g. a feed-forward net): no verdict on it.
            row["verdict"] = f"tested to {int(curve.index.max()) if len(curve) else 0} only"
        else:
            row["verdict"] = t["status"]
        out.append(row)
    table = pd.DataFrame(out).sort_values(["model", "width", "seed"], kind="stable").reset_index(drop=True)
    table["holds_from"] = table["holds_from"].astype("Int64")      # <NA>: never, or no verdict
    task = str(test["task"].iloc[0])
    return table, {"difficulty": difficulty, "label": difficulty_label(task, difficulty), "from": start, "to": end}


def summary(table: pd.DataFrame) -> list[str]:
    """One line per (model, width): verdict counts, window minimum mean ± std, training times."""
    lines = []
    for (model, width), g in table.groupby(["model", "width"], sort=True):
        counts = g["verdict"].value_counts()
        order = [v for v in VERDICT_ORDER if v in counts] + [v for v in counts.index if v not in VERDICT_ORDER]
        parts = [f"{counts[v]} {v}" for v in order]
        flat = int(g["flat"].eq(True).sum())
        mins = g["min"].dropna()
        m = f"{mins.mean():.2f} ± {mins.std():.2f}" if len(mins) > 1 else (f"{mins.iloc[0]:.2f}" if len(mins) else "—")
        secs = g["train_seconds"].dropna()
        tr = f"{secs.min() / 60:.1f}-{secs.max() / 60:.1f} min" if len(secs) else "—"
        lines.append(f"{model} (width {fmt_value(width)}), {len(g)} seed{'s' if len(g) != 1 else ''}: {', '.join(parts)}; "
                     f"{flat} flat; window minimum {m}; training {tr}")
    return lines


def _num(v, digits=2) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def to_markdown(table: pd.DataFrame, window: dict, threshold: float, flat: float) -> str:
    head = (f"### {window['label']} · threshold {fmt_value(threshold)} · window "
            f"{window['from']}..{window['to']} · flat within {fmt_value(flat)}\n\n"
            "| model | width | seed | training (min) | fit | holds from | min | max | spread | flat | verdict |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    body = []
    for _, r in table.iterrows():
        hf = "—" if r["verdict"] not in ("reaches", "short", "not learned") else (
            "never" if pd.isna(r["holds_from"]) else str(int(r["holds_from"])))
        fl = "—" if r["flat"] is None or pd.isna(r["flat"]) else ("yes" if r["flat"] else "no")
        body.append(f"| {r['model']} | {fmt_value(r['width'])} | {r['seed']} | {_num(r['train_seconds'] / 60, 1)} | "
                    f"{_num(r['fit'])} | {hf} | {_num(r['min'])} | {_num(r['max'])} | {_num(r['spread'])} | "
                    f"{fl} | {r['verdict']} |")
    return head + "\n".join(body) + "\n\n" + "\n".join(f"- {s}" for s in summary(table)) + "\n"


def to_csv(table: pd.DataFrame, window: dict, threshold: float, flat: float) -> str:
    t = table.assign(difficulty=window["difficulty"], window_from=window["from"], window_to=window["to"],
                     threshold=threshold, flat_within=flat)
    return t.to_csv(index=False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.stability", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", metavar="RESULTS_DIR", help="sweep result directories")
    p.add_argument("--difficulty", type=int, default=None, help="test difficulty (default: the largest)")
    p.add_argument("--threshold", type=float, default=99.0, help="accuracy a seed must keep (default 99)")
    p.add_argument("--from", dest="start", type=int, default=None,
                   help="first iteration of the window (default: 1/5 of the last tested iteration)")
    p.add_argument("--to", dest="end", type=int, default=None, help="last iteration of the window (default: the last tested)")
    p.add_argument("--flat", type=float, default=0.5, help="largest spread in the window called flat (default 0.5 points)")
    p.add_argument("--learned", type=float, default=99.0,
                   help="training-split accuracy at max_iters that counts as having learned (default 99)")
    p.add_argument("--format", default="markdown", choices=["markdown", "csv"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        table, window = stability(load(args.dirs), difficulty=args.difficulty, threshold=args.threshold,
                                  start=args.start, end=args.end, flat=args.flat, learned=args.learned)
    except AnalysisError as e:
        print(f"analysis.stability: error: {e}", file=sys.stderr)
        return 2
    render = to_markdown if args.format == "markdown" else to_csv
    sys.stdout.write(render(table, window, args.threshold, args.flat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
