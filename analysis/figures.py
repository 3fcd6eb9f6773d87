"""Accuracy against test-time iterations: the papers' Figures 1-3 and the overthinking figure.

    python -m analysis.figures RESULTS_DIR [RESULTS_DIR ...] --out fig.png [--split test]
        [--difficulty 48 512] [--metric iteration|max_confidence] [--xscale linear|log]

One panel per test difficulty; one line per model (and per any other config key that varies,
e.g. depth or alpha): the mean over seeds of the 'ok' trials, with a ±1 sample-std band where
there are two or more seeds (clipped to 0-100%); a vertical dashed mark at the training iteration
count. Diverged and failed trials are not drawn: the script prints them, and the figure's footer
counts them. Prints the path of the figure it wrote. Uses matplotlib's Agg backend (no display needed).

--metric picks the accuracy column: iteration -> `accuracy` (the output after that many
iterations), max_confidence -> `accuracy_max_confidence` (per example, the most confident output
among iterations 1..K).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # before pyplot: files only, no display on servers / CI
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis.common import (AnalysisError, choose, describe, difficulty_label, excluded_note,  # noqa: E402
                             extra_keys, load, metric_column, trials)


def curves(df: pd.DataFrame, *, split: str = "test", metric: str = "iteration",
           difficulties: list[int] | None = None) -> tuple[dict, pd.DataFrame, list[str]]:
    """The numbers a figure draws.

    Returns ({difficulty: {line label: DataFrame(test_iters, mean, std, n, max_iters)}},
    the excluded (non-ok) trials, the line keys)."""
    column = metric_column(metric)
    sel = choose(df, "split", split, "--split")
    for d in difficulties or []:
        choose(sel, "difficulty", d, "--difficulty")
    t = trials(df)
    line_keys = ["model"] + extra_keys(t[t["trial"].isin(sel["trial"])], ["model"])
    bad = t[t["status"] != "ok"]
    ok = sel[sel["trial"].isin(t.loc[t["status"] == "ok", "trial"])]
    out: dict = {}
    for d in difficulties or sorted(sel["difficulty"].dropna().unique()):
        panel = {}
        rows = ok[ok["difficulty"] == d]
        for key, g in rows.groupby(line_keys, dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            # per test iteration: mean and sample std (ddof=1) over this line's trials (seeds)
            stats = g.groupby("test_iters")[column].agg(["mean", "std", "count"]).reset_index()
            stats = stats.rename(columns={"count": "n"})
            stats["max_iters"] = int(g["max_iters"].iloc[0])
            panel[describe(dict(zip(line_keys, key)))] = stats
        out[d] = panel
    return out, bad, line_keys


def plot(df: pd.DataFrame, out: str | Path, *, split: str = "test", metric: str = "iteration",
         difficulties: list[int] | None = None, xscale: str = "linear") -> Path:
    data, bad, line_keys = curves(df, split=split, metric=metric, difficulties=difficulties)
    task = df["task"].iloc[0] if df["task"].nunique() == 1 else None
    n = len(data)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.0 * nrows), squeeze=False,
                             sharey=True)
    labels = list(dict.fromkeys(lbl for panel in data.values() for lbl in panel))   # groupby order
    same_lines = len({tuple(sorted(p)) for p in data.values()}) <= 1
    colors = {lbl: plt.get_cmap("tab10")(i % 10) for i, lbl in enumerate(labels)}
    for ax, (d, panel) in zip(axes.flat, data.items()):
        marks = {}
        for label, s in panel.items():
            c = colors[label]
            ax.plot(s["test_iters"], s["mean"], color=c, lw=1.6, label=f"{label} (n={int(s['n'].max())})")
            band = s.dropna(subset=["std"])
            # clipped to the possible range: with 2 seeds at 34% and 100% the band would reach 113%
            ax.fill_between(band["test_iters"], (band["mean"] - band["std"]).clip(lower=0),
                            (band["mean"] + band["std"]).clip(upper=100), color=c, alpha=0.18, lw=0)
            marks.setdefault(int(s["max_iters"].iloc[0]), []).append(c)
        styles = ["--", ":", "-.", (0, (5, 2, 1, 2))]   # tell several marks apart in the legend
        for j, (x, cs) in enumerate(sorted(marks.items())):
            # one mark per training iteration count; in the line's colour if only that line has it
            ax.axvline(x, ls=styles[j % len(styles)], lw=1.0,
                       color=cs[0] if len(cs) == 1 and len(marks) > 1 else "0.35",
                       label=f"trained with {x} iterations")
        ax.set_title(f"{task + ' · ' if task else ''}{split} · "
                     f"{difficulty_label(task, d) if task else f'difficulty {d}'}")
        ax.set_xscale(xscale)
        ax.set_xlabel("test-time iterations")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        if ax is axes.flat[0] or not same_lines:     # one legend when every panel has the same lines
            ax.legend(fontsize=7, loc="best")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"whole-sample accuracy (%)\nmetric: {metric}")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    note = excluded_note(bad, lambda r: describe({k: r[k] for k in line_keys}))
    footer = "mean over seeds, band ±1 sample std" + (f"; {note}" if note else "")
    fig.text(0.01, 0.005, footer, fontsize=7, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    if note:
        print(f"not drawn: {note}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.figures", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", metavar="RESULTS_DIR", help="sweep result directories")
    p.add_argument("--out", required=True, help="figure file to write (.png, .pdf, .svg)")
    p.add_argument("--split", default="test", help="train | val | test (default test)")
    p.add_argument("--difficulty", type=int, nargs="+", default=None,
                   help="difficulties to draw, one panel each (default: every one present)")
    p.add_argument("--metric", default="iteration", help="iteration | max_confidence (default iteration)")
    p.add_argument("--xscale", default="linear", choices=["linear", "log"], help="default linear")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = plot(load(args.dirs), args.out, split=args.split, metric=args.metric,
                    difficulties=args.difficulty, xscale=args.xscale)
    except AnalysisError as e:
        print(f"analysis.figures: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
