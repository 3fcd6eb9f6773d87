"""deepthink.results: the row layout write_trial enforces, and read_results reading what pyarrow
reads (every *.parquet file, '_'/'.' names skipped) with clear errors for files off the contract."""
import pandas as pd
import pytest

from deepthink.results import COLUMNS, REQUIRED, ROW_KEY, ResultsError, read_results, write_trial

KEY = ["trial_id", "split", "difficulty", "test_iters"]


def row(trial_id="t_00000", split="test", difficulty=10, test_iters=1, accuracy=50.0, conf=60.0, **more):
    return {"sweep": "s", "trial_id": trial_id, "task": "prefix_sums", "model": "dt_recall", "width": 8,
            "depth": 12, "max_iters": 2, "alpha": 0.0, "seed": 0, "train_difficulty": 8, "split": split,
            "difficulty": difficulty, "test_iters": test_iters, "accuracy": accuracy,
            "accuracy_max_confidence": conf, "n_examples": 10, "status": "ok", "epochs": 1, "lr": 0.001,
            "n_params": 10, "train_seconds": 1.0, **more}


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


def test_reads_every_parquet_file_pyarrow_reads_and_nothing_else(tmp_path):
    d = tmp_path / "s"
    write_trial(str(d), "t_00000", [row(test_iters=i) for i in (1, 2)])
    pd.DataFrame([row(trial_id="p", test_iters=1)]).to_parquet(d / "part-0.parquet")     # plain pandas
    (d / "nested").mkdir()
    pd.DataFrame([row(trial_id="q", test_iters=1)]).to_parquet(d / "nested" / "more.parquet")
    for ignored in ("_checkpoints/x.parquet", ".tmp-1.parquet", "_SUCCESS", "_figures/a.png"):
        (d / ignored).parent.mkdir(parents=True, exist_ok=True)
        (d / ignored).write_text("not parquet")
    df = read_results(str(d))
    assert sorted(df["trial_id"]) == sorted(pd.read_parquet(d)["trial_id"]) == ["p", "q", "t_00000", "t_00000"]
    (d / "notes.txt").write_text("pyarrow would try this one too; the analysis reads *.parquet only")
    assert len(read_results(str(d))) == len(df)
    assert list(df.columns) == COLUMNS and df["accuracy_max_confidence"].dtype == "float64"
    one = read_results(str(d / "part-0.parquet"))                      # a single file by path
    assert list(one["trial_id"]) == ["p"]


@pytest.mark.parametrize("change,needle", [
    (lambda df: df.drop(columns=["accuracy"]), "lacks the contract columns ['accuracy']"),
    (lambda df: df.assign(width="wide"), "column 'width' is large_string; the contract says int64"),
    (lambda df: df.assign(model=3), "column 'model' is int64; the contract says string"),
])
def test_a_file_off_the_contract_is_an_error_naming_it(tmp_path, change, needle):
    d = tmp_path / "s"
    write_trial(str(d), "t_00000", [row()])
    change(pd.DataFrame([row(trial_id="bad")])).to_parquet(d / "part-0.parquet")
    with pytest.raises(ResultsError) as e:
        read_results(str(d))
    assert str(d / "part-0.parquet") in str(e.value) and needle in str(e.value), str(e.value)


def test_nullable_columns_written_by_pandas_read_as_the_contract(tmp_path):
    """A failed trial's rows written by plain pandas: test_iters all null (float64 NaN in pandas)."""
    d = tmp_path / "s"
    d.mkdir()
    rows = [row(trial_id="f", test_iters=None, accuracy=None, conf=None, status="failed", n_params=None)]
    pd.DataFrame(rows).to_parquet(d / "part-0.parquet")
    df = read_results(str(d))
    assert df["test_iters"].isna().all() and df["status"].tolist() == ["failed"] and set(REQUIRED) <= set(df)


def test_device_column_names_cpu_isa_and_forced_cap(monkeypatch):
    """The `device` column says which CPU and kernel path made a result (rounding differs between them)."""
    from deepthink.hardware import device_description
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    plain = device_description("cpu", "fp32")
    assert plain.startswith("cpu fp32 · ") and "AVX-512 " in plain and "AMX " in plain
    assert "ONEDNN_MAX_CPU_ISA" not in plain
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert device_description("cpu", "fp32") == plain + " · ONEDNN_MAX_CPU_ISA=AVX2"
    assert device_description("cuda:0 NVIDIA H200 x0.25", "bf16") == "cuda:0 NVIDIA H200 x0.25 bf16"
