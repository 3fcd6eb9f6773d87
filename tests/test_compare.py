"""analysis.tables --compare FILE (analysis/compare.py) on a small Parquet dataset with known values.

Run cells (test split, 40 bits, accuracy at the training iteration count), sample std (ddof=1):
  recur_net d40: 20, 25, 30      -> mean 25, std 5,                          se = 5/sqrt(3)  = 2.8868
  recur_net d44: 28, 30, 32, 34  -> mean 31, std sqrt((9+1+1+9)/3) = 2.5820, se = 2.5820/2 = 1.2910
  recur_net d48: 40              -> one seed: no std, no z
  ff_net d40:    21, 23          -> mean 22, std sqrt(2) = 1.4142,           se = 1.4142/sqrt(2) = 1
  ff_net d44:    24, 26          -> mean 25, std 1.4142 (no published cell: the "missing cell")
  ff_net d48:    no trial        (a published cell with no run cell)
Published cells (PUBLISHED below):
  recur_net d40: 20, std 4, n 4  -> se_pub = 4/sqrt(4) = 2
      z = (25 - 20) / sqrt(25/3 + 4) = 5 / 3.5119 = +1.4237
  recur_net d44: 35, sem 1.5, n unknown -> se_pub = 1.5 as given
      z = (31 - 35) / sqrt(20/3/4 + 2.25) = -4 / 1.9791 = -2.0212
  recur_net d48: 35, std 3, n 5  -> the run has one seed: z n/a
  ff_net d40:    22, std 1, n unknown -> no published se: z n/a
  ff_net d48:    22.79, sem 1.32 -> no run cell
  recur_net d40 at 44 bits       -> matches no table (only 40 bits were tested)
"""
import csv
import io
import math
from pathlib import Path

import pytest

from analysis import compare
from analysis.tables import Cell
from analysis.tables import main as tables_main
from deepthink.results import write_trial

BASE = dict(task="prefix_sums", width=16, alpha=0.0, train_difficulty=32, n_examples=100, epochs=3,
            lr=0.001, n_params=1000, train_seconds=1.0, sweep="s", split="test", difficulty=40,
            status="ok")
RUNS = {("recur_net", 40): [20, 25, 30], ("recur_net", 44): [28, 30, 32, 34], ("recur_net", 48): [40],
        ("ff_net", 40): [21, 23], ("ff_net", 44): [24, 26]}

PUBLISHED = """\
# Source: Test et al., "A made-up paper",
#   Table 9 (made-up numbers)
# Other comment, not part of the source
model,depth,split,difficulty,iteration,metric,mean,std,sem,n
recur_net,40,test,40,train,iteration,20,4,,4
recur_net,44,test,40,train,iteration,35,,1.5,
recur_net,48,test,40,train,iteration,35,3,,5
ff_net,40,test,40,train,iteration,22,1,,
ff_net,48,test,40,train,iteration,22.79,,1.32,
recur_net,40,test,44,train,iteration,50,,2,
"""
HEADER = "model,depth,split,difficulty,iteration,metric,mean,std,sem,n"
ROW = "recur_net,40,test,40,train,iteration,20,4,,4"


@pytest.fixture
def results(tmp_path):
    d = tmp_path / "results"
    for (model, depth), accs in RUNS.items():
        max_iters = (depth - 4) // 4
        for seed, acc in enumerate(accs):
            tid = f"{model}_d{depth}_s{seed}"
            write_trial(str(d), tid, [dict(BASE, trial_id=tid, model=model, depth=depth, max_iters=max_iters,
                                           seed=seed, test_iters=max_iters, accuracy=float(acc),
                                           accuracy_max_confidence=float(acc))])
    return str(d)


@pytest.fixture
def published(tmp_path):
    p = tmp_path / "pub.csv"
    p.write_text(PUBLISHED)
    return str(p)


ARGS = ["--rows", "model", "--cols", "depth", "--split", "test", "--difficulty", "40", "--iteration", "train"]


def run(capsys, *argv):
    rc = tables_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_markdown_cells_z_and_notes(results, published, capsys):
    rc, out, err = run(capsys, results, *ARGS, "--compare", published)
    assert rc == 0, err
    assert "| model \\ depth | 40 | 44 | 48 |" in out                 # this run's table, paper layout
    assert "| ff_net | 22.00 ± 1.41 (n=2) | 25.00 ± 1.41 (n=2) | — |" in out
    assert 'Source: Test et al., "A made-up paper", Table 9 (made-up numbers)' in out
    assert "Other comment" not in out
    rows = {tuple(c.strip() for c in ln.strip("|").split("|")[:2]): [c.strip() for c in ln.strip("|").split("|")[2:]]
            for ln in out.split("#### vs published")[1].splitlines() if ln.startswith("| ") and "this run" not in ln}
    assert rows[("recur_net", "40")] == ["25.00 ± 5.00 (n=3)", "20.00 ± 4.00 (n=4)", "+1.42"]
    assert rows[("recur_net", "44")] == ["31.00 ± 2.58 (n=4)", "35.00 ± 1.50 s.e. (n unknown)", "-2.02"]
    assert rows[("recur_net", "48")] == ["40.00 (n=1)", "35.00 ± 3.00 (n=5)", "n/a"]
    assert rows[("ff_net", "40")] == ["22.00 ± 1.41 (n=2)", "22.00 ± 1.00 (n unknown)", "n/a"]
    assert rows[("ff_net", "44")] == ["25.00 ± 1.41 (n=2)", "—", "—"]
    assert rows[("ff_net", "48")] == ["—", "22.79 ± 1.32 s.e. (n unknown)", "—"]
    notes = [ln for ln in out.splitlines() if ln.startswith("Note:")]
    assert "Note: z n/a, one seed in this run, so no std: recur_net, depth=48" in notes
    assert "Note: z n/a, the published std has no n: ff_net, depth=40" in notes
    assert "Note: published cells with no run cell: ff_net, depth=48 (line 9)" in notes
    assert "Note: run cells with no published cell: ff_net, depth=44" in notes
    assert any("match no table here: line 10 (recur_net, depth=40, split=test, difficulty=44" in n for n in notes)


def test_csv_tidy_both_sides_and_z(results, published, capsys):
    rc, out, err = run(capsys, results, *ARGS, "--compare", published, "--format", "csv")
    assert rc == 0
    rows = {(r["row"], r["col"]): r for r in csv.DictReader(io.StringIO(out))}
    assert len(rows) == 6
    r = rows[("recur_net", "40")]
    assert (r["mean"], r["std"], r["n"], r["seeds"]) == ("25.0000", "5.0000", "3", "0 1 2")
    assert (r["pub_mean"], r["pub_std"], r["pub_sem"], r["pub_n"], r["pub_line"]) == ("20.0000", "4.0000", "", "4", "5")
    assert math.isclose(float(r["se"]), 2.8868, abs_tol=1e-4) and math.isclose(float(r["pub_se"]), 2.0)
    assert math.isclose(float(r["z"]), 1.4237, abs_tol=1e-4) and r["z_note"] == ""
    r = rows[("recur_net", "44")]
    assert math.isclose(float(r["std"]), 2.5820, abs_tol=1e-4) and math.isclose(float(r["se"]), 1.2910, abs_tol=1e-4)
    assert r["pub_n"] == "" and math.isclose(float(r["pub_se"]), 1.5)
    assert math.isclose(float(r["z"]), -2.0212, abs_tol=1e-4)
    assert rows[("recur_net", "48")]["z"] == "" and rows[("recur_net", "48")]["std"] == ""
    assert rows[("recur_net", "48")]["z_note"] == "one seed in this run, so no std"
    assert rows[("ff_net", "40")]["pub_se"] == "" and rows[("ff_net", "40")]["z_note"] == "the published std has no n"
    assert rows[("ff_net", "44")]["pub_mean"] == "" and rows[("ff_net", "44")]["z_note"] == "no published cell"
    assert rows[("ff_net", "48")]["n"] == "0" and rows[("ff_net", "48")]["z_note"] == "no run cell"
    assert "match no table here: line 10" in err               # stdout stays one clean CSV


def test_latex(results, published, capsys):
    rc, out, _ = run(capsys, results, *ARGS, "--compare", published, "--format", "latex")
    assert rc == 0
    assert "\\begin{tabular}{lccc}" in out and "\\begin{tabular}{llccc}" in out
    assert "recur\\_net & 44 & $31.00 \\pm 2.58$ (n=4) & 35.00 $\\pm$ 1.50 s.e. (n unknown) & -2.02 \\\\" in out
    assert "ff\\_net & 48 & --- & 22.79 $\\pm$ 1.32 s.e. (n unknown) & --- \\\\" in out
    assert "se\\_run$^2$" in out and "²" not in out              # escaped for LaTeX


def test_no_published_cell_for_a_table(results, published, tmp_path, capsys):
    other = tmp_path / "other.csv"
    other.write_text(HEADER + "\nrecur_net,40,test,44,train,iteration,50,,2,\n")
    rc, out, _ = run(capsys, results, "--compare", str(other))
    assert rc == 0
    assert f"Note: no published cell in {other} matches this table" in out
    assert "| this run |" not in out


def test_optional_config_key_must_equal_the_tables(results, tmp_path, capsys):
    """A `width` column is compared with the table's width (16 in every trial here)."""
    for width, matches in ((16, True), (32, False)):
        p = tmp_path / f"w{width}.csv"
        p.write_text(HEADER + ",width\n" + ROW + f",{width}\n")
        rc, out, _ = run(capsys, results, *ARGS, "--compare", str(p))
        assert rc == 0
        assert ("| recur_net | 40 | 25.00 ± 5.00 (n=3) | 20.00 ± 4.00 (n=4) | +1.42 |" in out) == matches
        assert ("match no table here: line 2" in out) != matches


def test_zero_standard_errors_give_no_z():
    pub = compare.Published(line=5, key={}, mean=10.0, std=0.0, sem=None, n=3)
    assert compare._z(Cell(values=[10.0, 10.0]), pub) == (None, "both standard errors are 0")
    assert compare._z(Cell(values=[10.0, 12.0]), pub)[0] == pytest.approx(1.0)   # (11-10)/sqrt(2/2 + 0)
    no_spread = compare.Published(line=5, key={}, mean=10.0, std=None, sem=None, n=None)
    assert compare._z(Cell(values=[10.0, 12.0]), no_spread) == (None, "no published std or sem")


def test_the_paper1_table1_file():
    path = Path(__file__).resolve().parent.parent / "sweeps" / "published" / "paper1_table1.csv"
    pub = compare.read_published(str(path))
    assert pub.source.startswith('Schwarzschild et al., "Can You Learn an Algorithm?')
    cells = {(p.key["model"], p.key["depth"]): (p.mean, p.std, p.sem, p.n) for p in pub.rows}
    assert cells == {("recur_net", 40): (24.96, None, 2.96, None), ("recur_net", 44): (31.02, None, 2.56, None),
                     ("recur_net", 48): (35.22, None, 3.34, None), ("ff_net", 40): (22.17, None, 0.85, None),
                     ("ff_net", 44): (24.78, None, 1.65, None), ("ff_net", 48): (22.79, None, 1.32, None)}
    assert {(p.key["split"], p.key["difficulty"], p.key["iteration"], p.key["metric"]) for p in pub.rows} == \
        {("test", 40, "train", "iteration")}


@pytest.mark.parametrize("text, message", [
    (HEADER + "\nrecur_net,forty,test,40,train,iteration,20,4,,4\n", "column depth, line 2: 'forty' is not a number"),
    (HEADER + "\nrecur_net,40,test,40,last,iteration,20,4,,4\n", "column iteration, line 2: 'last' is not train"),
    (HEADER + "\nrecur_net,40,tst,40,train,iteration,20,4,,4\n", "column split, line 2: 'tst' is not one of"),
    (HEADER + "\nrecur_net,40,test,40,train,iteration,abc,4,,4\n", "column mean, line 2: 'abc' is not a number"),
    (HEADER + "\nrecur_net,40,test,40,train,iteration,,4,,4\n", "column mean, line 2: empty"),
    (HEADER + "\nrecur_net,40,test,40,train,iteration,20,4,,2.5\n", "column n, line 2: '2.5' is not a positive whole"),
    (HEADER + "\nrecur_net,40,test,40,train,iteration,20,-4,,4\n", "column std, line 2: -4 is negative"),
    (HEADER + "\n,40,test,40,train,iteration,20,4,,4\n", "column model, line 2: empty"),
    (HEADER + "\n" + ROW + "\n" + ROW + "\n", "lines 2 and 3 give the same cell"),
    (HEADER + "\nrecur_net,40,test\n", "line 2: 3 fields, the header has 10"),
    (HEADER + ",seeds\n" + ROW + ",0\n", "column 'seeds' is neither a key column"),
    (HEADER.replace("difficulty,", "") + "\nrecur_net,40,test,train,iteration,20,4,,4\n", "no difficulty column"),
    (HEADER.replace("depth", "width") + "\n" + ROW + "\n", "no depth column, but the tables' columns are depth"),
    (HEADER.replace("model,", "model,max_iters,") + "\nrecur_net,9,40,test,40,train,iteration,20,4,,4\n",
     "column max_iters: takes several values within one table"),
    (HEADER + "\n", "no published cells (only a header)"),
    ("# only a comment\n", "no header line"),
])
def test_file_errors_are_one_line(results, tmp_path, capsys, text, message):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    rc, out, err = run(capsys, results, *ARGS, "--compare", str(p))
    assert rc == 2 and out == ""
    assert err.startswith(f"analysis.tables: error: {p}: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_file_and_directory(results, tmp_path, capsys):
    rc, _, err = run(capsys, results, "--compare", str(tmp_path / "nope.csv"))
    assert rc == 2 and f"{tmp_path / 'nope.csv'}: no such published-results file" in err
    rc, _, err = run(capsys, results, "--compare", str(tmp_path))
    assert rc == 2 and f"{tmp_path}: not a file" in err
