"""Weight decay by parameter group: the models say which parameters are exempt
(`ThinkingNet.no_weight_decay()`), `build_optimizer` obeys it for every model and optimizer.

    .venv/bin/python -m pytest tests/test_optim.py -q
"""
import pytest
import torch

from deepthink.config import TrainConfig
from deepthink.models import MODELS, build_model
from deepthink.optim import build_optimizer
from deepthink.tasks import TASKS

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py

# Independent of the code under test: the names that take weight decay, by architecture.
# Reference models: every parameter (all are bias-free plain conv weights), as before groups existed.
# DT-L: only the unconstrained convs (projection and head), as in Bear et al. 2024.
DT_L_DECAYED = {"projection.0.weight", "head_convs.0.weight", "head_convs.3.weight", "head_convs.6.weight"}


def expected_decayed(model_name, net):
    if MODELS[model_name].lipschitz:
        return DT_L_DECAYED
    return {n for n, _ in net.named_parameters()}


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
@pytest.mark.parametrize("task_name", sorted(TASKS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_groups_and_their_weight_decay(model_name, task_name, optimizer):
    task = TASKS[task_name]
    net = build_model(model_name, width=8, max_iters=2, in_channels=task.in_channels, dims=task.dims)
    opt = build_optimizer(net, TrainConfig(optimizer=optimizer, weight_decay=2e-4))
    name_of = {id(p): n for n, p in net.named_parameters()}
    decay = {name_of[id(p)] for g in opt.param_groups if g["weight_decay"] == 2e-4 for p in g["params"]}
    none = {name_of[id(p)] for g in opt.param_groups if g["weight_decay"] == 0.0 for p in g["params"]}
    assert decay == expected_decayed(model_name, net)
    assert none == set(name_of.values()) - decay                  # every parameter in exactly one group
    assert sum(len(g["params"]) for g in opt.param_groups) == len(name_of)
    if not MODELS[model_name].lipschitz:
        assert len(opt.param_groups) == 1                         # unchanged: one group, all decayed
    else:
        assert any(n.endswith("interp_logit") for n in none)
        assert any(n.endswith("parametrizations.weight.original") for n in none)
        assert any(n.endswith("recall.bias") for n in none)
        assert "projection.1.weight" in none and "head_convs.1.bias" in none       # BatchNorm affine


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_a_step_with_zero_gradients_shrinks_only_the_decayed_parameters(model_name):
    """SGD, no momentum, zero loss gradient: p <- p (1 - lr wd) for decayed parameters, p for the rest."""
    task = TASKS["prefix_sums"]
    torch.manual_seed(0)
    net = build_model(model_name, width=8, max_iters=2, in_channels=task.in_channels, dims=task.dims)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1)                                           # no exact zeros: every change shows
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = build_optimizer(net, TrainConfig(optimizer="sgd", lr=0.5, weight_decay=0.1, momentum=0.0))
    (0.0 * net(torch.rand(2, 1, 8) - 0.5, 2).logits.sum()).backward()
    opt.step()
    decayed = expected_decayed(model_name, net)
    for n, p in net.named_parameters():
        want = before[n] * (1 - 0.5 * 0.1) if n in decayed else before[n]
        torch.testing.assert_close(p.detach(), want, msg=lambda m: f"{n}: {m}")
