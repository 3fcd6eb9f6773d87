"""Converting a Lichess puzzle export (CSV, .csv.zst or .csv.bz2) into the chess task's tensors.

The Lichess puzzle database (CC0; https://database.lichess.org/#puzzles) lists
`PuzzleId,FEN,Moves,Rating,...`; the first move of Moves is the opponent's: it is pushed onto the
FEN and the SECOND move is the answer. `convert_csv` streams a file (~5 million rows) into compact
numpy chunks, keeps the valid rows in the rating range, and sorts them by rating (stable);
`write_converted` expands them into the published easy-to-hard-data tensors (layout: the module
docstring of deepthink/tasks/chess.py, which is what the task reads).

    from deepthink.tasks.lichess import convert_csv, write_converted
    write_converted(convert_csv(Path("lichess_db_puzzle.csv.zst"), limit=1000), root / "chess_data")
"""
from __future__ import annotations

import bz2
import csv
import io
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import chess as pychess   # python-chess
import numpy as np
import torch

from deepthink.tasks.storage import DataError, save_tensor, write_dir_atomically

HEADER = "PuzzleId,FEN,Moves,Rating,RatingDeviation,Popularity,NbPlays,Themes,GameUrl,OpeningTags"
NEEDED = ("PuzzleId", "FEN", "Moves", "Rating")       # columns the converter reads, found by name
ZSTD_MAGIC, BZ2_MAGIC = b"\x28\xb5\x2f\xfd", b"BZh"
CHUNK = 65536                                         # puzzles per compact numpy chunk


@dataclass
class Converted:
    """Compact result of a conversion, already in stored (rating-sorted) order."""
    boards: np.ndarray      # (N, 12) uint64 bitboards: bit s = square s = rank*8 + file
    moves: np.ndarray       # (N, 2) uint8 answer origin, destination square
    who_moves: np.ndarray   # (N,) uint8
    ratings: np.ndarray     # (N,) int64
    ids: list[str]
    rows_read: int = 0
    out_of_range: int = 0   # valid rows dropped by --min-rating/--max-rating
    skipped: list[tuple[str, int, str]] = field(default_factory=list)   # (PuzzleId, line, reason)


def open_text(path: Path):
    """Text stream over a plain, zstd- or bzip2-compressed CSV, chosen by magic bytes (streamed)."""
    fh = open(path, "rb")
    magic = fh.read(4)
    fh.seek(0)
    if magic.startswith(ZSTD_MAGIC):
        import zstandard
        raw = zstandard.ZstdDecompressor().stream_reader(fh, closefd=True)
    elif magic.startswith(BZ2_MAGIC):
        fh.close()
        raw = bz2.open(path, "rb")      # closes its own file (given a file object, it would not)
    else:
        raw = fh
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def encode(board: pychess.Board) -> list[int]:
    """12 bitboards of `board` from the side to move's view: [K,Q,B,N,R,P] mine, then theirs."""
    us, them = board.occupied_co[board.turn], board.occupied_co[not board.turn]
    kinds = (board.kings, board.queens, board.bishops, board.knights, board.rooks, board.pawns)
    return [b & us for b in kinds] + [b & them for b in kinds]


def parse_row(fen: str, moves: str) -> tuple[list[int], int, int, int]:
    """(bitboards, answer origin, answer destination, who_moves) or ValueError(reason)."""
    try:
        board = pychess.Board(fen)
    except ValueError:
        raise ValueError("bad FEN") from None
    if not board.is_valid():
        raise ValueError(f"invalid position ({board.status().name})")
    ucis = moves.split()
    if len(ucis) < 2:
        raise ValueError(f"fewer than two moves ({len(ucis)})")
    for k, uci in enumerate(ucis[:2]):
        try:
            move = pychess.Move.from_uci(uci)
        except ValueError:
            raise ValueError(f"bad move {uci!r}") from None
        if not board.is_legal(move):
            raise ValueError(f"illegal {'first' if k == 0 else 'second'} move {uci}")
        if k == 0:
            board.push(move)   # the opponent's move; the position to solve comes after it
    answer = move              # the second move
    return encode(board), answer.from_square, answer.to_square, int(board.turn == pychess.BLACK)


def read_header(reader, path: Path) -> dict[str, int]:
    header = next(reader, None)
    cols = {name.strip().lstrip("\ufeff"): i for i, name in enumerate(header or [])}
    missing = [c for c in NEEDED if c not in cols]
    if missing:
        found = ",".join(header or [])[:120] or "an empty file"
        raise DataError(f"{path}: expected a Lichess puzzle CSV whose first line is the header\n  {HEADER}\n"
                        f"(columns {', '.join(NEEDED)} are required), found\n  {found}\n"
                        f"If the file has no header line, add the one above as its first line.")
    return cols


def convert_csv(path: Path, limit: int | None = None, min_rating: int | None = None,
                max_rating: int | None = None, progress_every: int = 100_000, log=None) -> Converted:
    """Stream `path`, keep valid puzzles in range (the first `limit` in file order), sort by rating."""
    out = Converted(*_empty(), ids=[])
    chunks: list[tuple] = []
    batch: list[tuple] = []
    for pid, bb, origin, dest, black, rating in _puzzles(path, out, min_rating, max_rating, progress_every, log):
        batch.append((bb, (origin, dest), black, rating))
        out.ids.append(pid)
        if len(batch) == CHUNK:
            chunks.append(_compact(batch))
            batch = []
        if limit is not None and len(out.ids) >= limit:
            break
    if batch:
        chunks.append(_compact(batch))
    if chunks:
        b, m, w, r = (np.concatenate(parts) for parts in zip(*chunks))
        order = np.argsort(r, kind="stable")              # rating ascending; ties keep file order
        out.boards, out.moves, out.who_moves, out.ratings = b[order], m[order], w[order], r[order]
        out.ids = [out.ids[i] for i in order]
    return out


def _empty() -> tuple[np.ndarray, ...]:
    return np.zeros((0, 12), np.uint64), np.zeros((0, 2), np.uint8), np.zeros(0, np.uint8), np.zeros(0, np.int64)


def _compact(batch: list[tuple]) -> tuple[np.ndarray, ...]:
    """A chunk of parsed puzzles as compact numpy arrays (boards, moves, who_moves, ratings)."""
    boards, moves, who, ratings = zip(*batch)
    return (np.array(boards, dtype=np.uint64), np.array(moves, dtype=np.uint8),
            np.array(who, dtype=np.uint8), np.array(ratings, dtype=np.int64))


def _puzzles(path: Path, stats: Converted, min_rating: int | None, max_rating: int | None,
             progress_every: int, log):
    """Yield (PuzzleId, bitboards, origin, destination, black, rating) of each valid, in-range row;
    count rows read and out of range, and record malformed rows (PuzzleId, line, reason) in `stats`."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    with open_text(path) as fh:
        reader = csv.reader(fh)
        try:
            cols = read_header(reader, path)
            i_id, i_fen, i_moves, i_rating = (cols[c] for c in NEEDED)
            width = max(i_id, i_fen, i_moves, i_rating) + 1
            for row in reader:
                rows = stats.rows_read
                if progress_every and rows and rows % progress_every == 0:   # `rows` rows fully handled
                    log(f"chess: {rows:,} rows read, {len(stats.ids):,} puzzles, {len(stats.skipped):,} "
                        f"malformed ({rows / (time.perf_counter() - t0):,.0f} rows/s)")
                stats.rows_read += 1
                line = reader.line_num
                if not row:
                    continue            # a blank line is not a puzzle
                pid = row[i_id].strip() if len(row) > i_id else ""
                if len(row) < width:
                    stats.skipped.append((pid, line, f"{len(row)} columns, expected at least {width}"))
                    continue
                try:
                    rating = int(row[i_rating])
                except ValueError:
                    stats.skipped.append((pid, line, f"bad rating {row[i_rating]!r}"))
                    continue
                if (min_rating is not None and rating < min_rating) or (max_rating is not None and rating > max_rating):
                    stats.out_of_range += 1
                    continue
                try:
                    bb, origin, dest, black = parse_row(row[i_fen], row[i_moves])
                except ValueError as e:
                    stats.skipped.append((pid, line, str(e)))
                    continue
                yield pid, bb, origin, dest, black, rating
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataError(f"{path}: unreadable near line {reader.line_num} ({e}); is it a Lichess puzzle CSV?") from None


def to_tensors(c: Converted) -> dict[str, torch.Tensor]:
    """Expand the compact result into the published tensors (chunked, so the peak is ~the output)."""
    n = len(c.ids)
    data = torch.empty((n, 12, 8, 8), dtype=torch.float32)
    for s in range(0, n, CHUNK):
        bytes_ = c.boards[s:s + CHUNK].astype("<u8").view(np.uint8).reshape(-1, 12, 8)   # byte k = rank k
        bits = np.unpackbits(bytes_, axis=-1, bitorder="little")                           # (n, 12, 64), bit = square
        data[s:s + CHUNK] = torch.from_numpy(bits.reshape(-1, 12, 8, 8))                  # [rank][file]
    targets = torch.zeros((n, 8, 8), dtype=torch.int64)
    rows = torch.arange(n)
    for sq in (torch.from_numpy(c.moves[:, 0].astype(np.int64)), torch.from_numpy(c.moves[:, 1].astype(np.int64))):
        targets[rows, sq // 8, sq % 8] = 1
    return {"data.pth": data,
            "targets.pth": targets.flip(1).contiguous(),   # the loader flips it back into line with data
            "who_moves.pth": torch.from_numpy(c.who_moves.astype(np.int64)).unsqueeze(1),
            "rating.pth": torch.from_numpy(c.ratings).unsqueeze(1)}


def write_converted(c: Converted, target: Path) -> Path:
    """Write the tensors, puzzles.csv and skipped.csv into folder `target`, atomically."""
    tensors = to_tensors(c)

    def make(tmp: Path) -> None:
        for name, t in tensors.items():
            save_tensor(t, tmp / name)
        with open(tmp / "puzzles.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["PuzzleId", "Rating"])
            w.writerows(zip(c.ids, c.ratings.tolist()))
        with open(tmp / "skipped.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["PuzzleId", "line", "reason"])
            w.writerows(c.skipped)

    write_dir_atomically(Path(target), make, overwrite=True)
    return target
