"""DT-L's spectral normalization on a CPU: torch's spectral_norm parametrization (what
deepthink uses) vs a hand-written power iteration that computes the same thing; and what dt_l_op's
operator-norm parametrization (blocks.OperatorNorm) costs against it.

Times one training step of DT-L's recurrent block (forward over `--iters` iterations + backward)
with each implementation and with no normalization at all, interleaved in one process, best of
`--reps` in process CPU time, and prints the ratios. The two implementations are checked to give equal outputs in
eval mode (same weights, same singular-vector estimates) before timing.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_spectral_norm.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_spectral_norm.py --dims 2 --width 32 --size 24 --batch 20
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from deepthink.models.blocks import RecurBlock


class OwnSpectralConv(nn.Conv2d):
    """The alternative: W / (u^T W_mat v), one power iteration per training-mode forward, u and v
    updated in place (fresh tensors used for sigma, so no clone is needed)."""

    def __init__(self, sn_conv: nn.Conv2d):
        super().__init__(sn_conv.in_channels, sn_conv.out_channels, sn_conv.kernel_size, sn_conv.stride,
                         sn_conv.padding, bias=sn_conv.bias is not None)
        sn = sn_conv.parametrizations.weight
        with torch.no_grad():
            self.weight.copy_(sn.original)
            if sn_conv.bias is not None:
                self.bias.copy_(sn_conv.bias)
        self.register_buffer("u", sn[0]._u.clone())
        self.register_buffer("v", sn[0]._v.clone())

    def normalized_weight(self) -> torch.Tensor:
        w = self.weight.flatten(1)                                          # (out, in*k)
        if self.training:
            with torch.no_grad():
                u = F.normalize(torch.mv(w, self.v), dim=0, eps=1e-12)
                v = F.normalize(torch.mv(w.t(), u), dim=0, eps=1e-12)
                self.u.copy_(u)
                self.v.copy_(v)
        else:
            u, v = self.u, self.v
        return self.weight / torch.dot(u, torch.mv(w, v))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.normalized_weight(), self.bias)


def replace_convs(block: nn.Module, make) -> nn.Module:
    """A copy of `block` with every spectrally normalized conv replaced by make(conv)."""
    block = copy.deepcopy(block)
    for parent in list(block.modules()):
        for name, m in list(parent.named_children()):
            if parametrize.is_parametrized(m, "weight"):
                setattr(parent, name, make(m))
    return block


def unnormalized(sn_conv: nn.Conv2d) -> nn.Conv2d:
    plain = nn.Conv2d(sn_conv.in_channels, sn_conv.out_channels, sn_conv.kernel_size, sn_conv.stride,
                      sn_conv.padding, bias=sn_conv.bias is not None)
    with torch.no_grad():
        plain.weight.copy_(sn_conv.weight)
    return plain


def step_seconds(block: nn.Module, state: torch.Tensor, x: torch.Tensor, iters: int) -> float:
    """CPU seconds of this process (not wall time: on a shared, overloaded machine wall time mostly
    measures the other processes; run with 1 thread so that CPU time is the work done)."""
    start = time.process_time()
    h = state
    for _ in range(iters):
        h = block(h, x)
    h.square().mean().backward()
    return time.process_time() - start


def weight_seconds(conv: nn.Conv2d, reps: int = 500) -> float:
    """CPU seconds per access of the normalized weight alone (power iteration, sigma, W / sigma,
    and the backward through them), training mode."""
    start = time.process_time()
    for _ in range(reps):
        w = conv.weight if parametrize.is_parametrized(conv, "weight") else conv.normalized_weight()
        w.sum().backward()
    return (time.process_time() - start) / reps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dims", type=int, default=1, choices=[1, 2])
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--size", type=int, default=32, help="bits (1D) or pixels a side (2D)")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    torch.manual_seed(0)
    in_ch = 1 if args.dims == 1 else 3
    torch_sn = RecurBlock(args.dims, args.width, in_ch, lipschitz=True)
    models = {"torch": torch_sn, "own": replace_convs(torch_sn, OwnSpectralConv),
              "none": replace_convs(torch_sn, unnormalized),
              "operator": RecurBlock(args.dims, args.width, in_ch, lipschitz=True, conv_norm="operator")}
    spatial = (1, args.size) if args.dims == 1 else (args.size, args.size)
    state = torch.randn(args.batch, args.width, *spatial).contiguous(memory_format=torch.channels_last)
    x = torch.randn(args.batch, in_ch, *spatial).contiguous(memory_format=torch.channels_last)
    for m in models.values():
        m.to(memory_format=torch.channels_last)
    with torch.no_grad():
        a, b = models["torch"].eval()(state, x), models["own"].eval()(state, x)
    torch.testing.assert_close(a, b, msg="the two implementations disagree")
    best = {k: float("inf") for k in models}
    for m in models.values():
        m.train()
        step_seconds(m, state, x, 2)                           # warm-up
    for _ in range(args.reps):                                 # interleaved: fair on a busy CPU
        for k, m in models.items():
            best[k] = min(best[k], step_seconds(m, state, x, args.iters))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; DT-L recurrent block, {args.dims}D, "
          f"width {args.width}, batch {args.batch}, size {args.size}, {args.iters} iterations fwd+bwd, "
          f"best of {args.reps}, CPU time")
    for k in models:
        print(f"  {k:<6} {best[k] * 1e3:8.1f} ms")
    print(f"own power iteration / torch parametrization: {best['own'] / best['torch']:.2f}x   "
          f"torch parametrization / no normalization: {best['torch'] / best['none']:.2f}x   "
          f"operator norm (dt_l_op) / torch parametrization: {best['operator'] / best['torch']:.2f}x")
    convs = {k: next(m for m in models[k].modules() if isinstance(m, nn.Conv2d)) for k in ("torch", "own", "operator")}
    per = {k: float("inf") for k in convs}
    for _ in range(args.reps):
        for k, c in convs.items():
            per[k] = min(per[k], weight_seconds(c))
    print(f"normalized weight alone (recall conv, fwd+bwd, per access): torch {per['torch'] * 1e6:.0f} us, "
          f"own {per['own'] * 1e6:.0f} us, operator {per['operator'] * 1e6:.0f} us; {5 * args.iters} accesses "
          f"per step above")


if __name__ == "__main__":
    main()
