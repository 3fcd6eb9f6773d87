"""Maze data: every maze is checked from its IMAGE alone by an oracle written independently of the
generator (decode the 2x2 blocks, check the colours, check the open pixels form a tree, BFS from
green to red and compare the path with the solution mask), after loading through the real
easy_to_hard_data.MazeDataset."""
import hashlib
import multiprocessing as mp
from collections import deque

import numpy as np
import pytest
import torch

from deepthink.cli import main
from deepthink.tasks import storage
from deepthink.tasks import get_task
from deepthink.tasks.storage import DataError

TASK = get_task("mazes")
WALL, OPEN, START, GOAL = (0, 0, 0), (1, 1, 1), (0, 1, 0), (1, 0, 0)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_maze(img: np.ndarray, sol: np.ndarray, size: int) -> None:
    """Oracle: from the (3, H, W) image and (H, W) mask alone, assert the published maze layout."""
    H = 2 * size + 6
    assert img.shape == (3, H, H) and sol.shape == (H, H)
    for a in (img, sol[None]):                              # 1-pixel black border
        assert not a[:, 0].any() and not a[:, -1].any() and not a[:, :, 0].any() and not a[:, :, -1].any()
    blocks = []
    for a in (img[:, 1:-1, 1:-1], sol[None, 1:-1, 1:-1]):   # every grid pixel is a uniform 2x2 block
        tl = a[:, 0::2, 0::2]
        for dy, dx in ((0, 1), (1, 0), (1, 1)):
            np.testing.assert_array_equal(a[:, dy::2, dx::2], tl)
        blocks.append(tl)
    grid, path_px = blocks[0], blocks[1][0]                 # (3, G, G), (G, G)
    G = size + 2
    assert grid.shape == (3, G, G)
    kind = {}
    for r in range(G):
        for c in range(G):
            colour = tuple(int(v) for v in grid[:, r, c])
            assert grid[:, r, c].tolist() == list(colour), "colours must be exactly 0 or 1"
            assert colour in (WALL, OPEN, START, GOAL), f"unexpected colour {colour} at {(r, c)}"
            kind[r, c] = colour
    starts = [p for p, k in kind.items() if k == START]
    goals = [p for p, k in kind.items() if k == GOAL]
    assert len(starts) == 1 and len(goals) == 1, "exactly one green and one red block"
    start, goal = starts[0], goals[0]
    assert start != goal
    opened = {p for p, k in kind.items() if k != WALL}
    for r in range(G):                                      # outer wall, cells open, corners walls
        for c in range(G):
            if r in (0, G - 1) or c in (0, G - 1) or (r % 2 == 0 and c % 2 == 0):
                assert (r, c) not in opened, f"{(r, c)} must be a wall"
            if r % 2 == 1 and c % 2 == 1:
                assert (r, c) in opened, f"cell {(r, c)} must be open"
    assert start[0] % 2 == start[1] % 2 == 1 and goal[0] % 2 == goal[1] % 2 == 1
    # perfect maze: the open pixels form a tree (connected, |E| = |V| - 1)
    edges = sum(((r + 1, c) in opened) + ((r, c + 1) in opened) for r, c in opened)
    assert edges == len(opened) - 1, f"open pixels must form a tree: {edges} edges, {len(opened)} nodes"
    parent = {start: None}
    q = deque([start])
    while q:
        r, c = q.popleft()
        for nxt in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if nxt in opened and nxt not in parent:
                parent[nxt] = (r, c)
                q.append(nxt)
    assert len(parent) == len(opened), "open pixels must be connected"
    expect = np.zeros((G, G), sol.dtype)
    p = goal
    while p is not None:
        expect[p] = 1
        p = parent[p]
    np.testing.assert_array_equal(path_px, expect)


def _load(root, size, split):
    from easy_to_hard_data import MazeDataset
    ds = MazeDataset(str(root), train=(split == "train"), size=size, download=False)
    return ds.inputs, ds.targets


def test_task_attributes():
    assert (TASK.name, TASK.dims, TASK.in_channels, TASK.num_classes) == ("mazes", 2, 3, 2)
    assert TASK.reference_width == 128 and TASK.cli_name == "mazes"
    d = TASK.default_data()
    assert all(TASK.check_difficulty(s) is None for s in [d["train"], *d["eval"]]) and d["count"] > 0


def test_cli_writes_published_layout_and_oracle_holds(data_root):
    assert main(["data", "mazes", "--sizes", "5", "9", "13", "--split", "test", "--count", "40",
                 "--data-root", str(data_root)]) == 0
    for n, side in ((5, 16), (9, 24), (13, 32)):
        folder = data_root / f"maze_data_test_{n}"
        assert sorted(p.name for p in folder.iterdir()) == ["inputs.npy", "solutions.npy"]
        assert np.load(folder / "inputs.npy").dtype == np.float32
        x, y = _load(data_root, n, "test")                  # the real easy_to_hard_data class
        assert x.shape == (40, 3, side, side) and y.shape == (40, side, side)
        assert x.dtype == torch.float32 and y.dtype == torch.long
        for i in range(40):
            check_maze(x[i].numpy(), y[i].numpy(), n)


@pytest.mark.parametrize("size,count", [(59, 3), (101, 1)])
def test_large_sizes_oracle(data_root, size, count):
    TASK.generate(data_root, size, "test", count, seed=0)
    x, y = _load(data_root, size, "test")
    assert x.shape == (count, 3, 2 * size + 6, 2 * size + 6)
    for i in range(count):
        check_maze(x[i].numpy(), y[i].numpy(), size)


def test_mazes_vary(data_root):
    TASK.generate(data_root, 9, "train", 300, seed=0)
    x, y = _load(data_root, 9, "train")
    assert len({m.numpy().tobytes() for m in x}) == 300
    grid = x[:, :, 1:-1:2, 1:-1:2]                          # (N, 3, 11, 11)
    start_at = (grid[:, 1] * (1 - grid[:, 0])).flatten(1).argmax(1)
    goal_at = (grid[:, 0] * (1 - grid[:, 1])).flatten(1).argmax(1)
    assert len(set(start_at.tolist())) == 25 and len(set(goal_at.tolist())) == 25  # all 5x5 cells used
    lengths = y.flatten(1).sum(1) // 4
    assert lengths.min() >= 3 and lengths.max() > 15        # path pixels vary (neighbours .. long walks)


def test_same_seed_same_bytes_different_seed_split_different(tmp_path):
    for name, split, seed in (("a", "train", 0), ("b", "train", 0), ("c", "train", 1), ("d", "test", 0)):
        TASK.generate(tmp_path / name, 9, split, 50, seed=seed)
    f = {k: tmp_path / k / f"maze_data_{s}_9" for k, s in (("a", "train"), ("b", "train"), ("c", "train"), ("d", "test"))}
    for name in ("inputs.npy", "solutions.npy"):
        assert _digest(f["a"] / name) == _digest(f["b"] / name)
    a = np.load(f["a"] / "inputs.npy")
    assert not np.array_equal(a, np.load(f["c"] / "inputs.npy"))
    assert not np.array_equal(a, np.load(f["d"] / "inputs.npy"))


def test_load_generates_on_demand_and_regenerates_a_smaller_set(data_root):
    x, y = storage.load(TASK, data_root, 7, "train", 20, seed=0)
    assert x.shape == (20, 3, 20, 20) and x.dtype == torch.float32 and y.dtype == torch.long
    x10, y10 = storage.load(TASK, data_root, 7, "train", 10, seed=0)
    assert torch.equal(x10, x[:10]) and torch.equal(y10, y[:10])
    x50, _ = storage.load(TASK, data_root, 7, "train", 50, seed=0)   # only 20 exist: the 50 asked are made
    assert x50.shape[0] == 50


def _race(root, barrier):
    barrier.wait()
    x, _ = storage.load(TASK, root, 9, "test", 3000, seed=0)
    assert x.shape[0] == 3000


def test_concurrent_generation_yields_intact_files(tmp_path):
    # spawn, not fork: a fork after torch has started its thread pool can deadlock the child
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_race, args=(shared, barrier)) for _ in range(2)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    TASK.generate(alone, 9, "test", 3000, seed=0)
    for name in ("inputs.npy", "solutions.npy"):
        assert _digest(shared / "maze_data_test_9" / name) == _digest(alone / "maze_data_test_9" / name)
    assert sorted(p.name for p in shared.iterdir() if not p.name.endswith(".lock")) == [
        ".maze_data_test_9.deepthink.json", "maze_data_test_9"]     # no temporary leftovers


def test_masks_metric_and_confidence(data_root):
    x, y = storage.load(TASK, data_root, 5, "test", 8, seed=3)
    mask = TASK.loss_mask(x)
    assert mask.shape == y.shape and mask.dtype == torch.bool
    assert torch.equal(mask, x.sum(1) > 0)                 # non-wall = any lit channel
    logits = torch.nn.functional.one_hot(y, 2).permute(0, 3, 1, 2).float() * 5  # (B, 2, H, W)
    assert TASK.correct(logits, x, y).all()
    wall = logits.clone()
    wall[:, :, 0, 0] = torch.tensor([0.0, 5.0])[None]        # wrong on the border: ignored
    assert TASK.correct(wall, x, y).all()
    r, c = torch.nonzero(~y[0].bool() & mask[0])[0]
    bad = logits.clone()
    bad[0, :, r, c] = torch.tensor([0.0, 5.0])                # wrong on an open pixel: sample 0 fails
    assert TASK.correct(bad, x, y).tolist() == [False] + [True] * 7
    conf = TASK.confidence(logits, x)
    assert conf.shape == (8,) and torch.allclose(conf, torch.full((8,), 1 / (1 + np.exp(-5))))


@pytest.mark.parametrize("argv,words", [
    (["--sizes", "9", "10"], ["--sizes 10", "odd"]),
    (["--sizes", "3"], ["--sizes 3", ">= 5"]),
    (["--sizes", "9", "--count", "0"], ["--count", "positive"]),
    (["--sizes", "9", "--seed", "-1"], ["--seed", "non-negative"]),
])
def test_cli_errors_name_the_option(data_root, capsys, argv, words):
    assert main(["data", "mazes", *argv, "--data-root", str(data_root)]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not any(data_root.iterdir()), "nothing is written on a bad command"


def test_difficulty_and_generate_errors(data_root):
    assert TASK.check_difficulty(9) is None and TASK.check_difficulty(201) is None
    for bad in (8, 3, 1, -9, True, 9.0, "9"):
        assert "odd maze size >= 5" in TASK.check_difficulty(bad)
    # one check of a request (deepthink/tasks/options.py) for the CLI and on-demand generation alike
    with pytest.raises(DataError, match="size 12: expected an odd maze size"):
        storage.produce(TASK, data_root, 12, "train", 5, seed=0)
    with pytest.raises(DataError, match="--count must be a positive integer"):
        storage.produce(TASK, data_root, 9, "train", 0, seed=0)
    assert main(["data", "mazes", "--sizes", "9", "12", "--data-root", str(data_root)]) == 2
    with pytest.raises(ValueError, match="split"):
        TASK.generate(data_root, 9, "val", 5, seed=0)


def test_missing_files_name_the_command(data_root):
    with pytest.raises(DataError, match=r"deepthink data mazes --sizes 11 --split test"):
        TASK.load_raw(data_root, 11, "test", 10, download=False)
