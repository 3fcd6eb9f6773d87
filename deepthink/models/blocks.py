"""Building blocks shared by every model: 3-wide convs (bias-free), residual BasicBlock, heads.

One code path for 1D (prefix sums: (B, C, L)) and 2D (mazes, chess: (B, C, H, W)). Every conv:
kernel 3, stride 1, padding 1, bias False (reference code). A 1D conv is built as a Conv2d with a
(1, 3) kernel acting on (B, C, 1, L): the same parameters and outputs (PyTorch runs conv1d as a
2D convolution anyway), but in channels-last memory a whole dt_recall training step ran 3-9%
faster on this CPU at widths 128-400, fp32 and bf16 (docs/training.md). ThinkingNet adds
and removes the unit axis, so callers see (B, C, L) tensors.
"""
from __future__ import annotations

import torch
from torch import nn


def conv(dims: int, cin: int, cout: int) -> nn.Module:
    if dims == 1:   # (1, 3) kernel over (B, C, 1, L): see the module docstring
        return nn.Conv2d(cin, cout, kernel_size=(1, 3), stride=1, padding=(0, 1), bias=False)
    return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=False)


class BasicBlock(nn.Module):
    """relu(conv(relu(conv(x))) + x): the residual block of the reference deep-thinking nets."""

    def __init__(self, dims: int, width: int):
        super().__init__()
        self.conv1 = conv(dims, width, width)
        self.conv2 = conv(dims, width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.conv1(x))
        return torch.relu(self.conv2(out) + x)


class RecurBlock(nn.Module):
    """One iteration: [recall conv (width+in -> width) (+ ReLU in 1D)] then 2 BasicBlocks (4 convs).

    The ReLU after the recall conv exists in the reference's 1D nets only (dt_net_recall_1d:
    `[conv_recall, ReLU]`); its 2D nets feed the recall conv's output straight into the blocks.
    """

    def __init__(self, dims: int, width: int, recall_channels: int = 0):
        super().__init__()
        self.recall = conv(dims, width + recall_channels, width) if recall_channels else None
        self.recall_relu = dims == 1
        self.body = nn.Sequential(BasicBlock(dims, width), BasicBlock(dims, width))

    def forward(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.recall is not None:
            state = self.recall(torch.cat([state, x], dim=1))   # (B, w+in, *S) -> (B, w, *S)
            if self.recall_relu:
                state = torch.relu(state)
        return self.body(state)


def head(dims: int, width: int, out_channels: int) -> nn.Sequential:
    """1D: w -> w -> w/2 -> out; 2D: w -> 32 -> 8 -> out (reference heads)."""
    a, b = (width, width // 2) if dims == 1 else (32, 8)
    return nn.Sequential(conv(dims, width, a), nn.ReLU(), conv(dims, a, b), nn.ReLU(), conv(dims, b, out_channels))
