"""Prefix sums data: oracle = numpy cumsum mod 2, computed independently of the generator."""
import hashlib
import multiprocessing as mp

import numpy as np
import pytest
import torch

from deepthink.cli import main
from deepthink.config import DataConfig
from deepthink.tasks import storage
from deepthink.tasks import get_task
from deepthink.tasks.prefix_sums import distinct_bit_strings

TASK = get_task("prefix_sums")


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_writes_published_layout_and_oracle_holds(data_root):
    assert main(["data", "prefix-sums", "--bits", "16", "32", "48", "--count", "300", "--data-root", str(data_root)]) == 0
    for n in (16, 32, 48):
        x = torch.load(data_root / "prefix_sums_data" / f"{n}_data.pth", weights_only=True)
        y = torch.load(data_root / "prefix_sums_data" / f"{n}_targets.pth", weights_only=True)
        assert x.shape == y.shape == (300, n) and x.is_floating_point()
        xs = x.numpy().astype(np.int64)
        assert set(np.unique(xs)) <= {0, 1}
        np.testing.assert_array_equal(y.numpy(), np.cumsum(xs, axis=1) % 2)
        assert len({row.tobytes() for row in xs}) == 300, "strings within a length must be distinct"


def test_loads_through_easy_to_hard_data(data_root):
    from easy_to_hard_data import PrefixSumDataset
    TASK.generate(data_root, 24, "train", 100, seed=0)
    ds = PrefixSumDataset(str(data_root), num_bits=24, download=False)
    assert ds.inputs.shape == (100, 1, 24)
    assert set(ds.inputs.unique().tolist()) == {-0.5, 0.5}
    bits = (ds.inputs[:, 0] + 0.5).long()
    assert torch.equal(ds.targets, bits.cumsum(1) % 2)


def test_same_seed_same_bytes_different_seed_different(tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        TASK.generate(tmp_path / name, 40, "train", 200, seed=seed)
    f = "prefix_sums_data/40_data.pth"
    x = {k: torch.load(tmp_path / k / f, weights_only=True) for k in "abc"}
    assert torch.equal(x["a"], x["b"])
    assert not torch.equal(x["a"], x["c"])


@pytest.mark.parametrize("n,count", [(4, 16), (10, 1000), (20, 5000), (70, 300)])
def test_distinct_strings_edge_cases(n, count):
    s = distinct_bit_strings(n, count, np.random.default_rng(0))
    assert s.shape == (count, n)
    assert len({r.tobytes() for r in s}) == count


def test_count_larger_than_space_is_an_error(data_root, capsys):
    assert main(["data", "prefix-sums", "--bits", "4", "--count", "17", "--data-root", str(data_root)]) == 2
    err = capsys.readouterr().err
    assert "16 distinct strings of 4 bits" in err and "--count" in err


@pytest.mark.parametrize("argv,needle", [
    (["--bits", "8", "--count", "0"], "--count"),
    (["--bits", "0"], "--bits"),
])
def test_bad_options(data_root, capsys, argv, needle):
    assert main(["data", "prefix-sums", *argv, "--data-root", str(data_root)]) == 2
    assert needle in capsys.readouterr().err


def test_unwritable_data_root(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os
        if os.access(ro, os.W_OK):   # root ignores permissions: use a path under a regular file
            target = tmp_path / "file"
            target.write_text("x")
            root = target / "data"
        else:
            root = ro / "data"
        assert main(["data", "prefix-sums", "--bits", "8", "--count", "10", "--data-root", str(root)]) == 2
        assert "data root" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


def test_splits_generate_missing_data_on_demand(data_root):
    splits = TASK.splits(DataConfig(train=12, eval=[16, 20], count=500), data_root)
    assert [(s.split, s.difficulty, len(s)) for s in splits] == [
        ("train", 12, 400), ("val", 12, 100), ("test", 16, 500), ("test", 20, 500)]
    tr, va = splits[0], splits[1]
    seen = {r.numpy().tobytes() for r in tr.inputs}
    assert not any(r.numpy().tobytes() in seen for r in va.inputs), "val must not overlap train"


def _gen(root):
    storage.ensure(TASK, root, 64, "train", 3000, seed=0)


def test_concurrent_generation_does_not_corrupt(data_root):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_gen, args=(data_root,)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    x = torch.load(data_root / "prefix_sums_data/64_data.pth", weights_only=True)
    y = torch.load(data_root / "prefix_sums_data/64_targets.pth", weights_only=True)
    assert x.shape == (3000, 64)
    np.testing.assert_array_equal(y.numpy(), np.cumsum(x.numpy(), axis=1) % 2)
    assert not list((data_root / "prefix_sums_data").glob(".*tmp")), "temporary files left behind"


def test_published_source_unreachable_is_a_clear_error(data_root, monkeypatch):
    import urllib.request
    from deepthink.tasks.storage import DataError

    def refuse(*a, **k):
        raise urllib.error.URLError("no route to host")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(DataError, match="data.source: generated"):
        storage.load(TASK, data_root, 32, "train", 10, 0, source="published")


def test_same_seed_same_file_bytes(tmp_path):
    for name in ("a", "b"):
        TASK.generate(tmp_path / name, 20, "train", 100, seed=3)
    for f in ("20_data.pth", "20_targets.pth"):
        assert _digest(tmp_path / "a/prefix_sums_data" / f) == _digest(tmp_path / "b/prefix_sums_data" / f)


def test_train_count_sizes_the_training_set_only(data_root):
    splits = TASK.splits(DataConfig(train=12, eval=[16], count=100, train_count=300), data_root)
    assert [(s.split, len(s)) for s in splits] == [("train", 240), ("val", 60), ("test", 100)]
