"""The one network class behind every registered model (STYLE: variants are config, not copies).

    projection: conv(in -> w) [+ norm] + ReLU         # (B, in, *S) -> (B, w, *S)
    iterate:    state = block_i(state [, x])          # i-th block (ff) or the shared block (recurrent)
    head:       logits = head(state)                  # (B, 2, *S)

`lipschitz` (DT-L, Bear et al. 2024) makes the recurrent block approximately 1-Lipschitz in the
state (spectrally normalized convs, ELU, interpolated residuals) and adds a normalization layer
(`norm`: BatchNorm as in the paper, or GroupNorm) to the projection and head; docs/models.md.

`forward(x, iters, state=None)` has one signature and one return type (`ThinkOutput`) in training
and evaluation. Per-iteration evaluation drives `project`/`step`/`head` directly so that memory
does not grow with the number of test iterations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from deepthink.models.blocks import ACTIVATIONS, CONV_NORMS, NORMS, RecurBlock, head, projection
from deepthink.precision import cast_for_autocast


@dataclass(frozen=True)
class ModelConfig:
    width: int
    max_iters: int          # training iterations; = number of blocks for a feed-forward net
    in_channels: int
    dims: int               # 1 or 2 spatial dimensions
    recall: bool = False    # concatenate the input to the state at every iteration (DT-Recall)
    shared: bool = True     # one block reused every iteration (recurrent) vs separate blocks (ff)
    lipschitz: bool = False  # DT-L: contractive recurrent block, `norm` outside it (docs/models.md)
    activation: str = "elu"  # inside a Lipschitz block: "elu" (the paper's) or "relu"; others always ReLU
    norm: str = "batch"     # Lipschitz models' projection/head normalization: "batch" (the paper's) or "group"
    conv_norm: str = "matrix"  # Lipschitz models' block convs: "matrix" (paper), "bound", "operator" (blocks.spectral_conv)
    out_channels: int = 2

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; one of {sorted(ACTIVATIONS)}")
        if self.norm not in NORMS:
            raise ValueError(f"unknown normalization {self.norm!r}; one of {list(NORMS)}")
        if self.conv_norm not in CONV_NORMS:
            raise ValueError(f"unknown conv_norm {self.conv_norm!r}; one of {list(CONV_NORMS)}")
        if not self.lipschitz and (self.activation, self.norm, self.conv_norm) != ("elu", "batch", "matrix"):
            # Only the Lipschitz nets read these; a registry entry setting them elsewhere would be
            # silently the same net as its neighbour.
            raise ValueError(f"activation={self.activation!r} / norm={self.norm!r} / conv_norm={self.conv_norm!r} apply to Lipschitz "
                             f"(DT-L) models only; leave them at their defaults or set lipschitz=True")


class ThinkOutput(NamedTuple):
    logits: torch.Tensor    # (B, out, *S) after the last iteration run
    state: torch.Tensor     # (B, width, *S) recurrent state after the last iteration


class ThinkingNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        recall_ch = cfg.in_channels if cfg.recall else 0
        n_blocks = 1 if cfg.shared else cfg.max_iters
        norm = cfg.norm if cfg.lipschitz else None
        self.projection = projection(cfg.dims, cfg.in_channels, cfg.width, norm=norm)
        self.blocks = nn.ModuleList(RecurBlock(cfg.dims, cfg.width, recall_ch, cfg.lipschitz, cfg.activation,
                                               cfg.conv_norm)
                                    for _ in range(n_blocks))
        self.head_convs = head(cfg.dims, cfg.width, cfg.out_channels, norm=norm)

    @property
    def max_test_iters(self) -> int | None:
        """The most iterations this model can run: None (unbounded) for recurrent nets."""
        return None if self.cfg.shared else self.cfg.max_iters

    @property
    def train_eval_differ(self) -> bool:
        """True if a training-mode forward differs from an eval-mode one: BatchNorm (batch
        statistics) or a parametrized weight (spectral norm's power-iteration updates)."""
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) or parametrize.is_parametrized(m)
                   for m in self.modules())

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters that take no weight decay: all but the weights of plain
        (unconstrained) convs. Spectrally normalized weights (their scale is divided out), biases,
        normalization affine parameters and interpolation logits are left alone, as in DT-L's paper
        ("weight decay only applied to unconstrained convolutional weights"). Empty for the
        reference models, whose parameters are all plain conv weights."""
        decayed = {f"{name}.weight" for name, m in self.named_modules()
                   if isinstance(m, nn.Conv2d) and not parametrize.is_parametrized(m, "weight")}
        return {name for name, _ in self.named_parameters() if name not in decayed}

    def _in(self, t: torch.Tensor) -> torch.Tensor:
        """1D nets run 2D convs: (B, C, L) -> (B, C, 1, L) view (blocks.py says why)."""
        return t.unsqueeze(2) if self.cfg.dims == 1 else t

    def _out(self, t: torch.Tensor) -> torch.Tensor:
        return t.squeeze(2) if self.cfg.dims == 1 else t

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, *S) -> state (B, w, *S)."""
        return self._out(self.projection(self._in(x)))

    def step(self, state: torch.Tensor, x: torch.Tensor, i: int) -> torch.Tensor:
        """Iteration i (0-based) of the recurrence: state (B, w, *S), x (B, in, *S) -> (B, w, *S)."""
        if not self.cfg.shared and i >= len(self.blocks):
            raise ValueError(f"feed-forward net has {len(self.blocks)} blocks; cannot run iteration {i + 1}")
        return self._out(self.blocks[0 if self.cfg.shared else i](self._in(state), self._in(x)))

    def head(self, state: torch.Tensor) -> torch.Tensor:
        """state (B, w, *S) -> logits (B, out, *S)."""
        return self._out(self.head_convs(self._in(state)))

    def forward(self, x: torch.Tensor, iters: int, state: torch.Tensor | None = None, start: int = 0) -> ThinkOutput:
        """Run `iters` iterations from `state` (projected input if None); `start` is the index of
        the first iteration (only matters for feed-forward nets, whose blocks differ)."""
        x = cast_for_autocast(x)             # once, not at every iteration's concatenation
        if state is None:
            state = self.project(x)
        for i in range(start, start + iters):
            state = self.step(state, x, i)
        return ThinkOutput(self.head(state), state)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
