"""analysis.agreement: two runs of the same trials compared curve by curve. Checked against a
brute-force comparison of the rows on the committed part-2 results, with one accuracy changed in a
copy, and for its refusals (different examples, no common trial, a configuration twice)."""
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis.agreement import agreement, main
from analysis.common import AnalysisError, load
from deepthink.results import write_trial

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "docs" / "results" / "data" / "cpu_prefix_sums_dt_l"


def _copy_with(tmp_path, change=None):
    """A copy of DATA's trial files under new trial ids (as a sweep run again would get), with
    `change(table)` applied to the first file."""
    out = tmp_path / "rerun"
    out.mkdir()
    for i, f in enumerate(sorted(DATA.glob("trial-*.parquet"))):
        df = pq.read_table(f).to_pandas()
        df["trial_id"] = "new_" + df["trial_id"]
        if i == 0 and change is not None:
            df = change(df)
        write_trial(str(out), df["trial_id"].iloc[0], df.to_dict("records"))
    return out


def test_identical_runs_agree_everywhere(tmp_path, capsys):
    other = _copy_with(tmp_path)
    assert main([str(DATA), str(other), "--labels", "first", "again"]) == 0
    out = capsys.readouterr().out
    n_curves = len(load([str(DATA)]).groupby(["trial", "split", "difficulty"]))
    assert f"{n_curves} of {n_curves} curves identical at every common iteration." in out
    assert "| last first | last again |" in out and "Only in" not in out


def test_one_changed_accuracy_is_found_where_it_is(tmp_path):
    first = sorted(DATA.glob("trial-*.parquet"))[0]
    base = pq.read_table(first).to_pandas()
    row = base[(base["split"] == "test") & (base["difficulty"] == 512) & (base["test_iters"] == 777)].index[0]

    def change(df):
        df.loc[row, "accuracy"] = df.loc[row, "accuracy"] - 0.4
        return df
    other = _copy_with(tmp_path, change)
    table, only = agreement(load([str(DATA)]), load([str(other)]))
    # brute force: every pair of rows with equal config, seed, split, difficulty and iteration
    a, b = load([str(DATA)]), load([str(other)])
    keys = ["model", "seed", "split", "difficulty", "test_iters"]
    joined = a.merge(b, on=keys, suffixes=("_a", "_b"))
    assert len(joined) == len(a) == int(table["n_iterations"].sum())
    differs = joined[joined["accuracy_a"] != joined["accuracy_b"]]
    assert len(differs) == 1 and int(table["differ"].sum()) == 1
    hit = table[table["differ"] == 1].iloc[0]
    assert (hit["model"], hit["seed"], hit["split"], hit["difficulty"], hit["at"]) == (
        base["model"].iloc[0], base["seed"].iloc[0], "test", 512, 777)
    assert hit["max_diff"] == pytest.approx(0.4)
    assert only == {"only_a": [], "only_b": []}


def test_refusals_name_the_problem(tmp_path):
    fewer = _copy_with(tmp_path, lambda df: df.assign(n_examples=100))
    with pytest.raises(AnalysisError, match=r"evaluated \[500\] examples, B \[100\]; curves over different "
                                            r"examples are not compared"):
        agreement(load([str(DATA)]), load([str(fewer)]))
    other_seed = tmp_path / "other"
    one = pq.read_table(sorted(DATA.glob("trial-*.parquet"))[0]).to_pandas().assign(seed=99)
    write_trial(str(other_seed), "x_00000", one.assign(trial_id="x_00000").to_dict("records"))
    with pytest.raises(AnalysisError, match="have no trial in common"):
        agreement(load([str(DATA)]).query("seed != 99"), load([str(other_seed)]))
    assert main([str(DATA), str(DATA / "nowhere")]) == 2


def test_trials_on_one_side_only_are_listed(tmp_path, capsys):
    other = _copy_with(tmp_path)
    first = sorted(other.glob("trial-*.parquet"))[0]
    gone = pq.read_table(first).to_pandas().iloc[0]
    first.unlink()
    assert main([str(DATA), str(other), "--split", "test", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert f"Only in A (not compared): {gone['model']} (" in out and f"seed {gone['seed']}" in out
    assert main([str(DATA), str(other), "--split", "nope"]) == 2


def test_unpaired_trials_are_grouped_by_configuration_with_their_seeds(tmp_path, capsys):
    """A run that repeated a few seeds of a big one: the rest is one line per configuration."""
    other = _copy_with(tmp_path)
    rows = {f: pq.read_table(f, columns=["model", "seed"]).to_pandas().iloc[0] for f in other.glob("trial-*.parquet")}
    model = sorted({r["model"] for r in rows.values()})[0]
    mine = sorted((f for f, r in rows.items() if r["model"] == model), key=lambda f: rows[f]["seed"])
    assert len(mine) >= 3, "the committed data should hold >= 3 seeds of each model"
    for f in mine[1:]:
        f.unlink()
    gone = sorted(int(rows[f]["seed"]) for f in mine[1:])
    assert main([str(DATA), str(other), "--split", "test"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("- Only in A")]
    assert len(line) == 1 and f"{model} (" in line[0]
    assert line[0].endswith(f"seeds {', '.join(map(str, gone))}"), line[0]


def test_csv_has_one_line_per_curve(tmp_path, capsys):
    other = _copy_with(tmp_path)
    assert main([str(DATA), str(other), "--split", "test", "--format", "csv", "--labels", "x", "y"]) == 0
    import io
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert {"last_x", "last_y", "device_x", "device_y"} <= set(table.columns)
    assert set(table["split"]) == {"test"} and (table["differ"] == 0).all()
    assert len(table) == 3 * load([str(DATA)])["trial"].nunique()      # 48, 128 and 512 bits
