"""Functional oracle: every registered model computes the published forward pass.

The oracles below are written from DESIGN.md section 3 and the reference code
(aks2203/deep-thinking: dt_net_1d.py, dt_net_2d.py, blocks.py), and for DT-L from Bear et al. 2024
as docs/models.md reads it, with `torch.nn.functional` only; they never call the project's blocks. Each test copies one set of the project model's weights into the
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


def conv(x, w, dims, bias=None):
    """Reference conv: kernel 3, stride 1, padding 1, no bias. 1D weights come as (out, in, 1, 3)
    from the project's (1, 3)-kernel Conv2d; the oracle uses them as the Conv1d weight (out, in, 3)."""
    if dims == 1:
        return F.conv1d(x, w.reshape(w.shape[0], w.shape[1], 3), bias, padding=1)
    return F.conv2d(x, w, bias, padding=1)


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


# ---- DT-L (Bear et al. 2024) ----------------------------------------------------------------
SN = ".parametrizations.weight"       # torch's spectral_norm: raw weight `original`, estimates `0._u`, `0._v`
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
LAM_EPS = 1e-4                        # lam = eps + (1 - 2 eps) sigmoid(logit) (docs/models.md)


def spectral_normalized(w, name, conv_norm="matrix"):
    """"matrix": W / sigma with sigma = u^T W_mat v, the power-iteration estimate of W_mat's largest
    singular value (Miyato et al. 2018), W_mat = W reshaped to (out, in * k); "bound" (dt_l_strict):
    divided by sqrt(k) more, k the kernel's taps; "operator" (dt_l_op): W / ||T u||, T the circular
    cross-correlation by W over u's grid (written here as a sum of rolled copies of u), u the
    stored estimate."""
    raw = w[f"{name}{SN}.original"]
    if conv_norm == "operator":
        u = w[f"{name}{SN}.0._u"]                                     # (1, in, G_h, G_w)
        kh, kw = raw.shape[-2:]
        tu = sum(torch.einsum("oi,bihw->bohw", raw[:, :, a, b],
                              torch.roll(u, shifts=(-(a - kh // 2), -(b - kw // 2)), dims=(2, 3)))
                 for a in range(kh) for b in range(kw))
        return raw / tu.norm()
    sigma = w[f"{name}{SN}.0._u"] @ raw.flatten(1) @ w[f"{name}{SN}.0._v"]
    taps = raw.shape[-2] * raw.shape[-1]
    return raw / sigma / taps ** 0.5 if conv_norm == "bound" else raw / sigma


def batch_norm(t, w, name):
    """Eval-mode BatchNorm: running statistics, affine."""
    return F.batch_norm(t, w[f"{name}.running_mean"], w[f"{name}.running_var"], w[f"{name}.weight"],
                        w[f"{name}.bias"], training=False, eps=1e-5)


def group_norm(t, w, name):
    """GroupNorm with one group: each example over all its channels and positions, affine."""
    return F.group_norm(t, 1, w[f"{name}.weight"], w[f"{name}.bias"], eps=1e-5)


def dt_l_logits(w, x, iters, *, dims, act=F.elu, norm=batch_norm, conv_norm="matrix"):
    """DT-L: F = conv+BN+ReLU; G = DT-Recall's block with spectral-normalized convs, a bias on the
    recall conv, ELU for ReLU and each residual sum x + f(x) replaced by (1 - lam) x + lam f(x);
    H = the reference head with BN (or `norm`) after its first two convs. G's convs normalized by
    spectral_normalized(conv_norm)."""
    state = F.relu(norm(conv(x, w["projection.0.weight"], dims), w, "projection.1"))
    for _ in range(iters):
        z = conv(torch.cat([state, x], 1), spectral_normalized(w, "blocks.0.recall", conv_norm), dims,
                 bias=w["blocks.0.recall.bias"])
        if dims == 1:                                                       # as DT-Recall 1D: [recall, act]
            z = act(z)
        for j in range(2):
            p = f"blocks.0.body.{j}"
            f = conv(act(conv(z, spectral_normalized(w, f"{p}.conv1", conv_norm), dims)),
                     spectral_normalized(w, f"{p}.conv2", conv_norm), dims)
            lam = LAM_EPS + (1 - 2 * LAM_EPS) * torch.sigmoid(w[f"{p}.interp_logit"])
            z = act((1 - lam) * z + lam * f)
        state = z
    out = F.relu(norm(conv(state, w["head_convs.0.weight"], dims), w, "head_convs.1"))
    out = F.relu(norm(conv(out, w["head_convs.3.weight"], dims), w, "head_convs.4"))
    return conv(out, w["head_convs.6.weight"], dims)


def dt_l_keys(norm_keys=BN, estimates=("0._u", "0._v")):
    keys = {"projection.0.weight", "head_convs.0.weight", "head_convs.3.weight", "head_convs.6.weight",
            "blocks.0.recall.bias"}
    keys |= {f"{m}.{k}" for m in ("projection.1", "head_convs.1", "head_convs.4") for k in norm_keys}
    for c in ["blocks.0.recall"] + [f"blocks.0.body.{j}.conv{k}" for j in range(2) for k in (1, 2)]:
        keys |= {f"{c}{SN}.original"} | {f"{c}{SN}.{e}" for e in estimates}
    return keys | {f"blocks.0.body.{j}.interp_logit" for j in range(2)}


def reference(recall, shared):
    return dict(logits=lambda w, x, iters, dims: oracle_logits(w, x, iters, dims=dims, recall=recall, shared=shared),
                keys=lambda n_blocks: oracle_keys(n_blocks=1 if shared else n_blocks, recall=recall))


# How each registered model maps onto its published forward pass.
ORACLES = {
    "ff_net": reference(recall=False, shared=False),      # paper 1 feed_forward_net: separate blocks
    "recur_net": reference(recall=False, shared=True),    # paper 1 recur_net: one shared block
    "dt_net": reference(recall=False, shared=True),       # paper 2 dt_net_{1d,2d}
    "dt_recall": reference(recall=True, shared=True),     # paper 2 dt_net_recall_{1d,2d}
    "dt_l": dict(logits=lambda w, x, iters, dims: dt_l_logits(w, x, iters, dims=dims),
                 keys=lambda n_blocks: dt_l_keys()),      # paper 3 (Bear et al. 2024)
    "dt_l_relu": dict(logits=lambda w, x, iters, dims: dt_l_logits(w, x, iters, dims=dims, act=F.relu),
                      keys=lambda n_blocks: dt_l_keys()),  # dt_l with ReLU for ELU in G
    "dt_l_relu_gn": dict(logits=lambda w, x, iters, dims: dt_l_logits(w, x, iters, dims=dims, act=F.relu,
                                                                      norm=group_norm),
                         keys=lambda n_blocks: dt_l_keys(norm_keys=("weight", "bias"))),  # + GroupNorm in F and H
    "dt_l_strict": dict(logits=lambda w, x, iters, dims: dt_l_logits(w, x, iters, dims=dims, act=F.relu,
                                                                     norm=group_norm, conv_norm="bound"),
                        keys=lambda n_blocks: dt_l_keys(norm_keys=("weight", "bias"))),  # + convs / sqrt(k)
    "dt_l_op": dict(logits=lambda w, x, iters, dims: dt_l_logits(w, x, iters, dims=dims, act=F.relu,
                                                                 norm=group_norm, conv_norm="operator"),
                    keys=lambda n_blocks: dt_l_keys(norm_keys=("weight", "bias"), estimates=("0._u",))),
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
    oracle = ORACLES[model_name]
    torch.manual_seed(0)
    net = build_model(model_name, width=WIDTH, max_iters=max(ITERS), in_channels=task.in_channels,
                      dims=task.dims).double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand((3, task.in_channels, *SPATIAL[task.dims]), generator=g, dtype=torch.float64) - 0.5
    # Non-default weights: scale up so that ReLUs cut and every layer matters for the logits; move
    # the parameters that start at 0 or 1 (biases, BatchNorm affine, interpolation logits).
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1.7)
            if p.dim() <= 1:
                p.add_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        # A few training-mode passes: running statistics and spectral estimates move off their
        # initial values (no-ops for the reference models), then evaluate.
        net.train()
        for _ in range(3):
            net(torch.rand(x.shape, generator=g, dtype=x.dtype) - 0.5, 2)
    net.eval()
    weights = {k: v.detach().clone() for k, v in net.state_dict().items()}
    assert set(weights) == oracle["keys"](max(ITERS))
    for iters in ITERS:
        want = oracle["logits"](weights, x, iters, task.dims)
        with torch.no_grad():
            got = net(x, iters).logits
        assert want.abs().max() > 1e-6, "degenerate test: the oracle's logits are all zero"
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12,
                                   msg=lambda m: f"{model_name} on {task_name}, {iters} iterations: {m}")
