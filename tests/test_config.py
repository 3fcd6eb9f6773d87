"""Sweep-file validation (deepthink/config.py): one bad file per error the sweep issue lists.

Each case writes a small YAML file and checks that parsing fails fast (no Ray, no data, no training)
with a message naming the file, the key, what was found and what is allowed. The good file checks the
grid expansion against an independent count (product of list lengths times seeds).
"""
import copy
import itertools
import time

import pytest
import yaml

from deepthink.config import ConfigError, parse_sweep

GOOD = {
    "name": "tiny",
    "task": "prefix_sums",
    "data": {"train": 8, "eval": [10, 12], "count": 200},
    "grid": {"model": ["dt_recall", "ff_net"], "depth": [8, 12], "width": [8]},
    "seeds": [0, 1],
    "train": {"epochs": 1, "batch_size": 50},
    "test": {"iterations": 3},
    "resources": {"cpu": 1, "gpu": 0},
    "storage": "/tmp/results",
}


def _set(d, dotted, value):
    """Copy of `d` with the dotted key set (value DELETE removes it)."""
    d = copy.deepcopy(d)
    node = d
    *parents, last = dotted.split(".")
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return d


DELETE = object()

# (case id, dotted key to change, new value, substrings the error must contain: key, found, allowed)
CASES = [
    ("unknown top-level key", "epochs", 3, ["'epochs'", "unknown key", "grid"]),
    ("unknown nested key", "train.learning_rate", 0.1, ["train.learning_rate", "unknown key", "'lr'"]),
    ("unknown grid key", "grid.colour", ["red"], ["grid.colour", "unknown key"]),
    ("wrong type: lr as text", "train.lr", "fast", ["train.lr", "'fast'", "a number"]),
    ("wrong type: epochs float", "train.epochs", 1.5, ["train.epochs", "1.5", "an integer"]),
    ("wrong type: data not a mapping", "data", [8, 10], ["'data'", "[8, 10]", "a mapping"]),
    ("wrong type: width as text", "grid.width", ["wide"], ["grid.width[0]", "'wide'", "an integer"]),
    ("unknown task", "task", "sudoku", ["'task'", "'sudoku'", "prefix_sums"]),
    ("unknown model", "grid.model", ["dt_recall", "transformer"], ["grid.model[1]", "'transformer'", "dt_net"]),
    ("depth does not fit the model", "grid.depth", [8, 10], ["grid.depth[1]", "10", "4*k + 4"]),
    ("empty grid", "grid", {}, ["'grid'", "{}", "non-empty mapping"]),
    ("empty grid list", "grid.width", [], ["grid.width", "[]", "non-empty list"]),
    ("grid without model", "grid.model", DELETE, ["grid.model", "dt_recall"]),
    ("non-integer seed", "seeds", [0, 1.5], ["seeds[1]", "1.5", "an integer"]),
    ("seed as text", "seeds", ["zero"], ["seeds[0]", "'zero'", "an integer"]),
    ("duplicate seeds", "seeds", [3, 3], ["'seeds'", "[3, 3]", "distinct"]),
    ("gpu fraction not 1/n", "resources.gpu", 0.3, ["resources.gpu", "0.3", "divides 1"]),
    ("gpu > 1 and not whole", "resources.gpu", 1.5, ["resources.gpu", "1.5", "whole number"]),
    ("negative gpu", "resources.gpu", -1, ["resources.gpu", "-1", "whole number"]),
    ("zero cpu", "resources.cpu", 0, ["resources.cpu", "0", "positive"]),
    ("unknown optimizer", "train.optimizer", "lbfgs", ["train.optimizer", "'lbfgs'", "adam"]),
    ("alpha out of range", "train.alpha", 2, ["train.alpha", "2", "[0, 1]"]),
    ("test iterations zero", "test.iterations", 0, ["test.iterations", "0", ">= 1"]),
    ("negative max_failures", "max_failures", -1, ["max_failures", "-1", ">= 0"]),
    ("unknown cost key", "cost", {"dollars": 3}, ["cost.dollars", "unknown key", "gpu_hours_per_trial"]),
    ("cost not a number", "cost", {"gpu_hours_per_trial": "lots"}, ["cost.gpu_hours_per_trial", "'lots'", "a number"]),
    ("name with slash", "name", "a/b", ["'name'", "'a/b'", "letters, digits and . _ -"]),
    ("bad eval difficulty", "data.eval", [10, 0], ["data.eval[1]", "0", ">= 1"]),
]


def _write(tmp_path, doc):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc) if isinstance(doc, dict) else doc)
    return path


def test_good_file_expands_to_product_of_lists(tmp_path):
    path = _write(tmp_path, GOOD)
    sweep = parse_sweep(path)
    trials = sweep.trials()
    g = GOOD["grid"]
    expected = list(itertools.product(g["model"], g["depth"], g["width"], GOOD["seeds"]))
    assert sorted((t.model, t.depth, t.width, t.seed) for t in trials) == sorted(expected)
    assert {t.max_iters for t in trials} == {(d - 4) // 4 for d in g["depth"]}


def test_seed_order_runs_every_point_per_seed_same_trials(tmp_path):
    by_point = parse_sweep(_write(tmp_path, GOOD)).trials()
    by_seed = parse_sweep(_write(tmp_path, {**GOOD, "order": "seed"})).trials()
    points = list(dict.fromkeys((t.model, t.depth) for t in by_point))      # the grid's order
    assert len(points) == 4
    assert [(t.model, t.depth, t.seed) for t in by_point] == [(*p, s) for p in points for s in GOOD["seeds"]]
    assert [(t.model, t.depth, t.seed) for t in by_seed] == [(*p, s) for s in GOOD["seeds"] for p in points]
    assert sorted(map(repr, by_point)) == sorted(map(repr, by_seed))


def test_bad_order_names_the_choices(tmp_path):
    path = _write(tmp_path, {**GOOD, "order": "seeds"})
    with pytest.raises(ConfigError, match=r"key 'order'.*found 'seeds'.*'point'.*'seed'"):
        parse_sweep(path)


@pytest.mark.parametrize("case_id,key,value,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_file_fails_fast_naming_file_key_found_allowed(tmp_path, case_id, key, value, needles):
    path = _write(tmp_path, _set(GOOD, key, value))
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        parse_sweep(path)
    assert time.perf_counter() - t0 < 3.0
    msg = str(info.value)
    assert str(path) in msg, msg
    for needle in needles:
        assert needle in msg, f"{case_id}: {needle!r} not in {msg!r}"


def test_yaml_syntax_error_names_the_line(tmp_path):
    text = yaml.safe_dump(GOOD, sort_keys=False).splitlines()
    bad_line = len(text) + 1
    text.append("seeds: [0, 1")          # unclosed flow sequence on the last line
    path = _write(tmp_path, "\n".join(text) + "\n")
    with pytest.raises(ConfigError) as info:
        parse_sweep(path)
    msg = str(info.value)
    assert str(path) in msg and "YAML syntax error" in msg
    line = int(msg.split("line ")[1].split(",")[0])
    assert bad_line <= line <= bad_line + 1, msg


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        parse_sweep(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name,key,value,needles", [
    ("grid over an unrecorded key", "grid.optimizer", ["adam", "sgd"], ["grid.optimizer", "unknown key"]),
    ("repeated grid value", "grid.width", [8, 8], ["grid.width", "distinct values"]),
    ("more strings than exist", "data.count", 300, ["data.count", "300", "distinct strings of 8 bits"]),
    ("negative data seed", "data.seed", -1, ["data.seed", ">= 0"]),
])
def test_more_bad_files(tmp_path, name, key, value, needles):
    from deepthink.config import ConfigError, parse_sweep
    doc = {"name": "t", "task": "prefix_sums", "data": {"train": 8, "eval": [10], "count": 200},
           "grid": {"model": ["dt_net"], "max_iters": [2], "width": [8]}}
    section, _, field = key.partition(".")
    doc[section][field] = value
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as e:
        parse_sweep(f)
    for n in needles:
        assert n in str(e.value), (name, str(e.value))


def test_partial_data_mapping_takes_the_task_defaults(tmp_path):
    from deepthink.config import parse_sweep
    from deepthink.tasks import get_task
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"name": "t", "task": "mazes", "data": {"count": 10},
                                 "grid": {"model": ["dt_net"], "max_iters": [2], "width": [8]}}))
    s = parse_sweep(f)
    assert s.data.train == get_task("mazes").default_data()["train"] and s.data.count == 10
