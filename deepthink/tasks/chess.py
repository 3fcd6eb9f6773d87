"""Chess puzzles: given a board, mark the origin and destination squares of the puzzle's answer (2D).

Data comes from the Lichess puzzle database (CC0; https://database.lichess.org/#puzzles), which
cannot be generated: `deepthink data chess --csv FILE` converts an export (plain CSV, .csv.zst or
.csv.bz2, as downloaded; ~5 million rows, streamed) into the easy-to-hard-data layout:

    chess_data/data.pth       (N, 12, 8, 8) float32  planes, row = rank-1, column = file a..h;
                                channels: side to move [K,Q,B,N,R,P], then opponent [k,q,b,n,r,p]
    chess_data/targets.pth    (N, 8, 8) int64  1 on the answer's origin and destination squares,
                                stored rank-FLIPPED because ChessPuzzleDataset applies .flip(1)
                                to targets only: what the loader returns lines up with data.pth
    chess_data/who_moves.pth  (N, 1) int64  side to move (the solver): 0 white, 1 black
    chess_data/rating.pth     (N, 1) int64  Lichess puzzle rating
    chess_data/puzzles.csv    PuzzleId,Rating of every stored index (provenance; not used by loaders)
    chess_data/skipped.csv    PuzzleId,line,reason of every malformed row

Puzzles are sorted by rating ascending (stable). A CSV row's first move is the opponent's; it is
pushed onto the FEN and the SECOND move is the answer. A difficulty d is the block of `count`
puzzles starting at index d (published split: train [0, 600k), test [600k, 700k)).

    deepthink data chess --csv lichess_db_puzzle.csv.zst [--limit N] [--min-rating R] [--max-rating R]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from deepthink.tasks.base import Task, register
from deepthink.tasks.lichess import convert_csv, write_converted
from deepthink.tasks.storage import DataError, e2h

FOLDER = "chess_data"


# ---- the task -------------------------------------------------------------------------------
@register
class Chess(Task):
    """Convert a Lichess puzzle export into chess_data/ (sorted by rating), e.g.

    deepthink data chess --csv lichess_db_puzzle.csv.zst [--limit N] [--min-rating R] [--max-rating R]

Malformed rows are skipped and listed in chess_data/skipped.csv; progress goes to stderr."""
    name = "chess"
    dims = 2
    in_channels = 12
    difficulty_name = "puzzle index (rating-sorted)"
    reference_width = 512
    cli_name = "chess"
    cli_help = "convert a Lichess puzzle database export (CSV or .csv.zst)"
    # The reference trains on FlippedChessPuzzleDataset: black-to-move boards (and targets) are
    # flipped rank-wise so the side to move always sits on row 0. load_raw does the same.
    flip_black = True

    def add_cli_arguments(self, p) -> None:
        p.add_argument("--csv", type=Path, required=True, metavar="FILE",
                       help="Lichess puzzle export: lichess_db_puzzle.csv or .csv.zst (.csv.bz2 also read)")
        p.add_argument("--limit", type=int, default=None, metavar="N",
                       help="stop after N converted puzzles (the first N valid, in-range rows of the file)")
        p.add_argument("--min-rating", type=int, default=None, metavar="R", help="keep puzzles rated >= R")
        p.add_argument("--max-rating", type=int, default=None, metavar="R", help="keep puzzles rated <= R")

    def run_cli(self, args, root: Path) -> int:
        path = Path(args.csv).expanduser()
        if not path.is_file():
            raise DataError(f"--csv {path}: no such file; download lichess_db_puzzle.csv.zst from "
                            f"https://database.lichess.org/#puzzles")
        if args.limit is not None and args.limit <= 0:
            raise DataError(f"--limit must be a positive integer, got {args.limit}")
        if args.min_rating is not None and args.max_rating is not None and args.min_rating > args.max_rating:
            raise DataError(f"--min-rating {args.min_rating} is above --max-rating {args.max_rating}")
        t0 = time.perf_counter()
        c = convert_csv(path, args.limit, args.min_rating, args.max_rating)
        n = len(c.ids)
        if n == 0:
            raise DataError(f"{path}: no puzzles converted ({c.rows_read:,} rows read, {len(c.skipped):,} "
                            f"malformed, {c.out_of_range:,} outside the rating range); nothing written")
        size = n * (12 * 64 * 4 + 64 * 8 + 16)
        if size > 2 ** 31:
            print(f"chess: writing {size / 2 ** 30:.1f} GiB; the loader reads data.pth whole, so training "
                  f"needs about as much RAM (use --max-rating or --limit for less)", file=sys.stderr)
        out = write_converted(c, Path(root) / FOLDER)
        secs = time.perf_counter() - t0
        print(f"chess: {n:,} puzzles (ratings {c.ratings[0]}..{c.ratings[-1]}, "
              f"{int(c.who_moves.sum()):,} black to move) from {c.rows_read:,} rows of {path} in {secs:.1f} s "
              f"({n / secs:,.0f} puzzles/s) -> {out}/{{data,targets,who_moves,rating}}.pth")
        if c.out_of_range:
            print(f"chess: {c.out_of_range:,} valid rows outside the rating range were left out")
        if c.skipped:
            first = ", ".join(f"{pid or '?'} (line {line}: {why})" for pid, line, why in c.skipped[:5])
            print(f"chess: {len(c.skipped):,} malformed rows skipped, e.g. {first}; all listed in {out}/skipped.csv")
        return 0

    def default_data(self) -> dict:
        # The published test block [600k, 700k); one `count` serves train and test blocks alike.
        return {"train": 0, "eval": [600000], "count": 100000}

    def check_difficulty(self, difficulty: int) -> str | None:
        ok = isinstance(difficulty, int) and not isinstance(difficulty, bool) and difficulty >= 0
        return None if ok else "a puzzle index >= 0 (the first puzzle of the rating-sorted block)"

    def paths(self, root: Path) -> dict[str, Path]:
        d = Path(root) / FOLDER
        return {k: d / f"{k}.pth" for k in ("data", "targets", "who_moves", "rating")}

    def files_exist(self, root: Path, difficulty: int, split: str) -> bool:
        p = self.paths(root)
        return all(p[k].exists() for k in ("data", "targets", "who_moves"))

    def generate(self, root: Path, difficulty: int, split: str, count: int, seed: int,
                 overwrite: bool = False) -> list[Path]:
        raise DataError(f"chess puzzles cannot be generated; missing {Path(root) / FOLDER}/data.pth. Download "
                        f"lichess_db_puzzle.csv.zst from https://database.lichess.org/#puzzles and run "
                        f"`deepthink data chess --csv FILE --data-root {root}`")

    def load_raw(self, root, difficulty, split, count, download):
        ChessPuzzleDataset = e2h().ChessPuzzleDataset
        start, end = difficulty, difficulty + count
        who_path = self.paths(root)["who_moves"]
        if not download and who_path.exists():       # small file: check the range before the big load
            total = torch.load(who_path, weights_only=True).shape[0]
            if end > total:
                raise DataError(f"chess block [{start}, {end}) runs past the {total:,} puzzles in "
                                f"{who_path.parent}; use a difficulty + data.count <= {total:,}")
        try:
            ds = ChessPuzzleDataset(str(root), idx_start=start, idx_end=end, who_moves=True, download=download)
        except FileNotFoundError as e:
            raise DataError(f"missing chess file {e.filename}; run `deepthink data chess --csv FILE "
                            f"--data-root {root}`") from None
        # clone: the dataset's tensors are views of the whole file; a block must not pin all of it
        x, y = ds.puzzles.float().clone(), ds.targets.long().clone()                 # (N,12,8,8) (N,8,8)
        who = ds.who_moves.reshape(-1)                                              # (N,)
        if len(ds) < count:
            raise DataError(f"chess block [{start}, {end}) runs past the {start + len(ds):,} puzzles in "
                            f"{Path(root) / FOLDER}")
        if self.flip_black:
            black = who == 1
            x[black], y[black] = x[black].flip(2), y[black].flip(1)   # rank-flip boards and targets alike
        return x, y

    # ---- metric -----------------------------------------------------------------------------
    def correct(self, logits: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(B,) bool: the two squares with the highest class-1 log-odds are exactly the target's two.

        Log-odds (logit1 - logit0) rank squares like the class-1 softmax probability. The reference
        ranks by the raw class-1 logit and counts ties above the 2nd as extra squares."""
        logits = logits.float()            # cast before subtracting: bf16 differences create ties
        score = (logits[:, 1] - logits[:, 0]).flatten(1)                          # (B, 64)
        pred = torch.zeros_like(score, dtype=torch.bool)
        pred.scatter_(1, score.topk(2, dim=1).indices, True)                       # (B, 64) two squares
        return (pred == targets.flatten(1).bool()).all(1)

    def confidence(self, logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """(B,) mean class-1 probability of the two chosen squares. The answer is those two squares;
        the default (mean max-probability over all 64) is dominated by the ~62 obvious zeros."""
        p1 = logits.float().softmax(1)[:, 1].flatten(1)                             # (B, 64)
        return p1.topk(2, dim=1).values.mean(1)
