"""Results: the tidy Parquet contract (DESIGN.md section 5).

`<storage>/<name>/` is a Parquet dataset: one file per trial, `trial-<trial_id>.parquet`, one row per
(trial, split, difficulty, metric, test_iters). pandas.read_parquet(dir) reads it whole; pyarrow
ignores names starting with '_' or '.', so Ray's state (`_ray/`), checkpoints (`_checkpoints/`) and
temporary files (`.tmp-*`) can live beside the data.

Writes are atomic (temporary name, then rename; on object stores a single PUT), and rewriting a
trial replaces its file, so a resumed sweep never duplicates rows.

Columns beyond the contract: `metric` ('iteration' = accuracy after exactly test_iters iterations;
'max_confidence' = per example, the output of the most confident iteration among 1..test_iters),
`node`, `device`, `epochs_completed`, `error`.
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
    ("metric", pa.string()),
    ("test_iters", pa.int64()),
    ("accuracy", pa.float64()),
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
METRICS = ("iteration", "max_confidence")
ROW_KEY = ["trial_id", "split", "difficulty", "metric", "test_iters"]


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
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = None
    for col, allowed in (("status", STATUSES), ("split", SPLITS), ("metric", METRICS)):
        bad = set(df[col].dropna()) - set(allowed)     # metric is null on a failed trial's rows
        if bad:
            raise ValueError(f"{col} must be one of {allowed}, found {sorted(bad)}")
    return pa.Table.from_pandas(df[COLUMNS], schema=SCHEMA, preserve_index=False)


def trial_file(sweep_dir: str, trial_id: str) -> str:
    return f"{sweep_dir.rstrip('/')}/trial-{trial_id}.parquet"


def write_trial(sweep_uri: str, trial_id: str, rows: list[dict] | pd.DataFrame) -> str:
    """Atomically write (or replace) one trial's rows. Returns the file path/URI written."""
    fs, base = filesystem(sweep_uri)
    table = to_table(rows)
    if table.num_rows and set(table.column("trial_id").to_pylist()) != {trial_id}:
        raise ValueError(f"rows for trial {trial_id} carry other trial ids")
    fs.create_dir(base, recursive=True)
    final = trial_file(base, trial_id)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{base}/.tmp-{trial_id}-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, tmp, filesystem=fs)
        os.replace(tmp, final)
    else:   # object stores: one PUT is atomic; no rename needed
        pq.write_table(table, final, filesystem=fs)
    return final if "://" not in sweep_uri else sweep_uri.rstrip("/") + "/" + final.rsplit("/", 1)[1]


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
    """All rows of one or more sweep directories (or single files) as one DataFrame."""
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
            if not files:
                continue
            frames.append(pq.read_table(files, filesystem=fs, schema=SCHEMA).to_pandas())
        else:
            frames.append(pq.read_table(path, filesystem=fs, schema=SCHEMA).to_pandas())
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return df
