"""Every common Parquet reader takes a real sweep's results directory whole (issue 12, part 6).

Two real sweeps on embedded Ray write into one storage: a prefix-sums sweep with an ok and a diverged
trial, and a chess sweep whose only trial fails for good (no chess data; max_failures 0), so its
rows hold nulls where measurements would be. The results directory `<storage>/<name>/` must hold
only Parquet (Ray's state, config, logs and lock lie beside it in `<storage>/_<name>/`), because
polars and DuckDB skip no names: `polars.read_parquet(DIR)` failed on `_logs/sweep.log`.

Each reader, table-driven, must give the rows the sweep file implies; integer columns must stay
integers beside the failed trial's nulls (Arrow int64 in the files, pandas' nullable Int64 from
deepthink's reader and from pandas.read_parquet). A directory in the layout of earlier versions is
moved into the new one before a sweep touches it.
"""
import fcntl
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from deepthink.results import INTEGER_COLUMNS, read_results, write_trial
from deepthink.sweep import state
from deepthink.sweep.state import SweepError, move_old_layout
from test_sweep import ROOT, expected_keys, run_cli, tiny_sweep
from test_sweep_lock import _rows

N_OK = 2 * 3 * 3          # tiny_sweep with two learning rates: trials x (train, val, test 10) x 3 iterations
N_FAILED = 3              # one failed trial: one row per (split, difficulty), test_iters null


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("readers")
    path, doc = tiny_sweep(tmp, name="mixed", grid={"model": ["dt_recall"], "max_iters": [2], "width": [8],
                                                   "lr": [0.001, 1.0e+30]})
    assert len(expected_keys(doc)) == N_OK
    done = run_cli(path, "--data-root", tmp / "data")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    path, _ = tiny_sweep(tmp, name="failed", task="chess", max_failures=0,
                         data={"train": 0, "eval": [100], "count": 50},
                         grid={"model": ["dt_net"], "max_iters": [2], "width": [8]})
    done = run_cli(path, "--data-root", tmp / "no chess data")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp / "results"


def test_the_results_directory_holds_only_parquet_and_the_rest_lies_beside_it(storage):
    for name, trials in (("mixed", 2), ("failed", 1)):
        inside = list((storage / name).rglob("*"))
        assert len(inside) == trials and all(p.is_file() and p.match("trial-*.parquet") for p in inside), inside
        beside = storage / f"_{name}"
        assert (beside / "ray" / state.TUNER_STATE).is_file() and (beside / "config" / "sweep.yaml").is_file()
        assert (beside / "logs" / "sweep.log").is_file()


def _duckdb_count(pattern: str) -> int:
    return duckdb.sql(f"SELECT count(*) FROM read_parquet('{pattern}')").fetchall()[0][0]


READERS = {
    "pandas.read_parquet(DIR)": lambda d: len(pd.read_parquet(d)),
    "pyarrow.dataset.dataset(DIR)": lambda d: ds.dataset(d, format="parquet").count_rows(),
    "pyarrow.parquet.read_table(DIR)": lambda d: pq.read_table(d).num_rows,
    "polars.read_parquet(DIR)": lambda d: pl.read_parquet(d).height,
    "polars.scan_parquet(DIR)": lambda d: pl.scan_parquet(d).select(pl.len()).collect().item(),
    "polars.read_parquet(DIR/*.parquet)": lambda d: pl.read_parquet(f"{d}/*.parquet").height,
    "polars.scan_parquet(DIR/**/*.parquet)": lambda d: pl.scan_parquet(f"{d}/**/*.parquet").collect().height,
    "duckdb read_parquet('DIR/*.parquet')": lambda d: _duckdb_count(f"{d}/*.parquet"),
    "duckdb read_parquet('DIR/**/*.parquet')": lambda d: _duckdb_count(f"{d}/**/*.parquet"),
    "deepthink.results.read_results(DIR)": lambda d: len(read_results(d)),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name,rows", [("mixed", N_OK), ("failed", N_FAILED)])
def test_every_reader_reads_the_results_directory_whole(storage, reader, name, rows):
    assert READERS[reader](str(storage / name)) == rows


def test_integer_columns_stay_integers_beside_a_failed_trials_nulls(storage):
    failed, mixed = str(storage / "failed"), str(storage / "mixed")
    table = ds.dataset(failed, format="parquet").to_table()
    for c in INTEGER_COLUMNS:                               # the files: Arrow int64, nulls allowed
        assert table.schema.field(c).type == pa.int64(), c
    assert table.column("test_iters").null_count == N_FAILED

    for df in (read_results(failed), read_results(mixed, failed), pd.read_parquet(failed)):
        for c in INTEGER_COLUMNS:
            assert df[c].dtype == pd.Int64Dtype(), (c, df[c].dtype)
    both = read_results(mixed, failed)
    assert both.test_iters.isna().sum() == N_FAILED and set(both.test_iters.dropna()) == {1, 2, 3}
    assert both.accuracy.dtype == "float64" and both.accuracy.isna().sum() == N_FAILED

    frame = pl.read_parquet(failed)
    assert all(frame.schema[c] == pl.Int64 for c in INTEGER_COLUMNS) and frame["test_iters"].null_count() == N_FAILED
    types = {r[0]: r[1] for r in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{failed}/*.parquet')").fetchall()}
    assert all(types[c] == "BIGINT" for c in INTEGER_COLUMNS), types


def test_an_empty_read_has_the_same_dtypes(tmp_path):
    (tmp_path / "empty").mkdir()
    df = read_results(str(tmp_path / "empty"))
    assert df.empty and all(df[c].dtype == pd.Int64Dtype() for c in INTEGER_COLUMNS)


# ---- directories written by earlier versions ------------------------------------------------------

def _old_layout(tmp_path) -> Path:
    d = tmp_path / "results" / "old"
    write_trial(str(d), "a_00000", _rows("a_00000"))
    for sub, f in (("_ray", state.TUNER_STATE), ("_config", "sweep.yaml"), ("_logs", "sweep.log"),
                   ("_corrupt", "trial-x.parquet"), ("_figures", "accuracy.png"), ("_stops", "a_00000.json")):
        (d / sub).mkdir()
        (d / sub / f).write_text("x")
    (d / "_driver.lock").write_text("pid 1")
    return d


def test_an_earlier_versions_directory_is_moved_into_the_new_layout(tmp_path):
    d = _old_layout(tmp_path)
    notes = []
    assert move_old_layout(str(d), notes.append) == ["_ray", "_config", "_logs", "_corrupt", "_figures", "_stops"]
    assert [p.name for p in d.iterdir()] == ["trial-a_00000.parquet"] and pl.read_parquet(d).height == 1
    beside = tmp_path / "results" / "_old"
    assert sorted(p.name for p in beside.iterdir()) == ["config", "corrupt", "figures", "logs", "ray", "stops", "tmp"]
    assert (beside / "stops" / "a_00000.json").exists() and state.stop_marker(str(d), "a_00000") == str(beside / "stops" / "a_00000.json")
    assert state.has_ray_state(str(d)) and "only Parquet" in notes[0]
    assert move_old_layout(str(d), notes.append) == [] and len(notes) == 1, "once"


def test_a_directory_an_earlier_driver_still_runs_is_left_alone(tmp_path):
    d = _old_layout(tmp_path)
    with open(d / "_driver.lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(SweepError, match="in use by a driver of an earlier deepthink"):
            move_old_layout(str(d))
    assert (d / "_ray").is_dir() and not (tmp_path / "results" / "_old" / "ray").exists()


@pytest.mark.slow
def test_an_interrupted_sweep_of_the_old_layout_resumes(tmp_path):
    """Interrupted, its state put back where earlier versions kept it; the printed --resume moves it
    out and Ray restores the experiment from the new place: every trial once."""
    from test_sweep_faults import Sweep, check_complete, medium_sweep
    path, doc = medium_sweep(tmp_path, "legacy")
    run = Sweep(tmp_path, path, "--data-root", tmp_path / "data")
    run.wait_for(r"done +\w+ ")
    run.proc.send_signal(signal.SIGINT)
    assert run.finish() == 130, run.text()[-3000:]
    d, beside = tmp_path / "results" / "legacy", tmp_path / "results" / "_legacy"
    for new, old in (("ray", "_ray"), ("config", "_config"), ("logs", "_logs")):
        (beside / new).rename(d / old)
    hint = run.text().split("finish the remaining trials with: ")[1].splitlines()[0]
    resumed = subprocess.run([sys.executable, "-m", "deepthink.cli", *shlex.split(hint)[1:]], cwd=ROOT,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "moved _ray, _config, _logs out of the results directory" in resumed.stdout
    check_complete(d, doc)
    assert pl.read_parquet(d).height == len(expected_keys(doc))
