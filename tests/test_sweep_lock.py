"""One driver per sweep directory (deepthink/sweep/lock.py), without Ray: a second driver refused
with one line naming the first; a lock left by a killed driver taken over; another host's lock
respected while its heartbeat is fresh and taken over once stale; --wait; the object-storage lock
(exercised on a local directory through pyarrow.fs); and write_trial never replacing finished rows.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from deepthink.cli import main
from deepthink.results import FinishedResultsExist, read_results, write_trial
from deepthink.sweep import lock
from deepthink.sweep.lock import DriverLock, Holder, SweepLocked

ONE_LINE = re.compile(r"[^\n]*pid \d+ on \S+ since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC[^\n]*")


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(lock, "POLL_S", 0.05)
    monkeypatch.setattr(lock, "SETTLE_S", 0.05)
    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.1)


def test_second_driver_is_refused_with_one_line_naming_the_first(tmp_path):
    uri = str(tmp_path / "s")
    first = DriverLock(uri, log=lambda m: None)
    first.acquire()
    try:
        with pytest.raises(SweepLocked) as e:
            DriverLock(uri).acquire(hint="deepthink sweep s.yaml --resume --wait")
        msg = str(e.value)
        assert "\n" not in msg and ONE_LINE.fullmatch(msg)
        assert f"pid {os.getpid()} on {socket.gethostname()}" in msg and msg.endswith("--resume --wait")
    finally:
        first.release()
    assert not Path(lock.lock_file(str(tmp_path / "s"))).exists()
    assert not (tmp_path / "s").exists(), "a directory made only to lock it is removed again"
    again = DriverLock(uri)
    again.acquire()
    again.release()


def test_lock_of_a_killed_driver_is_taken_over(tmp_path):
    uri = str(tmp_path / "s")
    code = textwrap.dedent(f"""
        from deepthink.sweep.lock import DriverLock
        import time
        DriverLock({uri!r}).acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(SweepLocked, match=f"pid {proc.pid} "):
            DriverLock(uri).acquire()
    finally:
        os.kill(proc.pid, signal.SIGKILL)      # our own child, by pid
        proc.wait()
    notes = []
    taker = DriverLock(uri, log=notes.append)
    taker.acquire()
    taker.release()
    assert any(f"left by pid {proc.pid} on {socket.gethostname()}" in n and "no longer running" in n for n in notes)


def _plant(path, host, age_s):
    h = Holder(host=host, pid=4242, since="2026-01-01 00:00:00 UTC", heartbeat=time.time() - age_s, token="t")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(h.text())


def test_another_hosts_lock_counts_while_its_heartbeat_is_fresh(tmp_path):
    """A shared filesystem whose flock does not reach across machines: the heartbeat decides."""
    uri = str(tmp_path / "s")
    _plant(Path(lock.lock_file(str(tmp_path / "s"))), "other-host", age_s=5)
    with pytest.raises(SweepLocked, match="pid 4242 on other-host since 2026-01-01"):
        DriverLock(uri).acquire()
    _plant(Path(lock.lock_file(str(tmp_path / "s"))), "other-host", age_s=lock.STALE_AFTER_S + 1)
    notes = []
    taker = DriverLock(uri, log=notes.append)
    taker.acquire()
    taker.release()
    assert any("left by pid 4242 on other-host" in n for n in notes)


def test_wait_waits_for_the_running_driver(tmp_path, fast):
    uri = str(tmp_path / "s")
    first = DriverLock(uri, log=lambda m: None)
    first.acquire()
    threading.Timer(0.5, first.release).start()
    notes = []
    t0 = time.monotonic()
    second = DriverLock(uri, log=notes.append)
    second.acquire(wait=True)
    second.release()
    assert time.monotonic() - t0 >= 0.4
    assert any(f"waiting for the driver of {uri} to end (pid {os.getpid()}" in n for n in notes)


def test_heartbeat_is_refreshed(tmp_path, fast):
    uri = str(tmp_path / "s")
    held = DriverLock(uri)
    held.acquire()
    try:
        first = Holder.parse(Path(lock.lock_file(str(tmp_path / "s"))).read_bytes().strip()).heartbeat
        time.sleep(0.35)
        later = Holder.parse(Path(lock.lock_file(str(tmp_path / "s"))).read_bytes().strip()).heartbeat
        assert later > first
    finally:
        held.release()


def test_object_storage_lock(tmp_path, fast):
    """The write / settle / read-back lock used for s3:// and gs://, on a local directory."""
    uri = str(tmp_path / "s")
    (tmp_path / "s").mkdir()
    a = DriverLock(uri, object_store=True, log=lambda m: None)
    a.acquire()
    with pytest.raises(SweepLocked, match=f"pid {os.getpid()} on {socket.gethostname()}"):
        DriverLock(uri, object_store=True).acquire()      # a live pid on this host holds it
    a._stop.set()           # a stops heartbeating and its heartbeat ages past the limit
    _plant(Path(lock.lock_file(str(tmp_path / "s"))), "other-host", age_s=lock.STALE_AFTER_S + 1)
    c = DriverLock(uri, object_store=True, log=lambda m: None)
    c.acquire()
    assert not a.impl.still_mine(a.me) and c.impl.still_mine(c.me)
    a.release()                                  # the old holder ending late leaves c's lock alone
    assert c.impl.still_mine(c.me)
    c.release()
    assert not Path(lock.lock_file(str(tmp_path / "s"))).exists()


def test_object_storage_lock_of_a_dead_pid_on_this_host_is_taken_over(tmp_path, fast):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = Holder(host=socket.gethostname(), pid=int(gone.stdout), since="2026-01-01 00:00:00 UTC",
                  heartbeat=time.time(), token="t")
    Path(lock.lock_file(str(tmp_path / "s"))).parent.mkdir(parents=True)
    Path(lock.lock_file(str(tmp_path / "s"))).write_bytes(dead.text())
    notes = []
    taker = DriverLock(str(tmp_path / "s"), object_store=True, log=notes.append)
    taker.acquire()
    taker.release()
    assert any(f"left by pid {dead.pid} on {socket.gethostname()}" in n for n in notes)


def test_the_cli_refuses_a_second_driver_before_ray_starts(tmp_path, capsys):
    doc = {"name": "busy", "task": "prefix_sums", "data": {"train": 8, "eval": [10], "count": 200},
           "grid": {"model": ["dt_recall"], "max_iters": [2], "width": [8]}, "seeds": [0],
           "train": {"epochs": 1}, "test": {"iterations": 2}, "resources": {"cpu": 1, "gpu": 0},
           "storage": str(tmp_path / "results")}
    path = tmp_path / "busy.yaml"
    path.write_text(yaml.safe_dump(doc))
    held = DriverLock(str(tmp_path / "results" / "busy"))
    held.acquire()
    try:
        assert main(["sweep", str(path), "--dry-run"]) == 0
        assert f"a driver is running this sweep now (pid {os.getpid()} on" in capsys.readouterr().out
        for extra in ([], ["--resume"]):
            assert main(["sweep", str(path), "--data-root", str(tmp_path / "data"), *extra]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and ONE_LINE.fullmatch(err), err
            assert err.endswith(f"deepthink sweep {path} --data-root {tmp_path / 'data'} --resume --wait")
    finally:
        held.release()


# ---- write_trial never replaces finished rows --------------------------------------------------------
def _rows(tid, status="ok"):
    base = {"sweep": "s", "trial_id": tid, "task": "prefix_sums", "model": "dt_recall", "width": 8, "depth": None,
            "max_iters": 2, "alpha": 0.0, "seed": 0, "train_difficulty": 8, "epochs": 1, "lr": 1e-3}
    if status == "failed":
        return [{**base, "split": "test", "difficulty": 10, "test_iters": None, "accuracy": None,
                 "n_examples": None, "status": "failed", "n_params": None, "train_seconds": None, "error": "boom"}]
    return [{**base, "split": "test", "difficulty": 10, "test_iters": 1, "accuracy": 50.0, "n_examples": 10,
             "status": status, "n_params": 100, "train_seconds": 1.0}]


@pytest.mark.parametrize("held", ["ok", "diverged"])
def test_finished_rows_are_never_replaced_by_failed_ones(tmp_path, held):
    d = str(tmp_path / "s")
    write_trial(d, "t1", _rows("t1", held))
    before = (tmp_path / "s" / "trial-t1.parquet").read_bytes()
    for new, replace in (("failed", False), ("failed", True), ("ok", False)):
        with pytest.raises(FinishedResultsExist, match=f"trial t1's finished results \\(status {held}\\)"):
            write_trial(d, "t1", _rows("t1", new), replace_finished=replace)
        assert (tmp_path / "s" / "trial-t1.parquet").read_bytes() == before
    write_trial(d, "t1", _rows("t1", "ok"), replace_finished=True)     # deepthink train re-evaluating
    assert set(read_results(d)["status"]) == {"ok"}


def test_failed_or_unreadable_files_may_be_replaced(tmp_path):
    d = str(tmp_path / "s")
    write_trial(d, "t1", _rows("t1", "failed"))
    write_trial(d, "t1", _rows("t1", "ok"))                # --resume finished a failed trial
    (tmp_path / "s" / "trial-t2.parquet").write_bytes(b"PAR1 truncated")
    write_trial(d, "t2", _rows("t2", "failed"))
    assert sorted(read_results(d)["status"]) == ["failed", "ok"]
