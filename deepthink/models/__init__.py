"""Model registry: `MODELS[name]` holds the variant flags, `build_model(name, ...)` builds it.

    ff_net     paper 1 feed-forward: (d-4)/4 separate blocks
    recur_net  paper 1 recurrent: one block shared over (d-4)/4 iterations
    dt_net     paper 2 DT: recurrent, no recall
    dt_recall  paper 2 DT-Recall: the input concatenated to the state at every iteration
    dt_l       paper 3 DT-L: DT-Recall with a Lipschitz-constrained recurrent block (docs/models.md)
    dt_l_relu  DT-L with ReLU for ELU inside the block (deepthink's variant; docs/models.md)
    dt_l_relu_gn  dt_l_relu with GroupNorm for BatchNorm in projection and head (deepthink's; docs/models.md)
    dt_l_strict   dt_l_relu_gn with every block conv provably 1-Lipschitz (sigma(W_mat) sqrt(k) = 1; deepthink's)
    dt_l_op       dt_l_relu_gn with every block conv divided by its own operator norm (deepthink's)

The 1D/2D choice and input channels come from the task, never from the model name.
"""
from __future__ import annotations

from dataclasses import dataclass

from deepthink.models.net import ModelConfig, ThinkingNet, ThinkOutput, count_parameters


@dataclass(frozen=True)
class ModelSpec:
    name: str
    recall: bool
    shared: bool
    description: str
    lipschitz: bool = False
    activation: str = "elu"      # the activation inside a Lipschitz block (lipschitz models only)
    norm: str = "batch"          # projection/head normalization (lipschitz models only): batch | group
    conv_norm: str = "matrix"    # block convs (lipschitz only): matrix (paper) | bound | operator (blocks.spectral_conv)

    @property
    def recurrent(self) -> bool:
        """One block shared over iterations: runs any number of iterations at test time and can
        train with the progressive loss (alpha). Feed-forward nets stop after their last block."""
        return self.shared


MODELS: dict[str, ModelSpec] = {s.name: s for s in [
    ModelSpec("ff_net", recall=False, shared=False, description="feed-forward, separate blocks (paper 1)"),
    ModelSpec("recur_net", recall=False, shared=True, description="recurrent, shared block (paper 1)"),
    ModelSpec("dt_net", recall=False, shared=True, description="DT: recurrent (paper 2)"),
    ModelSpec("dt_recall", recall=True, shared=True, description="DT-Recall: input recalled every iteration (paper 2)"),
    ModelSpec("dt_l", recall=True, shared=True, lipschitz=True,
              description="DT-L: DT-Recall with a Lipschitz-constrained block (paper 3)"),
    ModelSpec("dt_l_relu", recall=True, shared=True, lipschitz=True, activation="relu",
              description="DT-L with ReLU instead of ELU in the block (deepthink; docs/models.md)"),
    ModelSpec("dt_l_relu_gn", recall=True, shared=True, lipschitz=True, activation="relu", norm="group",
              description="dt_l_relu with GroupNorm instead of BatchNorm outside the block (deepthink; docs/models.md)"),
    ModelSpec("dt_l_strict", recall=True, shared=True, lipschitz=True, activation="relu", norm="group", conv_norm="bound",
              description="dt_l_relu_gn with provably 1-Lipschitz block convs (deepthink; docs/models.md)"),
    ModelSpec("dt_l_op", recall=True, shared=True, lipschitz=True, activation="relu", norm="group", conv_norm="operator",
              description="dt_l_relu_gn with block convs divided by their operator norm (deepthink; docs/models.md)"),
]}


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models: {sorted(MODELS)}") from None


def model_iterations(depth: int) -> int:
    """Paper 1's effective depth d -> iterations (d - 4) / 4 (projection 1 + 4 per block + head 3)."""
    if depth < 8 or (depth - 4) % 4:
        raise ValueError("an effective depth 4*k + 4 with k >= 1 (8, 12, ..., 40, 44, 48)")
    return (depth - 4) // 4


def build_model(name: str, *, width: int, max_iters: int, in_channels: int, dims: int,
                num_classes: int = 2) -> ThinkingNet:
    """`in_channels`, `dims`, `num_classes` come from the task: `build_model(..., **task.model_io())`."""
    spec = get_model_spec(name)
    return ThinkingNet(ModelConfig(width=width, max_iters=max_iters, in_channels=in_channels,
                                   dims=dims, recall=spec.recall, shared=spec.shared,
                                   lipschitz=spec.lipschitz, activation=spec.activation, norm=spec.norm, conv_norm=spec.conv_norm,
                                   out_channels=num_classes))


__all__ = ["MODELS", "ModelSpec", "ModelConfig", "ThinkingNet", "ThinkOutput", "build_model",
           "count_parameters", "get_model_spec", "model_iterations"]
