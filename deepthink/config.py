"""Sweep/run configuration: the YAML contract (DESIGN.md section 4), parsed and validated.

A sweep file expands to a list of `TrialConfig`s (one per grid point x seed). `deepthink train`
reads the same file format with every list holding one value. Precedence, lowest first:
dataclass defaults < YAML < command-line `--key value` overrides (dotted keys, e.g. train.lr).

Every error raised here is a `ConfigError` that names the file, the key, what was found and what
is allowed, and is raised before any data, torch model or Ray is touched.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad sweep/run file. The message names the file and key."""


@dataclass
class DataConfig:
    source: str = "generated"      # generated | published (easy_to_hard_data download=True)
    train: int = 32                # training difficulty: bits, maze size, or chess index start
    eval: list[int] = field(default_factory=lambda: [40, 44])   # test difficulties
    count: int = 10000             # examples per difficulty (train and test)
    train_count: int | None = None # examples of the training difficulty (train + val); null: count
    seed: int = 0                  # data generation seed (independent of the trial seed)
    val_fraction: float = 0.2      # train/val split of the training difficulty (reference: 80/20)


@dataclass
class TrainConfig:
    epochs: int = 150
    optimizer: str = "adam"        # adam | adamw | sgd
    lr: float = 0.001
    weight_decay: float = 2e-4
    momentum: float = 0.9          # sgd only
    batch_size: int = 100
    alpha: float = 0.0             # progressive loss weight (0 = plain loss at max_iters)
    clip: float | None = 1.0       # gradient-norm clip; null disables
    warmup: int = 0                # epochs of linear warmup
    schedule: str = "step"         # step | cosine | none
    milestones: list[int] = field(default_factory=lambda: [60, 100])
    gamma: float = 0.1
    precision: str = "auto"        # auto | fp32 | bf16
    checkpoint_every: int = 1      # epochs between checkpoints


@dataclass
class TestConfig:
    iterations: int = 60           # evaluate at every iteration 1..iterations
    batch_size: int = 500          # chunk size for evaluation (memory does not grow with iterations)
    max_examples: int | None = None   # evaluate at most this many examples per split (null: all)


@dataclass
class ResourcesConfig:
    cpu: float = 1
    gpu: float = 0


@dataclass
class TrialConfig:
    """Everything one training run needs; JSON-serialisable via `to_dict`."""
    sweep: str
    task: str
    model: str
    width: int
    max_iters: int
    depth: int
    seed: int
    data: DataConfig
    train: TrainConfig
    test: TestConfig
    storage: str = "./results"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialConfig":
        d = dict(d)
        d["data"] = DataConfig(**d["data"])
        d["train"] = TrainConfig(**d["train"])
        d["test"] = TestConfig(**d["test"])
        return cls(**d)

    @property
    def trial_name(self) -> str:
        return f"{self.model}_w{self.width}_d{self.depth}_a{self.train.alpha:g}_lr{self.train.lr:g}_s{self.seed}"


@dataclass
class SweepConfig:
    path: str
    name: str
    task: str
    data: DataConfig
    grid: dict[str, list[Any]]
    seeds: list[int]
    train: TrainConfig
    test: TestConfig
    resources: ResourcesConfig
    storage: str
    max_failures: int = 2
    description: str = ""
    cost: dict[str, float] = field(default_factory=dict)   # optional: {gpu_hours_per_trial: x, usd_per_gpu_hour: y}

    def trials(self) -> list[TrialConfig]:
        return expand_trials(self)


TOP_KEYS = {"name", "task", "data", "grid", "seeds", "train", "test", "resources", "storage",
            "max_failures", "description", "cost"}
MODEL_GRID_KEYS = {"model", "width", "depth", "max_iters"}
# Only keys that the results record as columns may vary in a grid: anything else would give rows
# that the tables cannot tell apart (they would be averaged as if they were seeds).
GRID_KEYS = MODEL_GRID_KEYS | {"alpha", "lr", "epochs"}
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("step", "cosine", "none")
PRECISIONS = ("auto", "fp32", "bf16")
SOURCES = ("generated", "published")
# `deepthink sweep --dry-run` multiplies these out: trials x GPU-hours (x price when given).
COST_KEYS = ("gpu_hours_per_trial", "usd_per_gpu_hour")


def _err(path: str, key: str, found: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{path}: key '{key}': found {found!r}; expected {allowed}")


def _type_name(t: Any) -> str:
    return getattr(t, "__name__", str(t))


def _check_scalar(path: str, key: str, value: Any, typ: type) -> Any:
    """Coerce/validate one scalar. ints are accepted where floats are expected; bools never pass as ints."""
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _err(path, key, value, "a number")
        if not math.isfinite(float(value)):
            raise _err(path, key, value, "a finite number")
        return float(value)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _err(path, key, value, "an integer")
        return value
    if typ is str:
        if not isinstance(value, str):
            raise _err(path, key, value, "a string")
        return value
    raise TypeError(typ)


def _fill(path: str, section: str, cls: type, raw: Any) -> Any:
    """Build dataclass `cls` from mapping `raw`, rejecting unknown keys and wrong types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _err(path, section, raw, f"a mapping with keys {sorted(f.name for f in dataclasses.fields(cls))}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k, v in raw.items():
        if k not in fields:
            raise _err(path, f"{section}.{k}", k, f"one of {sorted(fields)} (unknown key)")
        kwargs[k] = _check_field(path, f"{section}.{k}", fields[k], v)
    return cls(**kwargs)


def _check_field(path: str, key: str, f: dataclasses.Field, v: Any) -> Any:
    t = f.type if isinstance(f.type, str) else _type_name(f.type)
    if t in ("int", "float", "str"):
        return _check_scalar(path, key, v, {"int": int, "float": float, "str": str}[t])
    if t == "float | None":
        return None if v is None else _check_scalar(path, key, v, float)
    if t == "int | None":
        return None if v is None else _check_scalar(path, key, v, int)
    if t == "list[int]":
        if isinstance(v, int) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, list):
            raise _err(path, key, v, "a list of integers")
        return [_check_scalar(path, f"{key}[{i}]", x, int) for i, x in enumerate(v)]
    raise TypeError(f"unhandled field type {t} for {key}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = str(path)
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sweep keys at the top level, found {type(raw).__name__}")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Apply dotted-key overrides (`train.lr=0.01`, `model=dt_net`, `width=64`) to a raw YAML mapping.

    Keys naming a grid entry (model, width, depth, max_iters, or a train key placed in the grid)
    replace that grid list with the single value."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for key, value in overrides.items():
        parts = key.split(".")
        if len(parts) == 1 and (key in MODEL_GRID_KEYS or key in raw.get("grid", {})):
            raw.setdefault("grid", {})
            if key in ("depth", "max_iters"):
                raw["grid"].pop("depth", None)
                raw["grid"].pop("max_iters", None)
            raw["grid"][key] = [value]
            continue
        if len(parts) == 1 and key == "seed":
            raw["seeds"] = [value]
            continue
        node = raw
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: '{p}' is not a mapping")
        node[parts[-1]] = value
        if parts[0] == "train" and len(parts) == 2 and parts[1] in raw.get("grid", {}):
            raw["grid"][parts[1]] = [value]
    return raw


def parse_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """Read and fully validate a sweep file. Raises ConfigError naming file and key."""
    raw = load_yaml(path)
    if overrides:
        raw = apply_overrides(raw, overrides)
    return validate(raw, str(path))


def validate(raw: dict[str, Any], path: str = "<config>") -> SweepConfig:
    # Imported here so that config parsing stays importable without torch at module import time.
    from deepthink.models import MODELS, model_iterations
    from deepthink.tasks import TASKS

    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise _err(path, sorted(unknown)[0], sorted(unknown)[0], f"one of {sorted(TOP_KEYS)} (unknown key)")
    for req in ("name", "task", "grid"):
        if req not in raw:
            raise _err(path, req, None, "this key to be present")
    name = _check_scalar(path, "name", raw["name"], str)
    if not name or "/" in name or name.startswith("."):
        raise _err(path, "name", name, "a non-empty directory name without '/'")
    task = _check_scalar(path, "task", raw["task"], str)
    if task not in TASKS:
        raise _err(path, "task", task, f"one of {sorted(TASKS)}")

    given = raw.get("data") or {}
    if not isinstance(given, dict):
        raise _err(path, "data", given, "a mapping like {train: 32, eval: [48], count: 10000}")
    data = _fill(path, "data", DataConfig, {**TASKS[task].default_data(), **given})   # task defaults under the file
    if data.source not in SOURCES:
        raise _err(path, "data.source", data.source, f"one of {list(SOURCES)}")
    if data.count <= 0:
        raise _err(path, "data.count", data.count, "a positive integer")
    if data.seed < 0:
        raise _err(path, "data.seed", data.seed, "an integer >= 0")
    if data.train_count is not None and data.train_count < 2:
        raise _err(path, "data.train_count", data.train_count, "an integer >= 2 (train + val) or null (= data.count)")
    if not 0 < data.val_fraction < 1:
        raise _err(path, "data.val_fraction", data.val_fraction, "a fraction strictly between 0 and 1")
    if not data.eval:
        raise _err(path, "data.eval", data.eval, "a non-empty list of test difficulties")
    for i, d in enumerate([data.train] + data.eval):
        problem = TASKS[task].check_difficulty(d)
        if problem:
            key = "data.train" if i == 0 else f"data.eval[{i - 1}]"
            raise _err(path, key, d, problem)
    problem = TASKS[task].check_data(data)
    if problem:
        key, found, allowed = problem
        raise _err(path, key, found, allowed)

    train = _fill(path, "train", TrainConfig, raw.get("train"))
    test = _fill(path, "test", TestConfig, raw.get("test"))
    resources = _fill(path, "resources", ResourcesConfig, raw.get("resources"))
    _check_train(path, "train", train)
    if test.iterations < 1:
        raise _err(path, "test.iterations", test.iterations, "an integer >= 1")
    if test.batch_size < 1:
        raise _err(path, "test.batch_size", test.batch_size, "an integer >= 1")
    if test.max_examples is not None and test.max_examples < 1:
        raise _err(path, "test.max_examples", test.max_examples, "an integer >= 1 or null (all examples)")
    _check_resources(path, resources)

    grid = raw["grid"]
    if not isinstance(grid, dict) or not grid:
        raise _err(path, "grid", grid, "a non-empty mapping of key -> list of values")
    for k, v in grid.items():
        if k not in GRID_KEYS:
            raise _err(path, f"grid.{k}", k, f"one of {sorted(GRID_KEYS)} (unknown key)")
        if not isinstance(v, list):
            grid[k] = v = [v]
        if not v:
            raise _err(path, f"grid.{k}", v, "a non-empty list")
        if len({repr(x) for x in v}) != len(v):
            raise _err(path, f"grid.{k}", v, "distinct values (a repeated value would run the same trial twice)")
    if "model" not in grid:
        raise _err(path, "grid.model", None, f"a list of models from {sorted(MODELS)}")
    if "depth" in grid and "max_iters" in grid:
        raise _err(path, "grid", "depth and max_iters", "only one of depth or max_iters")
    if "depth" not in grid and "max_iters" not in grid:
        raise _err(path, "grid.depth", None, "grid.depth (effective depth) or grid.max_iters")
    if "width" not in grid:
        raise _err(path, "grid.width", None, "a list of positive integers")
    for i, m in enumerate(grid["model"]):
        if not isinstance(m, str) or m not in MODELS:
            raise _err(path, f"grid.model[{i}]", m, f"one of {sorted(MODELS)}")
    for key in ("width", "depth", "max_iters"):
        for i, v in enumerate(grid.get(key, [])):
            _check_scalar(path, f"grid.{key}[{i}]", v, int)
            if v < 1:
                raise _err(path, f"grid.{key}[{i}]", v, "a positive integer")
    for i, d in enumerate(grid.get("depth", [])):
        try:
            model_iterations(depth=d)
        except ValueError as e:
            raise _err(path, f"grid.depth[{i}]", d, str(e)) from None
    tf = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for k, vals in grid.items():
        if k in tf:
            grid[k] = [_check_field(path, f"grid.{k}[{i}]", tf[k], v) for i, v in enumerate(vals)]

    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds:
        raise _err(path, "seeds", seeds, "a non-empty list of integers")
    seeds = [_check_scalar(path, f"seeds[{i}]", s, int) for i, s in enumerate(seeds)]
    if len(set(seeds)) != len(seeds):
        raise _err(path, "seeds", seeds, "distinct integers")

    storage = _check_scalar(path, "storage", raw.get("storage", "./results"), str)
    max_failures = _check_scalar(path, "max_failures", raw.get("max_failures", 2), int)
    if max_failures < 0:
        raise _err(path, "max_failures", max_failures, "an integer >= 0")
    description = _check_scalar(path, "description", raw.get("description", ""), str)
    cost = raw.get("cost", {}) or {}
    if not isinstance(cost, dict):
        raise _err(path, "cost", cost, "a mapping like {gpu_hours_per_trial: 2.0}")
    for k in cost:
        if k not in COST_KEYS:
            raise _err(path, f"cost.{k}", k, f"one of {list(COST_KEYS)} (unknown key)")
    cost = {k: _check_scalar(path, f"cost.{k}", v, float) for k, v in cost.items()}
    for k, v in cost.items():
        if v < 0:
            raise _err(path, f"cost.{k}", v, "a non-negative number")

    sweep = SweepConfig(path=path, name=name, task=task, data=data, grid=grid, seeds=seeds,
                        train=train, test=test, resources=resources, storage=storage,
                        max_failures=max_failures, description=description, cost=cost)
    trials = expand_trials(sweep)   # validates every combination (e.g. per-trial train values)
    for t in trials:
        _check_train(path, f"grid ({t.trial_name})", t.train)
    return sweep


def _check_train(path: str, key: str, t: TrainConfig) -> None:
    if t.epochs < 1:
        raise _err(path, f"{key}.epochs", t.epochs, "an integer >= 1")
    if t.optimizer not in OPTIMIZERS:
        raise _err(path, f"{key}.optimizer", t.optimizer, f"one of {list(OPTIMIZERS)}")
    if t.schedule not in SCHEDULES:
        raise _err(path, f"{key}.schedule", t.schedule, f"one of {list(SCHEDULES)}")
    if t.precision not in PRECISIONS:
        raise _err(path, f"{key}.precision", t.precision, f"one of {list(PRECISIONS)}")
    if t.lr <= 0:
        raise _err(path, f"{key}.lr", t.lr, "a positive number")
    if t.batch_size < 1:
        raise _err(path, f"{key}.batch_size", t.batch_size, "an integer >= 1")
    if not 0.0 <= t.alpha <= 1.0:
        raise _err(path, f"{key}.alpha", t.alpha, "a number in [0, 1]")
    if t.clip is not None and t.clip <= 0:
        raise _err(path, f"{key}.clip", t.clip, "a positive number or null")
    if t.warmup < 0 or t.weight_decay < 0:
        raise _err(path, f"{key}.warmup/weight_decay", (t.warmup, t.weight_decay), "non-negative values")
    if t.checkpoint_every < 1:
        raise _err(path, f"{key}.checkpoint_every", t.checkpoint_every, "an integer >= 1")


def _check_resources(path: str, r: ResourcesConfig) -> None:
    if r.cpu <= 0:
        raise _err(path, "resources.cpu", r.cpu, "a positive number of CPUs")
    g = r.gpu
    if g < 0:
        raise _err(path, "resources.gpu", g, "0, a fraction 1/n (0.5, 0.25, ...) or a whole number")
    if g > 1 and g != int(g):
        raise _err(path, "resources.gpu", g, "a whole number when more than 1 GPU per trial")
    if 0 < g < 1 and abs(1 / g - round(1 / g)) > 1e-6:
        raise _err(path, "resources.gpu", g, "a fraction that divides 1 (1/n: 0.5, 0.25, 0.2, ...)")


def expand_trials(s: SweepConfig) -> list[TrialConfig]:
    from deepthink.models import model_iterations

    keys = list(s.grid)
    trials = []
    for combo in itertools.product(*(s.grid[k] for k in keys)):
        point = dict(zip(keys, combo))
        train = dataclasses.replace(s.train, **{k: v for k, v in point.items() if k not in MODEL_GRID_KEYS})
        if "depth" in point:
            max_iters = model_iterations(depth=point["depth"])
        else:
            max_iters = point["max_iters"]
        depth = 4 * max_iters + 4
        for seed in s.seeds:
            trials.append(TrialConfig(
                sweep=s.name, task=s.task, model=point["model"], width=point["width"],
                max_iters=max_iters, depth=depth, seed=seed, data=dataclasses.replace(s.data),
                train=dataclasses.replace(train), test=dataclasses.replace(s.test), storage=s.storage))
    return trials
