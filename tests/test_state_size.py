"""analysis.state_size: the state size it reports equals the state the model's own forward pass
returns after k iterations (computed here independently); a net whose recurrent weights are scaled
up is reported growing and then non-finite; feed-forward nets and missing checkpoints refused."""
import io

import pytest
import torch

from analysis.state_size import main
from deepthink.checkpoint import FILENAME
from deepthink.cli import main as deepthink

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py

RUN_YAML = """
name: tiny
task: prefix_sums
data: {{train: 8, eval: [10, 16], count: 256}}
grid: {{model: [{model}], max_iters: [3], width: [16]}}
seeds: [0]
train: {{epochs: 1, lr: 0.005, batch_size: 32, warmup: 0, precision: fp32, alpha: 0.5}}
test: {{iterations: 3}}
storage: {storage}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ss")
    out = {}
    for model in ("dt_recall", "ff_net"):
        run = tmp / f"{model}.yaml"
        run.write_text(RUN_YAML.format(model=model, storage=tmp / model))
        assert deepthink(["train", str(run), "--data-root", str(tmp / "data")]) == 0
        (ckpt,) = (tmp / model / "_tiny" / "checkpoints").iterdir()
        out[model] = ckpt
    return out, tmp / "data"


def _csv(capsys, *argv):
    import pandas as pd
    assert main(list(map(str, argv))) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out))


def test_sizes_are_the_models_own_state(trained, capsys):
    ckpts, data = trained
    df = _csv(capsys, ckpts["dt_recall"], "--data-root", data, "--examples", "7", "--marks", "1", "5", "40",
              "--format", "csv")
    assert list(df["iteration"]) == [1, 5, 40] and set(df["difficulty"]) == {16} and set(df["examples"]) == {7}
    from deepthink.models import build_model
    from deepthink.tasks import get_task, storage
    net = build_model("dt_recall", width=16, max_iters=3, in_channels=1, dims=1)
    net.load_state_dict(torch.load(ckpts["dt_recall"] / FILENAME, weights_only=True)["model"])
    net.eval()
    x, _ = storage.load(get_task("prefix_sums"), data, 16, "test", 256, 0, "generated")
    with torch.no_grad():
        for k in (1, 5, 40):
            want = net(x[:7].float(), k).state.abs().flatten(1).mean(1).max().item()
            assert df[df["iteration"] == k]["max_mean_abs"].item() == pytest.approx(want, rel=1e-5)
    assert (df["non_finite"] == 0).all()


def test_a_blown_up_recurrence_is_reported(trained, tmp_path, capsys):
    ckpts, data = trained
    ck = torch.load(ckpts["dt_recall"] / FILENAME, weights_only=True)
    recur = [k for k in ck["model"] if k.startswith("blocks.") and k.endswith("weight")]   # the recurrent block
    assert recur, sorted(ck["model"])
    for k in recur:
        ck["model"][k] = ck["model"][k] * 5
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save(ck, bad / FILENAME)
    df = _csv(capsys, bad, "--data-root", data, "--marks", "2", "10", "200", "--format", "csv")
    sizes = df.set_index("iteration")
    assert sizes.loc[10, "max_mean_abs"] > 100 * sizes.loc[2, "max_mean_abs"]
    assert sizes.loc[200, "non_finite"] > 0
    assert main([str(bad), "--data-root", str(data), "--marks", "2", "200"]) == 0
    assert "non-finite)" in capsys.readouterr().out


def test_refusals(trained, tmp_path, capsys):
    ckpts, data = trained
    assert main([str(ckpts["ff_net"]), "--data-root", str(data)]) == 2
    assert "is a feed-forward net" in capsys.readouterr().err
    assert main([str(tmp_path / "none"), "--data-root", str(data)]) == 2
    assert "no checkpoint there" in capsys.readouterr().err
    # several at once: the bad ones are errors, the good one is still measured
    assert main([str(ckpts["ff_net"]), str(ckpts["dt_recall"]), "--data-root", str(data), "--marks", "3"]) == 2
    out = capsys.readouterr()
    assert "is a feed-forward net" in out.err and "| dt_recall | 16 | 0 | 1/1 |" in out.out


def test_lipschitz_is_the_largest_singular_value_of_the_steps_jacobian(trained, capsys):
    """--lipschitz: at each mark, the largest singular value of d step / d state at the state the
    model reached, computed here from the full Jacobian (torch.autograd.functional.jacobian + an
    exact matrix 2-norm), not by power iteration."""
    ckpts, data = trained
    df = _csv(capsys, ckpts["dt_recall"], "--data-root", data, "--examples", "2", "--marks", "1", "4",
              "--lipschitz", "--power-iterations", "400", "--format", "csv")
    quick = _csv(capsys, ckpts["dt_recall"], "--data-root", data, "--examples", "2", "--marks", "1", "4",
                 "--lipschitz", "--power-iterations", "5", "--format", "csv")
    from torch.autograd.functional import jacobian
    from deepthink.models import build_model
    from deepthink.tasks import get_task, storage
    net = build_model("dt_recall", width=16, max_iters=3, in_channels=1, dims=1)
    net.load_state_dict(torch.load(ckpts["dt_recall"] / FILENAME, weights_only=True)["model"])
    net.eval()
    x, _ = storage.load(get_task("prefix_sums"), data, 16, "test", 256, 0, "generated")
    x = x[:2].float()
    for k in (1, 4):
        with torch.no_grad():
            h = net(x, k).state                                           # (2, 16, 16)
        jac = jacobian(lambda s: net.step(s, x, k), h).reshape(h.numel(), h.numel())
        want = torch.linalg.matrix_norm(jac, 2).item()
        assert df[df["iteration"] == k]["lipschitz"].item() == pytest.approx(want, rel=2e-3)
        assert quick[quick["iteration"] == k]["lipschitz"].item() <= want * (1 + 1e-5)   # a lower bound
    # markdown: the second table is there
    assert main([str(ckpts["dt_recall"]), "--data-root", str(data), "--marks", "2", "--lipschitz"]) == 0
    assert "local Lipschitz constant" in capsys.readouterr().out


def test_lipschitz_of_a_blown_up_recurrence_is_above_1(trained, tmp_path, capsys):
    ckpts, data = trained
    ck = torch.load(ckpts["dt_recall"] / FILENAME, weights_only=True)
    for k in [k for k in ck["model"] if k.startswith("blocks.") and k.endswith("weight")]:
        ck["model"][k] = ck["model"][k] * 5
    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save(ck, bad / FILENAME)
    df = _csv(capsys, bad, "--data-root", data, "--marks", "1", "--lipschitz", "--format", "csv")
    assert df["lipschitz"].item() > 1.0
