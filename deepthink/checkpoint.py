"""Trainer checkpoints: one `checkpoint.pt` per trial directory, written atomically, loaded with
`torch.load(weights_only=True)` (tensors and plain Python containers only, no pickled objects).

Contents (a dict): format, config (TrialConfig.to_dict()), epoch (epochs completed), status
('training' | 'diverged'), precision (the resolved one: a resumed trial keeps it), train_seconds,
model and optimizer state dicts, and every random state the trainer draws from (torch global and
CUDA, numpy global, python global, the batch-order generator, the progressive-loss generator).
The learning rate is a pure function of the epoch (deepthink/optim.py), so there is no scheduler
state to store.

A checkpoint that cannot be read, or that was written for another configuration, raises
`CheckpointError` naming the file and what differs.
"""
from __future__ import annotations

import os
import random
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

FILENAME = "checkpoint.pt"
FORMAT = "deepthink-checkpoint-1"
# Config keys that may differ between the run that wrote a checkpoint and the one resuming it:
# they do not change training (evaluation settings, where results go, the sweep's name).
IGNORED_CONFIG_KEYS = ("test", "storage", "sweep")


class CheckpointError(RuntimeError):
    """A checkpoint that is unreadable or belongs to another trial; the message names the file."""


def save_checkpoint(directory: Path, payload: dict[str, Any]) -> Path:
    """Write `directory/checkpoint.pt` atomically (temporary file, fsync, rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / FILENAME
    tmp = directory / f".{FILENAME}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as fh:
            torch.save({"format": FORMAT, **payload}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint file and check that it is a deepthink checkpoint (any configuration)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there to resume from")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # torch raises RuntimeError, EOFError, UnpicklingError, zip errors...
        # No advice here: the way out depends on the caller (`deepthink train` says to remove the
        # file; a sweep falls back to an older checkpoint by itself, deepthink/sweep/repair.py).
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: not a deepthink checkpoint (format {found!r}, expected {FORMAT!r})")
    return ckpt


def find_checkpoint(path: Path) -> Path:
    """`path` itself (a file), `path/checkpoint.pt`, or in a Ray trial directory the newest
    `checkpoint_*/checkpoint.pt`; CheckpointError naming the path otherwise."""
    if path.is_file():
        return path
    if (path / FILENAME).is_file():
        return path / FILENAME
    ray_dirs = sorted(p for p in path.glob("checkpoint_*") if (p / FILENAME).is_file()) if path.is_dir() else []
    if ray_dirs:
        return ray_dirs[-1] / FILENAME
    raise CheckpointError(f"{path}: no checkpoint there (expected a {FILENAME} file, a directory holding one, "
                          f"or a Ray trial directory with checkpoint_* directories)")


def load_checkpoint(directory: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Read `directory/checkpoint.pt` and check that it was written for `config`."""
    path = Path(directory) / FILENAME
    ckpt = read_checkpoint(path)
    diff = config_difference(ckpt.get("config", {}), config)
    if diff:
        raise CheckpointError(f"{path}: checkpoint belongs to another configuration: {diff}")
    return ckpt


def config_difference(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """First difference between two TrialConfig dicts that matters for training, as text."""
    def flat(d: dict, prefix: str = "") -> dict[str, Any]:
        out = {}
        for k, v in d.items():
            if not prefix and k in IGNORED_CONFIG_KEYS:
                continue
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out
    a, b = flat(saved), flat(current)
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<missing>") != b.get(key, "<missing>"):
            return f"{key} is {a.get(key, '<missing>')!r} in the checkpoint but {b.get(key, '<missing>')!r} now"
    return None


def capture_rng(shuffle: torch.Generator, progressive: random.Random) -> dict[str, Any]:
    """Every random state the trainer uses, as weights_only-loadable values."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": random.getstate(),
        "shuffle": shuffle.get_state(),
        "progressive": progressive.getstate(),
    }


def restore_rng(state: dict[str, Any], shuffle: torch.Generator, progressive: random.Random) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(_as_tuple(state["python"]))
    shuffle.set_state(state["shuffle"])
    progressive.setstate(_as_tuple(state["progressive"]))


def _as_tuple(x: Any) -> Any:
    """random.setstate needs tuples; a serializer may hand back lists."""
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x
