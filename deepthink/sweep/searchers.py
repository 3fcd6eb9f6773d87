"""Adaptive search (`search: {algorithm: optuna}`): Optuna's TPE through Ray Tune's OptunaSearch.

    OptunaSearch(space, metric, mode, seed)   TPE proposes one configuration (config["sample"])
    Repeater(..., repeat=len(seeds))          ... trained once per seed: config["__trial_index__"]
                                              picks the seed (deepthink.trial.trial_from_tune); TPE
                                              is told the mean over the seeds of each trial's last
                                              reported metric

Tune's SearchGenerator saves the searcher (the Optuna study) and the Repeater's groups with the
experiment, so `--resume` continues the same study: finished configurations are kept and not
proposed again, and the trial count stays num_samples x seeds.

Random search needs nothing here: its configurations are drawn before the run
(deepthink.search.draw_samples) and run as a fixed list of trials, like a grid.

Imported only by runner.py (imports Ray).
"""
from __future__ import annotations

import logging

from deepthink.config import SweepConfig
from deepthink import search
from deepthink.search import OPTUNA_FIX, optuna_space
from deepthink.sweep.state import SweepError


def missing_optuna(sweep: SweepConfig) -> str | None:
    """The one-line reason an adaptive search cannot run here, or None."""
    if sweep.adaptive and not search.optuna_installed():
        return (f"{sweep.path}: key 'search.algorithm': found 'optuna', but Optuna is not installed; "
                f"install it with: {OPTUNA_FIX}; or use algorithm: random")
    return None


def make_search_alg(sweep: SweepConfig):
    """The Tune search algorithm of an adaptive search, or None (a grid or a random search: the
    trials are listed in param_space)."""
    if not sweep.adaptive:
        return None
    problem = missing_optuna(sweep)
    if problem:
        raise SweepError(problem)
    import optuna
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch
    optuna.logging.set_verbosity(logging.WARNING)     # one INFO line per trial otherwise
    s = sweep.search
    searcher = OptunaSearch(space=optuna_space(sweep.space), metric=s.metric, mode=s.direction, seed=s.seed)
    return Repeater(searcher, repeat=len(sweep.seeds), set_index=True)
