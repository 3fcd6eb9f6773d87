"""`search:` and `scheduler:` sections and `--set` lists, without Ray (issue 12 parts 3 and 4).

Bad files fail before Ray with the file, the key and the fix; a random search is a fixed,
reproducible list of trials (num_samples x seeds); the dry run describes the space and the
early stopping; an Optuna search without Optuna installed is one line naming the fix; `--set`
takes lists for grid keys and exponent floats.
"""
import copy
import re
import subprocess
import sys

import pytest
import yaml

from deepthink.cli import main
from deepthink.config import ConfigError, parse_sweep
from deepthink.trial import trial_from_tune

BASE = {
    "name": "srch", "task": "prefix_sums",
    "data": {"train": 8, "eval": [10], "count": 200},
    "grid": {"model": ["dt_recall"], "max_iters": [2]},
    "seeds": [0, 1],
    "train": {"epochs": 4, "batch_size": 50},
    "test": {"iterations": 3},
    "search": {"num_samples": 5, "seed": 0, "space": {
        "train.lr": {"loguniform": [1.0e-4, 1.0e-2]},
        "train.alpha": {"uniform": [0.0, 1.0]},
        "width": {"choice": [8, 16, 32]},
    }},
    "storage": "/tmp/deepthink-search-test-results",
}


def write(tmp_path, doc, name="s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def changed(**edits):
    """BASE with edits: 'a.b.c' -> value (None deletes the key). Dots inside search keys are
    written with '|' as the separator instead (search|space|train.lr)."""
    doc = copy.deepcopy(BASE)
    for dotted, value in edits.items():
        *parents, last = dotted.split("|") if "|" in dotted else dotted.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return doc


# (case, edits, substrings of the one-line error: key, found, fix)
BAD = [
    ("unknown distribution", {"search|space|train.lr": {"normal": [0, 1]}},
     ["key 'search.space.train.lr.normal'", "'normal'", "['choice', 'loguniform', 'uniform'] (unknown key)"]),
    ("two distributions", {"search|space|train.lr": {"uniform": [0.1, 1], "choice": [1]}},
     ["key 'search.space.train.lr'", "exactly one of ['uniform', 'loguniform', 'choice']"]),
    ("low >= high", {"search|space|train.lr": {"loguniform": [1.0e-2, 1.0e-4]}},
     ["key 'search.space.train.lr.loguniform'", "[0.01, 0.0001]", "low < high"]),
    ("low == high", {"search|space|train.alpha": {"uniform": [0.5, 0.5]}},
     ["key 'search.space.train.alpha.uniform'", "low < high"]),
    ("log with low 0", {"search|space|train.lr": {"loguniform": [0, 1.0e-2]}},
     ["key 'search.space.train.lr.loguniform'", "0 < low < high", "use uniform to include 0"]),
    ("log with low < 0", {"search|space|train.weight_decay": {"loguniform": [-1, 1]}},
     ["key 'search.space.train.weight_decay.loguniform'", "0 < low < high"]),
    ("one bound", {"search|space|train.lr": {"uniform": [0.1]}},
     ["key 'search.space.train.lr.uniform'", "[0.1]", "[low, high]"]),
    ("bound outside the key's range", {"search|space|train.alpha": {"uniform": [0, 2]}},
     ["key 'search.space.train.alpha.uniform[1]'", "2.0", "a number in [0, 1]"]),
    ("lr bound not positive", {"search|space|train.lr": {"uniform": [0, 0.1]}},
     ["key 'search.space.train.lr.uniform[0]'", "a positive number"]),
    ("integer key, fractional bound", {"search|space|width": {"uniform": [8.5, 32]}},
     ["key 'search.space.width.uniform'", "integer bounds (width is an integer)"]),
    ("choice value of the wrong type", {"search|space|width": {"choice": [8, "wide"]}},
     ["key 'search.space.width.choice[1]'", "'wide'", "an integer"]),
    ("repeated choice", {"search|space|width": {"choice": [8, 8]}},
     ["key 'search.space.width.choice'", "distinct values"]),
    ("unknown model in choice", {"grid.model": None, "search|space|model": {"choice": ["dt_net", "gpt"]}},
     ["key 'search.space.model.choice[1]'", "'gpt'", "dt_recall"]),
    ("model takes choice only", {"grid.model": None, "search|space|model": {"uniform": [1, 2]}},
     ["key 'search.space.model'", "{choice: [...]}: model takes listed values only"]),
    ("key not searchable", {"search|space|train.clip": {"uniform": [0.1, 1]}},
     ["key 'search.space.train.clip'", "'train.clip'", "'train.weight_decay'",
      "only keys that the results record as columns can be searched"]),
    ("key in grid and search", {"grid.width": [8, 16]},
     ["key 'search.space.width'", "grid.width lists width too; remove it from one of them"]),
    ("train key in grid and search", {"grid.lr": [0.001]},
     ["key 'search.space.train.lr'", "grid.lr lists train.lr too"]),
    ("depth and max_iters", {"search|space|depth": {"choice": [8, 12]}},
     ["key 'search.space'", "only one of depth or max_iters"]),
    ("num_samples 0", {"search.num_samples": 0}, ["key 'search.num_samples'", "an integer >= 1"]),
    ("no space", {"search|space": None}, ["key 'search.space'", "this key to be present"]),
    ("unknown search key", {"search.samples": 3}, ["key 'search.samples'", "'num_samples'", "unknown key"]),
    ("unknown algorithm", {"search.algorithm": "grid"}, ["key 'search.algorithm'", "'optuna'"]),
    ("optuna with a grid of several values", {"search.algorithm": "optuna", "grid.max_iters": [2, 4]},
     ["key 'grid.max_iters'", "one value with search.algorithm optuna",
      "search.space.max_iters: {choice: [2, 4]}"]),
    ("seed order with optuna", {"search.algorithm": "optuna", "order": "seed"},
     ["key 'order'", "found 'seed'", "'point' with search.algorithm optuna", "leave order out"]),
    ("search mode against its metric", {"search.metric": "loss", "search.mode": "max"},
     ["key 'search.mode'", "'min' for loss (lower is better), or leave mode out"]),
    ("no width anywhere", {"search|space|width": None},
     ["key 'grid.width'", "this key to be present", "(or search.space.width)"]),
    ("scheduler mode against its metric", {"scheduler": {"metric": "val_acc", "mode": "min"}},
     ["key 'scheduler.mode'", "'max' for val_acc (higher is better)"]),
    ("grace period beyond max_t", {"scheduler": {"grace_period": 5}},
     ["key 'scheduler.grace_period'", "found 5", "at most max_t (4 epochs, the trials train.epochs)"]),
    ("reduction factor 1", {"scheduler": {"reduction_factor": 1}},
     ["key 'scheduler.reduction_factor'", "a number > 1"]),
    ("unknown scheduler", {"scheduler": {"type": "pbt"}}, ["key 'scheduler.type'", "'asha'"]),
    ("unknown scheduler metric", {"scheduler": {"metric": "test_acc"}},
     ["key 'scheduler.metric'", "'val_acc'", "'loss'"]),
]


@pytest.mark.parametrize("edits,expected", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_search_or_scheduler_fails_naming_file_key_and_fix(tmp_path, edits, expected):
    path = write(tmp_path, changed(**edits))
    with pytest.raises(ConfigError) as e:
        parse_sweep(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: key ") and "(line " in msg, msg
    for part in expected:
        assert part in msg, f"{part!r} not in: {msg}"


def test_random_search_is_num_samples_x_seeds_reproducible_trials(tmp_path):
    sweep = parse_sweep(write(tmp_path, BASE))
    trials = sweep.trials()
    assert len(trials) == sweep.n_trials() == 5 * 2
    configs = [(t.train.lr, t.train.alpha, t.width) for t in trials]
    assert [t.seed for t in trials] == [0, 1] * 5
    assert configs[0::2] == configs[1::2], "each sample is trained with every seed"
    assert len(set(configs)) == 5
    for lr, alpha, width in configs:
        assert 1e-4 <= lr <= 1e-2 and 0 <= alpha <= 1 and width in (8, 16, 32) and isinstance(width, int)
    assert all(t.model == "dt_recall" and t.max_iters == 2 for t in trials)
    # the same file gives the same trials; more samples keep the first ones; another seed differs
    assert [t.to_dict() for t in parse_sweep(write(tmp_path, BASE, "again.yaml")).trials()] == \
        [t.to_dict() for t in trials]
    more = parse_sweep(write(tmp_path, changed(**{"search.num_samples": 8}), "more.yaml")).trials()
    assert [t.to_dict() for t in more[:10]] == [t.to_dict() for t in trials] and len(more) == 16
    other = parse_sweep(write(tmp_path, changed(**{"search.seed": 1}), "other.yaml")).trials()
    assert [(t.train.lr, t.train.alpha) for t in other] != [(t.train.lr, t.train.alpha) for t in trials]


def test_integer_keys_draw_integers_in_bounds_and_grids_cross_samples(tmp_path):
    doc = changed(**{"grid.max_iters": None, "search|space|max_iters": {"uniform": [2, 5]},
                     "search|space|width": {"loguniform": [4, 64]}, "grid.model": ["dt_recall", "ff_net"],
                     "search.num_samples": 40, "seeds": [0]})
    sweep = parse_sweep(write(tmp_path, doc))
    trials = sweep.trials()
    iters = {t.max_iters for t in trials}
    assert iters == {2, 3, 4, 5}, iters
    assert all(isinstance(t.width, int) and 4 <= t.width <= 64 for t in trials)
    # ff_net cannot use alpha: its trials train and record 0 (like a grid's), and repeats are dropped
    assert {t.train.alpha for t in trials if t.model == "ff_net"} == {0.0}
    assert sweep.grid_size() == 2 * 40 * 1 and len(trials) <= 80


def test_dry_run_describes_space_scheduler_and_count_without_ray(tmp_path):
    doc = changed(scheduler={"metric": "val_acc", "grace_period": 1, "reduction_factor": 2})
    path = write(tmp_path, doc)
    code = ("import sys; from deepthink.cli import main; rc = main(['sweep', sys.argv[1], '--dry-run']); "
            "assert 'ray' not in sys.modules, 'dry run imported ray'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "trials: 10 (1 model x 1 max_iters x 5 samples x 2 seeds)" in out
    assert "search: random, 5 samples x 2 seeds = 10 trials" in out and "search seed 0" in out
    assert re.search(r"train\.lr +log-uniform in \[0\.0001, 0\.01\]", out)
    assert re.search(r"train\.alpha +uniform in \[0, 1\]", out)
    assert re.search(r"width +choice of \[8, 16, 32\]", out)
    assert "early stopping: ASHA on val_acc (max), rungs at epochs 1, 2, 4 (grace_period 1, reduction_factor 2, " \
           "max_t 4)" in out
    assert re.search(r"train\.lr +train\.alpha", out), "the trial table shows the sampled values"


def test_optuna_search_dry_run_and_missing_optuna_is_one_line(tmp_path, monkeypatch, capsys):
    doc = changed(**{"search.algorithm": "optuna", "search.num_samples": 4})
    path = write(tmp_path, doc)
    sweep = parse_sweep(path)
    assert sweep.trials() == [] and sweep.n_trials() == 8
    assert main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "search: optuna (Optuna's TPE through Ray Tune; search seed 0), 4 samples x 2 seeds = 8 trials" in out
    assert "the trials are proposed during the run" in out
    import deepthink.search
    monkeypatch.setattr(deepthink.search, "optuna_installed", lambda: False)
    assert main(["sweep", str(path), "--dry-run"]) == 0
    assert "warning: a real run here is refused" in capsys.readouterr().out
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "key 'search.algorithm': found 'optuna', but Optuna is not installed" in err
    assert "pip install 'deepthink[optuna]'" in err


def test_an_optuna_proposal_becomes_one_trial_per_seed(tmp_path):
    doc = changed(**{"search.algorithm": "optuna", "grid.model": None,
                     "search|space|model": {"choice": ["ff_net", "dt_recall"]}, "train.alpha": 0.5,
                     "seeds": [3, 7]})
    sweep = parse_sweep(write(tmp_path, doc))
    base = sweep.template().to_dict()
    sample = {"train.lr": 0.003, "width": 16, "model": "dt_recall", "train.alpha": 0.25}
    trials = [trial_from_tune({"trial": base, "seeds": [3, 7], "sample": sample, "__trial_index__": i})
              for i in (0, 1)]
    assert [t.seed for t in trials] == [3, 7]
    assert {(t.model, t.width, t.train.lr, t.train.alpha) for t in trials} == {("dt_recall", 16, 0.003, 0.25)}
    ff = trial_from_tune({"trial": base, "seeds": [3, 7], "sample": {**sample, "model": "ff_net"},
                          "__trial_index__": 1})
    assert ff.train.alpha == 0.0 and ff.seed == 7, "a model that cannot use alpha trains with 0"


def test_scheduler_rungs_follow_ray_asha():
    from ray.tune.schedulers.async_hyperband import _Bracket

    from deepthink.search import SchedulerConfig
    for grace, rf, max_t in [(1, 2, 4), (2, 3, 30), (1, 4, 100), (3, 2, 3), (2, 1.5, 10)]:
        ours = SchedulerConfig(grace_period=grace, reduction_factor=rf).rungs(max_t)
        theirs = sorted(m for m, _ in _Bracket(grace, max_t, rf, 0)._rungs)
        assert ours == theirs, (grace, rf, max_t)


# ---- --set: lists for grid keys, exponent floats -------------------------------------------------
GRID = {"name": "cli", "task": "prefix_sums", "data": {"train": 8, "eval": [10], "count": 200},
        "grid": {"model": ["dt_recall"], "max_iters": [2], "width": [8]}, "seeds": [0],
        "train": {"epochs": 1, "lr": 0.001}, "storage": "/tmp/deepthink-search-test-results"}

# (--set text, what the trials then have: (attribute path, values over the trials))
SET_OK = [
    ("width=[16,32]", "width", [16, 32]),
    ("width=[16, 32]", "width", [16, 32]),
    ("width=16,32", "width", [16, 32]),
    ("grid.width=[16,32]", "width", [16, 32]),
    ("width=64", "width", [64]),
    ("max_iters=[3,4]", "max_iters", [3, 4]),
    ("depth=[12,16]", "max_iters", [2, 3]),
    ("model=[dt_net, dt_recall]", "model", ["dt_net", "dt_recall"]),
    ("lr=[1e-3,1e-2]", "train.lr", [0.001, 0.01]),
    ("train.lr=[1e-3, 2.5E-4]", "train.lr", [0.001, 0.00025]),
    ("alpha=0,0.5", "train.alpha", [0.0, 0.5]),
    ("epochs=[1,2]", "train.epochs", [1, 2]),
    ("train.lr=1e-3", "train.lr", [0.001]),
    ("train.lr=1E-3", "train.lr", [0.001]),
    ("train.lr=2.5e-4", "train.lr", [0.00025]),
    ("train.lr=+3e-2", "train.lr", [0.03]),
    ("train.lr='1e-3'", "train.lr", [0.001]),
    ("train.weight_decay=5e-4", "train.weight_decay", [0.0005]),
    ("train.epochs=2", "train.epochs", [2]),
    ("seeds=[0,1]", "seed", [0, 1]),
]

SET_BAD = [
    ("width=[16,32", "expected a YAML list such as width=[16,32]"),
    ("width=[16.5]", "expected an integer"),
    ("train.lr=1e-3x", "expected a number"),
    ("train.lr=-1e-3", "expected a positive number"),
    ("train.weight_decay=[1e-3]", "expected a number"),
    ("width=0", "expected an integer >= 1"),
]


def _values(trials, attr):
    out = []
    for t in trials:
        v = t
        for part in attr.split("."):
            v = getattr(v, part)
        if v not in out:
            out.append(v)
    return out


@pytest.mark.parametrize("text,attr,values", SET_OK, ids=[c[0] for c in SET_OK])
def test_set_accepts_lists_for_grid_keys_and_exponent_floats(tmp_path, capsys, text, attr, values):
    path = write(tmp_path, GRID)
    from deepthink.configfile import split_assignment
    sweep = parse_sweep(path, dict([split_assignment(text)]))
    assert _values(sweep.trials(), attr) == values
    assert main(["sweep", str(path), "--dry-run", "--set", text]) == 0     # the real command line
    assert f"trials: {len(sweep.trials())} (" in capsys.readouterr().out


@pytest.mark.parametrize("text,expected", SET_BAD, ids=[c[0] for c in SET_BAD])
def test_set_rejects_with_the_key_and_what_was_expected(tmp_path, capsys, text, expected):
    path = write(tmp_path, GRID)
    assert main(["sweep", str(path), "--dry-run", "--set", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deepthink sweep: error: ") and len(err.strip().splitlines()) == 1, err
    assert expected in err and text.split("=")[0].split(".")[-1] in err, err
