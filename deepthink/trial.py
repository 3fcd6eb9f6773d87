"""One trial: `TrialConfig` (everything one training run needs, saved in its checkpoint and Ray
Tune config) and how a sweep's grid points, samples and seeds become trials.

Split from deepthink/config.py (which reads and validates the sweep file) so that the trainer, the
Ray trainable and the progress reporter read a trial without the file's pydantic schema.

A setting that a model cannot use is not multiplied: feed-forward nets (separate blocks) cannot
use the progressive loss, so `alpha` is expanded only for recurrent models; the others train, and
their rows record, alpha 0 (`MODEL_SETTINGS`).
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from deepthink.evaluate import TestConfig
from deepthink.models import ModelSpec, get_model_spec, model_iterations
from deepthink.optim import TrainConfig
from deepthink.overrides import MODEL_GRID_KEYS
from deepthink.search import draw_samples
from deepthink.tasks.options import DataConfig

if TYPE_CHECKING:
    from deepthink.config import SweepConfig

__all__ = ["MODEL_SETTINGS", "TrialConfig", "point_trial", "sample_point", "trial_from_tune", "expand_trials"]

# A setting that only some models use: (does this model use it?, the value used when it does not).
MODEL_SETTINGS: dict[str, tuple[Callable[[ModelSpec], bool], Any]] = {
    "alpha": (lambda spec: spec.recurrent, 0.0),
}


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
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                "data": self.data.to_dict(), "train": self.train.to_dict(), "test": self.test.to_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialConfig":
        return cls(**{**d, "data": DataConfig.model_validate(d["data"]),
                      "train": TrainConfig.model_validate(d["train"]), "test": TestConfig.model_validate(d["test"])})

    @property
    def trial_name(self) -> str:
        return f"{self.model}_w{self.width}_d{self.depth}_a{self.train.alpha:g}_lr{self.train.lr:g}_s{self.seed}"


def point_trial(base: TrialConfig, point: dict[str, Any], seed: int) -> TrialConfig:
    """`base` (the sweep's template: the file's `train`) with the values of one grid point or
    sample, keyed by grid name (model, width, depth | max_iters, lr, alpha, weight_decay, epochs),
    and `seed`. A MODEL_SETTINGS key takes, for a model that does not use it, the value used instead."""
    model = point.get("model", base.model)
    spec = get_model_spec(model)
    train_values = {k: v for k, v in point.items() if k not in MODEL_GRID_KEYS}
    for key, (uses, value) in MODEL_SETTINGS.items():
        if not uses(spec):
            train_values[key] = value
    train = base.train.replace(**train_values) if train_values else base.train
    if "depth" in point:
        max_iters = model_iterations(depth=point["depth"])
    else:
        max_iters = point.get("max_iters", base.max_iters)
    return dataclasses.replace(base, model=model, width=point.get("width", base.width), max_iters=max_iters,
                               depth=4 * max_iters + 4, seed=seed, train=train)


def sample_point(sample: dict[str, Any]) -> dict[str, Any]:
    """A sample keyed by search keys ('train.lr') -> keyed by grid names ('lr')."""
    return {(k.split(".", 1)[1] if k.startswith("train.") else k): v for k, v in sample.items()}


def trial_from_tune(config: dict[str, Any]) -> TrialConfig:
    """The TrialConfig of a Ray Tune trial's config: {"trial": TrialConfig dict} (a grid or a random
    search), or {"trial": template, "sample": {key: value}, "seeds": [...], "__trial_index__": i}
    (Optuna's proposal, repeated once per seed: deepthink/sweep/searchers.py)."""
    base = TrialConfig.from_dict(config["trial"])
    if "sample" not in config:
        return base
    seeds = config.get("seeds") or [base.seed]
    return point_trial(base, sample_point(config["sample"]), seeds[int(config.get("__trial_index__", 0))])


def expand_trials(s: SweepConfig) -> list[TrialConfig]:
    """One TrialConfig per grid point x seed (a random search: per sample x grid point x seed), in
    the file's order: every seed of a point together, or with `order: seed` every point of the first
    seed, then of the second... A point that repeats another (a setting the model does not use, or a
    sample drawn twice) is not repeated."""
    keys = list(s.grid)
    if s.search is not None:
        samples = [sample_point(p) for p in draw_samples(s.space, s.search.num_samples, s.search.seed)]
    else:
        samples = [{}]
    base = s.template()
    trials, seen = [], set()
    for sample in samples:
        for combo in itertools.product(*(s.grid[k] for k in keys)):
            point = {**dict(zip(keys, combo)), **sample}
            first = point_trial(base, point, s.seeds[0])
            key = (first.model, first.width, first.max_iters, repr(sorted(first.train.to_dict().items())))
            if key in seen:
                continue
            seen.add(key)
            trials += [dataclasses.replace(first, seed=seed) for seed in s.seeds]
    if s.order == "seed":
        rank = {seed: i for i, seed in enumerate(s.seeds)}
        trials.sort(key=lambda t: rank[t.seed])     # stable: the points keep the file's order
    return trials
