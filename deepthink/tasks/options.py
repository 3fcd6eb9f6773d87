"""Section `data:` of a sweep file: which task data a trial trains and tests on.

Generic checks live here (types, ranges); what a task allows (bits >= 1, odd maze sizes, no more
strings than 2^bits) is checked by the task itself, through `check_data(task, data)` below, which
`deepthink.config` calls with the file's line numbers at hand. Each task's defaults
(`Task.default_data()`) lie under the file's values.
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from deepthink.configfile import Number, OneOrMore, Section, rule

SOURCES = ("generated", "published")
MAX_COUNT = 10_000_000      # examples per difficulty (the largest published set, chess, has 1.5M)


class DataConfig(Section):
    source: Literal[SOURCES] = Field("generated", description="generated here, or published (downloaded "
                                                               "by easy_to_hard_data)")
    train: int = Field(32, description="training difficulty: bits, maze size, or chess index start")
    eval: Annotated[list[int], OneOrMore, Field(min_length=1)] = Field(
        [40, 44], description="test difficulties")
    count: Annotated[int, Field(ge=1, le=MAX_COUNT)] = Field(
        10000, description="examples per difficulty (train and test), 1..10^7")
    train_count: Annotated[int, rule(lambda v: v >= 2, "an integer >= 2 (train + val) or null (= data.count)"),
                          Field(le=MAX_COUNT)] | None = \
        Field(None, description="examples of the training difficulty (train + val); null: count")
    seed: Annotated[int, Field(ge=0, lt=2**32)] = Field(0, description="data generation seed (not the trial seed), 0..2^32-1")
    val_fraction: Annotated[Number, rule(lambda v: 0 < v < 1, "a fraction strictly between 0 and 1")] = Field(
        0.2, description="train/val split of the training difficulty (reference: 80/20)")

    @property
    def n_train(self) -> int:
        """Examples drawn at the training difficulty (train + val)."""
        return self.train_count if self.train_count is not None else self.count


def check_data(task, data: DataConfig) -> tuple[tuple, object, str] | None:
    """(key, found, allowed) for the first thing `task` cannot provide, else None. `key` is a path
    such as ("data", "eval", 1). The same rules as `check_request` (the data CLI, generation)."""
    count_key = ("data", "train_count") if data.train_count is not None else ("data", "count")
    asks = [(("data", "train"), count_key, data.train, data.n_train)] + \
        [(("data", "eval", i), ("data", "count"), d, data.count) for i, d in enumerate(data.eval)]
    for key, ckey, d, n in asks:
        problem = task.check_difficulty(d)
        if problem:
            return key, d, problem
        problem = task.check_count(d, n)
        if problem:
            return ckey, n, problem
    return None


def check_request(task, difficulties: list[int], count: int, seed: int, flag: str) -> None:
    """The data CLI's and the generators' check of one request (`flag` names the CLI option that
    lists the difficulties, e.g. '--bits'); raises DataError saying what is allowed."""
    from deepthink.tasks.storage import DataError
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise DataError(f"--count must be a positive integer, got {count}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"--seed must be a non-negative integer, got {seed}")
    for d in difficulties:
        problem = task.check_difficulty(d)
        if problem:
            raise DataError(f"{flag} {d}: expected {problem}")
        problem = task.check_count(d, count)
        if problem:
            raise DataError(f"--count {count} for {flag} {d}: expected {problem}")
