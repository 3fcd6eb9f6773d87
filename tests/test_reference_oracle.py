"""Functional oracle: every registered model computes the published forward pass.

The oracle below is written from DESIGN.md section 3 and the reference code
(aks2203/deep-thinking: dt_net_1d.py, dt_net_2d.py, blocks.py) with `torch.nn.functional` only; it
never calls the project's blocks. Each test copies one set of the project model's weights into the
oracle (by parameter name, so a renamed, added or missing layer fails too) and asserts equal logits
in float64 at several iteration counts. A model added to the registry without an oracle here fails
`test_every_registered_model_has_an_oracle`.

    .venv/bin/python -m pytest tests/test_reference_oracle.py -q
"""
import pytest
import torch
import torch.nn.functional as F

from deepthink.models import MODELS, build_model
from deepthink.tasks import TASKS

SPATIAL = {1: (13,), 2: (7, 9)}
ITERS = (1, 2, 5)
WIDTH = 8


def conv(x, w, dims):
    """Reference conv: kernel 3, stride 1, padding 1, no bias. 1D weights come as (out, in, 1, 3)
    from the project's (1, 3)-kernel Conv2d; the oracle uses them as the Conv1d weight (out, in, 3)."""
    if dims == 1:
        return F.conv1d(x, w.reshape(w.shape[0], w.shape[1], 3), padding=1)
    return F.conv2d(x, w, padding=1)


def basic_block(x, w1, w2, dims):
    """ResNet BasicBlock of the reference: relu(conv2(relu(conv1(x))) + x)."""
    return F.relu(conv(F.relu(conv(x, w1, dims)), w2, dims) + x)


def oracle_logits(weights, x, iters, *, dims, recall, shared):
    """The published forward pass: projection+ReLU, `iters` recurrent (or separate) blocks, head."""
    w = dict(weights)
    state = F.relu(conv(x, w.pop("projection.0.weight"), dims))           # (B, width, *S)
    for i in range(iters):
        b = 0 if shared else i
        if recall:
            state = conv(torch.cat([state, x], 1), w[f"blocks.{b}.recall.weight"], dims)
            if dims == 1:                                                   # dt_net_1d: [conv_recall, ReLU]
                state = F.relu(state)                                       # (2D nets: no ReLU here)
        for j in range(2):
            state = basic_block(state, w[f"blocks.{b}.body.{j}.conv1.weight"],
                                w[f"blocks.{b}.body.{j}.conv2.weight"], dims)
    out = F.relu(conv(state, w["head_convs.0.weight"], dims))
    out = F.relu(conv(out, w["head_convs.2.weight"], dims))
    return conv(out, w["head_convs.4.weight"], dims)                        # (B, 2, *S)


def oracle_keys(*, n_blocks, recall):
    keys = {"projection.0.weight", "head_convs.0.weight", "head_convs.2.weight", "head_convs.4.weight"}
    for b in range(n_blocks):
        keys |= {f"blocks.{b}.body.{j}.conv{k}.weight" for j in range(2) for k in (1, 2)}
        if recall:
            keys.add(f"blocks.{b}.recall.weight")
    return keys


# How each registered model maps onto the published forward pass.
ORACLES = {
    "ff_net": dict(recall=False, shared=False),      # paper 1 feed_forward_net: separate blocks
    "recur_net": dict(recall=False, shared=True),    # paper 1 recur_net: one shared block
    "dt_net": dict(recall=False, shared=True),       # paper 2 dt_net_{1d,2d}
    "dt_recall": dict(recall=True, shared=True),     # paper 2 dt_net_recall_{1d,2d}
}


def test_every_registered_model_has_an_oracle():
    missing = sorted(set(MODELS) - set(ORACLES))
    assert not missing, f"models without a functional oracle in {__file__}: {missing}"


@pytest.mark.parametrize("task_name", sorted(TASKS))
@pytest.mark.parametrize("model_name", sorted(ORACLES))
def test_logits_equal_the_reference_forward_pass(task_name, model_name):
    if model_name not in MODELS:
        pytest.skip(f"{model_name} not registered")
    task = TASKS[task_name]
    spec = ORACLES[model_name]
    torch.manual_seed(0)
    net = build_model(model_name, width=WIDTH, max_iters=max(ITERS), in_channels=task.in_channels,
                      dims=task.dims).double().eval()
    # Non-default weights: scale up so that ReLUs cut and every layer matters for the logits.
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.7)
    weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
    n_blocks = 1 if spec["shared"] else max(ITERS)
    assert set(weights) == oracle_keys(n_blocks=n_blocks, recall=spec["recall"])
    g = torch.Generator().manual_seed(1)
    x = torch.rand((3, task.in_channels, *SPATIAL[task.dims]), generator=g, dtype=torch.float64) - 0.5
    for iters in ITERS:
        want = oracle_logits(weights, x, iters, dims=task.dims, **spec)
        with torch.no_grad():
            got = net(x, iters).logits
        assert want.abs().max() > 1e-6, "degenerate test: the oracle's logits are all zero"
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12,
                                   msg=lambda m: f"{model_name} on {task_name}, {iters} iterations: {m}")
