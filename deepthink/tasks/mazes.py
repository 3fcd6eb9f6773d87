"""Mazes: given a maze image with a green start and a red goal, mark every pixel of the path (2D, 3 channels).

Files (easy-to-hard-data layout): maze_data_{train,test}_{size}/inputs.npy (N, 3, H, W) float32
and solutions.npy (N, H, W) float32 of 0/1, H = W = 2*size + 6. A maze of size n (odd, >= 5) has
(n+1)/2 cells a side; with its walls it is an (n+2) x (n+2) grid; every grid pixel becomes a 2x2
block and a 1-pixel black border goes around, as in the reference generator (make_mazes.py of
easy-to-hard-data). Walls black, open white, start green (0,1,0), goal red (1,0,0). Mazes are
perfect (randomized depth-first search rooted at the start cell), so the path is unique; start and
goal are distinct cells drawn uniformly. The package's MazeDataset loads them (`.float()`/`.long()`).

    deepthink data mazes --sizes 9 13 59 --split test --count 1000 --seed 0

Speed: the DFS runs in lockstep over a chunk of mazes with numpy (one vectorized step advances or
backtracks every unfinished maze), so the Python overhead is paid per step, not per maze and step.
See benchmarks/bench_mazes.py and docs/mazes.md for measured rates.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from deepthink.tasks import storage
from deepthink.tasks.base import Task, register
from deepthink.tasks.options import check_request
from deepthink.tasks.storage import DataError, e2h, write_dir_atomically

SPLITS = ("train", "test")
# CLI default counts: practical on a laptop. Published: 50,000 train / 10,000 test for sizes 9..17,
# 1,000 test for 19..37 and 59 (pass --count to match them).
DEFAULT_COUNT = {"train": 10000, "test": 1000}
_SPLIT_CODE = {"train": 0, "test": 1}
_SEED_TAG = 0x4D5A        # "MZ": keeps maze streams apart from other tasks' streams of the same seed
_CHUNK_CELLS = 4_000_000  # mazes per DFS chunk * cells per maze: bounds the DFS state (~60 MB)
_PIECE_PIXELS = 4_000_000  # mazes rendered at once * pixels per image: bounds images (~100 MB)


def size_problem(size) -> str | None:
    """None if `size` is a valid maze size, else what is allowed."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 5 or size % 2 == 0:
        return "an odd maze size >= 5 (e.g. 9, 13, 59, 201)"
    return None


def image_side(size: int) -> int:
    return 2 * size + 6


def folder(root: Path, size: int, split: str) -> Path:
    return Path(root) / f"maze_data_{split}_{size}"


def _neighbours(m: int) -> np.ndarray:
    """(m*m, 4) neighbour cell of each cell (W, E, N, S), -1 outside the maze."""
    r, c = np.divmod(np.arange(m * m), m)
    nb = np.stack([np.where(c > 0, r * m + c - 1, -1), np.where(c < m - 1, r * m + c + 1, -1),
                   np.where(r > 0, (r - 1) * m + c, -1), np.where(r < m - 1, (r + 1) * m + c, -1)], 1)
    return nb.astype(np.int64)


def carve(m: int, starts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Randomized DFS (recursive backtracker) from `starts` for B mazes of m x m cells at once.

    Returns open (B, G*G) uint8 of the (G = 2m+1)^2 grid with walls (1 = open), and parent
    (B, m*m) int32: the cell each cell was entered from (-1 at the root), i.e. the DFS tree."""
    B, N, G = len(starts), m * m, 2 * m + 1
    nb = _neighbours(m)                                   # (N, 4)
    nb_ok, nb_c = nb >= 0, np.maximum(nb, 0)
    r, c = np.divmod(np.arange(N), m)
    cellpos = (2 * r + 1) * G + 2 * c + 1                 # (N,) flat grid index of each cell
    grid = np.zeros((B, G * G), np.uint8)
    grid[:, cellpos] = 1                                  # every cell is open; passages get carved
    visited = np.zeros((B, N), bool)
    parent = np.full((B, N), -1, np.int32)
    stack = np.zeros((B, N), np.int32)
    sp = np.zeros(B, np.int64)
    cur = starts.astype(np.int64).copy()
    n_visited = np.ones(B, np.int64)
    visited[np.arange(B), cur] = True
    while True:
        idx = np.flatnonzero(n_visited < N)               # (A,) mazes still carving
        if idx.size == 0:
            break
        c_ = cur[idx]
        ok = nb_ok[c_] & ~visited[idx[:, None], nb_c[c_]]  # (A, 4) unvisited neighbours
        # argmax of iid uniforms over the allowed directions = a uniform choice among them
        score = np.where(ok, rng.random((idx.size, 4), dtype=np.float32), -1.0)
        k = score.argmax(1)
        has = ok.any(1)
        a, frm = idx[has], c_[has]                        # advance: knock the wall, push, move
        nxt = nb[frm, k[has]]
        stack[a, sp[a]] = frm
        sp[a] += 1
        visited[a, nxt] = True
        parent[a, nxt] = frm
        grid[a, (cellpos[frm] + cellpos[nxt]) // 2] = 1    # the wall pixel between the two cells
        cur[a] = nxt
        n_visited[a] += 1
        b = idx[~has]                                     # dead end: backtrack
        sp[b] -= 1
        cur[b] = stack[b, sp[b]]
    return grid, parent


def trace_paths(m: int, parent: np.ndarray, starts: np.ndarray, goals: np.ndarray) -> np.ndarray:
    """(B, G*G) uint8 path mask: goal up the DFS tree to its root (the start), passages included."""
    B, G = len(starts), 2 * m + 1
    r, c = np.divmod(np.arange(m * m), m)
    cellpos = (2 * r + 1) * G + 2 * c + 1
    path = np.zeros((B, G * G), np.uint8)
    cur = goals.astype(np.int64).copy()
    path[np.arange(B), cellpos[cur]] = 1
    while True:
        i = np.flatnonzero(cur != starts)
        if i.size == 0:
            return path
        p = parent[i, cur[i]]
        path[i, (cellpos[cur[i]] + cellpos[p]) // 2] = 1
        path[i, cellpos[p]] = 1
        cur[i] = p


def _upsample(grid: np.ndarray, G: int) -> np.ndarray:
    """(B, G*G) -> (B, 2G+2, 2G+2): each pixel a 2x2 block, plus a 1-pixel zero border."""
    B = grid.shape[0]
    out = np.zeros((B, 2 * G + 2, 2 * G + 2), np.float32)
    out[:, 1:-1, 1:-1] = grid.reshape(B, G, G).repeat(2, 1).repeat(2, 2)
    return out


def _paint(img: np.ndarray, cells: np.ndarray, m: int, off_channels: tuple[int, ...]) -> None:
    """Zero `off_channels` on the 2x2 block of each maze's cell (white -> green or red)."""
    r, c = np.divmod(cells, m)
    rows = 1 + 2 * (2 * r + 1)[:, None] + np.arange(2)   # (B, 2) image rows of the block
    cols = 1 + 2 * (2 * c + 1)[:, None] + np.arange(2)
    b = np.arange(len(cells))[:, None, None]
    for ch in off_channels:
        img[b, ch, rows[:, :, None], cols[:, None, :]] = 0


def draw_mazes(size: int, count: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """`count` random mazes of `size` as (open, path) (B, G*G) uint8 grids and start/goal cells."""
    m = (size + 1) // 2
    N = m * m
    starts = rng.integers(0, N, count)
    goals = (starts + rng.integers(1, N, count)) % N      # uniform over cells other than the start
    grid, parent = carve(m, starts, rng)
    return grid, trace_paths(m, parent, starts, goals), starts, goals


def render(size: int, grid, path, starts, goals) -> tuple[np.ndarray, np.ndarray]:
    """Images of drawn mazes: inputs (B, 3, H, W) float32, solutions (B, H, W) float32."""
    m, G = (size + 1) // 2, size + 2
    white = _upsample(grid, G)                            # (B, H, W)
    img = np.repeat(white[:, None], 3, axis=1)            # (B, 3, H, W)
    _paint(img, starts, m, (0, 2))                        # start green (0, 1, 0)
    _paint(img, goals, m, (1, 2))                         # goal red (1, 0, 0)
    return img, _upsample(path, G)


def make_mazes(size: int, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` mazes of `size`: inputs (count, 3, H, W) float32, solutions (count, H, W) float32."""
    return render(size, *draw_mazes(size, count, rng))


def write_mazes(out_dir: Path, size: int, split: str, count: int, seed: int) -> None:
    """Write inputs.npy / solutions.npy into `out_dir`, chunk by chunk (memory stays bounded).

    DFS chunk k draws from its own stream seeded by (seed, size, split, k); the chunk length
    depends only on the size, so the bytes depend only on (seed, size, split, count). Big DFS
    chunks amortize numpy's per-call overhead; images are rendered in smaller pieces."""
    H = image_side(size)
    chunk = max(64, _CHUNK_CELLS // (((size + 1) // 2) ** 2))
    piece = max(1, _PIECE_PIXELS // (H * H))
    fmt = np.lib.format
    inputs = fmt.open_memmap(out_dir / "inputs.npy", mode="w+", dtype=np.float32, shape=(count, 3, H, H))
    sols = fmt.open_memmap(out_dir / "solutions.npy", mode="w+", dtype=np.float32, shape=(count, H, H))
    for k, lo in enumerate(range(0, count, chunk)):
        rng = np.random.default_rng([seed, size, _SPLIT_CODE[split], k, _SEED_TAG])
        drawn = draw_mazes(size, min(chunk, count - lo), rng)
        for a in range(0, len(drawn[0]), piece):
            x, y = render(size, *(d[a:a + piece] for d in drawn))
            inputs[lo + a:lo + a + len(x)] = x
            sols[lo + a:lo + a + len(y)] = y
    inputs.flush()
    sols.flush()
    del inputs, sols


@register
class Mazes(Task):
    """Perfect mazes (randomized DFS) in the easy-to-hard-data layout.

    Files: maze_data_{split}_{size}/inputs.npy (N,3,2n+6,2n+6) and solutions.npy (N,2n+6,2n+6).
    Published counts: 50,000 train / 10,000 test for sizes 9..17, 1,000 test for 19..37 and 59.
    """
    name = "mazes"
    dims = 2
    in_channels = 3
    difficulty_name = "maze size"
    reference_width = 128
    cli_name = "mazes"
    cli_help = "perfect mazes (randomized DFS) with their start-to-goal paths"

    def add_cli_arguments(self, p) -> None:
        p.add_argument("--sizes", type=int, nargs="+", required=True, metavar="N",
                       help="maze sizes (odd, >= 5), e.g. 9 13 59 201; images are (2N+6)^2 pixels")
        p.add_argument("--split", choices=SPLITS, default="train",
                       help="which files: maze_data_{split}_{size} (default train)")
        p.add_argument("--count", type=int, default=None,
                       help=f"mazes per size (default {DEFAULT_COUNT['train']} for train, "
                            f"{DEFAULT_COUNT['test']} for test; published: 50000 / 10000)")
        p.add_argument("--seed", type=int, default=0, help="generation seed, >= 0 (default 0)")

    def run_cli(self, args, root: Path) -> int:
        count = DEFAULT_COUNT[args.split] if args.count is None else args.count
        check_request(self, args.sizes, count, args.seed, "--sizes")
        for n in args.sizes:
            t0 = time.perf_counter()
            storage.produce(self, root, n, args.split, count, args.seed, overwrite=True)
            dt = time.perf_counter() - t0
            H = image_side(n)
            print(f"mazes size {n:>4} ({args.split}): {count} mazes of {H}x{H} px in {dt:.1f} s "
                  f"-> {folder(root, n, args.split)}/{{inputs,solutions}}.npy")
        return 0

    def default_data(self) -> dict:
        return {"train": 9, "eval": [13, 33], "count": 10000}

    def check_difficulty(self, difficulty) -> str | None:
        return size_problem(difficulty)

    def meta_path(self, root: Path, difficulty: int, split: str) -> Path:
        d = folder(root, difficulty, split)     # beside the folder: it holds exactly the published files
        return d.parent / f".{d.name}.deepthink.json"

    def files_exist(self, root: Path, difficulty: int, split: str) -> bool:
        d = folder(root, difficulty, split)
        return (d / "inputs.npy").exists() and (d / "solutions.npy").exists()

    def generate(self, root: Path, difficulty: int, split: str, count: int, seed: int,
                 overwrite: bool = False) -> list[Path]:
        """Write one size's folder atomically. Without `overwrite` (the on-demand path, where
        several trials may race) an existing folder is kept; the CLI passes overwrite=True. The size
        was checked by the caller (config or CLI: deepthink/tasks/options.py)."""
        if split not in SPLITS:
            raise ValueError(f"maze split must be one of {SPLITS}, got {split!r}")
        if count <= 0:
            raise ValueError(f"maze count must be a positive integer, got {count}")
        if seed < 0:
            raise ValueError(f"maze seed must be a non-negative integer, got {seed}")
        d = folder(root, difficulty, split)
        write_dir_atomically(d, lambda tmp: write_mazes(tmp, difficulty, split, count, seed), overwrite=overwrite)
        return [d / "inputs.npy", d / "solutions.npy"]

    def load_raw(self, root, difficulty, split, count, download):
        MazeDataset = e2h().MazeDataset
        if split not in SPLITS:
            raise DataError(f"maze files exist for splits {SPLITS}, not {split!r}")
        try:
            ds = MazeDataset(str(root), train=(split == "train"), size=difficulty, download=download)
        except FileNotFoundError as e:
            raise DataError(f"missing maze file {e.filename}; run `deepthink data mazes --sizes {difficulty} "
                            f"--split {split} --data-root {root}`") from None
        x, y = ds.inputs, ds.targets                      # (N, 3, H, W) float, (N, H, W) long
        if count < x.shape[0]:                            # fewer than on disk: copy so the rest is freed
            x, y = x[:count].clone(), y[:count].clone()
        return x, y

    def loss_mask(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bool: non-wall pixels (any channel lit); walls and border never count."""
        return (inputs > 0).any(1)
