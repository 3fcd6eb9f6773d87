"""The quickstart pipeline (`deepthink demo`), shrunk with --smoke, end to end on embedded Ray, and
the claim checker on hand-built results."""
from pathlib import Path

import pandas as pd
import pytest

from deepthink.cli import main
from deepthink.demo import QUICKSTART, claims
from deepthink.config import parse_sweep
from deepthink.results import read_results


def test_quickstart_file_is_valid_and_compares_recurrent_with_feedforward():
    sweep = parse_sweep(QUICKSTART)
    assert sweep.resources.gpu == 0, "the quickstart must run on a CPU-only machine"
    assert "ff_net" in sweep.grid["model"] and len(sweep.grid["model"]) == 2
    assert len(sweep.seeds) >= 3
    assert max(sweep.data.eval) > sweep.data.train


def test_demo_smoke_runs_the_whole_pipeline(tmp_path, capsys):
    storage, data = tmp_path / "results", tmp_path / "data"
    assert main(["demo", "--smoke", "--storage", str(storage), "--data-root", str(data)]) == 0
    out = capsys.readouterr().out
    sweep_dir = storage / "quickstart_smoke"
    df = read_results(str(sweep_dir))
    assert set(df.status) == {"ok"} and df.trial_id.nunique() == 4
    whole = pd.read_parquet(sweep_dir)                          # the contract: pandas reads the dir whole
    assert whole.shape[0] == len(df) and "metric" not in whole.columns
    assert not whole.duplicated(["trial_id", "split", "difficulty", "test_iters"]).any()
    assert (storage / "_quickstart_smoke" / "figures" / "accuracy.png").stat().st_size > 1000
    assert {p.suffix for p in sweep_dir.rglob("*")} == {".parquet"}, "the results directory holds only Parquet"
    assert "at the training iteration count" in out and "best test iteration" in out
    assert "Claims on " in out and "Overall: " in out
    # a second run finds the finished sweep and only prints again (no duplicate rows)
    assert main(["demo", "--smoke", "--storage", str(storage), "--data-root", str(data)]) == 0
    assert len(read_results(str(sweep_dir))) == len(df)


def _rows(model, seed, curve, max_iters=3, difficulty=24, train_difficulty=12):
    # accuracy_max_confidence deliberately differs: the claims read `accuracy` only
    return [dict(model=model, seed=seed, status="ok", split="test", difficulty=difficulty,
                 train_difficulty=train_difficulty, max_iters=max_iters, test_iters=k, accuracy=a,
                 accuracy_max_confidence=100.0) for k, a in enumerate(curve, start=1)]


GOOD = [10, 40, 70, 90, 95, 95, 95, 95, 95, 95, 95, 95]     # trained 3: 2x = 6, 4x = 12
FF = [5, 10, 15]


@pytest.mark.parametrize("name,rec_seeds,ff,expect", [
    ("all hold", [GOOD, GOOD, GOOD], FF, ["HOLDS", "HOLDS", "HOLDS", "Overall: HOLDS"]),
    # one seed at 70% at iteration 6: the mean is 86.7 < 90 and the worst seed < 80
    ("a weak seed", [GOOD, GOOD, [10, 40, 60, 65] + [70] * 8], FF, ["DOES NOT HOLD", "HOLDS", "HOLDS", "DOES NOT HOLD"]),
    # mean 95 at 2x, then decays to 90 at 4x: overthinking (5 points below the peak)
    ("overthinks", [GOOD[:11] + [90]] * 3, FF, ["HOLDS", "DOES NOT HOLD", "HOLDS", "DOES NOT HOLD"]),
    # the feed-forward net reaches 80%: only 15 points below
    ("ff close", [GOOD] * 3, [40, 70, 80], ["HOLDS", "HOLDS", "DOES NOT HOLD", "DOES NOT HOLD"]),
])
def test_claims_are_computed_from_the_results(name, rec_seeds, ff, expect):
    rows = [r for s, c in enumerate(rec_seeds) for r in _rows("dt_l", s, c)] + _rows("ff_net", 0, ff)
    lines = claims(pd.DataFrame(rows))
    assert lines[0].startswith("Claims on 24 (trained on 12")
    for prefix, line, want in zip(("  1.", "  2.", "  3.", "Overall"), lines[1:], expect):
        assert line.startswith(prefix) and want in line and (want != "HOLDS" or "NOT" not in line), (name, line)


def test_claims_refuse_to_check_what_was_not_tested():
    # no test set at least twice the training length (24 < 2 * 16)
    lines = claims(pd.DataFrame(_rows("dt_l", 0, GOOD, train_difficulty=16) + _rows("ff_net", 0, FF, train_difficulty=16)))
    assert len(lines) == 1 and "cannot check" in lines[0] and "32" in lines[0]
    # tested only up to 8 iterations, 4x of 3 is 12
    lines = claims(pd.DataFrame(_rows("dt_l", 0, GOOD[:8]) + _rows("ff_net", 0, FF)))
    assert "cannot check" in lines[1] and "raise test.iterations" in lines[1] and "DOES NOT HOLD" in lines[-1]


def test_demo_fresh_never_deletes_a_directory_a_running_driver_holds(tmp_path, capsys):
    """`--fresh` deletes earlier results; while another driver holds the sweep directory's lock it
    refuses instead (the directory and its files stay)."""
    from deepthink.demo import SMOKE_OVERRIDES
    from deepthink.sweep import lock, state
    storage = tmp_path / "results"
    sweep = parse_sweep(QUICKSTART, {**SMOKE_OVERRIDES, "storage": str(storage)})
    uri = state.sweep_uri(sweep.storage, sweep.name)
    Path(uri).mkdir(parents=True)
    (Path(uri) / "trial-x.parquet").write_bytes(b"kept")
    with lock.hold(uri, log=lambda m: None):
        rc = main(["demo", "--smoke", "--fresh", "--storage", str(storage), "--data-root", str(tmp_path / "d")])
    assert rc == 2
    assert "in use by a running driver" in capsys.readouterr().out
    assert (Path(uri) / "trial-x.parquet").read_bytes() == b"kept"
