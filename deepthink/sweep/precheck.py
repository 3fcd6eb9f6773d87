"""Checks of a sweep's storage before Ray starts (and in --dry-run): one ConfigError line naming the
file, the key `storage`, the value and the fix.

- A local path: the path itself, or its nearest existing parent, must be a writable directory
  (probed by creating and removing a file, so it holds for root too, whom chmod does not stop).
- s3://, gs://...: pyarrow.fs must reach the bucket and write beside the results, into the sweep's
  state directory <storage>/_<name>/ (a probe object, removed again; the results hold only Parquet) within STORAGE_TIMEOUT_S seconds. A custom endpoint (MinIO, Ceph, moto)
  goes in the URI's query (`?endpoint_override=HOST:PORT&scheme=http`) or in AWS_ENDPOINT_URL.
- Inside a Ray job (`ray job submit`), a relative local path is refused: it would resolve against
  the job's working directory, which with `--working-dir` is a copy that Ray deletes afterwards.
"""
from __future__ import annotations

import os
import tempfile
import threading
import uuid
from pathlib import Path

from deepthink.configfile import ConfigError
from deepthink.results import filesystem, is_local, join_uri, state_dir

STORAGE_TIMEOUT_S = 10.0


def _error(path: str, storage: str, where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path}: key 'storage'{where}: found {storage!r}: {problem}; expected {fix}")


RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"    # set by Ray 2.60's job supervisor for a job's entrypoint


def ray_job() -> dict | None:
    """The Ray job this process runs in (`ray job submit`): {"id": submission id, "working_dir":
    the runtime env's, or None}; None outside a job. Ray's job supervisor gives the entrypoint
    RAY_JOB_CONFIG_JSON_ENV_VAR = {"runtime_env": {...}, "metadata": {"job_submission_id": ...}}."""
    import json
    text = os.environ.get(RAY_JOB_ENV)
    if not text:
        return None
    try:
        d = json.loads(text)
    except ValueError:
        d = {}
    d = d if isinstance(d, dict) else {}
    meta, env = d.get("metadata") or {}, d.get("runtime_env") or {}
    return {"id": meta.get("job_submission_id") or "?", "working_dir": env.get("working_dir")}


def check_storage(path: str, storage: str, uri: str, where: str = "") -> None:
    """Raise ConfigError when the sweep directory `uri` (under `storage`) cannot be written."""
    if is_local(uri):
        _check_job_relative(path, storage, where)
        _check_local(path, storage, uri, where)
    else:
        _check_remote(path, storage, uri, where)


def _check_job_relative(path: str, storage: str, where: str) -> None:
    local = storage[len("file://"):] if storage.startswith("file://") else storage
    job = ray_job()
    if job is None or Path(local).expanduser().is_absolute():
        return
    cwd = os.getcwd()
    copy = " (a copy of --working-dir that Ray deletes when the job ends)" if job["working_dir"] else ""
    raise _error(path, storage, where,
                 f"a relative path inside Ray job {job['id']} resolves against the job's working directory "
                 f"{cwd}{copy}, on whichever node runs the driver",
                 "an absolute path on a filesystem every node mounts, or s3://BUCKET/PATH (set storage: in "
                 "the file or --storage)")


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
    fix = ("a bucket that exists and that these credentials may write (check the bucket name, the "
           "endpoint: ?endpoint_override=HOST:PORT&scheme=http in the URI or AWS_ENDPOINT_URL, the "
           "network and the AWS/GCS credentials)")

    stage = ["reach it"]

    def probe() -> None:
        import pyarrow.fs as pafs
        fs, p = filesystem(state_dir(uri))
        bucket = p.split("/", 1)[0]
        info = fs.get_file_info(bucket)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"bucket {bucket!r} not found")
        # Reading is not enough: Ray, the lock and the trials write here. A probe object, removed
        # again, in <storage>/_<name>/ (a leftover there is no reader's business).
        stage[0] = f"write into it (tried {join_uri(state_dir(uri), '.deepthink-probe-*')})"
        probe_path = f"{p.rstrip('/')}/.deepthink-probe-{uuid.uuid4().hex}"
        with fs.open_output_stream(probe_path) as fh:
            fh.write(b"probe")
        fs.delete_file(probe_path)

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
        raise _error(path, storage, where, f"cannot {stage[0]} ({type(e).__name__}: {text})", fix)
