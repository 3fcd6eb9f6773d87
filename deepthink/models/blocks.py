"""Building blocks shared by every model: 3-wide convs, residual BasicBlock, heads; DT-L's
spectrally normalized conv and interpolated residual.

One code path for 1D (prefix sums: (B, C, L)) and 2D (mazes, chess: (B, C, H, W)). Every conv:
kernel 3, stride 1, padding 1, bias False (reference code; DT-L's recall conv has a bias). A 1D
conv is built as a Conv2d with a (1, 3) kernel acting on (B, C, 1, L): the same parameters and
outputs (PyTorch runs conv1d as a 2D convolution anyway), but in channels-last memory a whole
dt_recall training step ran 3-9% faster on an AMD EPYC at widths 128-400, fp32 and bf16
(docs/training.md). ThinkingNet adds and removes the unit axis, so callers see (B, C, L) tensors.

`lipschitz=True` builds DT-L's pieces (Bear et al. 2024; docs/models.md has the full table of what
the paper leaves open, what is chosen and why):
- every conv of the recurrent block spectrally normalized (`spectral_conv`): sigma(W_mat) = 1 for
  the weight reshaped to (out, in*k). That bounds a conv only by sqrt(k) (k = 3 taps in 1D, 9 in
  2D), so the block is approximately, not provably, a contraction; its measured local Lipschitz
  constant is below 1 (tests/test_lipschitz.py);
- ELU (dt_l; ReLU in dt_l_relu) where DT-Recall has ReLU inside the block (1-Lipschitz); projection and head keep ReLU;
- each BasicBlock's residual sum x + f(x) replaced by the convex combination (1 - lam) x + lam f(x)
  with ONE scalar lam per block (a per-channel lam can stretch the state), lam in (0, 1);
- a bias on the recall conv only; BatchNorm on the projection and head (`projection`, `head`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

# The activation inside a Lipschitz block (both are 1-Lipschitz): "elu" is the paper's (dt_l),
# "relu" the reference nets' (dt_l_relu; docs/models.md has the measurements behind it).
ACTIVATIONS = {"elu": F.elu, "relu": F.relu}

INTERP_EPS = 1e-4   # lam = EPS + (1 - 2 EPS) sigmoid(logit): strictly inside (0, 1) even where
                    # float32 sigmoid rounds to exactly 1 (logit > ~17) or 0 (logit < ~-104)


def _conv_shape(dims: int) -> dict:
    if dims == 1:   # (1, 3) kernel over (B, C, 1, L): see the module docstring
        return dict(kernel_size=(1, 3), stride=1, padding=(0, 1))
    return dict(kernel_size=3, stride=1, padding=1)


def conv(dims: int, cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, bias=False, **_conv_shape(dims))


CONV_NORMS = ("matrix", "bound", "operator")


def spectral_conv(dims: int, cin: int, cout: int, bias: bool = False, conv_norm: str = "matrix") -> nn.Conv2d:
    """A conv normalized for DT-L's recurrent block; `conv_norm` says by what.

    "matrix" (the paper's; dt_l, dt_l_relu, dt_l_relu_gn): the weight divided by sigma, the largest
    singular value of the weight reshaped to a matrix (out, in*k):
    torch.nn.utils.parametrizations.spectral_norm (Miyato et al. 2018). In training mode each access
    to `.weight` runs one power iteration and updates the estimates (buffers `_u` (out,), `_v`
    (in*k,)); in eval mode they are read only; sigma = u^T W v, with gradients through W and sigma.
    State-dict names: `<conv>.parametrizations.weight.original` (the raw, trained weight),
    `<conv>.parametrizations.weight.0._u` / `._v`; `<conv>.weight` is the effective weight.
    sigma(W_mat) = 1 does not make the conv 1-Lipschitz: each input element enters at most k
    patches (k = 3 in 1D, 9 in 2D), so ||conv|| <= sqrt(k) sigma(W_mat), and a kernel equal in
    every tap reaches that bound (docs/models.md). Our own power iteration was at most a few percent
    faster than this parametrization on an AMD EPYC (benchmarks/bench_spectral_norm.py: 0.89-1.00x per
    block step), not worth a second implementation, so the standard one is used.

    "bound" (dt_l_strict): "matrix", then divided by sqrt(k) as well, so that the bound above makes
    the conv provably 1-Lipschitz: a second parametrization, a constant factor, no new state.

    "operator" (dt_l_op): the weight divided by the conv's own operator norm (OperatorNorm): the
    conv is 1-Lipschitz up to the estimate, with no sqrt(k) slack.
    """
    layer = nn.Conv2d(cin, cout, bias=bias, **_conv_shape(dims))
    if conv_norm == "operator":
        parametrize.register_parametrization(layer, "weight", OperatorNorm(layer.weight, layer.padding))
        return layer
    if conv_norm not in CONV_NORMS:
        raise ValueError(f"unknown conv_norm {conv_norm!r}; one of {CONV_NORMS}")
    layer = spectral_norm(layer)
    if conv_norm == "bound":
        parametrize.register_parametrization(layer, "weight", _Scale(1.0 / math.sqrt(math.prod(layer.kernel_size))))
    return layer


class OperatorNorm(nn.Module):
    """Weight parametrization W -> W / sigma, sigma the operator norm of the convolution by W,
    estimated like torch's spectral_norm but on the conv itself rather than on W reshaped to a
    matrix: power iteration with a persistent input `_u` (1, in, G, G) (G = GRID = 32; 1 x G for a
    1D (1, k) kernel) on the circular convolution over a G x G grid, whose norm is the largest
    singular value of the kernel's Fourier transform over the grid's frequencies. That is the
    norm of the conv on an unbounded input sampled at G frequencies per axis, which bounds the
    zero-padded conv on any input size up to the sampling (random 3x3 kernels at G = 16: up to 2.6%
    below the zero-padded norm of a 32 x 32 input, at G = 32 1.3%, the rest being the power
    iteration's; trained maze kernels peak near frequency 0, where G = 16 is within 0.3% of
    G = 128; tests/test_lipschitz.py checks the zero-padded norm). One power
    iteration per training-mode access (sigma = ||conv_circ(u)|| with gradients through W), none in
    eval mode; 15 at construction. State: `<conv>.parametrizations.weight.0._u`."""

    GRID = 32

    def __init__(self, weight: torch.Tensor, padding: tuple[int, int]):
        super().__init__()
        cin, kh = weight.shape[1], weight.shape[-2]
        self.pad = (padding[1], padding[1], padding[0], padding[0])       # F.pad order: W then H
        u = torch.randn(1, cin, 1 if kh == 1 else self.GRID, self.GRID, dtype=weight.dtype, device=weight.device)
        self.register_buffer("_u", u / u.norm())
        with torch.no_grad():
            for _ in range(15):
                self._power_iteration(weight)

    def _conv(self, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(u, self.pad, mode="circular"), weight)

    def _power_iteration(self, weight: torch.Tensor) -> None:
        v = self._conv(self._u, weight)                                      # T u
        u = F.conv2d(F.pad(v, self.pad, mode="circular"), weight.flip(-2, -1).transpose(0, 1))   # T^T T u
        self._u.copy_(u / u.norm().clamp_min(1e-12))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self._power_iteration(weight)
        sigma = self._conv(self._u, weight).norm()                           # ||T u||, ||u|| = 1
        return weight / sigma


class _Scale(nn.Module):
    """A weight parametrization multiplying by a constant (conv_norm "bound": 1/sqrt(k))."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:.6g}"


class BasicBlock(nn.Module):
    """relu(conv2(relu(conv1(x))) + x): the residual block of the reference deep-thinking nets.

    lipschitz: act((1 - lam) x + lam conv2(act(conv1(x)))) with spectrally normalized convs, act =
    ACTIVATIONS[activation] (ELU for dt_l, ReLU for dt_l_relu), and one learnable scalar lam in (0, 1) per block (docs/models.md: a scalar, not one per channel, so that
    the combination of two 1-Lipschitz maps stays 1-Lipschitz)."""

    def __init__(self, dims: int, width: int, lipschitz: bool = False, activation: str = "elu",
                 conv_norm: str = "matrix"):
        super().__init__()
        make = ((lambda: spectral_conv(dims, width, width, conv_norm=conv_norm)) if lipschitz
                else (lambda: conv(dims, width, width)))
        self.conv1, self.conv2 = make(), make()
        self.act = ACTIVATIONS[activation] if lipschitz else F.relu
        self.interp_logit = nn.Parameter(torch.zeros(())) if lipschitz else None   # lam = 0.5 at init

    def interpolation_weight(self) -> torch.Tensor:
        """lam in (0, 1) (DT-L only)."""
        return INTERP_EPS + (1 - 2 * INTERP_EPS) * torch.sigmoid(self.interp_logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.interp_logit is None:
            # In place on the convs' fresh outputs (a conv's backward needs its input, not its
            # output): the same values, one allocation and one pass over memory less per op;
            # ~5% of an fp32 step (A/B medians 4.8-6.2%, docs/training.md). Out of place if the residual would
            # promote (an fp32 state fed to a bf16-autocast conv), as `out + x` did.
            out = self.conv2(F.relu(self.conv1(x), inplace=True))
            out = out.add_(x) if out.dtype == x.dtype else out + x
            return F.relu(out, inplace=True)
        lam = self.interpolation_weight()
        if torch.is_grad_enabled():
            out = self.conv2(self.act(self.conv1(x)))
            return self.act(x + lam * (out - x))               # (1 - lam) x + lam out (dtypes promote)
        # Without autograd (evaluation): the same ops in the same order (activation, subtract,
        # multiply, add: the same roundings, bit for bit), in place on the convs' outputs: no fresh
        # tensor but the convs'. Evaluation 1.19x faster on 512-bit strings, 1.03-1.04x on 59x59
        # mazes (benchmarks/bench_interp_inplace.py). Training keeps the out-of-place form, whose gradients
        # in-place ops would change in the last bit (ELU's backward from its output rounds
        # differently; autograd sums x's gradient contributions in another order), and with them
        # every trained net.
        out = self.conv2(self.act(self.conv1(x), inplace=True))
        if out.dtype != x.dtype:
            return self.act(x + lam * (out - x), inplace=True)
        return self.act(out.sub_(x).mul_(lam).add_(x), inplace=True)


class RecurBlock(nn.Module):
    """One iteration: [recall conv (width+in -> width) (+ activation in 1D)] then 2 BasicBlocks (4 convs).

    The ReLU after the recall conv exists in the reference's 1D nets only (dt_net_recall_1d:
    `[conv_recall, ReLU]`); its 2D nets feed the recall conv's output straight into the blocks.
    lipschitz: every conv spectrally normalized, ACTIVATIONS[activation] for ReLU (ELU in dt_l), the
    recall conv with a bias.
    """

    def __init__(self, dims: int, width: int, recall_channels: int = 0, lipschitz: bool = False,
                 activation: str = "elu", conv_norm: str = "matrix"):
        super().__init__()
        if recall_channels:
            self.recall = (spectral_conv(dims, width + recall_channels, width, bias=True, conv_norm=conv_norm) if lipschitz
                           else conv(dims, width + recall_channels, width))
        else:
            self.recall = None
        # 1D only: the activation after the recall conv, by name ("relu" runs in place on the conv's output)
        self.recall_act_name = (activation if lipschitz else "relu") if dims == 1 else None
        self.body = nn.Sequential(BasicBlock(dims, width, lipschitz, activation, conv_norm),
                                  BasicBlock(dims, width, lipschitz, activation, conv_norm))

    def forward(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.recall is not None:
            if x.dtype != state.dtype and torch.is_autocast_enabled(state.device.type):
                x = x.to(state.dtype)     # a caller that skipped cast_for_autocast: cast only x, not the cat
            state = self.recall(torch.cat([state, x], dim=1))   # (B, w+in, *S) -> (B, w, *S)
            if self.recall_act_name == "relu":
                state = F.relu(state, inplace=True)              # the conv's own output
            elif self.recall_act_name is not None:
                state = ACTIVATIONS[self.recall_act_name](state, inplace=not torch.is_grad_enabled())
        return self.body(state)


NORMS = ("batch", "group")


def _norm(kind: str | None, channels: int) -> list[nn.Module]:
    """None: no layer; "batch": BatchNorm (statistics over the batch, running averages in eval
    mode); "group": GroupNorm with one group (each example normalized over all its channels and
    positions, the same in training and eval mode)."""
    if kind is None:
        return []
    if kind == "batch":
        return [nn.BatchNorm2d(channels)]
    if kind == "group":
        return [nn.GroupNorm(1, channels)]
    raise ValueError(f"unknown normalization {kind!r}; one of {NORMS} or None")


def projection(dims: int, cin: int, width: int, norm: str | None = None) -> nn.Sequential:
    """conv(in -> w) + ReLU; norm (DT-L): conv + norm + ReLU."""
    layers = [conv(dims, cin, width)] + _norm(norm, width) + [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def head(dims: int, width: int, out_channels: int, norm: str | None = None) -> nn.Sequential:
    """1D: w -> w -> w/2 -> out; 2D: w -> 32 -> 8 -> out (reference heads). norm (DT-L): a
    normalization layer after each conv but the last (the logits are not normalized)."""
    a, b = (width, width // 2) if dims == 1 else (32, 8)
    layers: list[nn.Module] = []
    for cin, cout in ((width, a), (a, b)):
        layers += [conv(dims, cin, cout)] + _norm(norm, cout) + [nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, conv(dims, b, out_channels))
