"""analysis.stability: per-seed verdicts on hand-made curves, holds_from against a brute-force
oracle, and the committed 512-bit probe's numbers (docs/results/prefix_sums_dt_l_cpu.md)."""
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.common import load
from analysis.stability import holds_from, main, stability
from deepthink.results import write_trial

BASE = dict(task="prefix_sums", width=16, depth=20, max_iters=4, alpha=0.5, train_difficulty=8,
            n_examples=100, epochs=3, lr=0.001, n_params=1000)
REPO = Path(__file__).resolve().parents[1]


def trial(path, model, seed, curve, fit=100.0, status="ok", train_seconds=60.0):
    """One trial: test curve at difficulty 32 (iterations 1..len(curve)), train split at max_iters."""
    tid = f"{model}_s{seed}"
    common = dict(BASE, sweep="s", trial_id=tid, model=model, seed=seed, status=status,
                  train_seconds=train_seconds)
    rows = [dict(common, split="train", difficulty=8, test_iters=4, accuracy=fit,
                 accuracy_max_confidence=fit)]
    rows += [dict(common, split="test", difficulty=32, test_iters=i + 1, accuracy=float(a),
                  accuracy_max_confidence=float(a)) for i, a in enumerate(curve)]
    write_trial(str(path), tid, rows)


def brute_holds_from(values, threshold):
    for i in range(len(values)):
        if all(v >= threshold for v in values[i:]):
            return i + 1
    return None


@pytest.mark.parametrize("seed", range(20))
def test_holds_from_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    values = rng.choice([50.0, 98.9, 99.0, 100.0], size=30, p=[0.1, 0.2, 0.3, 0.4])
    curve = pd.Series(values, index=range(1, 31))
    assert holds_from(curve, 99.0) == brute_holds_from(list(values), 99.0)


def test_verdicts_counts_and_windows(tmp_path, capsys):
    up = [min(100.0, 10.0 * i) for i in range(1, 21)]            # >= 99 from iteration 10, flat after
    trial(tmp_path, "dt_l", 0, up)
    trial(tmp_path, "dt_l", 1, up[:15] + [98.0] + up[16:])       # one dip in the window: short
    trial(tmp_path, "dt_l", 2, [5.0] * 20, fit=60.0)              # never fit its training strings
    trial(tmp_path, "dt_l", 3, up, status="diverged")             # no verdict from its curve
    trial(tmp_path, "dt_l", 4, [min(99.2, 10.0 * i) for i in range(1, 21)])   # reaches, spread 0.2
    table, window = stability(load([str(tmp_path)]), threshold=99, start=10, flat=0.5)
    assert window["from"] == 10 and window["to"] == 20 and window["difficulty"] == 32
    v = table.set_index("seed")
    assert list(v["verdict"]) == ["reaches", "short", "not learned", "diverged", "reaches"]
    assert v.loc[0, "holds_from"] == 10 and v.loc[1, "holds_from"] == 17 and pd.isna(v.loc[2, "holds_from"])
    assert v.loc[1, "min"] == 98.0 and v.loc[1, "flat"] is False
    assert v.loc[4, "spread"] == pytest.approx(0.0) and v.loc[4, "flat"] is True
    assert main([str(tmp_path), "--from", "10"]) == 0
    out = capsys.readouterr().out
    assert "2 reaches, 1 short, 1 not learned, 1 diverged" in out and "32 bits" in out
    # A stricter flatness or a window starting earlier changes the verdicts.
    table2, _ = stability(load([str(tmp_path)]), threshold=99, start=5)
    assert (table2.set_index("seed")["verdict"][[0, 4]] == "short").all()


def test_bad_window_and_missing_difficulty_are_one_line_errors(tmp_path, capsys):
    trial(tmp_path, "dt_l", 0, [100.0] * 10)
    assert main([str(tmp_path), "--to", "11"]) == 2
    assert "tested to iteration 10 at most" in capsys.readouterr().err
    assert main([str(tmp_path), "--from", "8", "--to", "5"]) == 2
    assert main([str(tmp_path), "--difficulty", "64"]) == 2
    assert "values present: 32" in capsys.readouterr().err


def test_committed_probe_numbers(capsys):
    """The probe page quotes: first >= 99% on 512 bits at iterations 241 and 219, min from there 100.0 / 99.0."""
    d = REPO / "docs/results/data/cpu_prefix_sums_dt_l_gn_probe"
    assert main([str(d), "--difficulty", "512", "--format", "csv"]) == 0
    t = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("seed")
    assert list(t["holds_from"]) == [241, 219]
    assert list(t["verdict"]) == ["short", "short"]          # window 200..1000: both below 99 at 200
    assert main([str(d), "--difficulty", "512", "--from", "241", "--format", "csv"]) == 0
    t = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("seed")
    assert list(t["verdict"]) == ["reaches", "reaches"] and list(t["min"]) == [100.0, 100.0]
    assert main([str(d), "--difficulty", "512", "--from", "219", "--format", "csv"]) == 0
    t = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("seed")
    assert list(t["verdict"]) == ["short", "reaches"] and t.loc[1, "min"] == 99.0
