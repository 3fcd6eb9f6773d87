"""Results: the tidy Parquet contract (DESIGN.md section 5).

`<storage>/<name>/` is a Parquet dataset and nothing else: one file per trial,
`trial-<trial_id>.parquet`, one row per (trial, split, difficulty, test_iters) (ROW_KEY). Every
reader takes the directory whole: pandas.read_parquet(dir), pyarrow.dataset.dataset(dir),
polars.read_parquet(dir), DuckDB's read_parquet('dir/*.parquet'). (polars and DuckDB skip no
names: they read or trip over every file below the directory, '_'-prefixed ones included.) So
everything else of a sweep (Ray's state, the saved config, logs, checkpoints, figures, temporary
files) lies beside it, in `<storage>/_<name>/` (state_dir).

Writes are atomic (a temporary file in `<storage>/_<name>/tmp/`, then a rename into place; on object
stores a single PUT), and rewriting a trial replaces its file, so a resumed sweep never
duplicates rows.

`accuracy` is the whole-sample accuracy (%) of the output after exactly test_iters iterations.
Columns beyond the contract: `accuracy_max_confidence` (whole-sample accuracy (%) when each
example takes the output of its most confident iteration among 1..test_iters), `node`, `device`,
`epochs_completed`, `error`. A failed trial's rows have null test_iters and NaN in both accuracy
columns.

Reading (`read_results`) reads what pyarrow reads: every `*.parquet` file under the directory
(names starting with '_' or '.' skipped, at any depth: directories of earlier versions kept their
state inside), whoever wrote it (`part-0.parquet` from plain pandas included), so the analysis and
`pandas.read_parquet(dir)` agree. Integer columns come back as pandas' nullable Int64. A file that lacks a
contract column, or holds one of another type, is an error naming the file.
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
    ("weight_decay", pa.float64()),
    ("n_params", pa.int64()),
    ("train_seconds", pa.float64()),
    ("node", pa.string()),
    ("device", pa.string()),
    ("error", pa.string()),
])
COLUMNS = SCHEMA.names
# Integer columns: Arrow int64 in the files (null where a failed trial has no measurement), pandas'
# nullable Int64 in DataFrames (numpy's int64 has no null: pandas would turn the column float64).
INTEGER_COLUMNS = [f.name for f in SCHEMA if pa.types.is_integer(f.type)]
REQUIRED = ["sweep", "trial_id", "task", "model", "width", "depth", "max_iters", "alpha", "seed",
            "train_difficulty", "split", "difficulty", "test_iters", "accuracy", "n_examples",
            "status", "epochs", "lr", "n_params", "train_seconds"]
STATUSES = ("ok", "diverged", "stopped", "failed")
FINISHED = ("ok", "diverged", "stopped")      # a trial with such rows is never trained again
SPLITS = ("train", "val", "test")
ROW_KEY = ["trial_id", "split", "difficulty", "test_iters"]     # unique within a sweep directory


# ---- building rows: every row of a trial (trained, diverged or failed) is made here ----------------

def trial_columns(cfg, trial_id: str) -> dict:
    """The columns every row of a trial shares that come from its TrialConfig (one place, so a new
    config column reaches trained and failed rows alike)."""
    return {"sweep": cfg.sweep, "trial_id": trial_id, "task": cfg.task, "model": cfg.model,
            "width": cfg.width, "depth": cfg.depth, "max_iters": cfg.max_iters, "alpha": cfg.train.alpha,
            "seed": cfg.seed, "train_difficulty": cfg.data.train, "epochs": cfg.train.epochs,
            "lr": cfg.train.lr, "weight_decay": cfg.train.weight_decay}


def trained_rows(cfg, trial_id: str, evaluations: list, *, status: str, epochs_completed: int,
                 n_params: int, train_seconds: float, node: str, device: str) -> list[dict]:
    """Rows of a trained (status 'ok'), diverged or early-stopped ('stopped': the scheduler ended it
    after `epochs_completed` of its epochs) trial: one per (split, difficulty, test_iters).
    `evaluations`: [(split, difficulty, result)] where result.accuracy('iteration') and
    result.accuracy('max_confidence') list percents after 1..K iterations (deepthink.evaluate)."""
    common = {**trial_columns(cfg, trial_id), "status": status, "epochs_completed": epochs_completed,
              "n_params": n_params, "train_seconds": train_seconds, "node": node, "device": device,
              "error": None}
    rows = []
    for split, difficulty, res in evaluations:
        at_iteration, max_confidence = res.accuracy("iteration"), res.accuracy("max_confidence")
        for i, (acc, acc_conf) in enumerate(zip(at_iteration, max_confidence, strict=True), start=1):
            rows.append({**common, "split": split, "difficulty": difficulty, "test_iters": i,
                         "accuracy": acc, "accuracy_max_confidence": acc_conf, "n_examples": res.n_examples})
    return rows


def failed_rows(cfg, trial_id: str, error: str, *, epochs_completed: int | None = None,
                node: str | None = None, device: str | None = None) -> list[dict]:
    """Rows of a trial that failed for good: one per (split, difficulty) it would have been
    evaluated on (train and val at the training difficulty, test at each eval difficulty), with
    status 'failed', the error text, and nulls where a measurement would be (test_iters, accuracy,
    accuracy_max_confidence, n_examples, n_params, train_seconds). A later --resume that completes
    the trial replaces this file with the real rows."""
    places = [("train", cfg.data.train), ("val", cfg.data.train)] + [("test", d) for d in cfg.data.eval]
    base = {**trial_columns(cfg, trial_id), "test_iters": None, "accuracy": None,
            "accuracy_max_confidence": None, "n_examples": None, "status": "failed",
            "epochs_completed": epochs_completed, "n_params": None, "train_seconds": None,
            "node": node, "device": device, "error": error}
    return [{**base, "split": split, "difficulty": d} for split, d in places]


# ---- writing and reading -------------------------------------------------------------------------

def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or a URI (s3://, gs://, file://) via pyarrow.fs."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def join_uri(uri: str, *parts: str) -> str:
    """`uri` with `parts` appended to its path, before any query string: pyarrow reads options such
    as a custom endpoint from the query (s3://b/runs?endpoint_override=HOST:PORT&scheme=http, + "x"
    -> s3://b/runs/x?endpoint_override=HOST:PORT&scheme=http), so nothing may follow it."""
    base, sep, query = uri.partition("?") if "://" in uri else (uri, "", "")
    return "/".join([base.rstrip("/"), *parts]) + sep + query


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
    df = df[COLUMNS].astype({c: "Int64" for c in INTEGER_COLUMNS})   # the files' pandas metadata says Int64 too
    return pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)


def state_dir(sweep_uri: str) -> str:
    """Where everything of a sweep but its results lies: `<storage>/_<name>` beside the results
    directory `<storage>/<name>` (a path or a URI, as given; a URI's query string stays at the end,
    as in join_uri: s3://b/runs/x?endpoint_override=H -> s3://b/runs/_x?endpoint_override=H). Sweep
    names never start with '_'."""
    base, sep, query = sweep_uri.partition("?") if "://" in sweep_uri else (sweep_uri, "", "")
    head, _, name = base.rstrip("/").rpartition("/")
    return (f"{head}/_{name}" if head or base.startswith("/") else f"_{name}") + sep + query


def trial_file(sweep_dir: str, trial_id: str) -> str:
    return f"{sweep_dir.rstrip('/')}/trial-{trial_id}.parquet"


class FinishedResultsExist(FileExistsError):
    """write_trial was asked to replace a file that holds a finished trial's rows (ok/diverged)."""


def write_trial(sweep_uri: str, trial_id: str, rows: list[dict] | pd.DataFrame, *,
                replace_finished: bool = False) -> str:
    """Atomically write (or replace) one trial's rows. Returns the file path/URI written.

    A file that already holds finished rows (status ok, diverged or stopped) is never replaced by failed
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
        tmp_dir = f"{state_dir(base)}/tmp"      # not in the dataset: a crash may leave a partial file
        fs.create_dir(tmp_dir, recursive=True)
        tmp = f"{tmp_dir}/trial-{trial_id}-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, tmp, filesystem=fs)
        os.replace(tmp, final)
    else:   # object stores: one PUT is atomic; no rename needed
        pq.write_table(table, final, filesystem=fs)
    return final if "://" not in sweep_uri else join_uri(sweep_uri, final.rsplit("/", 1)[1])


def file_status(fs: pafs.FileSystem, path: str) -> str | None:
    """'ok' | 'diverged' | 'stopped' | 'failed' | 'corrupt' for one trial file; None when there is none.
    A file holding any 'failed' row counts as failed (a failed trial's rows are all failed);
    one that cannot be read, or has no or null statuses, is 'corrupt'."""
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    try:
        statuses = set(pq.read_table(path, columns=["status"], filesystem=fs).column("status").to_pylist())
    except Exception:    # pyarrow raises ArrowInvalid, OSError, ... on a truncated or foreign file
        return "corrupt"
    if not statuses or None in statuses:
        return "corrupt"
    if "failed" in statuses:
        return "failed"
    for one in ("diverged", "stopped"):
        if statuses == {one}:
            return one
    return "ok"


def finished_status(fs: pafs.FileSystem, path: str) -> str | None:
    """'ok', 'diverged' or 'stopped' when the file at `path` holds a finished trial's rows; None
    when there is no file, it holds failed rows, or it cannot be read (such a file may be replaced)."""
    status = file_status(fs, path)
    return status if status in FINISHED else None


def trial_statuses(sweep_uri: str) -> dict[str, str]:
    """{trial id: file_status} for every trial file of the sweep directory."""
    fs, base = filesystem(sweep_uri)
    statuses = {tid: file_status(fs, trial_file(base, tid)) for tid in sorted(written_trials(sweep_uri))}
    return {tid: s for tid, s in statuses.items() if s is not None}


def written_trials(sweep_uri: str) -> set[str]:
    """Trial ids that already have a results file."""
    fs, base = filesystem(sweep_uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    except (FileNotFoundError, OSError):
        return set()
    return {i.base_name[len("trial-"):-len(".parquet")] for i in infos
            if i.base_name.startswith("trial-") and i.base_name.endswith(".parquet")}


def dataset_files(fs: pafs.FileSystem, path: str) -> list[str]:
    """The files pyarrow's dataset reader takes from directory `path`: every `*.parquet` file below
    it, skipping any file or directory whose name starts with '_' or '.' (Ray state, checkpoints,
    temporary files, figures)."""
    files = []
    for info in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
        parts = info.path[len(path):].strip("/").split("/")
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet") and \
                not any(p.startswith(("_", ".")) for p in parts):
            files.append(info.path)
    return sorted(files)


class ResultsError(ValueError):
    """A results file that does not follow the contract; the message names the file."""


def _read_file(fs: pafs.FileSystem, path: str, uri: str) -> pa.Table:
    """One file, checked against the contract and cast to SCHEMA (absent extra columns as nulls)."""
    try:
        table = pq.read_table(path, filesystem=fs)
    except (pa.ArrowInvalid, OSError) as e:
        raise ResultsError(f"{uri}: {path} is not a readable Parquet file ({e})") from None
    names = table.schema.names
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ResultsError(f"{uri}: {path} lacks the contract columns {missing} (DESIGN.md section 5)")
    columns = []
    for f in SCHEMA:
        if f.name not in names:
            columns.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(f.name)
        if not _castable(col.type, f.type):
            raise ResultsError(f"{uri}: {path}: column '{f.name}' is {col.type}; the contract says {f.type}")
        columns.append(col.cast(f.type))
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _castable(found: pa.DataType, want: pa.DataType) -> bool:
    """Same kind of value: integers for int64 (floats too, as pandas writes nullable int columns),
    numbers for float64, strings for string; a column of nulls fits anything."""
    if found == want or pa.types.is_null(found):
        return True
    if pa.types.is_integer(want):
        return pa.types.is_integer(found) or pa.types.is_floating(found)
    if pa.types.is_floating(want):
        return pa.types.is_integer(found) or pa.types.is_floating(found)
    if pa.types.is_string(want):
        return pa.types.is_string(found) or pa.types.is_large_string(found) or pa.types.is_dictionary(found)
    return False


def read_results(*uris: str) -> pd.DataFrame:
    """All rows of one or more sweep directories (or single files) as one DataFrame, in SCHEMA's
    columns: the rows `pandas.read_parquet(dir)` gives, checked against the contract. Integer
    columns are pandas' nullable Int64 (a failed trial's rows have <NA> in test_iters, n_examples,
    n_params, ...); float columns float64 with NaN; strings object."""
    tables = []
    for uri in uris:
        fs, path = filesystem(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"no results at {uri}")
        files = dataset_files(fs, path) if info.type == pafs.FileType.Directory else [path]
        tables += [_read_file(fs, f, uri) for f in files]
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    return table.to_pandas(types_mapper=_PANDAS_TYPES.get)


_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype()}     # integer columns stay integers beside nulls
