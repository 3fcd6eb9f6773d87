"""The Task interface and registry.

A task is one small class that knows what the task is: its input channels, classes per position and
spatial dimensionality (1D strings or 2D boards), which output positions the loss and metric look
at, how to score an output, which difficulties exist, and how to generate and read one difficulty's
files (published easy-to-hard-data layout, read with that package's classes). How files are stored,
locked, recorded and regenerated on demand is shared by every task: deepthink/tasks/storage.py.
Nothing outside deepthink/tasks/ branches on a task name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

TASKS: dict[str, "Task"] = {}


def register(cls: type["Task"]) -> type["Task"]:
    TASKS[cls.name] = cls()
    return cls


def get_task(name: str) -> "Task":
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; registered tasks: {sorted(TASKS)}") from None


@dataclass
class Split:
    """One evaluation/training set: inputs (N, C, *spatial) float, targets (N, *spatial) long."""
    split: str            # train | val | test
    difficulty: int
    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]


class Task:
    name: ClassVar[str]
    dims: ClassVar[int]            # spatial dimensions: 1 (strings) or 2 (boards)
    in_channels: ClassVar[int]
    num_classes: ClassVar[int] = 2
    difficulty_name: ClassVar[str]  # what a difficulty number means, for messages and tables
    reference_width: ClassVar[int]  # the reference code's width for this task
    cli_name: ClassVar[str]         # `deepthink data CLI_NAME`
    cli_help: ClassVar[str]

    # ---- data -------------------------------------------------------------------------------
    def default_data(self) -> dict:
        raise NotImplementedError

    def check_difficulty(self, difficulty: int) -> str | None:
        """None if `difficulty` is valid, else what is allowed (for a ConfigError)."""
        raise NotImplementedError

    def check_count(self, difficulty: int, count: int) -> str | None:
        """None if `count` examples of `difficulty` can exist, else what is allowed. Every check of a
        task's options goes through check_difficulty / check_count (deepthink/tasks/options.py)."""
        return None

    def meta_path(self, root: Path, difficulty: int, split: str) -> Path | None:
        """Where `produce` records how the files were generated (seed, count); None: not recorded."""
        return None

    def files_exist(self, root: Path, difficulty: int, split: str) -> bool:
        raise NotImplementedError

    def generate(self, root: Path, difficulty: int, split: str, count: int, seed: int,
                 overwrite: bool = False) -> list[Path]:
        """Write one difficulty's files in the published layout; returns the paths written. Without
        `overwrite` (the on-demand path, where several trials may race) existing files are kept."""
        raise NotImplementedError

    def load_raw(self, root: Path, difficulty: int, split: str, count: int, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Load with the easy_to_hard_data class: (inputs float (N,C,*S), targets long (N,*S))."""
        raise NotImplementedError

    def add_cli_arguments(self, parser) -> None:
        """Options of `deepthink data CLI_NAME` (besides --data-root)."""
        raise NotImplementedError

    def run_cli(self, args, root: Path) -> int:
        """Carry out `deepthink data CLI_NAME`; print what was written."""
        raise NotImplementedError

    # ---- what the model and metric need -----------------------------------------------------
    def loss_mask(self, inputs: torch.Tensor) -> torch.Tensor | None:
        """(B, *S) bool of positions that count in the loss, or None for all positions."""
        return None

    def model_io(self) -> dict[str, int]:
        """What a model must take and give for this task: build_model(name, ..., **task.model_io())."""
        return {"in_channels": self.in_channels, "dims": self.dims, "num_classes": self.num_classes}

    def correct(self, logits: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B,) bool: whole-sample correctness (every counted position right)."""
        pred = logits.argmax(1)
        mask = self.loss_mask(inputs)
        ok = pred == targets
        if mask is not None:
            ok = ok | ~mask
        return ok.flatten(1).all(1)

    def confidence(self, logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """(B,) per-example confidence used by the max-confidence readout: the mean over counted
        positions of the top softmax probability."""
        p = logits.float().softmax(1).amax(1)       # (B, *S)
        mask = self.loss_mask(inputs)
        if mask is None:
            return p.flatten(1).mean(1)
        m = mask.flatten(1).float()
        return (p.flatten(1) * m).sum(1) / m.sum(1).clamp_min(1)

    def splits(self, data, root: Path, split_seed: int = 0) -> list[Split]:
        """Train/val (`data.train_count` examples of the training difficulty, else `data.count`;
        `data.val_fraction` held out, fixed by `split_seed`) and one test split per `data.eval`
        difficulty (`data.count` examples each)."""
        from deepthink.tasks.storage import load
        x, y = load(self, root, data.train, "train", data.n_train, data.seed, data.source)
        g = torch.Generator().manual_seed(split_seed)
        perm = torch.randperm(x.shape[0], generator=g)
        n_val = max(1, int(round(x.shape[0] * data.val_fraction)))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        out = [Split("train", data.train, x[train_idx], y[train_idx]),
               Split("val", data.train, x[val_idx], y[val_idx])]
        for d in data.eval:
            xt, yt = load(self, root, d, "test", data.count, data.seed, data.source)
            out.append(Split("test", d, xt, yt))
        return out
