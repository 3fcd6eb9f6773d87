"""Contract tests over the task registry: every registered task is covered without new test code.

Data comes from each task's own generator at tiny difficulties; a task that cannot generate (chess
converts a Lichess export) is fed the committed real-puzzle fixture through its CLI."""
from pathlib import Path

import pytest
import torch

from deepthink.cli import main
from deepthink.config import DataConfig
from deepthink.tasks import storage
from deepthink.tasks import TASKS, get_task
from deepthink.tasks.storage import DataError

FIXTURE_CSV = Path(__file__).parent / "fixtures" / "lichess_sample.csv"


def tiny_data(task, root: Path) -> DataConfig:
    """A small DataConfig for `task` whose files exist under root."""
    smallest = next(d for d in range(8, 1000) if task.check_difficulty(d) is None)
    harder = next(d for d in range(smallest + 1, 1000) if task.check_difficulty(d) is None)
    try:
        storage.produce(task, root, smallest, "train", 40, seed=0)
    except DataError:   # not generatable: convert the committed real data instead
        assert main(["data", task.cli_name, "--csv", str(FIXTURE_CSV), "--data-root", str(root)]) == 0
        return DataConfig(train=0, eval=[200], count=40)
    return DataConfig(train=smallest, eval=[harder], count=40)


@pytest.fixture(params=sorted(TASKS))
def task(request):
    return get_task(request.param)


def test_unknown_task_names_the_registry():
    with pytest.raises(KeyError, match="registered tasks"):
        get_task("sudoku")


def test_splits_have_the_declared_shapes(task, data_root):
    data = tiny_data(task, data_root)
    splits = task.splits(data, data_root)
    assert [s.split for s in splits] == ["train", "val"] + ["test"] * len(data.eval)
    for s in splits:
        assert s.inputs.dtype == torch.float32 and s.targets.dtype == torch.long
        assert s.inputs.dim() == 2 + task.dims and s.inputs.shape[1] == task.in_channels
        assert s.targets.shape == (s.inputs.shape[0], *s.inputs.shape[2:])
        assert int(s.targets.min()) >= 0 and int(s.targets.max()) < task.num_classes
    assert len(splits[0]) + len(splits[1]) == data.count


def test_metric_accepts_the_truth_and_rejects_one_wrong_position(task, data_root):
    s = task.splits(tiny_data(task, data_root), data_root)[-1]
    x, y = s.inputs[:8], s.targets[:8]
    logits = torch.nn.functional.one_hot(y, task.num_classes).movedim(-1, 1).float() * 4.0  # (B, 2, *S)
    assert task.correct(logits, x, y).all()
    conf = task.confidence(logits, x)
    assert conf.shape == (8,) and bool(((conf > 0) & (conf <= 1)).all())
    mask = task.loss_mask(x)
    if mask is not None:
        assert mask.shape == y.shape and mask.dtype == torch.bool
    counted = mask[0] if mask is not None else torch.ones_like(y[0], dtype=torch.bool)
    # a counted position whose answer is class 1 (for chess, one of the two move squares)
    pos = tuple((counted & (y[0] == 1)).nonzero()[0].tolist())
    wrong = logits.clone()
    wrong[(0, slice(None)) + pos] = wrong[(0, slice(None)) + pos].flip(0)
    got = task.correct(wrong, x, y)
    assert not got[0] and got[1:].all()


def test_default_data_is_valid(task):
    d = DataConfig(**task.default_data())
    for diff in [d.train, *d.eval]:
        assert task.check_difficulty(diff) is None
    assert task.check_difficulty(-1) is not None


def test_load_gives_exactly_count_examples_and_regenerates_a_smaller_set(task, data_root, capsys):
    data = tiny_data(task, data_root)                  # files with data.count examples (or more)
    x, _ = storage.load(task, data_root, data.train, "train", data.count - 5, data.seed)
    assert x.shape[0] == data.count - 5                # more on disk than asked: the first `count`
    x, _ = storage.load(task, data_root, data.train, "train", data.count + 10, data.seed)
    assert x.shape[0] == data.count + 10               # fewer on disk than asked: never silently less
    try:
        task.generate(data_root, data.train, "train", 1, data.seed)
    except DataError:
        return                                         # converted data (chess): nothing to regenerate
    assert "asked: generating" in capsys.readouterr().err


def test_a_new_data_seed_regenerates_instead_of_reusing_files(task, data_root, capsys):
    data = tiny_data(task, data_root)
    if task.meta_path(data_root, data.train, "train") is None:
        pytest.skip(f"{task.name} data is converted, not generated: no seed to record")
    x0, _ = storage.load(task, data_root, data.train, "train", data.count, seed=0)
    x1, _ = storage.load(task, data_root, data.train, "train", data.count, seed=1)
    assert "generated with seed 0, seed 1 asked" in capsys.readouterr().err
    assert not torch.equal(x0, x1)
    x1b, _ = storage.load(task, data_root, data.train, "train", data.count, seed=1)   # now recorded: reused
    assert torch.equal(x1, x1b) and "asked" not in capsys.readouterr().err


def test_nothing_is_written_outside_the_data_root(task, tmp_path):
    """Generating and loading write files, records and locks only under the data root (its parent
    may be a read-only or shared directory)."""
    root = tmp_path / "parent" / "root"
    data = tiny_data(task, root)
    storage.load(task, root, data.train, "train", data.count, data.seed)
    assert sorted(p.name for p in (tmp_path / "parent").iterdir()) == ["root"]


def test_a_task_with_more_classes_needs_no_change_outside_its_module(tmp_path, monkeypatch):
    """num_classes reaches the model's head through task.model_io(); loss, metric and confidence
    read the class axis generically. A 3-class variant of prefix sums (targets 0..2) trains."""
    from deepthink.config import TrialConfig, TrainConfig, TestConfig as EvalConfig
    from deepthink.models import build_model
    from deepthink.tasks import Split
    from deepthink.train import run_trial
    task = get_task("prefix_sums")
    monkeypatch.setattr(type(task), "num_classes", 3)
    g = torch.Generator().manual_seed(0)

    def synthetic(data, root, split_seed=0):
        x = torch.rand((20, 1, 8), generator=g).round()                    # (N, C, L)
        return [Split(s, 8, x, torch.randint(0, 3, (20, 8), generator=g)) for s in ("train", "val", "test")]
    monkeypatch.setattr(task, "splits", synthetic)
    cfg = TrialConfig(sweep="t", task="prefix_sums", model="dt_net", width=8, max_iters=2, depth=12, seed=0,
                      data=DataConfig(train=8, eval=[8], count=20), test=EvalConfig(iterations=2),
                      train=TrainConfig(epochs=1, batch_size=10, precision="fp32"))
    out = run_trial(cfg, tmp_path, trial_id="c3", checkpoint_dir=tmp_path / "c", log=lambda m: None)
    assert out.status == "ok" and len(out.rows) == 3 * 2       # a 2-class head would fail the loss
    net = build_model("dt_net", width=8, max_iters=2, **task.model_io())
    assert net(torch.zeros(2, 1, 8), 1).logits.shape == (2, 3, 8)
