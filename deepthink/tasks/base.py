"""The Task interface and registry.

A task is one small class that knows: its data files (generate them in the published
easy-to-hard-data layout, load them with that package's classes), its input channels and spatial
dimensionality (1D strings or 2D boards), which output positions the loss and metric look at, and
how to score an output. Nothing outside deepthink/tasks/ branches on a task name.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from deepthink.tasks.io import DataError, ensure_writable, file_lock, write_files_atomically

TASKS: dict[str, "Task"] = {}
PUBLISHED_DIR = "published"     # <data-root>/published/: data.source: published downloads here


@contextlib.contextmanager
def _root_lock(root: Path, name: str):
    """Exclusive lock on `root/name`; a root we cannot write to (a read-only shared copy) needs none."""
    try:
        ensure_writable(root)
    except DataError:
        if root.is_dir():
            yield
            return
        raise
    with file_lock(root / name):
        yield


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

    def check_data(self, data) -> tuple[str, object, str] | None:
        """(key, found, allowed) if the DataConfig asks for something impossible, else None."""
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

    # ---- shared plumbing --------------------------------------------------------------------
    def produce(self, root: Path, difficulty: int, split: str, count: int, seed: int,
                overwrite: bool = False) -> list[Path]:
        """`generate`, then record (seed, count) beside the files so that a later load with another
        data seed regenerates instead of silently reusing them."""
        paths = self.generate(root, difficulty, split, count, seed, overwrite=overwrite)
        meta = self.meta_path(root, difficulty, split)
        if meta is not None:
            write_files_atomically(meta.parent, {meta.name: lambda p: p.write_text(
                json.dumps({"task": self.name, "difficulty": difficulty, "split": split,
                            "seed": seed, "count": count}) + "\n")}, overwrite=True)
        return paths

    def recorded_seed(self, root: Path, difficulty: int, split: str) -> int | None:
        meta = self.meta_path(root, difficulty, split)
        try:
            return int(json.loads(meta.read_text())["seed"]) if meta is not None else None
        except (OSError, ValueError, KeyError, TypeError):
            return None      # no record (published or hand-made files): use them as they are

    def ensure(self, root: Path, difficulty: int, split: str, count: int, seed: int) -> None:
        if not self.files_exist(root, difficulty, split):
            self.produce(root, difficulty, split, count, seed)

    def load(self, root: Path, difficulty: int, split: str, count: int, seed: int, source: str = "generated") -> tuple[torch.Tensor, torch.Tensor]:
        """Exactly `count` examples (fewer only from a published file that has fewer), as
        (inputs float (N, C, *S), targets long (N, *S)), loaded by the easy_to_hard_data class.

        Published files live under `<root>/published/`, so they are never mistaken for generated
        files of the same names (the package only checks that a folder exists). Loading holds a
        lock per data root, so a trial never reads a set that another process is replacing."""
        root = Path(root)
        if source == "published":
            root = root / PUBLISHED_DIR
            with _root_lock(root, ".download.lock"):
                try:
                    with contextlib.redirect_stdout(io.StringIO()):
                        x, y = self.load_raw(root, difficulty, split, count, download=True)
                except OSError as e:   # urllib.error.URLError is an OSError
                    raise DataError(
                        f"could not download the published {self.name} data into {root} ({e}); this machine "
                        f"may have no internet access. Use data.source: generated to generate it locally.") from None
            return x[:count], y[:count]
        with _root_lock(root, ".load.lock"):
            self.ensure(root, difficulty, split, count, seed)
            with contextlib.redirect_stdout(io.StringIO()):   # the package prints on every load
                x, y = self.load_raw(root, difficulty, split, count, download=False)
            recorded = self.recorded_seed(root, difficulty, split)
            why = (f"has {x.shape[0]} examples, {count} asked" if x.shape[0] < count else
                   f"was generated with seed {recorded}, seed {seed} asked" if recorded not in (None, seed) else None)
            if why:
                # Never train on fewer examples or on another seed's data without saying so.
                # (A task that cannot generate raises a DataError here.)
                print(f"deepthink: {self.name} {self.difficulty_name} {difficulty} ({split}) under {root} "
                      f"{why}: generating {count} (seed {seed})", file=sys.stderr)
                self.produce(root, difficulty, split, count, seed, overwrite=True)
                with contextlib.redirect_stdout(io.StringIO()):
                    x, y = self.load_raw(root, difficulty, split, count, download=False)
        return x[:count], y[:count]

    def splits(self, data, root: Path, split_seed: int = 0) -> list[Split]:
        """Train/val (`data.train_count` examples of the training difficulty, else `data.count`;
        `data.val_fraction` held out, fixed by `split_seed`) and one test split per `data.eval`
        difficulty (`data.count` examples each)."""
        n_train = data.train_count if data.train_count is not None else data.count
        x, y = self.load(root, data.train, "train", n_train, data.seed, data.source)
        g = torch.Generator().manual_seed(split_seed)
        perm = torch.randperm(x.shape[0], generator=g)
        n_val = max(1, int(round(x.shape[0] * data.val_fraction)))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        out = [Split("train", data.train, x[train_idx], y[train_idx]),
               Split("val", data.train, x[val_idx], y[val_idx])]
        for d in data.eval:
            xt, yt = self.load(root, d, "test", data.count, data.seed, data.source)
            out.append(Split("test", d, xt, yt))
        return out
