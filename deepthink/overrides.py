"""Command-line overrides of a sweep file (`deepthink sweep --set key=value`, `deepthink train
--key value`), applied to the raw YAML mapping before it is validated (deepthink/config.py).

A grid key (`model`, `width`, `depth`, `max_iters`, or `lr`/`alpha`/`epochs`) takes a list (`width=[16,32]`
or `width=16,32`) and a single value as a list of one; `seed=3` sets `seeds: [3]`; any other dotted
key (`train.lr=0.01`, `test.iterations=200`) sets that key. Values arrive parsed as YAML scalars
(deepthink/configfile.py).
"""
from __future__ import annotations

import copy
from typing import Any

from deepthink.configfile import ConfigError, Key, parse_value

MODEL_GRID_KEYS = ("model", "width", "depth", "max_iters")   # grid keys that pick the model

GRID_TRAIN_KEYS = ("alpha", "lr", "epochs")     # train keys that the grid may list


def _grid_list(key: str, value: Any) -> list:
    """A value given for a grid key on the command line, as the grid's list: a list as given,
    `16,32` (YAML reads it as text) as [16, 32], a single value as a list of one."""
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.lstrip().startswith("[") and not value.rstrip().endswith("]"):
        raise ConfigError(f"command line: --set {key}={value}: found {value!r}; expected a YAML list such as "
                          f"{key}=[16,32]")
    if isinstance(value, str) and "," in value:
        return [parse_value(part.strip()) for part in value.split(",")]
    return [value]


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> tuple[dict[str, Any], list[Key]]:
    """Dotted-key overrides (`train.lr=0.01`, `model=dt_net`, `width=64`, `seed=3`) applied to a
    copy of a raw YAML mapping; returns it and the key paths set. A grid key (model, width, depth,
    max_iters, or lr/alpha/epochs as `lr=` or `train.lr=`) takes a list as given (`width=[16,32]` or
    `width=16,32`) and a single value as a list of one. A list for lr/alpha/epochs makes it a grid key."""
    raw = copy.deepcopy(raw)
    grid = raw.get("grid") if isinstance(raw.get("grid"), dict) else None
    changed: list[Key] = []
    for key, value in overrides.items():
        parts = tuple(key.split("."))
        if len(parts) == 1 and key in GRID_TRAIN_KEYS:
            parts = ("train", key)          # `lr=` means train.lr (a list: the grid's lr)
        name = parts[-1]
        is_grid = grid is not None and (
            (len(parts) == 1 and (key in MODEL_GRID_KEYS or key in grid)) or
            (parts[0] == "train" and len(parts) == 2 and name in GRID_TRAIN_KEYS and
             (name in grid or isinstance(value, list) or (isinstance(value, str) and "," in value))))
        if is_grid:
            if name in ("depth", "max_iters"):
                grid.pop("depth", None)
                grid.pop("max_iters", None)
            grid[name] = _grid_list(name, value)
            changed.append(("grid", name))
            if parts[0] == "train" and isinstance(raw.get("train"), dict):
                raw["train"].pop(name, None)     # the grid gives it; the file's single value would be ignored
            continue
        if parts == ("seed",):
            raw["seeds"] = value if isinstance(value, list) else [value]
            changed.append(("seeds",))
            continue
        node = raw
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"command line: override {key}: '{'.'.join(parts[:i + 1])}' is not a mapping")
        node[parts[-1]] = value
        changed.append(parts)
    return raw, changed
