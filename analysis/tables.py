"""The papers' tables from sweep results: whole-sample accuracy, mean ± std over seeds.

    python -m analysis.tables RESULTS_DIR [RESULTS_DIR ...] [--rows model] [--cols depth]
        [--split test] [--difficulty 44] [--iteration train|best|K]
        [--metric iteration|max_confidence] [--format markdown|latex|csv] [--compare FILE]

RESULTS_DIR is a sweep's output directory, `<storage>/<name>/` (a Parquet dataset; see
deepthink/results.py). Several directories are read as one dataset: the same configuration from
two sweeps is pooled, a trial given twice is an error.

One table per test difficulty (unless --difficulty picks some), and one per value of any other
config key (width, alpha, ...) that varies but is neither --rows nor --cols, so a cell never pools
different configurations. Each cell is the mean ± sample std (ddof=1, as pandas computes it) over
the seeds of that cell's 'ok' trials, two decimals; `(n=3)` is shown where the seed count differs
between cells. Diverged and failed trials are never averaged: a note under the table counts them
and names their cells and seeds.

--iteration:  train  each trial's accuracy after its training iteration count (test_iters ==
                     max_iters; a feed-forward net's last block)          [default]
              best   each trial's best accuracy over its test iterations (the papers' "peak";
                     chosen on the test set itself, so optimistic)
              K      accuracy after exactly K iterations; a trial tested to fewer (e.g. a
                     feed-forward net with fewer blocks) shows as n/a with a note, never dropped
--metric:     iteration (column `accuracy`: the output after that iteration) or max_confidence
              (column `accuracy_max_confidence`: per example, the most confident iteration up to it)
--format csv is tidy: one line per cell with mean, std, n and the excluded/missing counts.
--compare FILE: a CSV of published cells (sweeps/published/); each table is followed by a second one,
              this run's mean ± std (n) beside the published one and z (in standard errors); the
              file's format and the rules for z are in analysis/compare.py.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import numbers
import sys
from dataclasses import dataclass, field

import pandas as pd

from analysis.common import (CONFIG_KEYS, GROUP_KEYS, AnalysisError, choose, default_cols, describe,
                             difficulty_label, excluded_note, extra_keys, fmt_value, load, metric_column,
                             trials)

DASH = "—"     # no usable trial in this cell


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)     # one per averaged ('ok') trial
    seeds: list[int] = field(default_factory=list)
    missing: list[tuple[int, float]] = field(default_factory=list)   # (seed, last tested iteration)
    n_excluded: int = 0

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(pd.Series(self.values, dtype=float).mean()) if self.values else math.nan

    @property
    def std(self) -> float:
        # pandas' sample std (ddof=1): NaN for a single seed, which is shown as no std at all.
        return float(pd.Series(self.values, dtype=float).std()) if self.values else math.nan


@dataclass
class Table:
    title: str
    context: dict            # split, difficulty, metric, iteration and any extra grouping keys
    rows_key: str
    cols_key: str
    row_values: list
    col_values: list
    cells: dict              # (row value, col value) -> Cell; absent = no trial at that grid point
    notes: list[str]
    fixed: dict = field(default_factory=dict)   # keys with one value over the whole table (width=120)


def parse_iteration(text: str) -> str | int:
    if text in ("train", "best"):
        return text
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise AnalysisError(f"--iteration {text}: expected 'train', 'best' or a positive integer K")
    return k


def per_trial_value(rows: pd.DataFrame, iteration: str | int, column: str = "accuracy") -> pd.Series:
    """trial -> accuracy (`column`) at the chosen iteration (only trials that have one)."""
    if iteration == "train":
        rows = rows[rows["test_iters"] == rows["max_iters"]]
    elif iteration != "best":
        rows = rows[rows["test_iters"] == iteration]
    agg = "max" if iteration == "best" else "mean"   # mean: a no-op, rows are unique per iteration
    return rows.groupby("trial")[column].agg(agg)


def iteration_words(iteration: str | int) -> str:
    if iteration == "train":
        return "at the training iteration count"
    if iteration == "best":
        return "at each trial's best test iteration"
    return f"at iteration {iteration}"


def build_tables(df: pd.DataFrame, *, rows: str = "model", cols: str | None = None,
                 split: str = "test", difficulties: list[int] | None = None,
                 iteration: str | int = "train", metric: str = "iteration") -> list[Table]:
    """The tables for one selection of the results (see the module docstring)."""
    for opt, key in (("--rows", rows), ("--cols", cols)):
        if key is not None and key not in GROUP_KEYS:
            raise AnalysisError(f"{opt} {key}: expected one of {', '.join(GROUP_KEYS)}")
    column = metric_column(metric)
    sel = choose(df, "split", split, "--split")
    all_trials = trials(df)
    cols = cols or default_cols(all_trials, rows)
    if cols == rows:
        raise AnalysisError(f"--rows and --cols are both {rows}; pick two different keys")
    for d in difficulties or []:
        choose(sel, "difficulty", d, "--difficulty")
    never_evaluated = set(all_trials["trial"]) - set(sel["trial"])   # e.g. failed before testing
    tables = []
    for d in difficulties or sorted(sel["difficulty"].dropna().unique()):
        rows_d = sel[sel["difficulty"] == d]
        scope = all_trials[all_trials["trial"].isin(set(rows_d["trial"]) | never_evaluated)]
        values = per_trial_value(rows_d, iteration, column)
        last_iter = rows_d.groupby("trial")["test_iters"].max()
        extra = extra_keys(scope, [rows, cols])
        groups = scope.groupby(extra, dropna=False, sort=True) if extra else [((), scope)]
        for gvals, g in groups:
            gvals = gvals if isinstance(gvals, tuple) else (gvals,)
            context = {"split": split, "difficulty": d, "metric": metric, "iteration": iteration,
                       **dict(zip(extra, gvals))}
            tables.append(_table(g, values, last_iter, rows, cols, context))
    return tables


def _table(g: pd.DataFrame, values: pd.Series, last_iter: pd.Series, rows: str, cols: str,
           context: dict) -> Table:
    cells: dict = {}
    for _, t in g.iterrows():
        cell = cells.setdefault((t[rows], t[cols]), Cell())
        if t["status"] != "ok":
            cell.n_excluded += 1
        elif t["trial"] in values.index and not pd.isna(values[t["trial"]]):
            cell.values.append(float(values[t["trial"]]))
            cell.seeds.append(int(t["seed"]))
        else:
            cell.missing.append((int(t["seed"]), last_iter.get(t["trial"], math.nan)))
    name = lambda r: describe({rows: r[rows], cols: r[cols]})   # noqa: E731  (cell name in notes)
    notes = []
    bad = excluded_note(g[g["status"] != "ok"], name)
    if bad:
        notes.append(bad)
    missing = [(describe({rows: r, cols: c}), cell) for (r, c), cell in sorted(cells.items(), key=_order)
               if cell.missing]
    if missing:
        parts = []
        for cname, cell in missing:
            tested = sorted({int(i) for _, i in cell.missing if not pd.isna(i)})
            to = f"tested up to iteration {', '.join(map(str, tested))}" if tested else "no rows"
            parts.append(f"{cname}: {len(cell.missing)} trial{'s' if len(cell.missing) > 1 else ''} ({to})")
        notes.append(f"n/a: no accuracy {iteration_words(context['iteration'])} for " + "; ".join(parts))
    ns = {c.n for c in cells.values() if c.n}
    if ns == {1}:
        notes.append("one seed per cell: no standard deviation")
    task = g["task"].iloc[0] if g["task"].nunique() == 1 else "several tasks"
    extra = {k: v for k, v in context.items() if k not in ("split", "difficulty", "metric", "iteration")}
    title = " · ".join(
        [str(task), context["split"], difficulty_label(task, context["difficulty"])]
        + ([describe(extra)] if extra else [])
        + [f"accuracy (%) {iteration_words(context['iteration'])}", f"metric {context['metric']}"])
    fixed = {k: g[k].iloc[0] for k in GROUP_KEYS if k not in (rows, cols) and g[k].nunique(dropna=False) == 1}
    return Table(title=title, context=context, rows_key=rows, cols_key=cols,
                 row_values=sorted({k[0] for k in cells}, key=_sort_key),
                 col_values=sorted({k[1] for k in cells}, key=_sort_key), cells=cells, notes=notes,
                 fixed=fixed)


def _sort_key(v):
    # numbers.Real also covers numpy's int64 (not a Python int): numbers sort as numbers, 40 < 100
    return (0, v, "") if isinstance(v, numbers.Real) and not isinstance(v, bool) else (1, 0, str(v))


def _order(item):
    (r, c), _ = item
    return (_sort_key(r), _sort_key(c))


def cell_text(cell: Cell | None, show_n: bool, latex: bool = False) -> str:
    """'31.02 ± 2.56', '31.02 ± 2.56 (n=3)', '31.02' (one seed), 'n/a' (cannot reach), '—' (nothing)."""
    if cell is None or (cell.n == 0 and not cell.missing):
        return "---" if latex else DASH
    if cell.n == 0:
        return "n/a"
    pm = "\\pm" if latex else "±"
    text = f"{cell.mean:.2f}" if math.isnan(cell.std) else f"{cell.mean:.2f} {pm} {cell.std:.2f}"
    if latex:
        text = f"${text}$"
    return f"{text} (n={cell.n})" if show_n else text


def _grid(table: Table, latex: bool = False) -> list[list[str]]:
    """Header row + one row per row value; cells formatted, labels left raw."""
    ns = {c.n for c in table.cells.values() if c.n}
    show_n = len(ns) > 1
    head = [f"{table.rows_key} \\ {table.cols_key}"] + [fmt_value(c) for c in table.col_values]
    body = [[fmt_value(r)] + [cell_text(table.cells.get((r, c)), show_n, latex) for c in table.col_values]
            for r in table.row_values]
    return [head] + body


def to_markdown(tables: list[Table]) -> str:
    out = []
    for t in tables:
        grid = _grid(t)
        lines = [f"### {t.title}", "", "| " + " | ".join(grid[0]) + " |",
                 "|" + "|".join([":---"] + [":---:"] * (len(grid[0]) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in grid[1:]]
        if t.notes:
            lines += [""] + [f"Note: {n}" for n in t.notes]
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


TEX_ESCAPES = {"\\": r"\textbackslash{}", "_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#",
               "$": r"\$", "{": r"\{", "}": r"\}", "—": "---", "±": r"$\pm$",
               "^": r"\^{}", "²": r"$^2$"}


def _tex(s: str) -> str:
    return "".join(TEX_ESCAPES.get(ch, ch) for ch in s)


def to_latex(tables: list[Table]) -> str:
    """booktabs tabulars; notes as a footnote-size line under each table, so they print too."""
    out = []
    for t in tables:
        grid = _grid(t, latex=True)
        ncol = len(grid[0])
        lines = [f"% {t.title}", "\\begin{tabular}{l" + "c" * (ncol - 1) + "}", "\\toprule",
                 " & ".join([_tex(f"{t.rows_key} / {t.cols_key}")] + [_tex(h) for h in grid[0][1:]]) + r" \\",
                 "\\midrule"]
        lines += [" & ".join([_tex(r[0])] + r[1:]) + r" \\" for r in grid[1:]]
        lines.append("\\bottomrule")
        lines += [f"\\multicolumn{{{ncol}}}{{l}}{{\\footnotesize {_tex(n)}}} \\\\" for n in t.notes]
        lines.append("\\end{tabular}")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def to_csv(tables: list[Table]) -> str:
    """Tidy: one line per cell. Empty mean/std where there is nothing to average."""
    buf = io.StringIO()
    extra = sorted({k for t in tables for k in t.context} - {"split", "difficulty", "metric", "iteration"},
                   key=lambda k: CONFIG_KEYS.index(k) if k in CONFIG_KEYS else len(CONFIG_KEYS))
    fields = ["split", "difficulty", "metric", "iteration", *extra, "rows_key", "row", "cols_key", "col",
              "mean", "std", "n", "seeds", "n_excluded", "n_missing"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for t in tables:
        for (r, c), cell in sorted(t.cells.items(), key=_order):
            w.writerow({**{k: t.context.get(k, "") for k in fields[:4 + len(extra)]},
                        "rows_key": t.rows_key, "row": r, "cols_key": t.cols_key, "col": c,
                        "mean": "" if not cell.n else f"{cell.mean:.4f}",
                        "std": "" if math.isnan(cell.std) else f"{cell.std:.4f}",
                        "n": cell.n, "seeds": " ".join(map(str, sorted(cell.seeds))),
                        "n_excluded": cell.n_excluded, "n_missing": len(cell.missing)})
    return buf.getvalue()


RENDERERS = {"markdown": to_markdown, "latex": to_latex, "csv": to_csv}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.tables", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dirs", nargs="+", metavar="RESULTS_DIR", help="sweep result directories")
    p.add_argument("--rows", default="model", choices=GROUP_KEYS, help="row key (default model)")
    p.add_argument("--cols", default=None, choices=GROUP_KEYS,
                   help="column key (default: the first of depth, width, alpha, max_iters, ... that varies)")
    p.add_argument("--split", default="test", help="train | val | test (default test)")
    p.add_argument("--difficulty", type=int, nargs="+", default=None,
                   help="test difficulties to show (default: every one present, one table each)")
    p.add_argument("--iteration", default="train", help="train | best | K (default train)")
    p.add_argument("--metric", default="iteration", help="iteration | max_confidence (default iteration)")
    p.add_argument("--format", default="markdown", choices=sorted(RENDERERS), help="default markdown")
    p.add_argument("--compare", metavar="FILE", default=None,
                   help="a CSV of published cells (e.g. sweeps/published/paper1_table1.csv): print each "
                        "cell beside its published mean ± std and z (see analysis/compare.py)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        published = None
        if args.compare:
            from analysis import compare    # imported here: it imports this module
            published = compare.read_published(args.compare)
        df = load(args.dirs)
        tables = build_tables(df, rows=args.rows, cols=args.cols, split=args.split,
                              difficulties=args.difficulty, iteration=parse_iteration(args.iteration),
                              metric=args.metric)
        text, notes = (compare.render(tables, published, args.format) if published
                       else (RENDERERS[args.format](tables), []))
    except AnalysisError as e:
        print(f"analysis.tables: error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    for n in notes:
        print(f"Note: {n}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
