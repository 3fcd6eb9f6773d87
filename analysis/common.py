"""Shared pieces of the analysis scripts: load sweep directories, select rows, describe trials.

Used by `python -m analysis.tables` and `python -m analysis.figures`; not run on its own.

A *trial* is one training run, keyed by (sweep, trial_id). Its config columns (CONFIG_KEYS) are
the same on every one of its rows; its `status` says whether its numbers may be averaged
('ok') or must be reported separately ('stopped' early by the scheduler, 'diverged', 'failed').
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from deepthink.results import read_results

# Columns that describe a trial's configuration: what tables and figures group by.
CONFIG_KEYS = ["task", "model", "width", "depth", "max_iters", "alpha", "lr", "weight_decay", "epochs",
               "train_difficulty"]
GROUP_KEYS = CONFIG_KEYS + ["sweep"]          # allowed for --rows / --cols
# Preference order for the default column key: the first of these that varies.
DEFAULT_COL_ORDER = ["depth", "width", "alpha", "max_iters", "lr", "weight_decay", "epochs", "train_difficulty",
                     "task", "sweep"]
STATUS_ORDER = {"ok": 0, "stopped": 1, "diverged": 2, "failed": 3}   # worst status wins if rows disagree
# --metric -> the accuracy column it reads: the output after exactly test_iters iterations, or per
# example the most confident output among iterations 1..test_iters.
METRIC_COLUMNS = {"iteration": "accuracy", "max_confidence": "accuracy_max_confidence"}


class AnalysisError(ValueError):
    """A problem with the inputs or options of an analysis script; the message says what to do."""


def load(dirs: list[str]) -> pd.DataFrame:
    """All rows of the given sweep directories, with a `trial` key column (sweep/trial_id).

    Raises AnalysisError for a missing directory, an unreadable one, an empty dataset, or a trial
    that appears in two of the given directories (the same sweep given twice would double-count)."""
    if not dirs:
        raise AnalysisError("give at least one results directory (<storage>/<sweep name>)")
    frames = []
    for i, d in enumerate(dirs):
        if "://" not in d and not Path(d).expanduser().exists():
            raise AnalysisError(f"{d}: no such results directory")
        try:
            part = read_results(d)
        except FileNotFoundError:
            raise AnalysisError(f"{d}: no such results directory") from None
        except Exception as e:   # pyarrow raises several types for corrupt/non-Parquet content
            raise AnalysisError(f"{d}: cannot read it as a Parquet results dataset ({e})") from None
        if part.empty:
            raise AnalysisError(f"{d}: the dataset has no result rows (no trial has finished yet?)")
        part["_source"] = i      # the argument's position: the same directory twice is caught too
        frames.append(part)
    df = pd.concat(frames, ignore_index=True)
    df["trial"] = df["sweep"].astype(str) + "/" + df["trial_id"].astype(str)
    sources = df.groupby("trial")["_source"].nunique()
    twice = sources[sources > 1]
    if len(twice):
        t = twice.index[0]
        where = [dirs[i] for i in sorted(df.loc[df["trial"] == t, "_source"].unique())]
        raise AnalysisError(f"trial {t} is in more than one of the given directories ({', '.join(where)}); "
                            f"give each sweep directory once")
    return df.drop(columns="_source")


def choose(df: pd.DataFrame, column: str, value, option: str) -> pd.DataFrame:
    """Rows where `column == value`; an AnalysisError listing the values present if there are none."""
    out = df[df[column] == value]
    if out.empty:
        present = ", ".join(fmt_value(v) for v in sorted(df[column].dropna().unique()))
        raise AnalysisError(f"{option} {value}: no rows have {column} = {value}; values present: {present}")
    return out


def metric_column(metric: str) -> str:
    """The accuracy column for --metric; an AnalysisError naming the choices for anything else."""
    try:
        return METRIC_COLUMNS[metric]
    except KeyError:
        raise AnalysisError(f"--metric {metric}: expected one of {', '.join(METRIC_COLUMNS)}") from None


def trials(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its key, seed, config, status (the worst over its rows) and error text."""
    key = df[["trial", "sweep", "trial_id", "seed"] + CONFIG_KEYS].drop_duplicates("trial")
    worst = (df.assign(_s=df["status"].map(STATUS_ORDER))
               .groupby("trial")["_s"].max()
               .map({v: k for k, v in STATUS_ORDER.items()}))
    errors = df.dropna(subset=["error"]).drop_duplicates("trial").set_index("trial")["error"]
    out = key.set_index("trial")
    out["status"] = worst
    out["error"] = errors.reindex(out.index)
    return out.reset_index()


def varying(df: pd.DataFrame, keys: list[str]) -> list[str]:
    """The keys among `keys` that take more than one value in `df` (NaN counts as a value)."""
    return [k for k in keys if df[k].nunique(dropna=False) > 1]


def determined_by(df: pd.DataFrame, key: str, by: list[str]) -> bool:
    """True if `key` has one value within every group of `by` (so it adds nothing to the grouping)."""
    if not by:
        return df[key].nunique(dropna=False) <= 1
    return bool((df.groupby(by, dropna=False)[key].nunique(dropna=False) <= 1).all())


def extra_keys(t: pd.DataFrame, fixed: list[str]) -> list[str]:
    """Config keys that vary among trials `t` and are not determined by the `fixed` keys:
    the keys that must split tables/lines further so that no cell pools different configs."""
    out: list[str] = []
    for k in CONFIG_KEYS:   # not 'sweep': the same config from two sweeps is pooled on purpose
        if k in fixed or k in out:
            continue
        if t[k].nunique(dropna=False) > 1 and not determined_by(t, k, fixed + out):
            out.append(k)
    return out


def default_cols(t: pd.DataFrame, rows: str) -> str:
    """The first of DEFAULT_COL_ORDER that varies among trials (other than `rows`), else 'width'."""
    for k in DEFAULT_COL_ORDER:
        if k != rows and t[k].nunique(dropna=False) > 1 and not determined_by(t, k, [rows]):
            return k
    return "width" if rows != "width" else "depth"


def fmt_value(v) -> str:
    """A config value as people write it: 44, 0.01, dt_recall."""
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def describe(values: dict) -> str:
    """'dt_recall, alpha=0.01' from {'model': 'dt_recall', 'alpha': 0.01} (model shown bare)."""
    parts = []
    for k, v in values.items():
        parts.append(fmt_value(v) if k == "model" else f"{k}={fmt_value(v)}")
    return ", ".join(parts)


def difficulty_label(task: str, difficulty) -> str:
    """'44 bits' using the task registry's difficulty name; 'difficulty 44' if the task is unknown."""
    try:
        from deepthink.tasks import get_task
        return f"{fmt_value(difficulty)} {get_task(task).difficulty_name}"
    except (ImportError, KeyError):
        return f"difficulty {fmt_value(difficulty)}"


def excluded_note(bad: pd.DataFrame, cell_of) -> str | None:
    """'2 diverged, 1 failed trials not averaged: recur_net/44: seed 3 (diverged); ...' or None.

    `bad` holds trial rows whose status is not 'ok'; `cell_of(row)` names the cell/line a trial
    belongs to."""
    if bad.empty:
        return None
    counts = bad["status"].value_counts()
    head = ", ".join(f"{counts[s]} {s}" for s in ("diverged", "failed") if s in counts)
    noun = "trial" if len(bad) == 1 else "trials"
    by_cell: dict[str, list[str]] = {}
    for _, r in bad.sort_values(["status", "seed"]).iterrows():
        why = r["status"]
        if isinstance(r["error"], str) and r["error"]:
            err = " ".join(r["error"].split())
            why += f": {err[:60]}{'...' if len(err) > 60 else ''}"
        by_cell.setdefault(cell_of(r), []).append(f"seed {r['seed']} ({why})")
    body = "; ".join(f"{cell}: {', '.join(items)}" for cell, items in by_cell.items())
    return f"{head} {noun} not averaged: {body}"
