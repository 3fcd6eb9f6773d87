"""Prefix sums: given a bit string x, predict cumsum(x) mod 2 at every position (1D, 1 channel).

Files (easy-to-hard-data layout): prefix_sums_data/{n}_data.pth and {n}_targets.pth, float
tensors (count, n) of 0/1. Every string within a length is distinct (the published set only
guarantees that below 24 bits). The package's loader yields inputs (N, 1, n) in {-0.5, +0.5}.

    deepthink data prefix-sums --bits 16 32 48 512 --count 10000 --seed 0
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deepthink.tasks import storage
from deepthink.tasks.base import Task, register
from deepthink.tasks.options import check_request
from deepthink.tasks.storage import DataError, e2h, save_tensor, write_files_atomically

FOLDER = "prefix_sums_data"


def count_problem(bits: int, count: int) -> str | None:
    """The one place of the rule: the strings are distinct, so at most 2^bits of them."""
    if bits <= 62 and count > 2 ** bits:
        return f"at most {2 ** bits}: there are only {2 ** bits} distinct strings of {bits} bits"
    return None


def distinct_bit_strings(n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, n) uint8 array of distinct random 0/1 strings, deterministic given rng."""
    problem = count_problem(n, count)
    if problem:
        raise ValueError(f"count {count} of {n}-bit strings: expected {problem}")
    if n <= 20 and count > 2 ** n // 4:
        codes = rng.permutation(2 ** n)[:count]              # dense: exact sampling without replacement
        return ((codes[:, None] >> np.arange(n - 1, -1, -1)) & 1).astype(np.uint8)
    out = np.empty((0, n), dtype=np.uint8)
    while out.shape[0] < count:
        need = count - out.shape[0]
        cand = rng.integers(0, 2, size=(need + need // 8 + 16, n), dtype=np.uint8)
        allx = np.concatenate([out, cand])
        _, first = np.unique(allx, axis=0, return_index=True)
        out = allx[np.sort(first)]            # keep first occurrences, in drawing order
    return out[:count]


@register
class PrefixSums(Task):
    name = "prefix_sums"
    dims = 1
    in_channels = 1
    difficulty_name = "bits"
    reference_width = 400
    cli_name = "prefix-sums"
    cli_help = "random bit strings and their prefix parities"

    def add_cli_arguments(self, p) -> None:
        p.add_argument("--bits", type=int, nargs="+", required=True, metavar="N",
                       help="string lengths to generate, e.g. 16 32 48 512")
        p.add_argument("--count", type=int, default=10000, help="strings per length (default 10000)")
        p.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")

    def run_cli(self, args, root: Path) -> int:
        check_request(self, args.bits, args.count, args.seed, "--bits")
        for n in args.bits:
            paths = storage.produce(self, root, n, "train", args.count, args.seed, overwrite=True)
            print(f"prefix sums {n:>5} bits: {args.count} distinct strings -> {paths[0].parent}/{n}_{{data,targets}}.pth")
        return 0

    def default_data(self) -> dict:
        return {"train": 32, "eval": [48, 128, 512], "count": 10000}

    def check_difficulty(self, difficulty: int) -> str | None:
        return None if isinstance(difficulty, int) and difficulty >= 1 else "a number of bits >= 1"

    def check_count(self, difficulty: int, count: int) -> str | None:
        return count_problem(difficulty, count)

    def paths(self, root: Path, n: int) -> tuple[Path, Path]:
        d = Path(root) / FOLDER
        return d / f"{n}_data.pth", d / f"{n}_targets.pth"

    def files_exist(self, root: Path, difficulty: int, split: str) -> bool:
        return all(p.exists() for p in self.paths(root, difficulty))

    def meta_path(self, root: Path, difficulty: int, split: str) -> Path:
        return Path(root) / FOLDER / f".{difficulty}_deepthink.json"

    def generate(self, root: Path, difficulty: int, split: str, count: int, seed: int,
                 overwrite: bool = False) -> list[Path]:
        n = difficulty
        if count <= 0:
            raise ValueError(f"--count must be a positive integer, got {count}")
        # One file per length serves both train and test (as published), so split is not mixed in.
        rng = np.random.default_rng([seed, n, 0x5053])
        bits = distinct_bit_strings(n, count, rng)
        data = torch.from_numpy(bits).float()                         # (count, n) of 0/1
        targets = torch.from_numpy(np.cumsum(bits, axis=1) % 2).float()
        data_path, target_path = self.paths(root, n)
        return write_files_atomically(data_path.parent, {
            data_path.name: lambda p: save_tensor(data, p),
            target_path.name: lambda p: save_tensor(targets, p),
        }, overwrite=overwrite)

    def load_raw(self, root, difficulty, split, count, download):
        PrefixSumDataset = e2h().PrefixSumDataset
        try:
            ds = PrefixSumDataset(str(root), num_bits=difficulty, download=download)
        except FileNotFoundError as e:
            raise DataError(f"missing prefix-sums file {e.filename}; run `deepthink data prefix-sums "
                            f"--bits {difficulty} --data-root {root}`") from None
        return ds.inputs.float(), ds.targets.long()
