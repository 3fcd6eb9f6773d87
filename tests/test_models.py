"""Models over the registries: shapes for every task, pinned parameter counts, one return type,
and iteration k being the same whether run alone or read from a longer run.

    .venv/bin/python -m pytest tests/test_models.py -q
"""
import pytest
import torch

from deepthink.models import MODELS, ThinkOutput, build_model, count_parameters, model_iterations
from deepthink.tasks import TASKS

SPATIAL = {1: (11,), 2: (6, 7)}     # small, deliberately non-square / odd sizes


pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py


def make(model_name, task, width=8, iters=3, seed=0):
    torch.manual_seed(seed)
    return build_model(model_name, width=width, max_iters=iters, in_channels=task.in_channels, dims=task.dims)


def inputs(task, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((batch, task.in_channels, *SPATIAL[task.dims]), generator=g) - 0.5   # (B, C, *S)


@pytest.mark.parametrize("task_name", sorted(TASKS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_forward_shapes_and_one_return_type(task_name, model_name):
    task = TASKS[task_name]
    net = make(model_name, task)
    x = inputs(task)
    outs = []
    for mode in (net.train, net.eval):
        mode()
        out = net(x, 3)
        assert type(out) is ThinkOutput
        assert out.logits.shape == (3, 2, *SPATIAL[task.dims])
        assert out.state.shape == (3, 8, *SPATIAL[task.dims])
        outs.append(out.logits)
    if net.train_eval_differ:                     # BatchNorm / spectral estimates: eval is repeatable
        assert torch.equal(net(x, 3).logits, outs[1])
    else:
        assert torch.equal(outs[0], outs[1])      # no train/eval-dependent layers
    state = net.project(x)
    assert state.shape == (3, 8, *SPATIAL[task.dims])
    assert net.head(net.step(state, x, 0)).shape == (3, 2, *SPATIAL[task.dims])


# Reference architectures (aks2203/deep-thinking): counts quoted in issue 3 / DESIGN.md section 3.
@pytest.mark.parametrize("task_name,model_name,width,count", [
    ("prefix_sums", "dt_recall", 400, 3_123_600),
    ("prefix_sums", "dt_net", 400, 2_642_400),
    ("mazes", "dt_recall", 128, 783_504),
    ("chess", "dt_recall", 512, 12_056_976),
    # DT-L (no reference count): dt_recall's 80,448 at width 64 + recall bias 64 + 2 interpolation
    # logits + BatchNorm affine 2 x (64 + 64 + 32) = 80,834
    ("prefix_sums", "dt_l", 64, 80_834),
    ("prefix_sums", "dt_l_relu", 64, 80_834),   # the same layers, another activation
    ("prefix_sums", "dt_l_relu_gn", 64, 80_834),  # GroupNorm's affine = BatchNorm's (no running stats)
])
def test_parameter_counts_match_reference(task_name, model_name, width, count):
    if task_name not in TASKS:
        pytest.skip(f"task {task_name} not registered")
    task = TASKS[task_name]
    net = build_model(model_name, width=width, max_iters=30, in_channels=task.in_channels, dims=task.dims)
    assert count_parameters(net) == count


def test_feed_forward_has_separate_blocks_recurrent_shares_one():
    task = TASKS["prefix_sums"]
    ff, rec = make("ff_net", task, iters=4), make("recur_net", task, iters=4)
    block = count_parameters(rec.blocks[0])
    assert count_parameters(ff) - count_parameters(rec) == 3 * block
    assert ff.max_test_iters == 4 and rec.max_test_iters is None
    with pytest.raises(ValueError, match="4 blocks"):
        ff.step(ff.project(inputs(task)), inputs(task), 4)
    assert model_iterations(44) == 10
    with pytest.raises(ValueError):
        model_iterations(42)


@pytest.mark.parametrize("task_name", sorted(TASKS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_iteration_k_alone_equals_iteration_k_of_longer_run(task_name, model_name):
    task = TASKS[task_name]
    net = make(model_name, task, iters=4).eval()
    x = inputs(task)
    with torch.no_grad():
        state = net.project(x)
        longer = []
        for i in range(4):
            state = net.step(state, x, i)
            longer.append(net.head(state))
        for k in range(1, 5):
            alone = net(x, k).logits
            assert torch.equal(alone, longer[k - 1]), f"iteration {k}"
        # resuming from a state continues the same trajectory
        mid = net(x, 2).state
        assert torch.equal(net(x, 2, state=mid, start=2).logits, longer[3])


def test_recall_sees_the_input_every_iteration():
    """DT-Recall's and DT-L's iteration output depends on x beyond the projection; DT's does not."""
    task = TASKS["prefix_sums"]
    x, x2 = inputs(task, seed=0), inputs(task, seed=1)
    for name, depends in (("dt_recall", True), ("dt_l", True), ("dt_net", False)):
        net = make(name, task).eval()
        with torch.no_grad():
            state = net.project(x)
            a, b = net.step(state, x, 0), net.step(state, x2, 0)
        assert (not torch.equal(a, b)) == depends, name


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_the_spec_says_whether_a_model_is_recurrent(model_name):
    """ModelSpec.recurrent (what the planner, trainer and demo ask) agrees with what the built net
    can do: a recurrent net runs past its training iterations, a feed-forward one cannot."""
    from deepthink.models import get_model_spec
    net = make(model_name, TASKS["prefix_sums"], iters=2)
    x = inputs(TASKS["prefix_sums"])
    if get_model_spec(model_name).recurrent:
        assert net(x, 5).logits.shape[0] == x.shape[0]
    else:
        with pytest.raises(ValueError, match="cannot run iteration 3"):
            net(x, 3)


def test_models_cli_lists_every_model_in_aligned_columns(capsys):
    """`deepthink models`: one row per registered model, parameter counts right-aligned in one
    column however long a model's name is."""
    import argparse
    from deepthink.models.cli import run
    assert run(argparse.Namespace(task="prefix_sums", width=16, depth=None, max_iters=4)) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0], lines[1:]
    assert [r.split()[1] for r in rows] == list(MODELS)
    end = header.index("parameters") + len("parameters")
    task = TASKS["prefix_sums"]
    for row, name in zip(rows, MODELS):
        net = build_model(name, width=16, max_iters=4, in_channels=task.in_channels, dims=task.dims)
        assert row[:end].endswith(f"{count_parameters(net):,}"), row


def test_model_config_rejects_unknown_or_ignored_activation_and_norm():
    """norm/activation only shape Lipschitz nets: elsewhere (or misspelt) they are an error, not ignored."""
    from deepthink.models import ModelConfig
    base = dict(width=8, max_iters=2, in_channels=1, dims=1)
    with pytest.raises(ValueError, match="unknown normalization 'layer'"):
        ModelConfig(**base, lipschitz=True, norm="layer")
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        ModelConfig(**base, lipschitz=True, activation="gelu")
    with pytest.raises(ValueError, match="Lipschitz .DT-L. models only"):
        ModelConfig(**base, recall=True, norm="group")
    ModelConfig(**base, lipschitz=True, activation="relu", norm="group")     # fine
