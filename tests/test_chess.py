"""Chess task: Lichess CSV -> chess_data/ conversion, loading through easy_to_hard_data, metric.

The oracle rebuilds every board with python-chess's piece map (not the converter's bitboards) and
compares it with what the real ChessPuzzleDataset returns. Run: .venv/bin/python -m pytest tests/test_chess.py
"""
from __future__ import annotations

import bz2
import csv
import random
from pathlib import Path

import chess
import pytest
import torch
import zstandard
from easy_to_hard_data import ChessPuzzleDataset

from deepthink.cli import main
from deepthink.tasks import get_task
from deepthink.tasks import lichess, storage
from deepthink.tasks.storage import DataError

SAMPLE = Path(__file__).parent / "fixtures" / "lichess_sample.csv"
ORDER = [chess.KING, chess.QUEEN, chess.BISHOP, chess.KNIGHT, chess.ROOK, chess.PAWN]
TASK = get_task("chess")


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def write_rows(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=lichess.HEADER.split(","))
        w.writeheader()
        w.writerows(rows)
    return path


def oracle(fen: str, moves: str):
    """(planes (12,8,8), target (8,8), who) computed square by square with python-chess."""
    board = chess.Board(fen)
    first, answer = moves.split()[:2]
    board.push_uci(first)
    move = chess.Move.from_uci(answer)
    assert board.is_legal(move)
    planes = torch.zeros(12, 8, 8)
    for sq, piece in board.piece_map().items():
        ch = ORDER.index(piece.piece_type) + (0 if piece.color == board.turn else 6)
        planes[ch, chess.square_rank(sq), chess.square_file(sq)] = 1
    target = torch.zeros(8, 8, dtype=torch.long)
    for sq in (move.from_square, move.to_square):
        target[chess.square_rank(sq), chess.square_file(sq)] = 1
    return planes, target, int(board.turn == chess.BLACK)


def convert(csv_path: Path, root: Path, *extra: str) -> int:
    return main(["data", "chess", "--csv", str(csv_path), "--data-root", str(root), *extra])


def load_all(root: Path) -> ChessPuzzleDataset:
    n = torch.load(root / "chess_data" / "who_moves.pth").shape[0]
    return ChessPuzzleDataset(str(root), idx_start=0, idx_end=n, download=False)


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    """The sample in a shuffled order (so sorting and its stability are really exercised), converted."""
    d = tmp_path_factory.mktemp("chess")
    rows = read_rows(SAMPLE)
    random.Random(0).shuffle(rows)
    src = write_rows(d / "shuffled.csv", rows)
    assert convert(src, d / "root") == 0
    return rows, d / "root"


def test_module_name_does_not_shadow_python_chess():
    assert lichess.pychess is chess and hasattr(lichess.pychess, "Board")
    assert "deepthink" not in chess.__file__


def test_loader_output_matches_python_chess_oracle(shuffled):
    rows, root = shuffled
    expect = sorted(rows, key=lambda r: int(r["Rating"]))          # Python's sort is stable
    ds = load_all(root)
    assert len(ds) == len(rows) > 300
    oracles = [oracle(r["FEN"], r["Moves"]) for r in expect]
    assert ds.puzzles.dtype == torch.float32 and ds.puzzles.shape == (len(rows), 12, 8, 8)
    assert torch.equal(ds.puzzles, torch.stack([o[0] for o in oracles]))
    assert torch.equal(ds.targets.long(), torch.stack([o[1] for o in oracles]))      # after the loader's flip
    assert ds.who_moves.reshape(-1).tolist() == [o[2] for o in oracles]
    ratings = torch.load(root / "chess_data" / "rating.pth").reshape(-1).tolist()
    assert ratings == [int(r["Rating"]) for r in expect] and ratings == sorted(ratings)
    assert [r["PuzzleId"] for r in read_rows(root / "chess_data" / "puzzles.csv")] == [r["PuzzleId"] for r in expect]
    assert set(ds.who_moves.reshape(-1).tolist()) == {0, 1}


def test_targets_line_up_with_the_moving_piece(shuffled):
    """Orientation check without the oracle: the answer's origin holds one of the solver's pieces,
    its destination none, and exactly two squares are marked."""
    _, root = shuffled
    ds = load_all(root)
    for x, y in zip(ds.puzzles, ds.targets):
        squares = y.nonzero().tolist()
        assert len(squares) == 2
        mine = x[:6, :, :].sum(0)                                  # (8, 8) solver's pieces
        assert sorted(mine[r, c].item() for r, c in squares) == [0.0, 1.0]
        assert x.sum(0).max() == 1                                 # one piece per square at most


def test_hand_checked_puzzles(tmp_path):
    # 0YtJI: black plays Re6-e8, white mates with Rc8xe8: white (0) to move, answer c8 -> e8.
    # 088yl: white plays Rf1-e1, black answers Re6xe1: black (1) to move, answer e6 -> e1.
    rows = [r for r in read_rows(SAMPLE) if r["PuzzleId"] in ("0YtJI", "088yl")]
    assert convert(write_rows(tmp_path / "two.csv", rows), tmp_path) == 0
    ds = load_all(tmp_path)
    (x0, y0, w0), (x1, y1, w1) = ds[0], ds[1]
    assert int(w0) == 0 and y0.nonzero().tolist() == [[7, 2], [7, 4]]       # c8, e8 (row = rank-1)
    assert x0[4, 7, 2] == 1 and x0[10, 7, 4] == 1                          # my rook c8, their rook e8
    assert int(w1) == 1 and y1.nonzero().tolist() == [[0, 4], [5, 4]]       # e1, e6
    assert x1[4, 5, 4] == 1 and x1[10, 0, 4] == 1                          # my (black) rook e6, their rook e1
    # load_raw flips black-to-move boards rank-wise (the reference's FlippedChessPuzzleDataset)
    x, y = TASK.load_raw(tmp_path, 0, "train", 2, download=False)
    assert torch.equal(x[0], x0) and torch.equal(y[0], y0.long())
    assert y[1].nonzero().tolist() == [[2, 4], [7, 4]] and x[1][4, 2, 4] == 1 and x[1][10, 7, 4] == 1


def test_malformed_rows_are_reported_by_id(tmp_path, capsys):
    good = read_rows(SAMPLE)[:2]
    bad = [dict(good[0], PuzzleId="badFEN", FEN="not a fen"),
           dict(good[0], PuzzleId="illegal1", Moves="a1a8 c8e8"),
           dict(good[0], PuzzleId="illegal2", Moves="e6e8 c8d7"),
           dict(good[0], PuzzleId="oneMove", Moves="e6e8"),
           dict(good[0], PuzzleId="badRating", Rating="hard"),
           dict(good[0], PuzzleId="noKing", FEN="8/8/8/8/8/8/8/R7 w - - 0 1", Moves="a1a2 a2a3")]
    src = write_rows(tmp_path / "mixed.csv", [good[0], *bad, good[1]])
    with open(src, "a") as fh:
        fh.write("short,row\n")
    assert convert(src, tmp_path) == 0
    out = capsys.readouterr().out
    assert "7 malformed rows" in out and "badFEN" in out and "skipped.csv" in out
    skipped = read_rows(tmp_path / "chess_data" / "skipped.csv")
    assert [s["PuzzleId"] for s in skipped] == [b["PuzzleId"] for b in bad] + ["short"]
    reasons = {s["PuzzleId"]: s["reason"] for s in skipped}
    assert reasons["badFEN"] == "bad FEN" and reasons["oneMove"].startswith("fewer than two")
    assert "illegal first" in reasons["illegal1"] and "illegal second" in reasons["illegal2"]
    assert "rating" in reasons["badRating"] and "invalid" in reasons["noKing"] and "columns" in reasons["short"]
    assert len(load_all(tmp_path)) == 2


def test_bad_header_is_a_clear_error(tmp_path, capsys):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,fen,moves\n1,x,y\n")
    with pytest.raises(DataError, match="PuzzleId,FEN,Moves,Rating") as e:
        lichess.convert_csv(wrong)
    assert str(wrong) in str(e.value)
    headerless = tmp_path / "headerless.csv"
    headerless.write_text(SAMPLE.read_text().split("\n", 1)[1])
    assert convert(headerless, tmp_path) == 2
    err = capsys.readouterr().err
    assert str(headerless) in err and lichess.HEADER in err and "no header line" in err
    assert not (tmp_path / "chess_data").exists()
    assert convert(tmp_path / "missing.csv", tmp_path) == 2
    assert "--csv" in capsys.readouterr().err


def test_zst_equals_plain_and_bytes_are_deterministic(tmp_path):
    zst = tmp_path / "sample.csv.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(SAMPLE.read_bytes()))
    bz = tmp_path / "sample.csv.bz2"
    bz.write_bytes(bz2.compress(SAMPLE.read_bytes()))
    for name, src in (("a", SAMPLE), ("b", SAMPLE), ("z", zst), ("j", bz)):
        assert convert(src, tmp_path / name) == 0
    for f in ("data.pth", "targets.pth", "who_moves.pth", "rating.pth", "puzzles.csv"):
        a = (tmp_path / "a" / "chess_data" / f).read_bytes()
        assert all(a == (tmp_path / k / "chess_data" / f).read_bytes() for k in "bzj"), f


def test_limit_and_rating_filters(tmp_path):
    rows = read_rows(SAMPLE)
    assert convert(SAMPLE, tmp_path / "lim", "--limit", "40") == 0
    ids = [r["PuzzleId"] for r in read_rows(tmp_path / "lim" / "chess_data" / "puzzles.csv")]
    assert sorted(ids) == sorted(r["PuzzleId"] for r in rows[:40])          # the first 40 of the file
    assert convert(SAMPLE, tmp_path / "rng", "--min-rating", "1000", "--max-rating", "1500") == 0
    r = torch.load(tmp_path / "rng" / "chess_data" / "rating.pth").reshape(-1)
    assert r.numel() == sum(1000 <= int(x["Rating"]) <= 1500 for x in rows) and r.min() >= 1000 and r.max() <= 1500
    assert convert(SAMPLE, tmp_path / "none", "--min-rating", "5000") == 2   # nothing to write is an error


def test_progress_is_reported_every_n_rows():
    lines = []
    c = lichess.convert_csv(SAMPLE, progress_every=100, log=lines.append)
    assert len(lines) == len(c.ids) // 100 and lines[0].startswith("chess: 100 rows read")


def test_load_errors_name_the_fix(shuffled, tmp_path):
    rows, root = shuffled
    n = len(rows)
    with pytest.raises(DataError, match=f"runs past the {n:,} puzzles"):
        TASK.load_raw(root, n - 10, "test", 20, download=False)
    with pytest.raises(DataError, match="deepthink data chess --csv FILE"):
        storage.load(TASK, tmp_path, 0, "train", 10, seed=0)                # missing files cannot be generated
    x, y = storage.load(TASK, root, 10, "test", 50, seed=0)
    assert x.shape == (50, 12, 8, 8) and y.shape == (50, 8, 8) and y.dtype == torch.long
    assert TASK.check_difficulty(0) is None and TASK.check_difficulty(-1)


def test_correct_and_confidence_on_hand_built_logits():
    targets = torch.zeros(5, 8, 8, dtype=torch.long)
    targets[:, 1, 4] = targets[:, 3, 4] = 1                      # e2 -> e4 for every example
    logits = torch.zeros(5, 2, 8, 8)
    logits[:, 0] = 1.0                                           # class 0 favoured everywhere ...
    logits[0, 1, 1, 4] = logits[0, 1, 3, 4] = 3.0                # ... 0: right two squares on top
    logits[1, 1, 1, 4] = 3.0; logits[1, 1, 3, 5] = 3.0           # 1: one square wrong
    logits[2, 1, 1, 4] = logits[2, 1, 3, 4] = 3.0; logits[2, 1, 6, 6] = 2.5   # 2: third square close
    logits[3, 1, 1, 4] = logits[3, 1, 3, 4] = 0.9                # 3: right squares, both below 50%
    logits[3, 0, 1, 4] = logits[3, 0, 3, 4] = 0.0                # (class-1 log-odds still the top two)
    logits[4, 0] = 0.0; logits[4, 1, 1, 4] = logits[4, 1, 3, 4] = 0.5   # 4: a decoy with a higher raw
    logits[4, 1, 5, 5] = 2.0; logits[4, 0, 5, 5] = 5.0           # class-1 logit but low probability
    assert TASK.correct(logits, None, targets).tolist() == [True, False, True, True, True]
    conf = TASK.confidence(logits, None)
    p = torch.sigmoid(torch.tensor([2.0, 0.9]))                  # two-class softmax = sigmoid of log-odds
    assert torch.allclose(conf[[0, 3]], p) and conf[3] < 0.75 < conf[0]
    three = targets.clone(); three[0, 0, 0] = 1                  # a target that is not two squares never matches
    assert not TASK.correct(logits, None, three)[0]
