"""Checks of a sweep's storage before Ray starts (and in --dry-run): one ConfigError line naming the
file, the key `storage`, the value and the fix.

- A local path: the path itself, or its nearest existing parent, must be a writable directory
  (probed by creating and removing a file, so it holds for root too, whom chmod does not stop).
- s3://, gs://...: pyarrow.fs must reach the bucket within STORAGE_TIMEOUT_S seconds.
"""
from __future__ import annotations

import concurrent.futures
import os
import tempfile
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

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(probe).result(timeout=STORAGE_TIMEOUT_S)
    except concurrent.futures.TimeoutError:
        raise _error(path, storage, where, f"no answer from {uri} within {STORAGE_TIMEOUT_S:g} s",
                     fix) from None
    except Exception as e:      # pyarrow raises OSError / ArrowInvalid with its own text
        text = " ".join(str(e).split())[:300]
        raise _error(path, storage, where, f"cannot reach it ({type(e).__name__}: {text})", fix) from None
    finally:
        pool.shutdown(wait=False)
