"""Checks of a sweep's storage before Ray starts (and in --dry-run): one ConfigError line naming the
file, the key `storage`, the value and the fix.

- A local path: the path itself, or its nearest existing parent, must be a writable directory
  (probed by creating and removing a file, so it holds for root too, whom chmod does not stop).
- s3://, gs://...: pyarrow.fs must reach the bucket within STORAGE_TIMEOUT_S seconds.
"""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from deepthink.configfile import ConfigError
from deepthink.results import filesystem, is_local

STORAGE_TIMEOUT_S = 10.0


def _error(path: str, storage: str, where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path}: key 'storage'{where}: found {storage!r}: {problem}; expected {fix}")


def check_storage(path: str, storage: str, uri: str, where: str = "") -> None:
    """Raise ConfigError when the sweep directory `uri` (under `storage`) cannot be written."""
    if is_local(uri):
        _check_local(path, storage, uri, where)
    else:
        _check_remote(path, storage, uri, where)


def _check_local(path: str, storage: str, uri: str, where: str) -> None:
    fix = "a writable directory or a path that can be created (set storage: in the file or --storage PATH)"
    p = Path(uri)
    existing = p
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        what = f"{uri} lies under {existing}, which is a file, not a directory"
        if existing == p:
            what = f"{uri} is a file, not a directory"
        elif existing == p.parent:
            what = f"{existing} is a file, not a directory"
        raise _error(path, storage, where, what, fix)
    if not existing.exists():
        raise _error(path, storage, where, f"{existing} does not exist", fix)
    try:
        fd, probe = tempfile.mkstemp(prefix=".deepthink-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise _error(path, storage, where, f"{existing} is not writable ({e.strerror or e})", fix) from None


def _check_remote(path: str, storage: str, uri: str, where: str) -> None:
    fix = "a reachable bucket with credentials (check the name, network and AWS/GCS credentials)"

    def probe() -> None:
        fs, p = filesystem(uri)
        bucket = p.split("/", 1)[0]
        info = fs.get_file_info(bucket)
        import pyarrow.fs as pafs
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"bucket {bucket!r} not found")

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            probe()
            outcome.append(None)
        except BaseException as e:      # reported below
            outcome.append(e)

    # A daemon thread: a probe that hangs (no network, a firewall dropping packets) is abandoned
    # after the timeout and does not keep the process from exiting.
    thread = threading.Thread(target=run, name="deepthink-storage-probe", daemon=True)
    thread.start()
    thread.join(STORAGE_TIMEOUT_S)
    if not outcome:
        raise _error(path, storage, where, f"no answer from {uri} within {STORAGE_TIMEOUT_S:g} s", fix)
    e = outcome[0]
    if e is not None:           # pyarrow raises OSError / ArrowInvalid with its own text
        text = " ".join(str(e).split())[:300]
        raise _error(path, storage, where, f"cannot reach it ({type(e).__name__}: {text})", fix)
