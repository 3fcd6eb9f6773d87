"""Optimizers and the learning-rate schedule of `deepthink.train`, and their config section `train`.

    optimizer: adam | adamw | sgd      weight_decay (L2 for adam/sgd, decoupled for adamw), momentum (sgd)
                                       on the parameters the model does not exempt (no_weight_decay())
    warmup: E                          linear warmup over the first E epochs, per batch
    schedule: step | cosine | none     step: lr * gamma^(milestones passed); cosine: to 0 at the end

The learning rate is a pure function of the (fractional) epoch, set on the optimizer before every
batch (a Python float: no device work). A resumed trial therefore needs no scheduler state: the
epoch in the checkpoint determines it exactly.
"""
from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import Field

from deepthink.configfile import Number, OneOrMore, Positive, Section, number, rule
from deepthink.models import ThinkingNet
from deepthink.precision import PRECISIONS

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("step", "cosine", "none")

# Field types that a sweep's grid may also vary (config.Grid uses the same ones).
MAX_EPOCHS = 100_000
Epochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS, description=f"training epochs, 1..{MAX_EPOCHS}")]
LearningRate = Positive
Alpha = Annotated[Number, rule(lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")]


class TrainConfig(Section):
    """Section `train:` of a sweep file (defaults: the reference prefix-sums recipe)."""
    epochs: Epochs = 150
    optimizer: Literal[OPTIMIZERS] = "adam"
    lr: LearningRate = 0.001
    weight_decay: number(ge=0) = 2e-4
    momentum: Number = 0.9                         # sgd only
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = Field(100, description="examples per step, 1..10^6")
    alpha: Alpha = Field(0.0, description="progressive loss weight (0 = plain loss at max_iters); "
                                          "used by recurrent models only")
    clip: Positive | None = Field(1.0, description="gradient-norm clip; null disables")
    warmup: Annotated[int, Field(ge=0, le=MAX_EPOCHS)] = Field(0, description="epochs of linear warmup")
    schedule: Literal[SCHEDULES] = "step"
    milestones: Annotated[list[int], OneOrMore] = [60, 100]
    gamma: Positive = 0.1
    precision: Literal[PRECISIONS] = "auto"
    checkpoint_every: Annotated[int, Field(ge=1)] = Field(1, description="epochs between checkpoints")


def parameter_groups(model: ThinkingNet) -> list[torch.Tensor] | list[dict]:
    """The model's trainable parameters, split by `model.no_weight_decay()`: a plain list when
    every parameter takes weight decay (the reference models: the same single group, and so the
    same optimizer state layout in checkpoints, as before the split existed), else
    [{params: decayed}, {params: exempt, weight_decay: 0}]."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    exempt = model.no_weight_decay()
    unknown = exempt - {n for n, _ in model.named_parameters()}
    if unknown:
        raise ValueError(f"no_weight_decay() names parameters the model does not have: {sorted(unknown)}")
    decayed = [p for n, p in named if n not in exempt]
    if len(decayed) == len(named):
        return decayed
    return [{"params": decayed}, {"params": [p for n, p in named if n in exempt], "weight_decay": 0.0}]


def build_optimizer(model: ThinkingNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = parameter_groups(model)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"train.optimizer: found {cfg.optimizer!r}; expected one of ['adam', 'adamw', 'sgd']")


def lr_at(cfg: TrainConfig, epoch: int, batch: int, batches_per_epoch: int) -> float:
    """Learning rate for batch `batch` (0-based) of epoch `epoch` (0-based)."""
    t = epoch + batch / batches_per_epoch          # fractional epochs done before this batch
    factor = 1.0
    if cfg.warmup > 0:                             # reaches 1 at the last batch of the warmup
        factor *= min(1.0, (t + 1.0 / batches_per_epoch) / cfg.warmup)
    if cfg.schedule == "step":
        factor *= cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    elif cfg.schedule == "cosine":
        span = max(cfg.epochs - cfg.warmup, 1)
        progress = min(max(t - cfg.warmup, 0.0) / span, 1.0)
        factor *= 0.5 * (1.0 + math.cos(math.pi * progress))
    elif cfg.schedule != "none":
        raise ValueError(f"train.schedule: found {cfg.schedule!r}; expected one of ['step', 'cosine', 'none']")
    return cfg.lr * factor


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
