"""The hot path's dtypes and memory layouts (deepthink/precision.py): under bf16 autocast the input
is cast once per batch, so the recall concatenation neither promotes the state to fp32 nor gets
cast back at every iteration; in channels-last no iteration copies the concatenation into another
layout; fp32 results are bit-for-bit those of the plain path. Timing is never asserted here
(README speed section, benchmarks/bench_train.py).

    .venv/bin/python -m pytest tests/test_precision_paths.py -q
"""
import random

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from deepthink.models import build_model
from deepthink.models.blocks import ACTIVATIONS
from deepthink.precision import cast_for_autocast, resolve_precision
from deepthink.train import progressive_loss

pytestmark = pytest.mark.usefixtures("one_thread")   # see conftest.py

BATCH = 5
SHAPES = {1: (1, (13,)), 2: (3, (6, 7))}              # dims -> (input channels, spatial)
BF16 = resolve_precision("bf16", "cpu")
FP32 = resolve_precision("fp32", "cpu")


def net_and_input(dims, model="dt_recall", width=8, seed=0):
    cin, spatial = SHAPES[dims]
    torch.manual_seed(seed)
    net = build_model(model, width=width, max_iters=6, in_channels=cin, dims=dims)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (BATCH, cin, *spatial), generator=g).float() - 0.5   # exact in bf16
    return net, x


def batch_copies(prof) -> dict[str, int]:
    """Dtype casts and layout copies of activation-sized tensors (leading dim = BATCH) seen by the
    profiler; weights (cast once per autocast region and cached) do not count."""
    counts = {}
    for e in prof.events():
        if e.name in ("aten::_to_copy", "aten::clone") and e.input_shapes and e.input_shapes[0] \
                and e.input_shapes[0][0] == BATCH:
            counts[e.name] = counts.get(e.name, 0) + 1
    return counts


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("model", ["dt_recall", "dt_l"])
def test_bf16_recall_conv_sees_bf16_and_no_activation_is_cast_or_copied_per_iteration(dims, model):
    net, x = net_and_input(dims, model)
    net = BF16.prepare_model(net)
    x = BF16.prepare_inputs(x)
    seen = []
    net.blocks[0].recall.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
    with BF16.autocast():
        xc = cast_for_autocast(x)
        assert xc.dtype == torch.bfloat16
        state = net.step(net.project(xc), xc, 0)      # first iteration: weight casts get cached
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for i in range(1, 4):
                state = net.step(state, xc, i)
    assert seen == [torch.bfloat16] * 4
    assert state.dtype == torch.bfloat16
    assert batch_copies(prof) == {}, "an activation is cast or copied at every iteration"


@pytest.mark.parametrize("dims", [1, 2])
def test_bf16_training_loss_casts_the_input_once_per_batch_whatever_the_iterations(dims):
    """progressive_loss at alpha 0: the number of activation casts does not grow with max_iters
    (before the fix: two per iteration, the promoted concatenation and its cast back)."""
    counts = []
    for iters in (2, 6):
        net, x = net_and_input(dims)
        net = BF16.prepare_model(net)
        x = BF16.prepare_inputs(x)
        y = torch.zeros((BATCH, *x.shape[2:]), dtype=torch.long)
        with BF16.autocast():
            progressive_loss(net, x, y, None, 0.0, iters, random.Random(0))          # warm-up
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                progressive_loss(net, x, y, None, 0.0, iters, random.Random(0))
        counts.append(batch_copies(prof))
    assert counts[0] == counts[1]          # per batch: x once, the logits for the fp32 loss


@pytest.mark.parametrize("dims", [1, 2])
def test_bf16_cast_once_gives_the_values_of_the_per_iteration_promotion(dims):
    """cast(x) then cat == cat (promoted to fp32) then the recall conv's autocast cast: bit for bit."""
    net, x = net_and_input(dims)
    net = BF16.prepare_model(net)
    x = BF16.prepare_inputs(x)
    block = net.blocks[0]
    with BF16.autocast():
        state = net._in(net.project(x))                                       # bf16 state
        old = block.recall(torch.cat([state, net._in(x)], dim=1))             # fp32 cat, cast by the conv
        if block.recall_act_name is not None:
            old = ACTIVATIONS[block.recall_act_name](old)
        old = block.body(old)
        new = block(state, net._in(cast_for_autocast(x)))
        fallback = block(state, net._in(x))                                   # caller forgot the cast
    assert new.dtype == old.dtype == torch.bfloat16
    assert torch.equal(new, old) and torch.equal(fallback, old)


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_fp32_is_unchanged_bit_for_bit(dims, alpha):
    """Outside autocast the cast is the identity (same object); the input layout (plain as before,
    or prepared) changes no value of the loss or of any gradient of the channels-last model."""
    net, x = net_and_input(dims)
    assert cast_for_autocast(x) is x
    y = (x[:, 0] > 0).long()
    results = []
    for prepare in (False, True):
        n = FP32.prepare_model(net_and_input(dims)[0])
        xi = FP32.prepare_inputs(x) if prepare else x
        loss = progressive_loss(n, xi, y, None, alpha, 6, random.Random(1))
        loss.backward()
        results.append([loss.detach()] + [p.grad for p in n.parameters()])
    for a, b in zip(*results):
        assert (a is None and b is None) or torch.equal(a, b)


def test_1d_inputs_are_prepared_so_the_recall_concatenation_is_channels_last():
    net, x = net_and_input(1)
    net = FP32.prepare_model(net)
    xp = FP32.prepare_inputs(x)
    assert torch.equal(xp, x) and xp.shape == x.shape
    state = net._in(net.project(xp))
    assert torch.cat([state, net._in(xp)], 1).is_contiguous(memory_format=torch.channels_last)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        net.step(net.project(xp), xp, 0)
    assert batch_copies(prof) == {}


@pytest.mark.parametrize("dims", [1, 2])
def test_in_place_relu_and_residual_give_the_out_of_place_values_and_gradients(dims):
    """BasicBlock/RecurBlock run ReLU and the residual add in place: output and every gradient
    equal those of relu(conv2(relu(conv1(x))) + x) after relu(recall(cat)) computed out of place."""
    net, x = net_and_input(dims)
    net = FP32.prepare_model(net)
    block = net.blocks[0]
    x4 = net._in(FP32.prepare_inputs(x))
    state = net._in(net.project(x)).detach()
    results = []
    for in_place in (True, False):
        block.zero_grad()
        s = state.clone().requires_grad_(True)
        if in_place:
            out = block(s, x4)
        else:
            h = block.recall(torch.cat([s, x4], 1))
            h = torch.relu(h) if dims == 1 else h
            for bb in block.body:
                h = torch.relu(bb.conv2(torch.relu(bb.conv1(h))) + h)
            out = h
        out.square().sum().backward()
        results.append([out.detach(), s.grad] + [p.grad.clone() for p in block.parameters()])
    for a, b in zip(*results):
        assert torch.equal(a, b)
