"""Sections `search:` (sampled keys) and `scheduler:` (early stopping) of a sweep file. Ray-free.

    search:
      num_samples: 12              # configurations drawn; each is trained once per seed
      algorithm: random            # random (default) | optuna (TPE; pip install 'deepthink[optuna]')
      seed: 0                      # the search's own seed (random: which configurations; optuna: TPE's sampler)
      metric: val_acc              # optuna only: what TPE optimises (the trial's last reported value)
      space:
        train.lr: {loguniform: [1.0e-4, 1.0e-2]}
        train.alpha: {uniform: [0.0, 1.0]}
        width: {choice: [32, 64, 128]}
        max_iters: {uniform: [10, 30]}       # an integer key draws integers, both ends included

    scheduler:
      type: asha                   # the only one; no `scheduler:` means FIFO (every trial runs to the end)
      metric: val_acc              # a per-epoch metric: val_acc | train_acc (mode max), loss (mode min)
      grace_period: 2              # epochs before a trial can be stopped
      reduction_factor: 2          # keep the top 1/rf at each rung
      max_t: 10                    # epochs (default: the trials' train.epochs)

Random search draws its configurations here, before Ray starts, with numpy and `search.seed`
(the same file gives the same trials; more samples keep the first ones), so a random search is a
fixed list of trials like a grid: listed by --dry-run, resumed like a grid. Optuna's TPE proposes
configurations during the run (Ray Tune's OptunaSearch); each proposal is trained with every seed
(deepthink/sweep/searchers.py) and TPE is told the mean over seeds.

What may be searched: the keys that the results record as columns (SEARCHABLE), so that the tables
group by the sampled values. Model and depth take `choice` only.
"""
from __future__ import annotations

import importlib.util
import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError, model_validator

from deepthink.configfile import Number, Section, rule

DISTRIBUTIONS = ("uniform", "loguniform", "choice")
ALGORITHMS = ("random", "optuna")
# Per-epoch metrics every trial reports (deepthink.train: on_epoch), and the direction that is better.
METRICS = {"val_acc": "max", "train_acc": "max", "loss": "min"}
SIGNIFICANT = 4        # random draws of real numbers are rounded to 4 significant digits
MAX_SAMPLES = 100_000
OPTUNA_FIX = "pip install 'deepthink[optuna]' (or pip install optuna)"


def _bounds(v: Any) -> Any:
    return len(v) == 2


class Distribution(Section):
    """One sampled key: exactly one of `uniform: [low, high]`, `loguniform: [low, high]`,
    `choice: [v1, v2, ...]`."""
    uniform: Annotated[list[Number], rule(_bounds, "[low, high]")] | None = Field(
        None, description="[low, high]: uniform between them (an integer key: integers low..high)")
    loguniform: Annotated[list[Number], rule(_bounds, "[low, high]")] | None = Field(
        None, description="[low, high], 0 < low < high: uniform in log scale (an integer key: integers)")
    choice: Annotated[list[Any], Field(min_length=1),
                      rule(lambda v: len({repr(x) for x in v}) == len(v), "distinct values")] | None = Field(
        None, description="a list of values, each equally likely")

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in DISTRIBUTIONS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"exactly one of {list(DISTRIBUTIONS)}, e.g. {{loguniform: [1.0e-4, 1.0e-2]}}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in DISTRIBUTIONS if getattr(self, k) is not None)

    @property
    def args(self) -> list:
        return getattr(self, self.kind)

    def describe(self, integer: bool) -> str:
        if self.kind == "choice":
            return f"choice of {self.args}"
        low, high = self.args
        scale = "log-uniform" if self.kind == "loguniform" else "uniform"
        return f"{scale} {'integers ' if integer else ''}in [{low:g}, {high:g}]"


class SearchConfig(Section):
    """Section `search:` (optional): keys sampled instead of listed; see deepthink/search.py."""
    num_samples: Annotated[int, Field(ge=1, le=MAX_SAMPLES)] = Field(
        description=f"configurations to draw, 1..{MAX_SAMPLES:,}; each is trained once per seed")
    algorithm: Literal[ALGORITHMS] = Field(
        "random", description="random (drawn before the run, reproducible with `seed`) or optuna "
                              "(Optuna's TPE through Ray Tune; pip install 'deepthink[optuna]')")
    seed: Annotated[int, Field(ge=0, lt=2**32)] = Field(0, description="the search's seed (not the trials' seeds)")
    metric: Literal[tuple(METRICS)] = Field("val_acc", description="optuna: the per-epoch metric TPE optimises "
                                                                   "(its last value in each trial, mean over seeds)")
    mode: Literal["min", "max"] | None = Field(None, description="optuna: max or min (default: max for "
                                                                  "accuracies, min for loss)")
    space: dict[str, Distribution] = Field(
        description="sampled key -> {uniform: [low, high]} | {loguniform: [low, high]} | {choice: [...]}",
        json_schema_extra={"propertyNames": {"enum": ["model", "width", "depth", "max_iters", "train.lr",
                                                      "train.alpha", "train.weight_decay", "train.epochs"]},
                           "minProperties": 1})

    @property
    def direction(self) -> str:
        return self.mode or METRICS[self.metric]


class SchedulerConfig(Section):
    """Section `scheduler:` (optional): ASHA early stopping (Ray Tune's AsyncHyperBandScheduler) on
    a per-epoch metric; a stopped trial is evaluated at its last weights, status 'stopped'."""
    type: Literal["asha"] = Field("asha", description="asha: asynchronous successive halving")
    metric: Literal[tuple(METRICS)] = Field("val_acc", description="per-epoch metric compared at each rung")
    mode: Literal["min", "max"] | None = Field(None, description="max or min (default: max for accuracies, "
                                                                  "min for loss)")
    grace_period: Annotated[int, Field(ge=1)] = Field(1, description="epochs before a trial can be stopped")
    reduction_factor: Annotated[Number, rule(lambda v: v > 1, "a number > 1")] = Field(
        2, description="at each rung only the top 1/reduction_factor of the trials so far go on")
    max_t: Annotated[int, Field(ge=1)] | None = Field(
        None, description="epochs a trial may run at most (default: the largest train.epochs)")

    @property
    def direction(self) -> str:
        return self.mode or METRICS[self.metric]

    def rungs(self, max_t: int) -> list[float]:
        """The epochs at which ASHA compares trials (Ray's _Bracket with s = 0), ascending."""
        n = int(math.log(max_t / self.grace_period) / math.log(self.reduction_factor) + 1)
        return [self.grace_period * self.reduction_factor ** k for k in range(max(n, 0))]


# ---- the keys that can be sampled ---------------------------------------------------------------
def searchable() -> dict[str, tuple[Any, bool, bool]]:
    """key -> (value type to validate with, integer?, ranges allowed?). Imported late: config.py
    defines the grid's field types and imports this module."""
    from deepthink.config import MAX_ITERS, ModelName, Width, _valid_depth
    from deepthink.optim import Alpha, Epochs, LearningRate
    from deepthink.configfile import number
    from pydantic import AfterValidator
    Iters = Annotated[int, Field(ge=1, le=MAX_ITERS)]
    Depth = Annotated[int, Field(le=4 * MAX_ITERS + 4), AfterValidator(_valid_depth)]
    return {
        "model": (ModelName, False, False),
        "width": (Width, True, True),
        "depth": (Depth, True, False),
        "max_iters": (Iters, True, True),
        "train.lr": (LearningRate, False, True),
        "train.alpha": (Alpha, False, True),
        "train.weight_decay": (number(ge=0), False, True),
        "train.epochs": (Epochs, True, True),
    }


def grid_name(key: str) -> str:
    """The grid's name for a searchable key ('train.lr' -> 'lr', 'width' -> 'width')."""
    return key.split(".", 1)[1] if key.startswith("train.") else key


def _check_value(kind: Any, value: Any, integer: bool) -> tuple[Any, str | None]:
    """(value as the key takes it, problem or None). Integral floats pass for integer keys (2.0 -> 2)."""
    if integer and isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        return TypeAdapter(kind).validate_python(value, strict=True), None
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        ctx = err.get("ctx") or {}
        if err["type"] == "value_error":
            return value, str(ctx.get("error", err["msg"]))
        if err["type"] == "literal_error":
            return value, f"one of {ctx.get('expected')}"
        if err["type"] in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            op = {"greater_than_equal": ">=", "less_than_equal": "<=", "greater_than": ">", "less_than": "<"}[err["type"]]
            return value, f"{'an integer' if integer else 'a number'} {op} {next(iter(ctx.values()))}"
        return value, "an integer" if integer else "a number"


def check_space(search: SearchConfig, grid: dict[str, Any]) -> tuple[dict[str, Distribution], list[tuple[tuple, Any, str]]]:
    """Semantic checks of `search.space` against the keys and the grid: returns the space with
    values as the keys take them, and [(key path, found, expected)] problems (empty when good)."""
    keys = searchable()
    problems: list[tuple[tuple, Any, str]] = []
    space: dict[str, Distribution] = {}
    for key, dist in search.space.items():
        where = ("search", "space", key)
        if key not in keys:
            problems.append((where, key, f"one of {list(keys)} (only keys that the results record as "
                                         f"columns can be searched, so that the tables group by them)"))
            continue
        kind, integer, ranges = keys[key]
        gname = grid_name(key)
        if grid.get(gname) is not None:
            problems.append((where, {dist.kind: dist.args},
                             f"a key not also in the grid: grid.{gname} lists {key} too; remove it from one of them"))
            continue
        found = {dist.kind: dist.args}
        if not ranges and dist.kind != "choice":
            problems.append((where, found, f"{{choice: [...]}}: {key} takes listed values only"))
            continue
        if dist.kind == "choice":
            values = []
            for i, v in enumerate(dist.args):
                v, problem = _check_value(kind, v, integer)
                if problem:
                    problems.append((where + ("choice", i), dist.args[i], problem))
                values.append(v)
            space[key] = Distribution(choice=values)
            continue
        low, high = dist.args
        if integer:
            bad = [x for x in (low, high) if not float(x).is_integer()]
            if bad:
                problems.append((where + (dist.kind,), dist.args, f"integer bounds ({key} is an integer)"))
                continue
            low, high = int(low), int(high)
        if not low < high:
            problems.append((where + (dist.kind,), dist.args, "[low, high] with low < high"))
            continue
        if dist.kind == "loguniform" and low <= 0:
            problems.append((where + (dist.kind,), dist.args,
                             "0 < low < high (a log scale needs positive bounds; use uniform to include 0)"))
            continue
        bad_bound = False
        for i, v in enumerate((low, high)):
            _, problem = _check_value(kind, v, integer)
            if problem:
                problems.append((where + (dist.kind, i), v, problem))
                bad_bound = True
        if not bad_bound:
            space[key] = Distribution(**{dist.kind: [low, high]})
    given = set(search.space) | {k for k, v in grid.items() if v is not None}
    if {"depth", "max_iters"} <= given and ({"depth", "max_iters"} & set(search.space)):
        problems.append((("search", "space"), "depth and max_iters",
                         "only one of depth or max_iters (in the grid or the search)"))
    if search.algorithm == "optuna":
        for gkey, values in grid.items():
            if values is not None and len(values) > 1:
                problems.append((("grid", gkey), values,
                                 f"one value with search.algorithm optuna (TPE searches one space): list one "
                                 f"value, or search it as search.space.{_search_key(gkey)}: {{choice: {values}}}"))
    return space, problems


def _search_key(gkey: str) -> str:
    return gkey if gkey in ("model", "width", "depth", "max_iters") else f"train.{gkey}"


def is_integer_key(key: str) -> bool:
    return searchable()[key][1]


# ---- drawing (random search) ----------------------------------------------------------------------
def _round(x: float, low: float, high: float) -> float:
    r = float(f"{x:.{SIGNIFICANT}g}")
    return min(max(r, low), high)


def draw(dist: Distribution, integer: bool, rng: np.random.Generator) -> Any:
    if dist.kind == "choice":
        return dist.args[int(rng.integers(len(dist.args)))]
    low, high = dist.args
    if integer:
        if dist.kind == "uniform":
            return int(rng.integers(low, high + 1))
        # log-uniform over [low, high + 1), floored: each integer as likely as its share of log scale
        return min(int(math.floor(math.exp(rng.uniform(math.log(low), math.log(high + 1))))), high)
    if dist.kind == "uniform":
        return _round(float(rng.uniform(low, high)), low, high)
    return _round(float(math.exp(rng.uniform(math.log(low), math.log(high)))), low, high)


def draw_samples(space: dict[str, Distribution], num_samples: int, seed: int) -> list[dict[str, Any]]:
    """`num_samples` configurations {key: value}, drawn in order from numpy's generator seeded with
    `seed`, keys in the file's order: the same file gives the same samples, and a larger
    num_samples keeps the first ones."""
    rng = np.random.default_rng(seed)
    return [{k: draw(d, is_integer_key(k), rng) for k, d in space.items()} for _ in range(num_samples)]


# ---- Optuna ------------------------------------------------------------------------------------------
def optuna_installed() -> bool:
    return importlib.util.find_spec("optuna") is not None


def optuna_space(space: dict[str, Distribution], prefix: str = "sample/") -> dict[str, Any]:
    """The space as Optuna distributions (param names `sample/<key>`: Ray unflattens them into
    config["sample"])."""
    import optuna
    out = {}
    for key, d in space.items():
        name = prefix + key
        if d.kind == "choice":
            out[name] = optuna.distributions.CategoricalDistribution(d.args)
        elif is_integer_key(key):
            out[name] = optuna.distributions.IntDistribution(d.args[0], d.args[1], log=d.kind == "loguniform")
        else:
            out[name] = optuna.distributions.FloatDistribution(d.args[0], d.args[1], log=d.kind == "loguniform")
    return out
