"""The reproductions' committed Parquet (docs/results/data/<sweep>/) is data the analysis reads.

Every directory there must read through `read_results` exactly as `pandas.read_parquet` reads it,
follow the row contract (one row per (trial, split, difficulty, test_iters)), and recompute the
numbers its results page quotes. A new directory is covered by the first two tests for free.

    .venv/bin/python -m pytest tests/test_committed_results.py -q
"""
from pathlib import Path

import pandas as pd
import pytest

from analysis.tables import main as tables_main
from deepthink.results import REQUIRED, ROW_KEY, read_results

DATA = Path(__file__).resolve().parent.parent / "docs" / "results" / "data"
DIRS = sorted(p for p in DATA.iterdir() if p.is_dir()) if DATA.exists() else []


@pytest.mark.parametrize("path", DIRS, ids=[p.name for p in DIRS])
def test_committed_results_follow_the_contract(path):
    df = read_results(str(path))
    raw = pd.read_parquet(path)
    assert len(df) == len(raw) > 0
    assert set(REQUIRED) <= set(df.columns)
    assert not df.duplicated(ROW_KEY).any()
    assert (df["sweep"] == path.name).all()


def test_paper1_table1_cells_recompute(capsys):
    """The cells quoted in docs/results/paper1_table1_cpu.md and the README."""
    path = DATA / "cpu_paper1_table1"
    assert tables_main([str(path), "--rows", "model", "--cols", "depth", "--split", "test",
                        "--difficulty", "40", "--iteration", "train"]) == 0
    out = capsys.readouterr().out
    for cell in ("| ff_net | 26.24 ± 9.59 | 31.94 ± 10.61 | 23.66 ± 11.73 |",
                 "| recur_net | 14.22 ± 5.43 | 18.36 ± 7.92 | 20.60 ± 10.06 |"):
        assert cell in out, out
    df = read_results(str(path))
    assert df.drop_duplicates("trial_id").groupby(["model", "depth"]).size().eq(5).all()   # 5 seeds a cell
    assert set(df["status"]) == {"ok"}
