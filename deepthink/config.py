"""Sweep/run configuration: the YAML contract (DESIGN.md section 4), as typed pydantic sections.

Each component declares its own section beside its code; this module assembles the file:

    data:       DataConfig       deepthink/tasks/options.py (task checks: Task.check_difficulty/check_data)
    train:      TrainConfig      deepthink/optim.py
    test:       TestConfig       deepthink/evaluate.py
    grid:       Grid             here (the planner: what a sweep varies)
    resources:  ResourcesConfig  here (per trial; read by deepthink/sweep/plan.py)

A sweep file expands to a list of `TrialConfig`s (one per grid point x seed: deepthink/trial.py); `deepthink train`
reads the same format with every list holding one value. Precedence, lowest first: section
defaults < the task's data defaults < YAML < command-line overrides (`--set key=value` or
`--key value`, applied by deepthink/overrides.py; one value parser: deepthink/configfile.py). `deepthink schema` prints the file's JSON Schema.

Every error is a `ConfigError` naming the file, the key, its line, what was found and what is allowed,
raised before any data, torch model or Ray is touched.

A setting that a model cannot use is not multiplied (`MODEL_SETTINGS`, deepthink/trial.py).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, model_validator

from deepthink.configfile import (ConfigError, Key, Number, OneOrMore, Section, config_error, distinct, dotted,
                                  explain, load_file, number, rule)
from deepthink.evaluate import TestConfig
from deepthink.models import MODELS, get_model_spec, model_iterations
from deepthink.optim import Alpha, Epochs, LearningRate, TrainConfig
from deepthink.overrides import apply_overrides
from deepthink.search import METRICS, Distribution, SchedulerConfig, SearchConfig, check_space
from deepthink.tasks import TASKS
from deepthink.tasks.options import DataConfig, check_data
from deepthink.trial import MODEL_SETTINGS, TrialConfig, expand_trials

__all__ = ["ConfigError", "DataConfig", "TrainConfig", "TestConfig", "ResourcesConfig", "Grid", "SweepFile",
           "SweepConfig", "TrialConfig", "parse_sweep", "expand_trials", "apply_overrides", "json_schema"]


def _valid_depth(d: int) -> int:
    try:
        model_iterations(depth=d)
    except ValueError as e:
        raise ValueError(str(e)) from None
    return d


def _gpu_share(g: float) -> float:
    if g < 0 or (g > 1 and g != int(g)):
        raise ValueError("0, a fraction 1/n (0.5, 0.25, ...) or a whole number (more than 1 GPU per trial)")
    if 0 < g < 1 and abs(1 / g - round(1 / g)) > 1e-6:
        raise ValueError("a fraction that divides 1 (1/n: 0.5, 0.25, 0.2, ...)")
    return g


PositiveInt = Annotated[int, Field(ge=1)]
MAX_WIDTH = 4096              # channels; the papers use 8..512 (10^9 would need petabytes per layer)
MAX_ITERS = 10_000            # recurrent iterations (paper 2 trains with <= 100 and tests to a few hundred)
SEED_LIMIT = 2**32            # torch.manual_seed and numpy's seeds take 0 <= seed < 2^32
MAX_TRIALS = 10_000           # default of `max_trials:` (raise it in the file or with --max-trials)
NAME_PATTERN = r"^[A-Za-z0-9-][A-Za-z0-9._-]{0,127}$"   # not '_' first: <storage>/_<name>/ holds a sweep's state
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]
Iterations = Annotated[int, Field(ge=1, le=MAX_ITERS)]
Seed = Annotated[int, Field(ge=0, lt=SEED_LIMIT)]
ModelName = Literal[tuple(sorted(MODELS))]
NonNegative = number(ge=0)


def _values(item_type: Any) -> Any:
    """A grid entry: a non-empty list of distinct values (a single value means a list of one)."""
    return Annotated[list[item_type], OneOrMore, Field(min_length=1),
                     distinct("distinct values (a repeated value would run the same trial twice)")]


class Grid(Section):
    """Section `grid:`: the Cartesian product of every list. Only keys that the results record as
    columns may vary: anything else would give rows that the tables cannot tell apart."""
    model: _values(ModelName) | None = Field(
        None, description=f"a list of models from {sorted(MODELS)} (required unless search.space has model)")
    width: _values(Width) | None = Field(
        None, description=f"a list of channel widths, 1..{MAX_WIDTH} (required unless search.space has width)")
    depth: _values(Annotated[int, Field(le=4 * MAX_ITERS + 4), AfterValidator(_valid_depth)]) | None = Field(
        None, description=f"effective depths 4*k + 4 (paper 1), at most {4 * MAX_ITERS + 4}; or give max_iters")
    max_iters: _values(Iterations) | None = Field(
        None, description=f"iterations trained with (paper 2), 1..{MAX_ITERS}")
    alpha: _values(Alpha) | None = Field(None, description="progressive loss weights (recurrent models only)")
    lr: _values(LearningRate) | None = None
    epochs: _values(Epochs) | None = None

    @model_validator(mode="before")
    @classmethod
    def _non_empty(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and not raw:
            raise ValueError("a non-empty mapping of key -> list of values")
        return raw


class ResourcesConfig(Section):
    """Section `resources:`: what one trial holds (deepthink/sweep/plan.py counts trials at once)."""
    cpu: Annotated[Number, rule(lambda v: v > 0, "a positive number of CPUs")] = 1
    gpu: Annotated[Number, AfterValidator(_gpu_share)] = Field(0, description="0, 1/n or a whole number",
                                                               json_schema_extra={"minimum": 0})


class CostConfig(Section):
    """Section `cost:` (optional): `--dry-run` multiplies trials x GPU-hours (x price)."""
    gpu_hours_per_trial: NonNegative | None = None
    usd_per_gpu_hour: NonNegative | None = None


class SweepFile(Section):
    """A sweep file (DESIGN.md section 4). Unknown keys are errors."""
    model_config = {"title": "deepthink sweep file"}
    name: Annotated[str, rule(lambda v: re.fullmatch(NAME_PATTERN, v) is not None,
                              "a directory name of letters, digits and . _ - (1-128 characters, "
                              "not starting with '.' or '_')")] = Field(
        description="results go to <storage>/<name>/ (the sweep's state to <storage>/_<name>/); "
                    "letters, digits and . _ - only, not starting with . or _",
        json_schema_extra={"pattern": NAME_PATTERN})
    task: Literal[tuple(sorted(TASKS))] = Field(description=f"one of {sorted(TASKS)}")
    description: str = ""
    data: DataConfig = DataConfig()
    grid: Grid
    seeds: Annotated[list[Seed], OneOrMore, Field(min_length=1), distinct("distinct integers")] = Field(
        [0], description="trial seeds, 0 <= seed < 2^32 (what torch and numpy accept)")
    order: Literal["point", "seed"] = Field(
        "point", description="the order trials start in: 'point' runs every seed of a grid point before the "
                             "next point; 'seed' runs every grid point with the first seed, then with the "
                             "next, so that models are compared seed by seed however far the sweep got")
    train: TrainConfig = TrainConfig()
    test: TestConfig = TestConfig()
    resources: ResourcesConfig = ResourcesConfig()
    storage: str = Field("./results", description="a local path, a shared mount, s3://... or gs://...")
    max_failures: Annotated[int, Field(ge=0)] = Field(2, description="retries of a failing trial")
    cost: CostConfig = CostConfig()
    max_trials: Annotated[int, Field(ge=1)] = Field(
        MAX_TRIALS, description=f"refuse a grid of more trials than this (default {MAX_TRIALS:,}; "
                                "or `deepthink sweep --max-trials N`)")
    search: SearchConfig | None = Field(None, description="sampled keys (random search or Optuna's TPE): "
                                                          "num_samples x seeds trials (x grid points)")
    scheduler: SchedulerConfig | None = Field(None, description="early stopping (ASHA); none: every trial "
                                                                "runs all its epochs")

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, raw: Any) -> Any:
        """`train:` with nothing under it (YAML null) means the defaults, as an empty mapping does."""
        if isinstance(raw, dict):
            raw = {k: ({} if v is None and k in SECTIONS else v) for k, v in raw.items()}
        return raw


SECTIONS = ("data", "train", "test", "resources", "cost")


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a sweep file (`deepthink schema`), for editors and other tools."""
    schema = SweepFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


@dataclass
class SweepConfig:
    path: str
    name: str
    task: str
    data: DataConfig
    grid: dict[str, list[Any]]         # the file's grid keys, in the file's order
    seeds: list[int]
    train: TrainConfig
    test: TestConfig
    resources: ResourcesConfig
    storage: str
    max_failures: int = 2
    description: str = ""
    order: str = "point"               # "point" | "seed" (expand_trials)
    cost: dict[str, float] = field(default_factory=dict)
    max_trials: int = MAX_TRIALS
    search: SearchConfig | None = None
    space: dict[str, Distribution] = field(default_factory=dict)   # search.space, values as the keys take them
    scheduler: SchedulerConfig | None = None

    @property
    def adaptive(self) -> bool:
        """Optuna's TPE: the trials are proposed during the run, not listed before it."""
        return self.search is not None and self.search.algorithm == "optuna"

    def size_factors(self) -> list[tuple[int, str]]:
        """(count, what) whose product is the number of trials before repeats are dropped."""
        factors = [(len(v), k) for k, v in self.grid.items()]
        if self.search is not None:
            factors.append((self.search.num_samples, "samples"))
        return factors + [(len(self.seeds), "seeds")]

    def grid_size(self) -> int:
        """Grid points x samples x seeds, without expanding them (an upper bound of the trials)."""
        return math.prod(n for n, _ in self.size_factors())

    def check_trial_count(self, cli_limit: int | None = None, where: str = "") -> None:
        """Refuse a grid of more than max_trials (or --max-trials) trials, before expanding it."""
        limit = cli_limit or self.max_trials
        n = self.grid_size()
        if n > limit:
            raise ConfigError(
                f"{self.path}: key 'max_trials'{where}: found a grid of {n:,} trials "
                f"({' x '.join(f'{c} {k}' for c, k in self.size_factors())}); "
                f"expected at most {limit:,}: shrink the grid, or raise the cap with `max_trials: {n}` "
                f"in the file or --max-trials {n}")

    def trials(self) -> list[TrialConfig]:
        """Every trial, in order (a grid, or a random search's samples x grid x seeds); empty for an
        adaptive search (Optuna proposes its trials during the run: see n_trials and template)."""
        return [] if self.adaptive else expand_trials(self)

    def n_trials(self, trials: list[TrialConfig] | None = None) -> int:
        return self.search.num_samples * len(self.seeds) if self.adaptive else len(
            trials if trials is not None else self.trials())

    def template(self) -> TrialConfig:
        """The trial every point starts from: the grid's first values, the file's `train`, seed
        seeds[0] (a sampled model/width takes its first choice or lower bound until a point sets it)."""
        first = {k: v[0] for k, v in self.grid.items()}
        for key, dist in self.space.items():
            first.setdefault(key.split(".", 1)[-1] if key.startswith("train.") else key, dist.args[0])
        max_iters = model_iterations(depth=first["depth"]) if "depth" in first else first["max_iters"]
        return TrialConfig(sweep=self.name, task=self.task, model=first["model"], width=first["width"],
                           max_iters=max_iters, depth=4 * max_iters + 4, seed=self.seeds[0], data=self.data,
                           train=self.train, test=self.test, storage=self.storage)

    def max_epochs(self) -> int:
        """The most epochs any trial trains (ASHA's default max_t)."""
        if "epochs" in self.grid:
            return max(self.grid["epochs"])
        dist = self.space.get("train.epochs")
        if dist is not None:
            return max(dist.args)
        return self.train.epochs

    def to_dict(self) -> dict[str, Any]:
        """The resolved sweep (saved beside the results as <storage>/_<name>/config/sweep.yaml)."""
        d = {"name": self.name, "task": self.task, "description": self.description,
             "data": self.data.to_dict(), "grid": self.grid, "seeds": self.seeds,
             "train": self.train.to_dict(), "test": self.test.to_dict(),
             "resources": self.resources.to_dict(), "storage": self.storage,
             "max_failures": self.max_failures, "cost": self.cost, "max_trials": self.max_trials}
        if self.order != "point":      # the default left out: sweeps saved before the key resume unchanged
            d["order"] = self.order
        if self.search is not None:
            d["search"] = {**self.search.to_dict(), "mode": self.search.direction,
                           "space": {k: {v.kind: v.args} for k, v in self.space.items()}}
        if self.scheduler is not None:
            d["scheduler"] = {**self.scheduler.to_dict(), "mode": self.scheduler.direction,
                              "max_t": self.scheduler.max_t or self.max_epochs()}
        return d

    def unused_settings(self) -> list[str]:
        """Lines for the dry run: grid/train settings that some models of the grid do not use."""
        lines = []
        models = self.grid.get("model") or self.space["model"].args
        for key, (uses, value) in MODEL_SETTINGS.items():
            configured = self.grid.get(key, [self.train.to_dict()[key]])
            idle = [m for m in models if not uses(get_model_spec(m))]
            if idle and (configured != [value] or f"train.{key}" in self.space):
                lines.append(f"{key}: not used by {', '.join(idle)} (separate blocks): "
                             f"{'its' if len(idle) == 1 else 'their'} trials train and record {key} {value:g}"
                             + (f", once instead of once per {key} ({len(configured)} values)"
                                if len(configured) > 1 else ""))
        return lines


# ---- reading a file ------------------------------------------------------------------------------

def parse_sweep(path: str | Path, overrides: dict[str, Any] | None = None) -> SweepConfig:
    """Read and fully validate a sweep file. Raises ConfigError naming file, key and line."""
    raw, lines = load_file(path)
    changed: list[Key] = []
    if overrides:
        raw, changed = apply_overrides(raw, overrides)
    return validate(raw, str(path), lines, changed)


def _where(loc: Key, lines: dict[Key, int], changed: list[Key]) -> tuple[int | None, str]:
    """The line of `loc` (or of its nearest parent in the file), or a note that it was overridden."""
    if any(loc[:len(c)] == c for c in changed):
        return None, " (set on the command line)"
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]], ""
    return None, ""


def _error(path: str, problems: list[tuple[Key, Any, str]], lines: dict[Key, int], changed: list[Key]) -> ConfigError:
    msgs = []
    for loc, found, expected in problems:
        line, note = _where(loc, lines, changed)
        msgs.append(str(config_error(path, dotted(loc), found, expected, line, note)))
    return ConfigError("\n".join(msgs))


def _check_scheduler(f: SweepFile, max_epochs: int) -> list[tuple[Key, Any, str]]:
    sch, problems = f.scheduler, []
    for section, cfg in (("scheduler", sch), ("search", f.search)):
        if cfg is not None and cfg.mode is not None and cfg.mode != METRICS[cfg.metric]:
            problems.append(((section, "mode"), cfg.mode,
                             f"'{METRICS[cfg.metric]}' for {cfg.metric} ({'higher' if METRICS[cfg.metric] == 'max' else 'lower'} "
                             f"is better), or leave mode out"))
    if f.order == "seed" and f.search is not None and f.search.algorithm == "optuna":
        problems.append((("order",), f.order, "'point' with search.algorithm optuna: TPE proposes a point and "
                         "it is trained on every seed at once (leave order out)"))
    if sch is None:
        return problems
    max_t = sch.max_t or max_epochs
    if sch.grace_period > max_t:
        problems.append((("scheduler", "grace_period"), sch.grace_period,
                         f"at most max_t ({max_t} epochs{'' if sch.max_t else ', the trials train.epochs'}): "
                         f"a trial cannot be stopped after it has ended"))
    return problems


def validate(raw: dict[str, Any], path: str = "<config>", lines: dict[Key, int] | None = None,
             changed: list[Key] | None = None) -> SweepConfig:
    lines, changed = lines or {}, changed or []
    raw = dict(raw)
    task = TASKS.get(raw.get("task")) if isinstance(raw.get("task"), str) else None
    if task is not None and isinstance(raw.get("data", {}), (dict, type(None))):
        raw["data"] = {**task.default_data(), **(raw.get("data") or {})}   # the task's defaults under the file
    try:
        f = SweepFile.model_validate(raw)
    except ValidationError as e:
        raise _error(path, explain(e, SweepFile), lines, changed) from None
    problem = check_data(task, f.data)
    if problem:
        key, found, allowed = problem
        raise _error(path, [(tuple(key.split(".")) if isinstance(key, str) else key, found, allowed)], lines, changed)
    if isinstance(f.test.max_examples, dict):
        known = [f.data.train, *f.data.eval]
        for d in f.test.max_examples:
            if d not in known:
                raise _error(path, [(("test", "max_examples", d), d, f"a difficulty of this sweep (train {f.data.train}; "
                                     f"eval {', '.join(map(str, f.data.eval))})")], lines, changed)
    grid = f.grid.model_dump()
    given = [k for k in raw["grid"] if grid[k] is not None]   # the file's order
    space: dict[str, Distribution] = {}
    if f.search is not None:
        space, problems = check_space(f.search, grid)
        if problems:
            raise _error(path, problems, lines, changed)
    have = set(given) | {k.split(".", 1)[-1] if k.startswith("train.") else k for k in space}
    for key, what in (("model", f"a list of models from {sorted(MODELS)}"),
                      ("width", f"a list of channel widths, 1..{MAX_WIDTH}")):
        if key not in have:
            raise _error(path, [(("grid", key), None, f"this key to be present: {what} (or search.space.{key})")],
                         lines, changed)
    if f.grid.depth is not None and f.grid.max_iters is not None:
        raise _error(path, [(("grid",), "depth and max_iters", "only one of depth or max_iters")], lines, changed)
    if "depth" not in have and "max_iters" not in have:
        raise _error(path, [(("grid", "depth"), None, "grid.depth (effective depth) or grid.max_iters "
                                                      "(or either in search.space)")], lines, changed)
    cost = {k: v for k, v in f.cost.to_dict().items() if v is not None}
    sweep = SweepConfig(path=path, name=f.name, task=f.task, data=f.data, grid={k: grid[k] for k in given},
                        seeds=f.seeds, train=f.train, test=f.test, resources=f.resources, storage=f.storage,
                        max_failures=f.max_failures, description=f.description, cost=cost,
                        max_trials=f.max_trials, search=f.search, space=space, scheduler=f.scheduler,
                        order=f.order)
    problems = _check_scheduler(f, sweep.max_epochs())
    if problems:
        raise _error(path, problems, lines, changed)
    return sweep
