"""analysis.tables / analysis.figures on a small Parquet dataset with known values.

Every expected number below was worked out by hand from the values written (sample std, ddof=1):
  recur_net depth 44, 44 bits, iteration 10: sweep A seeds 0,1,2 -> 30, 33, 36; sweep B seeds 3,4 -> 39, 42
      A alone: mean 33, std sqrt((9+0+9)/2) = 3.00;  A+B: mean 36, std sqrt((36+9+0+9+36)/4) = 4.74
  ff_net depth 44: seeds 0,1 -> 20, 25: mean 22.5, std sqrt((6.25+6.25)/1) = 3.54
  recur_net depth 40 (max_iters 9): seeds 0,1,2 -> 10, 20, 60: mean 30, std sqrt((400+100+900)/2) = 26.46;
      seed 3 diverged with 99 (must not be averaged)
  ff_net depth 40: seed 0 -> 12.5 (one seed); seed 1 failed before testing (no accuracy rows)
Recurrent curves: acc(i) = v + 2*(min(i, 12) - max_iters), tested to 14 -> best = v + 2*(12 - max_iters),
at K=12 the same; feed-forward curves: acc(i) = v - (max_iters - i), tested to max_iters -> best = v.
accuracy_max_confidence is accuracy + 1 on every row.
"""
import csv
import io
import math
from pathlib import Path

import pandas as pd
import pytest

from analysis.figures import curves
from analysis.figures import main as figures_main
from analysis.tables import build_tables, main as tables_main
from deepthink.results import write_trial

BASE = dict(task="prefix_sums", width=16, alpha=0.0, train_difficulty=32, n_examples=100,
            epochs=3, lr=0.001, n_params=1000, train_seconds=1.0)


def trial_rows(sweep, model, depth, seed, v44, status="ok", v40=50.0):
    """Rows for one trial: test split, difficulties 40 and 44, both accuracy columns."""
    max_iters = (depth - 4) // 4
    tid = f"{model}_d{depth}_s{seed}"
    last = 14 if model == "recur_net" else max_iters
    rows = []
    for diff, v in ((44, v44), (40, v40)):
        for i in range(1, last + 1):
            acc = v + 2 * (min(i, 12) - max_iters) if model == "recur_net" else v - (max_iters - i)
            rows.append(dict(BASE, sweep=sweep, trial_id=tid, model=model, depth=depth,
                             max_iters=max_iters, seed=seed, split="test", difficulty=diff, test_iters=i,
                             accuracy=float(acc), accuracy_max_confidence=float(acc + 1), status=status))
    return tid, rows


def failed_trial(sweep, model, depth, seed):
    tid = f"{model}_d{depth}_s{seed}"
    row = dict(BASE, sweep=sweep, trial_id=tid, model=model, depth=depth, max_iters=(depth - 4) // 4,
               seed=seed, split=None, difficulty=None, test_iters=None, accuracy=float("nan"),
               accuracy_max_confidence=float("nan"), status="failed", error="RuntimeError: CUDA out of memory")
    return tid, [row]


def write_sweeps(tmp_path, write=write_trial):
    a, b = tmp_path / "sweep_a", tmp_path / "sweep_b"
    for args in [("recur_net", 44, 0, 30), ("recur_net", 44, 1, 33), ("recur_net", 44, 2, 36),
                 ("ff_net", 44, 0, 20), ("ff_net", 44, 1, 25),
                 ("recur_net", 40, 0, 10), ("recur_net", 40, 1, 20), ("recur_net", 40, 2, 60),
                 ("ff_net", 40, 0, 12.5)]:
        write(a, *trial_rows("sweep_a", *args))
    write(a, *trial_rows("sweep_a", "recur_net", 40, 3, 99.0, status="diverged"))
    write(a, *failed_trial("sweep_a", "ff_net", 40, 1))
    for seed, v in ((3, 39), (4, 42)):
        write(b, *trial_rows("sweep_b", "recur_net", 44, seed, v))
    return str(a), str(b)


@pytest.fixture
def sweeps(tmp_path):
    return write_sweeps(tmp_path, lambda d, tid, rows: write_trial(str(d), tid, rows))


def table_for(text, difficulty):
    """The markdown block of one difficulty: {row label: [cells]} and its note lines."""
    block = text.split(f"· {difficulty} bits ·")[1].split("### ")[0]
    cells = {}
    for line in block.splitlines():
        if line.startswith("| ") and not line.startswith("| model"):
            parts = [p.strip() for p in line.strip("|").split("|")]
            cells[parts[0]] = parts[1:]
    notes = [ln for ln in block.splitlines() if ln.startswith("Note:")]
    return cells, notes


def run_tables(capsys, *argv):
    assert tables_main(list(argv)) == 0
    return capsys.readouterr().out


def test_train_iteration_mean_std_uneven_seeds_and_exclusions(sweeps, capsys):
    out = run_tables(capsys, sweeps[0])
    assert "| model \\ depth | 40 | 44 |" in out          # default cols: depth (the key that varies)
    cells, notes = table_for(out, 44)
    assert cells["recur_net"] == ["30.00 ± 26.46 (n=3)", "33.00 ± 3.00 (n=3)"]
    assert cells["ff_net"] == ["12.50 (n=1)", "22.50 ± 3.54 (n=2)"]
    assert "99" not in cells["recur_net"][0]
    note = " ".join(notes)
    assert "1 diverged, 1 failed trials not averaged" in note
    assert "recur_net, depth=40: seed 3 (diverged)" in note
    assert "ff_net, depth=40: seed 1 (failed: RuntimeError: CUDA out of memory)" in note
    cells40, notes40 = table_for(out, 40)               # one table per difficulty
    assert cells40["recur_net"][1] == "50.00 ± 0.00 (n=3)"
    assert any("diverged" in n for n in notes40), "the failed/diverged note repeats under every table"


def test_best_and_fixed_iteration(sweeps, capsys):
    cells, _ = table_for(run_tables(capsys, sweeps[0], "--iteration", "best", "--difficulty", "44"), 44)
    # recurrent: v + 2*(12 - 10) at depth 44 and v + 2*(12 - 9) at depth 40; ff: its last block
    assert cells["recur_net"] == ["36.00 ± 26.46 (n=3)", "37.00 ± 3.00 (n=3)"]
    assert cells["ff_net"] == ["12.50 (n=1)", "22.50 ± 3.54 (n=2)"]
    out = run_tables(capsys, sweeps[0], "--iteration", "12", "--difficulty", "44")
    cells, notes = table_for(out, 44)
    assert cells["recur_net"] == ["36.00 ± 26.46", "37.00 ± 3.00"]   # equal n among averaged cells
    assert cells["ff_net"] == ["n/a", "n/a"]            # feed-forward nets cannot run 12 iterations
    missing = [n for n in notes if n.startswith("Note: n/a")][0]
    assert "ff_net, depth=40: 1 trial (tested up to iteration 9)" in missing
    assert "ff_net, depth=44: 2 trials (tested up to iteration 10)" in missing


def test_max_confidence_metric(sweeps, capsys):
    cells, _ = table_for(run_tables(capsys, sweeps[0], "--metric", "max_confidence", "--difficulty", "44"), 44)
    assert cells["recur_net"][1] == "34.00 ± 3.00 (n=3)"
    from analysis.common import load
    data, _, _ = curves(load(list(sweeps)), metric="max_confidence", difficulties=[44])
    s = data[44]["recur_net, depth=44"].set_index("test_iters")
    assert math.isclose(s.loc[10, "mean"], 37.0) and math.isclose(s.loc[10, "std"], math.sqrt(22.5))


def test_one_row_per_key_for_pandas(sweeps):
    df = pd.read_parquet(sweeps[0])
    assert "metric" not in df.columns
    assert not df.duplicated(["trial_id", "split", "difficulty", "test_iters"]).any()
    # the whole-dataset groupby a researcher writes averages one accuracy, not two metrics
    mean = df[df["difficulty"] == 44].groupby(["model", "depth", "test_iters"])["accuracy"].mean()
    assert math.isclose(mean[("recur_net", 44, 10)], (30 + 33 + 36) / 3)


def write_with_pandas(sweep_dir, trial_id, rows):
    """One trial's rows as plain pandas writes a dataset part: no deepthink code involved."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    n = len(list(sweep_dir.glob("part-*.parquet")))
    pd.DataFrame(rows).to_parquet(sweep_dir / f"part-{n}.parquet", index=False)


def test_directories_written_by_plain_pandas_give_the_same_tables(tmp_path, sweeps, capsys):
    """The contract test: `part-N.parquet` files with the contract's columns, read through the analysis."""
    plain = write_sweeps(tmp_path / "plain", write_with_pandas)
    assert (Path(plain[0]) / "part-0.parquet").is_file() and not list(Path(plain[0]).glob("trial-*"))
    for fmt in ("markdown", "csv"):
        assert run_tables(capsys, *plain, "--format", fmt) == run_tables(capsys, *sweeps, "--format", fmt)


def test_two_directories_pool_same_config(sweeps, capsys):
    cells, _ = table_for(run_tables(capsys, *sweeps, "--difficulty", "44"), 44)
    assert cells["recur_net"][1] == "36.00 ± 4.74 (n=5)"
    assert cells["ff_net"][1] == "22.50 ± 3.54 (n=2)"


def test_rows_cols_swapped_and_extra_key_splits_tables(sweeps, tmp_path, capsys):
    out = run_tables(capsys, sweeps[0], "--rows", "depth", "--cols", "model", "--difficulty", "44")
    assert "| depth \\ model | ff_net | recur_net |" in out
    other = tmp_path / "wide"
    tid, rows = trial_rows("wide", "recur_net", 44, 0, 70)
    write_trial(str(other), tid, [dict(r, width=32) for r in rows])
    out = run_tables(capsys, sweeps[0], str(other), "--difficulty", "44")
    assert out.count("### ") == 2 and "width=16" in out and "width=32" in out
    deep = tmp_path / "deep"
    write_trial(str(deep), *trial_rows("deep", "recur_net", 100, 0, 70))
    out = run_tables(capsys, sweeps[0], str(deep), "--difficulty", "44")
    assert "| model \\ depth | 40 | 44 | 100 |" in out      # numeric order, not 100 < 40
    assert "| ff_net | 12.50 (n=1) | 22.50 ± 3.54 (n=2) | — |" in out   # no ff_net trial at depth 100


def test_csv_and_latex(sweeps, capsys):
    text = run_tables(capsys, sweeps[0], "--difficulty", "44", "--format", "csv")
    rows = {(r["row"], r["col"]): r for r in csv.DictReader(io.StringIO(text))}
    r = rows[("recur_net", "44")]
    assert math.isclose(float(r["mean"]), 33.0) and math.isclose(float(r["std"]), 3.0)
    assert r["n"] == "3" and r["seeds"] == "0 1 2" and r["difficulty"] == "44"
    assert rows[("recur_net", "40")]["n_excluded"] == "1"
    assert rows[("ff_net", "40")]["std"] == "" and rows[("ff_net", "40")]["n_excluded"] == "1"
    tex = run_tables(capsys, sweeps[0], "--difficulty", "44", "--format", "latex")
    assert "\\begin{tabular}{lcc}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "$33.00 \\pm 3.00$ (n=3)" in tex
    assert "recur\\_net" in tex and "diverged" in tex and "\\footnotesize" in tex


@pytest.mark.parametrize("argv, message", [
    (["--difficulty", "99"], "values present: 40, 44"),
    (["--split", "val"], "values present: test"),
    (["--metric", "confidence"], "expected one of iteration, max_confidence"),
    (["--iteration", "last"], "expected 'train', 'best' or a positive integer"),
    (["--rows", "depth", "--cols", "depth"], "pick two different keys"),
])
def test_option_errors_list_what_exists(sweeps, capsys, argv, message):
    assert tables_main([sweeps[0], *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_and_empty_directories(tmp_path, sweeps, capsys):
    assert tables_main([str(tmp_path / "nope")]) == 2
    assert "no such results directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert tables_main([str(tmp_path / "empty")]) == 2
    assert "no result rows" in capsys.readouterr().err
    assert tables_main([sweeps[0], sweeps[0]]) == 2
    assert "give each sweep directory once" in capsys.readouterr().err


def test_build_tables_api_cells(sweeps):
    from analysis.common import load
    (t44,) = build_tables(load([sweeps[0]]), difficulties=[44])
    cell = t44.cells[("recur_net", 44)]
    assert cell.values == [30.0, 33.0, 36.0] and cell.n_excluded == 0
    assert t44.cells[("recur_net", 40)].n_excluded == 1


def test_figure_curves_and_png(sweeps, tmp_path, capsys):
    from analysis.common import load
    data, bad, keys = curves(load(list(sweeps)), difficulties=[44])
    assert keys == ["model", "depth"]
    s = data[44]["recur_net, depth=44"].set_index("test_iters")
    assert math.isclose(s.loc[10, "mean"], 36.0) and math.isclose(s.loc[10, "std"], math.sqrt(22.5))
    assert s.loc[10, "n"] == 5 and s.loc[10, "max_iters"] == 10 and s.index.max() == 14
    assert data[44]["ff_net, depth=44"]["test_iters"].max() == 10
    assert sorted(bad["status"]) == ["diverged", "failed"]
    out = tmp_path / "figs" / "fig.png"
    assert figures_main([*sweeps, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "not drawn: 1 diverged, 1 failed" in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_figure_std_band_stays_within_0_and_100(tmp_path, monkeypatch):
    """Two seeds at 34% and 100%: mean 67, std 46.7; the band must stop at 100 and 0, not 113."""
    import matplotlib.axes
    from analysis.figures import plot
    rows = []
    for seed, v in ((0, 34.0), (1, 100.0)):
        for i in (1, 2, 3):
            rows.append(dict(BASE, sweep="s", trial_id=f"t{seed}", model="dt_recall", depth=16, max_iters=3,
                             seed=seed, split="test", difficulty=44, test_iters=i, accuracy=v,
                             accuracy_max_confidence=v, status="ok"))
    bands = []
    real = matplotlib.axes.Axes.fill_between
    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between",
                        lambda self, x, lo, hi, **kw: bands.append((list(lo), list(hi))) or real(self, x, lo, hi, **kw))
    from analysis.common import load
    for seed in (0, 1):
        write_trial(str(tmp_path / "s"), f"t{seed}", [r for r in rows if r["seed"] == seed])
    plot(load([str(tmp_path / "s")]), tmp_path / "f.png")
    assert bands, "no std band drawn"
    lo, hi = bands[0]
    assert max(hi) == pytest.approx(100.0) and min(lo) == pytest.approx(67.0 - 46.669, abs=0.01)
