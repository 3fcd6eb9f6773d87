"""Do two runs of the same trials agree? Curve by curve, iteration by iteration.

    python -m analysis.agreement RUN_A RUN_B [--labels native avx2] [--split test]
        [--metric iteration|max_confidence] [--format markdown|csv]

RUN_A and RUN_B are results directories holding the same trials run twice: the same sweep on two
machines, under two kernel paths (`ONEDNN_MAX_CPU_ISA=AVX2`), or the same checkpoints evaluated
twice. Trials are paired by their configuration and seed (not by trial id: a sweep run again gets
new ids); a configuration that appears twice on one side is an error, and trials on one side only
are listed under the table. For every pair and every (split, difficulty) both sides tested, one line:

  iterations   the test iterations both sides have
  differ       at how many of them the accuracies differ (exactly: an accuracy is correct / n)
  max |diff|   the largest difference in points, and the first iteration where it occurs
  last         each side's accuracy at the last common iteration

Under the table: how many curves are identical at every iteration, the largest difference
anywhere, and each side's `device` column (which CPU, which kernel path). Both sides must have
evaluated the same number of examples per split (`n_examples`): curves over different examples
are not compared.
"""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from analysis.common import CONFIG_KEYS, AnalysisError, fmt_value, load, metric_column

PAIR_KEYS = CONFIG_KEYS + ["seed"]
SPLIT_ORDER = {"test": 0, "val": 1, "train": 2}


def _side(dirs: list[str], label: str) -> pd.DataFrame:
    df = load(dirs)
    df = df[df["status"] != "failed"]          # a failed trial has no curve
    if df.empty:
        raise AnalysisError(f"{label}: no trial with a curve (every trial failed)")
    per_key = df.drop_duplicates("trial").groupby(PAIR_KEYS, dropna=False)["trial"].nunique()
    twice = per_key[per_key > 1]
    if len(twice):
        key = dict(zip(PAIR_KEYS, twice.index[0]))
        raise AnalysisError(f"{label}: more than one trial with {_name(key)}; give directories in which "
                            f"each configuration and seed appears once")
    return df


def _name(key: dict) -> str:
    varying = ", ".join(f"{k}={fmt_value(key[k])}" for k in ("width", "max_iters", "alpha", "lr") if k in key)
    return f"{key['model']} ({varying}) seed {key['seed']}"


def _grouped(keys: list[tuple]) -> list[str]:
    """Unpaired trials, one entry per configuration with its seeds: 'dt_recall (width=64, ...) seeds 0, 1, 5'."""
    seeds: dict[str, list[int]] = {}
    for k in keys:
        key = dict(zip(PAIR_KEYS, k))
        config = _name(key).rsplit(" seed ", 1)[0]
        seeds.setdefault(config, []).append(int(key["seed"]))
    return [f"{config} seed{'s' if len(s) > 1 else ''} {', '.join(map(str, sorted(s)))}"
            for config, s in sorted(seeds.items())]


def agreement(a: pd.DataFrame, b: pd.DataFrame, *, metric: str = "iteration", split: str | None = None,
              labels: tuple[str, str] = ("A", "B")) -> tuple[pd.DataFrame, dict]:
    """One row per (paired trial, split, difficulty), and {'only_a': [...], 'only_b': [...]} (names
    of trials without a partner)."""
    column = metric_column(metric)
    if split is not None:
        for df, label in ((a, labels[0]), (b, labels[1])):
            if not (df["split"] == split).any():
                present = ", ".join(sorted(df["split"].unique()))
                raise AnalysisError(f"--split {split}: {label} has no rows of that split; present: {present}")
        a, b = a[a["split"] == split], b[b["split"] == split]
    keys_a = a.drop_duplicates("trial").set_index("trial")[PAIR_KEYS]
    keys_b = b.drop_duplicates("trial").set_index("trial")[PAIR_KEYS]
    tuple_a = {tuple(r): t for t, r in keys_a.iterrows()}
    tuple_b = {tuple(r): t for t, r in keys_b.iterrows()}
    common = [k for k in tuple_a if k in tuple_b]
    only = {"only_a": _grouped([k for k in tuple_a if k not in tuple_b]),
            "only_b": _grouped([k for k in tuple_b if k not in tuple_a])}
    if not common:
        raise AnalysisError(f"{labels[0]} and {labels[1]} have no trial in common (paired by configuration "
                            f"and seed: {', '.join(PAIR_KEYS)})")
    lines = []
    for key in common:
        ra, rb = a[a["trial"] == tuple_a[key]], b[b["trial"] == tuple_b[key]]
        name = dict(zip(PAIR_KEYS, key))
        for (sp, diff), ca in ra.groupby(["split", "difficulty"]):
            cb = rb[(rb["split"] == sp) & (rb["difficulty"] == diff)]
            if cb.empty:
                continue
            na, nb = ({int(n) for n in c["n_examples"].dropna()} for c in (ca, cb))
            if na != nb:
                raise AnalysisError(f"{_name(name)}, {sp} {diff}: {labels[0]} evaluated {sorted(na)} examples, "
                                    f"{labels[1]} {sorted(nb)}; curves over different examples are not compared "
                                    f"(evaluate both with the same test.max_examples)")
            sa = ca.set_index("test_iters")[column].dropna().sort_index()
            sb = cb.set_index("test_iters")[column].dropna().sort_index()
            its = sa.index.intersection(sb.index)
            if len(its) == 0:
                continue
            delta = (sa.loc[its] - sb.loc[its]).abs()
            worst = float(delta.max())
            lines.append({"model": name["model"], "seed": int(name["seed"]), "width": name["width"],
                          "split": sp, "difficulty": int(diff), "iterations": f"{int(its.min())}..{int(its.max())}",
                          "n_iterations": len(its), "differ": int((delta > 0).sum()), "max_diff": worst,
                          "at": int(delta.idxmax()) if worst > 0 else None,
                          "last_a": float(sa.loc[its.max()]), "last_b": float(sb.loc[its.max()]),
                          "device_a": "; ".join(sorted(ca["device"].dropna().unique())),
                          "device_b": "; ".join(sorted(cb["device"].dropna().unique()))})
    if not lines:
        raise AnalysisError(f"{labels[0]} and {labels[1]} share trials but no (split, difficulty) with common "
                            f"test iterations")
    table = pd.DataFrame(lines)
    table = (table.assign(_o=table["split"].map(SPLIT_ORDER).fillna(9))
             .sort_values(["_o", "difficulty", "model", "seed"]).drop(columns="_o").reset_index(drop=True))
    return table, only


def summary(table: pd.DataFrame, only: dict, labels: tuple[str, str]) -> list[str]:
    same = int((table["differ"] == 0).sum())
    out = [f"{same} of {len(table)} curves identical at every common iteration."]
    if same < len(table):
        w = table.loc[table["max_diff"].idxmax()]
        out.append(f"Largest difference: {w['max_diff']:.2f} points ({w['model']} seed {w['seed']}, {w['split']} "
                   f"{w['difficulty']}, iteration {w['at']}); {int(table['differ'].sum())} of "
                   f"{int(table['n_iterations'].sum())} compared points differ.")
    for side, label in (("device_a", labels[0]), ("device_b", labels[1])):
        out.append(f"{label} device: {' | '.join(sorted(set('; '.join(table[side]).split('; '))))}")
    for side, label in (("only_a", labels[0]), ("only_b", labels[1])):
        if only[side]:
            out.append(f"Only in {label} (not compared): {'; '.join(only[side])}")
    return out


def to_markdown(table: pd.DataFrame, only: dict, labels: tuple[str, str]) -> str:
    a, b = labels
    head = (f"| model | seed | split | difficulty | iterations | differ | max \\|diff\\| (at) | last {a} | last {b} |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r.model} | {r.seed} | {r.split} | {r.difficulty} | {r.iterations} | {r.differ} of {r.n_iterations} | "
        f"{r.max_diff:.2f}{f' ({r.at})' if r.at is not None and r.max_diff > 0 else ''} | {r.last_a:.2f} | "
        f"{r.last_b:.2f} |\n" for r in table.itertuples())
    return head + body + "\n" + "\n".join(f"- {line}" for line in summary(table, only, labels)) + "\n"


def to_csv(table: pd.DataFrame, only: dict, labels: tuple[str, str]) -> str:
    return table.rename(columns={"last_a": f"last_{labels[0]}", "last_b": f"last_{labels[1]}",
                                 "device_a": f"device_{labels[0]}", "device_b": f"device_{labels[1]}"}).to_csv(index=False)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.agreement", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_a", metavar="RUN_A", help="a results directory (<storage>/<sweep name>)")
    p.add_argument("run_b", metavar="RUN_B", help="another results directory with the same trials")
    p.add_argument("--labels", nargs=2, default=("A", "B"), metavar=("LABEL_A", "LABEL_B"),
                   help="names of the two runs in the output (e.g. native avx2)")
    p.add_argument("--split", default=None, help="compare this split only (train, val or test; default all)")
    p.add_argument("--metric", default="iteration", help="iteration (default) or max_confidence")
    p.add_argument("--format", default="markdown", choices=("markdown", "csv"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    labels = tuple(args.labels)
    try:
        table, only = agreement(_side([args.run_a], labels[0]), _side([args.run_b], labels[1]),
                                metric=args.metric, split=args.split, labels=labels)
    except AnalysisError as e:
        print(f"analysis.agreement: error: {e}", file=sys.stderr)
        return 2
    render = to_markdown if args.format == "markdown" else to_csv
    sys.stdout.write(render(table, only, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
