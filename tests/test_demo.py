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
    assert "Claims on the hardest test set" in out
    # a second run finds the finished sweep and only prints again (no duplicate rows)
    assert main(["demo", "--smoke", "--storage", str(storage), "--data-root", str(data)]) == 0
    assert len(read_results(str(sweep_dir))) == len(df)


def _rows(model, seed, curve, max_iters=3):
    # accuracy_max_confidence deliberately differs: the claims read `accuracy` only
    return [dict(model=model, seed=seed, status="ok", split="test", difficulty=24, max_iters=max_iters,
                 test_iters=k, accuracy=a, accuracy_max_confidence=100.0) for k, a in enumerate(curve, start=1)]


@pytest.mark.parametrize("rec,ff,expect", [
    ([10, 20, 30, 50, 60], [5, 10, 15], ("HOLDS", "HOLDS")),
    ([10, 20, 30, 20, 10], [5, 10, 40], ("DOES NOT HOLD", "DOES NOT HOLD")),
])
def test_claims_are_computed_from_the_results(rec, ff, expect):
    df = pd.DataFrame(_rows("recur_net", 0, rec) + _rows("recur_net", 1, rec) + _rows("ff_net", 0, ff))
    lines = claims(df)
    assert expect[0] in lines[1] and "1." in lines[1]
    assert expect[1] in lines[2] and "2." in lines[2]


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
