"""Results: the tidy Parquet contract (DESIGN.md section 5).

`<storage>/<name>/` is a Parquet dataset: one file per trial, `trial-<trial_id>.parquet`, one row per
(trial, split, difficulty, test_iters) (ROW_KEY). pandas.read_parquet(dir) reads it whole; pyarrow
ignores names starting with '_' or '.', so Ray's state (`_ray/`), checkpoints (`_checkpoints/`) and
temporary files (`.tmp-*`) can live beside the data.

Writes are atomic (temporary name, then rename; on object stores a single PUT), and rewriting a
trial replaces its file, so a resumed sweep never duplicates rows.

`accuracy` is the whole-sample accuracy (%) of the output after exactly test_iters iterations.
Columns beyond the contract: `accuracy_max_confidence` (whole-sample accuracy (%) when each
example takes the output of its most confident iteration among 1..test_iters), `node`, `device`,
`epochs_completed`, `error`. A failed trial's rows have null test_iters and NaN in both accuracy
columns.

Older versions wrote two rows per key, told apart by a `metric` column ('iteration' |
'max_confidence'). read_results() still reads such files: it pivots them to one row per key
(see LEGACY_METRIC_COLUMN). pandas.read_parquet on such a directory gives the old layout.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

SCHEMA = pa.schema([
    ("sweep", pa.string()),
    ("trial_id", pa.string()),
    ("task", pa.string()),
    ("model", pa.string()),
    ("width", pa.int64()),
    ("depth", pa.int64()),
    ("max_iters", pa.int64()),
    ("alpha", pa.float64()),
    ("seed", pa.int64()),
    ("train_difficulty", pa.int64()),
    ("split", pa.string()),
    ("difficulty", pa.int64()),
    ("test_iters", pa.int64()),
    ("accuracy", pa.float64()),
    ("accuracy_max_confidence", pa.float64()),
    ("n_examples", pa.int64()),
    ("status", pa.string()),
    ("epochs", pa.int64()),
    ("epochs_completed", pa.int64()),
    ("lr", pa.float64()),
    ("n_params", pa.int64()),
    ("train_seconds", pa.float64()),
    ("node", pa.string()),
    ("device", pa.string()),
    ("error", pa.string()),
])
COLUMNS = SCHEMA.names
REQUIRED = ["sweep", "trial_id", "task", "model", "width", "depth", "max_iters", "alpha", "seed",
            "train_difficulty", "split", "difficulty", "test_iters", "accuracy", "n_examples",
            "status", "epochs", "lr", "n_params", "train_seconds"]
STATUSES = ("ok", "diverged", "failed")
SPLITS = ("train", "val", "test")
ROW_KEY = ["trial_id", "split", "difficulty", "test_iters"]     # unique within a sweep directory
# The old layout's column: two rows per ROW_KEY, metric 'iteration' (-> accuracy) and
# 'max_confidence' (-> accuracy_max_confidence); null on a failed trial's rows.
LEGACY_METRIC_COLUMN = "metric"
LEGACY_SCHEMA = pa.schema([f for f in SCHEMA if f.name != "accuracy_max_confidence"]
                          + [pa.field(LEGACY_METRIC_COLUMN, pa.string())])


def trial_columns(cfg, trial_id: str) -> dict:
    """The columns every row of a trial shares that come from its TrialConfig (one place, so a new
    config column reaches the trainer's rows and the sweep's failed rows alike)."""
    return {"sweep": cfg.sweep, "trial_id": trial_id, "task": cfg.task, "model": cfg.model,
            "width": cfg.width, "depth": cfg.depth, "max_iters": cfg.max_iters, "alpha": cfg.train.alpha,
            "seed": cfg.seed, "train_difficulty": cfg.data.train, "epochs": cfg.train.epochs,
            "lr": cfg.train.lr}


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a URI (s3://, gs://, file://) via pyarrow.fs."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def to_table(rows: list[dict] | pd.DataFrame) -> pa.Table:
    df = pd.DataFrame(rows)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"result rows lack required columns {missing}")
    unknown = [c for c in df.columns if c not in COLUMNS]
    if unknown:     # e.g. the old `metric` column: its rows would duplicate keys
        raise ValueError(f"result rows have columns outside the schema {unknown}")
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = None
    for col, allowed in (("status", STATUSES), ("split", SPLITS)):
        bad = set(df[col].dropna()) - set(allowed)
        if bad:
            raise ValueError(f"{col} must be one of {allowed}, found {sorted(bad)}")
    dup = df.duplicated(ROW_KEY)
    if dup.any():
        first = df.loc[dup, ROW_KEY].iloc[0].to_dict()
        raise ValueError(f"result rows must be one per {ROW_KEY}; {int(dup.sum())} repeat a key, e.g. {first}")
    return pa.Table.from_pandas(df[COLUMNS], schema=SCHEMA, preserve_index=False)


def trial_file(sweep_dir: str, trial_id: str) -> str:
    return f"{sweep_dir.rstrip('/')}/trial-{trial_id}.parquet"


class FinishedResultsExist(FileExistsError):
    """write_trial was asked to replace a file that holds a finished trial's rows (ok/diverged)."""


def write_trial(sweep_uri: str, trial_id: str, rows: list[dict] | pd.DataFrame, *,
                replace_finished: bool = False) -> str:
    """Atomically write (or replace) one trial's rows. Returns the file path/URI written.

    A file that already holds finished rows (status ok or diverged) is never replaced by failed
    rows, and by finished ones only with `replace_finished=True` (`deepthink train` re-evaluating
    a trained model); otherwise FinishedResultsExist is raised and the file is left as it is."""
    fs, base = filesystem(sweep_uri)
    table = to_table(rows)
    if table.num_rows and set(table.column("trial_id").to_pylist()) != {trial_id}:
        raise ValueError(f"rows for trial {trial_id} carry other trial ids")
    fs.create_dir(base, recursive=True)
    final = trial_file(base, trial_id)
    held = finished_status(fs, final)
    if held and not (replace_finished and "failed" not in set(table.column("status").to_pylist())):
        raise FinishedResultsExist(f"{final} already holds trial {trial_id}'s finished results "
                                   f"(status {held}); not replaced")
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{base}/.tmp-{trial_id}-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, tmp, filesystem=fs)
        os.replace(tmp, final)
    else:   # object stores: one PUT is atomic; no rename needed
        pq.write_table(table, final, filesystem=fs)
    return final if "://" not in sweep_uri else sweep_uri.rstrip("/") + "/" + final.rsplit("/", 1)[1]


def finished_status(fs: pafs.FileSystem, path: str) -> str | None:
    """'ok' or 'diverged' when the file at `path` holds a finished trial's rows; None when there is
    no file, it holds failed rows, or it cannot be read (such a file may be replaced)."""
    try:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        statuses = set(pq.read_table(path, columns=["status"], filesystem=fs).column("status").to_pylist())
    except Exception:      # truncated or foreign file: not finished results
        return None
    if not statuses or not statuses <= {"ok", "diverged"}:
        return None
    return "ok" if "ok" in statuses else "diverged"


def written_trials(sweep_uri: str) -> set[str]:
    """Trial ids that already have a results file."""
    fs, base = filesystem(sweep_uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    except (FileNotFoundError, OSError):
        return set()
    return {i.base_name[len("trial-"):-len(".parquet")] for i in infos
            if i.base_name.startswith("trial-") and i.base_name.endswith(".parquet")}


def read_results(*uris: str) -> pd.DataFrame:
    """All rows of one or more sweep directories (or single files) as one DataFrame, in SCHEMA's
    columns, one row per ROW_KEY. Files in the old layout (a `metric` column) are pivoted."""
    frames = []
    for uri in uris:
        fs, path = filesystem(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"no results at {uri}")
        if info.type == pafs.FileType.Directory:
            # only the trial files: a stray file (a figure, notes) must not break reading
            files = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(path))
                           if i.base_name.startswith("trial-") and i.base_name.endswith(".parquet"))
        else:
            files = [path]
        if not files:
            continue
        legacy = [f for f in files if LEGACY_METRIC_COLUMN in pq.read_schema(f, filesystem=fs).names]
        current = [f for f in files if f not in set(legacy)]
        if current:
            frames.append(pq.read_table(current, filesystem=fs, schema=SCHEMA).to_pandas())
        if legacy:
            frames.append(from_legacy(pq.read_table(legacy, filesystem=fs, schema=LEGACY_SCHEMA).to_pandas()))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return df


def from_legacy(old: pd.DataFrame) -> pd.DataFrame:
    """Old-layout rows (two per key, told apart by `metric`) -> one row per key in SCHEMA's columns:
    `accuracy` from metric 'iteration', `accuracy_max_confidence` from metric 'max_confidence',
    matched on every other column. Rows with a null metric (a failed trial's) keep their accuracy
    and get NaN for accuracy_max_confidence."""
    m = LEGACY_METRIC_COLUMN
    bad = set(old[m].dropna()) - {"iteration", "max_confidence"}
    if bad:
        raise ValueError(f"old-layout results with unknown {m} values {sorted(bad)}")
    keys = [c for c in old.columns if c not in (m, "accuracy")]
    base = old[old[m] != "max_confidence"].drop(columns=m)
    conf = (old.loc[old[m] == "max_confidence", keys + ["accuracy"]]
               .rename(columns={"accuracy": "accuracy_max_confidence"}))
    # pandas matches null keys with null keys (error, node, ... are null on most rows). A left
    # merge keeps the file's row order (the old writer always wrote both rows of a key).
    out = base.merge(conf, on=keys, how="left", validate="one_to_one")
    return out[COLUMNS].reset_index(drop=True)
