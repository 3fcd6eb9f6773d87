"""How task data is stored, shared by every task: where it lives (`--data-root`), atomic writes and
locks (several Ray trials may ask for the same missing files), a provenance record beside each
generated set, and `load(task, ...)`: generate on demand, regenerate a set made with fewer examples
or another seed, return exactly the count asked.

`write_dir_atomically(target_dir, make)` takes an exclusive file lock beside `target_dir`,
re-checks that the data is still missing, lets `make(tmp_dir)` write into a private temporary
directory, then renames the whole directory into place; `write_files_atomically` does the same per
file. Readers therefore see either nothing or complete files (and `load` reads under a lock).
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

if TYPE_CHECKING:
    import torch

    from deepthink.tasks.base import Task


class DataError(RuntimeError):
    """Missing, unreadable or unwritable data; the message says which file and how to fix it."""


@contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ensure_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"data root {root} cannot be created ({e.strerror}); "
                        f"pass --data-root DIR or set $DEEPTHINK_DATA to a writable directory") from None
    if not os.access(root, os.W_OK):
        raise DataError(f"data root {root} is not writable; pass --data-root DIR or set "
                        f"$DEEPTHINK_DATA to a writable directory")


def write_files_atomically(target_dir: Path, files: dict[str, Callable[[Path], None]], overwrite: bool = False) -> list[Path]:
    """Write several files into `target_dir` (which may already exist and hold other files).

    Each writer receives a temporary path in the same directory; it is renamed over the final name
    only after it was fully written. Under one lock per directory, so concurrent callers serialize
    and a file that appeared meanwhile is not rewritten (unless overwrite). The lock file lives inside
    `target_dir`: `target_dir` may be the data root itself (the maze sets' seed records sit beside
    their folders), and nothing may be written outside the data root, whose parent may be read-only."""
    ensure_writable(target_dir)
    written = []
    with file_lock(target_dir / ".deepthink-write.lock"):
        for name, writer in files.items():
            final = target_dir / name
            if final.exists() and not overwrite:
                continue
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=target_dir)
            os.close(fd)
            try:
                writer(Path(tmp))
                os.chmod(tmp, 0o644)   # mkstemp makes it owner-only; data is meant to be shared
                os.replace(tmp, final)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            written.append(final)
    return written


def write_dir_atomically(target_dir: Path, make: Callable[[Path], None], overwrite: bool = False) -> bool:
    """Create `target_dir` by letting `make(tmp)` fill a temp dir, then renaming it into place.

    Returns True if this call wrote it, False if it already existed (someone else made it)."""
    ensure_writable(target_dir.parent)
    with file_lock(target_dir.parent / f".{target_dir.name}.lock"):
        if target_dir.exists() and not overwrite:
            return False
        tmp = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.", dir=target_dir.parent))
        try:
            tmp.chmod(0o755)   # mkdtemp makes it owner-only; data is meant to be shared
            make(tmp)
            old = None
            if target_dir.exists():   # move aside first so readers never find the name missing for long
                old = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.old.", dir=target_dir.parent))
                os.replace(target_dir, old / "d")
            os.replace(tmp, target_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return True


def save_tensor(t, path: Path) -> None:
    """torch.save through a file object: given a path, torch names the archive inside the file after
    the (random) temporary file name, so identical data would give different bytes."""
    import torch
    with open(path, "wb") as fh:
        torch.save(t, fh)


def default_data_root() -> Path:
    return Path(os.environ.get("DEEPTHINK_DATA", "./data")).expanduser().resolve()


def add_data_root_argument(p) -> None:
    """The one `--data-root` option (deepthink data, train, sweep, demo)."""
    p.add_argument("--data-root", type=Path, default=None,
                   help="task data directory (default: $DEEPTHINK_DATA, else ./data)")


def resolve_data_root(arg: str | Path | None) -> Path:
    """--data-root, else $DEEPTHINK_DATA, else ./data; absolute (trials may run in another cwd)."""
    return Path(arg).expanduser().resolve() if arg is not None else default_data_root()


def e2h():
    """The easy_to_hard_data module, or a DataError saying how to install it."""
    try:
        import easy_to_hard_data
    except ModuleNotFoundError:
        raise DataError("the easy_to_hard_data package is not installed: run `pip install --no-deps "
                        "easy-to-hard-data==1.0.0` (--no-deps: its own pins do not build on Python 3.11; "
                        "`make demo`/`make test` do this)") from None
    return easy_to_hard_data


# ---- producing and loading a task's data -----------------------------------------------------------

PUBLISHED_DIR = "published"     # <data-root>/published/: data.source: published downloads here


@contextmanager
def root_lock(root: Path, name: str):
    """Exclusive lock on `root/name`; a root we cannot write to (a read-only shared copy) needs none."""
    try:
        ensure_writable(root)
    except DataError:
        if root.is_dir():
            yield
            return
        raise
    with file_lock(root / name):
        yield


def produce(task: "Task", root: Path, difficulty: int, split: str, count: int, seed: int,
            overwrite: bool = False) -> list[Path]:
    """Check the request (deepthink/tasks/options.py), `generate`, then record (seed, count) beside
    the files so that a later load with another data seed regenerates instead of silently reusing them."""
    from deepthink.tasks.options import check_request
    check_request(task, [difficulty], count, seed, f"{task.difficulty_name}")
    paths = task.generate(root, difficulty, split, count, seed, overwrite=overwrite)
    meta = task.meta_path(root, difficulty, split)
    if meta is not None:
        write_files_atomically(meta.parent, {meta.name: lambda p: p.write_text(
            json.dumps({"task": task.name, "difficulty": difficulty, "split": split,
                        "seed": seed, "count": count}) + "\n")}, overwrite=True)
    return paths


def recorded_seed(task: "Task", root: Path, difficulty: int, split: str) -> int | None:
    meta = task.meta_path(root, difficulty, split)
    try:
        return int(json.loads(meta.read_text())["seed"]) if meta is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return None      # no record (published or hand-made files): use them as they are


def ensure(task: "Task", root: Path, difficulty: int, split: str, count: int, seed: int) -> None:
    if not task.files_exist(root, difficulty, split):
        produce(task, root, difficulty, split, count, seed)


def load(task: "Task", root: Path, difficulty: int, split: str, count: int, seed: int,
         source: str = "generated") -> tuple["torch.Tensor", "torch.Tensor"]:
    """Exactly `count` examples (fewer only from a published file that has fewer), as
    (inputs float (N, C, *S), targets long (N, *S)), loaded by the easy_to_hard_data class.

    Published files live under `<root>/published/`, so they are never mistaken for generated
    files of the same names (the package only checks that a folder exists). Loading holds a
    lock per data root, so a trial never reads a set that another process is replacing."""
    root = Path(root)
    if source == "published":
        root = root / PUBLISHED_DIR
        with root_lock(root, ".download.lock"):
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    x, y = task.load_raw(root, difficulty, split, count, download=True)
            except OSError as e:   # urllib.error.URLError is an OSError
                raise DataError(
                    f"could not download the published {task.name} data into {root} ({e}); this machine "
                    f"may have no internet access. Use data.source: generated to generate it locally.") from None
        return x[:count], y[:count]
    with root_lock(root, ".load.lock"):
        ensure(task, root, difficulty, split, count, seed)
        with contextlib.redirect_stdout(io.StringIO()):   # the package prints on every load
            x, y = task.load_raw(root, difficulty, split, count, download=False)
        recorded = recorded_seed(task, root, difficulty, split)
        why = (f"has {x.shape[0]} examples, {count} asked" if x.shape[0] < count else
               f"was generated with seed {recorded}, seed {seed} asked" if recorded not in (None, seed) else None)
        if why:
            # Never train on fewer examples or on another seed's data without saying so.
            # (A task that cannot generate raises a DataError here.)
            print(f"deepthink: {task.name} {task.difficulty_name} {difficulty} ({split}) under {root} "
                  f"{why}: generating {count} (seed {seed})", file=sys.stderr)
            produce(task, root, difficulty, split, count, seed, overwrite=True)
            with contextlib.redirect_stdout(io.StringIO()):
                x, y = task.load_raw(root, difficulty, split, count, download=False)
    return x[:count], y[:count]
