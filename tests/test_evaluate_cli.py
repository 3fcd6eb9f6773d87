"""`deepthink evaluate`: a finished trial's checkpoint evaluated again. The oracle is the trial
itself: with its own test settings the rows must equal the ones `deepthink train` wrote; with more
iterations the first ones are unchanged; a new difficulty is generated and evaluated; unfinished,
corrupt and missing checkpoints and bad options are one-line errors that do not stop the others."""

import pandas as pd
import pytest
import torch

from deepthink.checkpoint import FILENAME
from deepthink.cli import main
from deepthink.results import read_results

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py

RUN_YAML = """
name: tiny
task: prefix_sums
data: {{train: 8, eval: [10], count: 256}}
grid: {{model: [{model}], max_iters: [3], width: [16]}}
seeds: [0]
train: {{epochs: 2, lr: 0.005, batch_size: 32, warmup: 0, precision: fp32, alpha: 0.5}}
test: {{iterations: 6}}
storage: {storage}
"""
KEY = ["split", "difficulty", "test_iters"]
VALUES = ["accuracy", "accuracy_max_confidence", "n_examples", "status", "epochs_completed", "train_seconds",
          "n_params", "model", "seed", "width", "max_iters"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained dt_recall trial (deepthink train) and its rows: (checkpoint dir, rows, data root)."""
    tmp = tmp_path_factory.mktemp("ev")
    run = tmp / "run.yaml"
    run.write_text(RUN_YAML.format(model="dt_recall", storage=tmp / "results"))
    assert main(["train", str(run), "--data-root", str(tmp / "data")]) == 0
    rows = read_results(str(tmp / "results" / "tiny"))
    (tid,) = set(rows["trial_id"])
    return tmp / "results" / "_tiny" / "checkpoints" / tid, rows, tmp / "data"


def _evaluate(ckpt, out, data, *extra):
    return main(["evaluate", str(ckpt), "--out", str(out), "--data-root", str(data), *extra])


def test_same_settings_give_the_trials_own_rows(trained, tmp_path, capsys):
    ckpt, rows, data = trained
    assert _evaluate(ckpt, tmp_path / "again", data) == 0
    assert "ok, 18 rows" in capsys.readouterr().out            # 3 splits x 6 iterations
    again = read_results(str(tmp_path / "again"))
    assert set(again["sweep"]) == {"again"} and set(again["trial_id"]) == set(rows["trial_id"])
    a, b = (d.sort_values(KEY).reset_index(drop=True) for d in (rows, again))
    pd.testing.assert_frame_equal(a[KEY + VALUES], b[KEY + VALUES])
    # the file itself, and a Ray-style trial directory (newest checkpoint_*), are accepted too
    ray_dir = tmp_path / "trial"
    for k, keep in ((0, False), (1, True)):
        (ray_dir / f"checkpoint_00000{k}").mkdir(parents=True)
        (ray_dir / f"checkpoint_00000{k}" / FILENAME).write_bytes(
            (ckpt / FILENAME).read_bytes() if keep else b"not the newest")
    assert _evaluate(ckpt / FILENAME, tmp_path / "file", data) == 0
    assert _evaluate(ray_dir, tmp_path / "ray", data) == 0
    for d in ("file", "ray"):
        other = read_results(str(tmp_path / d)).sort_values(KEY).reset_index(drop=True)
        assert list(other["accuracy"]) == list(b["accuracy"])


def test_more_iterations_and_a_new_difficulty(trained, tmp_path):
    ckpt, rows, data = trained
    assert _evaluate(ckpt, tmp_path / "longer", data, "--iterations", "9", "--eval", "10", "14",
                     "--max-examples", "100", "--train-val-iterations", "3") == 0
    df = read_results(str(tmp_path / "longer"))
    test = df[df["split"] == "test"]
    assert sorted(test["difficulty"].unique()) == [10, 14] and set(test["n_examples"]) == {100}
    assert test.groupby("difficulty")["test_iters"].max().tolist() == [9, 9]
    assert df[df["split"] != "test"]["test_iters"].max() == 3
    # the first 100 test strings of 10 bits, at iterations 1..6: recomputed by hand from the weights
    from deepthink.models import build_model
    from deepthink.tasks import get_task, storage
    ck = torch.load(ckpt / FILENAME, weights_only=True)
    net = build_model("dt_recall", width=16, max_iters=3, in_channels=1, dims=1)
    net.load_state_dict(ck["model"])
    net.eval()
    x, y = storage.load(get_task("prefix_sums"), data, 10, "test", 256, 0, "generated")
    with torch.no_grad():
        for k in (1, 6, 9):
            right = (net(x[:100].float(), k).logits.argmax(1) == y[:100]).all(1).float().mean().item() * 100
            got = test[(test["difficulty"] == 10) & (test["test_iters"] == k)]["accuracy"].item()
            assert got == pytest.approx(right), k


def test_refusals_are_one_line_and_the_rest_goes_on(trained, tmp_path, capsys):
    ckpt, rows, data = trained
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    ck = torch.load(ckpt / FILENAME, weights_only=True)
    torch.save({**ck, "epoch": 1, "model": {}}, unfinished / FILENAME)   # refused before its weights are read
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / FILENAME).write_bytes((ckpt / FILENAME).read_bytes()[:100])
    code = main(["evaluate", str(unfinished), str(corrupt), str(tmp_path / "nothing"), str(ckpt),
                 "--out", str(tmp_path / "out"), "--data-root", str(data)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{unfinished / FILENAME}: training is not finished (1 of 2 epochs)" in err
    assert f"{corrupt / FILENAME}: cannot read checkpoint" in err
    assert f"{tmp_path / 'nothing'}: no checkpoint there" in err
    assert "3 of 4 checkpoints not evaluated" in err
    assert len(read_results(str(tmp_path / "out"))) == 18          # the good one was evaluated
    assert _evaluate(ckpt, tmp_path / "bad", data, "--eval", "-3") == 2
    assert "test difficulty -3 for prefix_sums: expected" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", str(ckpt), "--out", str(tmp_path / "x"), "--iterations", "0"])
