"""deepthink.results: the row layout write_trial enforces, and read_results on files written by
older versions (two rows per key, told apart by a `metric` column)."""
import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepthink.results import (COLUMNS, LEGACY_SCHEMA, ROW_KEY, read_results, trial_file, write_trial)

KEY = ["trial_id", "split", "difficulty", "test_iters"]


def row(trial_id="t_00000", split="test", difficulty=10, test_iters=1, accuracy=50.0, conf=60.0, **more):
    return {"sweep": "s", "trial_id": trial_id, "task": "prefix_sums", "model": "dt_recall", "width": 8,
            "depth": 12, "max_iters": 2, "alpha": 0.0, "seed": 0, "train_difficulty": 8, "split": split,
            "difficulty": difficulty, "test_iters": test_iters, "accuracy": accuracy,
            "accuracy_max_confidence": conf, "n_examples": 10, "status": "ok", "epochs": 1, "lr": 0.001,
            "n_params": 10, "train_seconds": 1.0, **more}


def write_legacy_trial(sweep_dir, trial_id, rows):
    """Write `rows` (new layout) as the old code did: each row twice, metric 'iteration' with
    `accuracy` and metric 'max_confidence' with accuracy_max_confidence in `accuracy`; a row with
    no test_iters (a failed trial's) once, with a null metric."""
    old = []
    for r in rows:
        base = {k: v for k, v in r.items() if k != "accuracy_max_confidence"}
        if r.get("test_iters") is None:
            old.append({**base, "metric": None})
            continue
        old.append({**base, "metric": "iteration"})
    for r in rows:      # the old trainer wrote all iteration rows of a split before its max_confidence rows
        if r.get("test_iters") is not None:
            old.append({**r, "metric": "max_confidence", "accuracy": r["accuracy_max_confidence"]})
    for o in old:
        o.pop("accuracy_max_confidence", None)
    df = pd.DataFrame(old)
    for c in LEGACY_SCHEMA.names:
        if c not in df.columns:
            df[c] = None
    sweep_dir.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df[LEGACY_SCHEMA.names], schema=LEGACY_SCHEMA, preserve_index=False)
    pq.write_table(table, trial_file(str(sweep_dir), trial_id))


def test_one_row_per_key_with_both_accuracy_columns(tmp_path):
    d = tmp_path / "s"
    write_trial(str(d), "t_00000", [row(test_iters=i, accuracy=10.0 * i, conf=11.0 * i) for i in (1, 2, 3)])
    df = pd.read_parquet(d)
    assert "metric" not in df.columns and list(df.columns) == COLUMNS
    assert not df.duplicated(KEY).any() and KEY == ROW_KEY
    assert list(df["accuracy"]) == [10.0, 20.0, 30.0]
    assert list(df["accuracy_max_confidence"]) == [11.0, 22.0, 33.0]
    assert df["accuracy_max_confidence"].dtype == "float64"


def test_write_refuses_repeated_keys_and_the_old_metric_column(tmp_path):
    with pytest.raises(ValueError, match="one per"):
        write_trial(str(tmp_path), "t_00000", [row(), row(accuracy=1.0)])
    with pytest.raises(ValueError, match=r"outside the schema \['metric'\]"):
        write_trial(str(tmp_path), "t_00000", [row(metric="iteration")])
    assert not list(tmp_path.iterdir()), "nothing written"


def test_read_results_pivots_old_layout_files(tmp_path):
    d = tmp_path / "s"
    new = [row(split=s, difficulty=diff, test_iters=i, accuracy=10.0 * i + diff, conf=10.0 * i + diff + 0.5)
           for s, diff in (("train", 8), ("val", 8), ("test", 10)) for i in (1, 2)]
    write_legacy_trial(d, "t_00000", new)
    failed = [row(trial_id="t_00001", split=s, difficulty=diff, test_iters=None, accuracy=None, conf=None,
                  status="failed", error="RuntimeError: boom", n_params=None, train_seconds=None)
              for s, diff in (("train", 8), ("val", 8), ("test", 10))]
    write_legacy_trial(d, "t_00001", failed)
    assert len(pd.read_parquet(d)) == 2 * len(new) + len(failed)       # the old layout, as written

    df = read_results(str(d))
    assert list(df.columns) == COLUMNS and len(df) == len(new) + len(failed)
    assert not df.duplicated(KEY).any()
    ok = df[df["trial_id"] == "t_00000"]
    expect = pd.DataFrame(new)
    assert list(zip(ok["split"], ok["difficulty"], ok["test_iters"])) == \
        list(zip(expect["split"], expect["difficulty"], expect["test_iters"])), "the file's row order"
    assert list(ok["accuracy"]) == list(expect["accuracy"])
    assert list(ok["accuracy_max_confidence"]) == list(expect["accuracy_max_confidence"])
    bad = df[df["trial_id"] == "t_00001"]
    assert len(bad) == 3 and set(bad["status"]) == {"failed"} and set(bad["error"]) == {"RuntimeError: boom"}
    assert bad["accuracy"].isna().all() and bad["accuracy_max_confidence"].isna().all()
    assert bad["test_iters"].isna().all()

    # a directory holding both layouts (an old sweep resumed by the new code) reads as one
    write_trial(str(d), "t_00002", [row(trial_id="t_00002", test_iters=1, accuracy=1.0, conf=2.0)])
    both = read_results(str(d))
    assert len(both) == len(df) + 1 and not both.duplicated(KEY).any()
    r = both[both["trial_id"] == "t_00002"].iloc[0]
    assert r["accuracy"] == 1.0 and r["accuracy_max_confidence"] == 2.0
    # a single old file given by path
    one = read_results(trial_file(str(d), "t_00000"))
    assert len(one) == len(new) and math.isclose(one["accuracy_max_confidence"].iloc[0], 18.5)


def test_read_results_refuses_unknown_old_metric_values(tmp_path):
    d = tmp_path / "s"
    write_legacy_trial(d, "t_00000", [row()])
    df = pq.read_table(trial_file(str(d), "t_00000")).to_pandas()
    df.loc[df["metric"] == "max_confidence", "metric"] = "other"
    pq.write_table(pa.Table.from_pandas(df, schema=LEGACY_SCHEMA, preserve_index=False),
                   trial_file(str(d), "t_00000"))
    with pytest.raises(ValueError, match="unknown metric values"):
        read_results(str(d))
