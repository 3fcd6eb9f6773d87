"""One driver per sweep directory: the lock `<storage>/_<name>/driver.lock` (beside the results).

    with lock.hold(uri, wait=False, hint="deepthink sweep s.yaml --resume --wait"):
        ...   # check the directory, start Ray, fit

A second `deepthink sweep` on the same directory (fresh or --resume, from a shell or a `ray job`)
is refused with one line naming the driver that holds it (host, pid, since when), or, with
`--wait`, waits until that driver ends.

Local paths and shared mounts: the driver holds an exclusive `flock` on the file for its whole run.
The kernel drops it when the process ends in any way (kill -9 included), so a lock left behind by a
killed driver is simply taken over by the next one, with a note naming it; no timeout is involved.
The file's text says who holds it and carries a heartbeat the driver refreshes every HEARTBEAT_S.
On a shared filesystem whose flock does not reach across machines, a lock that names another host
with a heartbeat younger than STALE_AFTER_S is still respected; an older one is taken over.

Object storage (s3://, gs://): pyarrow.fs has no create-if-absent or compare-and-swap, so the lock
is an object holding the same text and heartbeat. A driver reads it, refuses if it names a live
holder (fresh heartbeat; on this host, a running pid), else writes its own, waits SETTLE_S and reads
it back: it runs only if its own token is still there. With read-after-write consistency (S3 and
GCS have it) two drivers exclude each other when each one's read-to-write gap is shorter than
SETTLE_S; a driver paused for longer than STALE_AFTER_S (or clocks skewed by that much) can lose
its lock to another. Best effort, not a guarantee: the results files themselves are protected
separately (deepthink.results.write_trial never replaces a finished trial's rows).

Ray-free (the check runs before Ray starts).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import shlex
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator

import pyarrow.fs as pafs

from deepthink.results import filesystem, is_local, state_dir
from deepthink.sweep.state import SweepError, join

LOCK_NAME = "driver.lock"           # in the sweep's state directory, never among the results
HEARTBEAT_S = 10.0                   # how often the holder rewrites its heartbeat
STALE_AFTER_S = 120.0                # a heartbeat older than this (another host, object storage) is stale
SETTLE_S = 3.0                       # object storage: write, wait this long, read back
POLL_S = 2.0                         # --wait: how often to look again
DESCRIBE_WAIT_S = 3.0   # how long a refused driver waits for a just-started holder to write its name
_SIZE = 2048                         # the local file's text is padded to this size (one write)


class SweepLocked(SweepError):
    """Another live driver holds the sweep directory; the message is one line naming it."""


@dataclass
class Holder:
    host: str
    pid: int
    since: str                      # ISO time (UTC) the driver took the lock
    heartbeat: float                # time.time() of its last heartbeat
    token: str
    command: str = ""

    @classmethod
    def me(cls) -> "Holder":
        now = time.time()
        since = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        return cls(socket.gethostname(), os.getpid(), since, now, uuid.uuid4().hex,
                   shlex.join(sys.argv)[:300])

    @classmethod
    def parse(cls, text: str | bytes | None) -> "Holder | None":
        try:
            d = json.loads(text) if text else None
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d}) if isinstance(d, dict) else None
        except (ValueError, TypeError, KeyError):
            return None     # empty, torn or foreign text: nobody we can name

    def text(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"

    def alive(self) -> bool:
        """Whether this holder may still be running (judged from outside, without its flock): a
        fresh heartbeat, and on this host a running pid (a pid reused since has a stale heartbeat)."""
        fresh = time.time() - self.heartbeat < STALE_AFTER_S
        if self.host == socket.gethostname():
            return fresh and _pid_alive(self.pid)
        return fresh


def _say(msg: str) -> None:
    print(msg, flush=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # someone else's process: it exists
        return True
    return True


# ---- local files: flock + text ------------------------------------------------------------------
class _LocalLock:
    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = None

    def try_acquire(self, me: Holder) -> tuple[bool, Holder | None]:
        """(True, previous holder if one was taken over) or (False, the live holder)."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:      # the directory went away (a refused start removed it)
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                continue
            try:
                import fcntl
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                holder = Holder.parse(os.pread(fd, _SIZE, 0).strip(b"\0 "))
                os.close(fd)
                return False, holder
            try:   # the previous holder unlinks the file on release: make sure we locked the live one
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = Holder.parse(os.pread(fd, _SIZE, 0).strip(b"\0 "))
            if previous and previous.token != me.token and previous.alive() and previous.host != me.host:
                # flock succeeded but a driver on another machine heartbeats here: this filesystem's
                # flock does not reach across machines, so respect the heartbeat
                os.close(fd)
                return False, previous
            self.fd = fd
            self.write(me)
            return True, previous

    def write(self, me: Holder) -> None:
        os.pwrite(self.fd, me.text().ljust(_SIZE), 0)

    def still_mine(self, me: Holder) -> bool:
        return True     # the flock is held until release

    def release(self, me: Holder) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)      # while still locked: a waiter re-checks the inode
        os.close(self.fd)
        self.fd = None


# ---- object storage: write, settle, read back ---------------------------------------------------
class _ObjectLock:
    def __init__(self, uri: str, settle_s: float | None = None):
        self.fs, self.path = filesystem(uri)
        self.settle_s = SETTLE_S if settle_s is None else settle_s     # read now: tests shorten it

    def _read(self) -> Holder | None:
        try:
            with self.fs.open_input_stream(self.path) as fh:
                return Holder.parse(fh.read())
        except (FileNotFoundError, OSError):
            return None

    def try_acquire(self, me: Holder) -> tuple[bool, Holder | None]:
        previous = self._read()
        if previous and previous.token != me.token and previous.alive():
            return False, previous
        self.write(me)
        time.sleep(self.settle_s)
        now = self._read()
        if now is None or now.token != me.token:
            return False, now
        return True, previous

    def write(self, me: Holder) -> None:
        if isinstance(self.fs, pafs.LocalFileSystem):     # (the tests' stand-in for a bucket)
            self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(self.path) as fh:
            fh.write(me.text())

    def still_mine(self, me: Holder) -> bool:
        now = self._read()
        return now is not None and now.token == me.token

    def release(self, me: Holder) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            if self.still_mine(me):       # never delete the lock of a driver that took over
                self.fs.delete_file(self.path)


# ---- the lock a driver holds ----------------------------------------------------------------------
class DriverLock:
    def __init__(self, uri: str, *, object_store: bool | None = None, log: Callable[[str], None] = _say):
        self.uri = uri
        self.me = Holder.me()
        self.log = log
        object_store = (not is_local(uri)) if object_store is None else object_store
        self.created_dir = False
        if object_store:
            self.impl: _LocalLock | _ObjectLock = _ObjectLock(lock_file(uri))
        else:
            fs, path = filesystem(state_dir(uri))
            self.created_dir = fs.get_file_info(path).type == pafs.FileType.NotFound
            os.makedirs(path, exist_ok=True)
            self.dir = path
            self.impl = _LocalLock(os.path.join(path, LOCK_NAME))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, *, wait: bool = False, hint: str = "") -> None:
        said = False
        # A holder that has taken the lock but not yet written who it is: give it a moment to, so the
        # refusal names it (host, pid, since when) instead of "a driver that is just starting".
        describe_by = time.monotonic() + DESCRIBE_WAIT_S
        while True:
            ok, other = self.impl.try_acquire(self.me)
            if ok:
                if other is not None and other.token != self.me.token:
                    self.log(f"note: took over the lock {lock_file(self.uri)} left by {other.describe()}, "
                             f"which is no longer running")
                break
            if other is None and time.monotonic() < describe_by:
                time.sleep(0.1)
                continue
            who = other.describe() if other else "a driver that is just starting"
            if not wait:
                self._cleanup_dir()
                raise SweepLocked(f"sweep directory {self.uri} is in use by another driver ({who}); "
                                  f"refusing to run a second one beside it"
                                  + (f". To run after it ends: {hint}" if hint else ""))
            if not said:
                self.log(f"waiting for the driver of {self.uri} to end ({who})")
                said = True
            time.sleep(POLL_S)
        self._thread = threading.Thread(target=self._heartbeat, name="deepthink-lock-heartbeat", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                if not self.impl.still_mine(self.me):
                    self.log(f"warning: another driver took over {lock_file(self.uri)}; "
                             f"this driver no longer holds the sweep directory")
                    return
                self.me.heartbeat = time.time()
                self.impl.write(self.me)
            except OSError as e:     # a storage hiccup: try again next beat
                self.log(f"warning: could not refresh the lock heartbeat ({e})")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.impl.release(self.me)
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        """A directory this driver created only to lock it (a refused start) is removed again."""
        if self.created_dir:
            with contextlib.suppress(OSError):
                os.rmdir(self.dir)


def lock_file(uri: str) -> str:
    """The lock of the sweep whose results go to `uri`."""
    return join(state_dir(uri), LOCK_NAME)


def running_driver(uri: str) -> Holder | None:
    """The driver that holds this sweep directory now, judged from outside (the --dry-run note):
    the lock's holder if its pid runs (this host) or its heartbeat is fresh (another host)."""
    fs, path = filesystem(lock_file(uri))
    try:
        with fs.open_input_stream(path) as fh:
            holder = Holder.parse(fh.read().strip(b"\0 "))
    except (FileNotFoundError, OSError):
        return None
    return holder if holder and holder.alive() else None


@contextlib.contextmanager
def hold(uri: str, *, wait: bool = False, hint: str = "", log: Callable[[str], None] = _say) -> Iterator[DriverLock]:
    lock = DriverLock(uri, log=log)
    lock.acquire(wait=wait, hint=hint)
    try:
        yield lock
    finally:
        lock.release()
