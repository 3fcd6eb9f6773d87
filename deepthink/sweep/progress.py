"""Sweep progress as a Ray Tune Callback (runs in the driver): one line per event and a periodic
summary, printed to the terminal and appended to a log file.

    15:02:11 start  3c1f0_00002 dt_recall_w8_d12_a0_lr0.001_s0
    15:02:12 info   3c1f0_00002 dt_recall_w8_d12_a0_lr0.001_s0: device cpu
    15:02:14 epoch  3c1f0_00002 dt_recall_w8_d12_a0_lr0.001_s0 1/2 loss 0.6931 val_acc 12.5% lr 0.001 (2.1 s) on 10.0.0.5/1a2b3c4d pid 4242
    15:02:40 == 8 trials: 2 pending, 2 running, 3 done (3 ok, 0 diverged), 1 failed
    15:02:41 RETRY  3c1f0_00004 ... crashed (failure 1, max_failures 2): retrying from its last checkpoint
    15:02:50 FAILED 3c1f0_00005 ... ValueError: ...; wrote its rows with status 'failed'

`info` lines are the trial's own messages (deepthink.train's log: device, resumed from, evaluation
progress, ...), which the trial sends in reports of their own (trainable.py): each printed once,
in the order the trial sent them, between its epoch lines. The same lines go to the log file.

It also writes the rows of a trial that failed for good (results.failed_rows), since the trial's own
process is gone by then. Picklable: Ray saves it inside the experiment state and --resume brings it back.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from ray.tune import Callback

from deepthink.trial import trial_from_tune
from deepthink.results import FinishedResultsExist, failed_rows, write_trial


storage_error: str | None = None    # this driver's first storage failure (Tune may copy the callback)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class SweepProgress(Callback):
    def __init__(self, sweep_uri: str, max_failures: int, summary_every_s: float = 30.0,
                 n_trials: int | None = None):
        self.sweep_uri = sweep_uri
        # Tune creates trials lazily (one ahead of what may run: --max-concurrent 1 on a grid of 10
        # shows 5 after 4 have ended); the count reports the sweep's trials, the rest as pending.
        self.n_trials = n_trials
        self.max_failures = max_failures
        self.summary_every_s = summary_every_s
        self._last_summary = 0.0
        self.storage_error: str | None = None    # the first OSError writing the log or failed rows
        self._reset_timing()

    def _reset_timing(self) -> None:
        # For the time-left estimate, this driver's own measurements (monotonic clock: not carried
        # over by --resume): when each trial started here, and the wall time of every trial that
        # ran here from its first epoch to its end (a trial resumed from a checkpoint is not one).
        # Durations are kept by kind (model, width, iterations, alpha: what sets a trial's cost;
        # seeds and learning rates do not; alpha < 1 adds a full-length pass with autograd), so a
        # sweep of fast and slow models (the demo's DT-L and FF) is not estimated from one mean.
        self._started: dict[str, float] = {}
        self._whole: set[str] = set()
        self._durations: dict[tuple | None, list[float]] = {}
        self._kinds: dict[str, tuple | None] = {}

    def __getstate__(self):
        return {**self.__dict__, "storage_error": None}

    def storage_failed(self, what: str, e: OSError) -> None:
        """The driver's own storage failed (disk full, made read-only, gone): say it once and stop
        the sweep gracefully (as Ctrl-C does: Tune saves its state), so --resume can finish it."""
        if self.storage_error is not None:
            return
        self.storage_error = f"{what}: {type(e).__name__}: {e}"
        global storage_error
        storage_error = self.storage_error        # read by the runner after tuner.fit()
        print(f"deepthink sweep: error: storage failed while {self.storage_error}; stopping the sweep",
              file=sys.stderr, flush=True)
        try:
            os.kill(os.getpid(), signal.SIGINT)     # Tune's graceful stop
        except OSError:
            pass

    @property
    def log_path(self) -> str:
        """Computed, not stored: --resume brings this callback back from Ray's saved state, and a
        sweep of an earlier version stored a log path inside its results directory."""
        from deepthink.sweep.state import log_path
        return log_path(self.sweep_uri)

    def setup(self, **info) -> None:
        self._last_summary = time.monotonic()
        self._reset_timing()
        try:
            Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self.storage_failed(f"creating the log directory {Path(self.log_path).parent}", e)

    # -- output ---------------------------------------------------------------------------------
    def emit(self, line: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {line}"
        print(line, flush=True)
        if self.storage_error is not None:
            return                             # already failed: the terminal still gets the line
        try:
            with open(self.log_path, "a") as fh:   # opened per line: nothing to lose on a hard kill
                fh.write(line + "\n")
        except OSError as e:
            self.storage_failed(f"writing the log {self.log_path}", e)

    @staticmethod
    def _name(trial) -> str:
        return trial_from_tune(trial.config).trial_name if trial.config.get("trial") else trial.trial_id

    def _kind(self, trial) -> tuple | None:
        """What sets a trial's cost: (model, width, max_iters, alpha); None for a trial without a config."""
        if trial.trial_id not in self._kinds:
            kind = None
            if trial.config.get("trial"):
                t = trial_from_tune(trial.config)
                kind = (t.model, t.width, t.max_iters, t.train.alpha)
            self._kinds[trial.trial_id] = kind
        return self._kinds[trial.trial_id]

    def time_left(self, pending: int, running: list, pending_trials: list = ()) -> str | None:
        """'about 3.4 h left' from the wall times of the trials that ran whole in this driver: each
        pending or running trial is expected to take the mean of the timed trials of its kind
        (model, width, iterations, alpha), or of all timed trials where none of its kind has
        finished; the pending trials' share plus what the running ones have left, spread over the trials running
        at once. `pending` counts every pending trial, `pending_trials` those Tune has created (their
        kind is known). None before a trial has finished here, or with nothing left. Rough: it says
        so with 'about', and says how many running trials are past their estimate."""
        timed = [d for ds in self._durations.values() for d in ds]
        if not timed or not (pending or running):
            return None
        overall = sum(timed) / len(timed)
        means = {k: sum(ds) / len(ds) for k, ds in self._durations.items()}

        def expected(trial) -> float:
            return means.get(self._kind(trial), overall)

        now = time.monotonic()
        known = list(pending_trials)[:pending]
        work = sum(expected(t) for t in known) + (pending - len(known)) * overall
        late = 0
        for t in running:
            rest = expected(t) - (now - self._started.get(t.trial_id, now))
            late += rest < 0
            work += max(rest, 0.0)
        seconds = work / max(len(running), 1)
        left = (f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min" if seconds >= 90
                else f"{seconds:.0f} s")
        lo, hi = min(means.values()), max(means.values())
        per = (f"{overall / 60:.1f} min per trial" if hi - lo < 0.05 * hi
               else f"{lo / 60:.1f}-{hi / 60:.1f} min per trial by model and size")
        past = f"; {late} running past {'its' if late == 1 else 'their'} estimate" if late else ""
        return f"about {left} left ({per}, {len(timed)} timed here{past})"

    def summary(self, trials, final: bool = False) -> str:
        by = {s: [t for t in trials if t.status == s] for s in ("PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR")}
        # A trial that returned reported an outcome; one stopped by Ctrl-C is TERMINATED without one.
        done = [t for t in by["TERMINATED"] if "outcome" in t.last_result]
        interrupted = len(by["TERMINATED"]) - len(done)
        diverged = sum(1 for t in done if t.last_result.get("outcome") == "diverged")
        early = sum(1 for t in done if t.last_result.get("outcome") == "stopped")
        total = max(len(trials), getattr(self, "n_trials", None) or 0)   # a sweep saved before: None
        pending = len(by["PENDING"]) + len(by["PAUSED"]) + total - len(trials)
        return (f"== {total} trials: {pending} pending, "
                f"{len(by['RUNNING'])} running, {len(done)} done ({len(done) - diverged - early} ok, "
                f"{diverged} diverged{f', {early} stopped early' if early else ''}), {len(by['ERROR'])} failed"
                + (f", {interrupted} interrupted" if interrupted else "")
                + ("" if final
                   or not (left := self.time_left(pending, by["RUNNING"], by["PENDING"] + by["PAUSED"]))
                   else f"; {left}"))

    # -- Tune hooks -------------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._started[trial.trial_id] = time.monotonic()
        self.emit(f"start  {trial.trial_id} {self._name(trial)}")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if result.get("log") is not None:
            for line in str(result["log"]).splitlines() or [""]:
                self.emit(f"info   {trial.trial_id} {self._name(trial)}: {line}")
            return
        if "epoch" not in result or "outcome" in result:     # the last report repeats the last epoch
            return
        if result["epoch"] == 1 and trial.trial_id in self._started:
            self._whole.add(trial.trial_id)        # trained here from its first epoch: timed
        epochs = trial_from_tune(trial.config).train.epochs if trial.config.get("trial") else "?"
        units = {"loss": "", "train_acc": "%", "val_acc": "%", "lr": ""}
        shown = " ".join(f"{k} {_fmt(result[k])}{u}" for k, u in units.items() if result.get(k) is not None)
        seconds = f" ({result['seconds']:.1f} s)" if isinstance(result.get("seconds"), (int, float)) else ""
        self.emit(f"epoch  {trial.trial_id} {self._name(trial)} {result['epoch']}/{epochs} {shown}"
                  f"{seconds} on {result.get('node', '?')} pid {result.get('pid', '?')}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        r = trial.last_result
        if trial.trial_id in self._whole and trial.trial_id in self._started:
            took = time.monotonic() - self._started[trial.trial_id]
            self._durations.setdefault(self._kind(trial), []).append(took)
        if r.get("outcome") == "written_before":
            self.emit(f"done   {trial.trial_id} {self._name(trial)}: its results were already written")
            return
        epochs = f"{r.get('epochs_completed', '?')} epochs"
        if r.get("outcome") == "stopped":
            epochs = (f"stopped early after {r.get('epochs_completed', '?')} of "
                      f"{trial_from_tune(trial.config).train.epochs} epochs, last weights evaluated")
        self.emit(f"done   {trial.trial_id} {self._name(trial)}: {r.get('outcome', '?')}, "
                  f"{epochs}, {r.get('rows', '?')} rows")

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self.emit(f"RETRY  {trial.trial_id} {self._name(trial)} crashed (failure {trial.num_failures}, "
                  f"max_failures {self.max_failures}): retrying from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = error_text(trial)
        last = error.strip().splitlines()[-1] if error.strip() else "unknown error"
        try:
            write_failed(self.sweep_uri, trial, error)
            wrote = "wrote its rows with status 'failed'"
        except FinishedResultsExist:    # it finished before failing (e.g. in another run): keep that
            wrote = "kept its finished results file (failed rows never replace finished ones)"
        except OSError as e:
            self.storage_failed(f"writing the failed rows of trial {trial.trial_id}", e)
            wrote = "could NOT write its rows (storage failed); --resume retries it"
        self.emit(f"FAILED {trial.trial_id} {self._name(trial)} after {trial.num_failures} failure(s): "
                  f"{last}; {wrote}")

    def on_step_end(self, iteration, trials, **info) -> None:
        if time.monotonic() - self._last_summary >= self.summary_every_s:
            self._last_summary = time.monotonic()
            self.emit(self.summary(trials))

    def on_experiment_end(self, trials, **info) -> None:
        self.emit(self.summary(trials, final=True))


def error_text(trial, limit: int = 4000) -> str:
    """The trial's last error traceback, tail-truncated. Ray writes error.txt into the driver's local
    trial directory first and syncs it to storage later, so the local file is read first."""
    try:
        local = trial.error_file
        if local and Path(local).exists():
            return Path(local).read_text()[-limit:]
        err = trial.get_error()
    except Exception as e:   # a storage hiccup must not stop the sweep
        return f"(could not read the trial's error: {e})"
    return (str(err) if err is not None else "unknown error")[-limit:]


def write_failed(sweep_uri: str, trial, error: str) -> str:
    """The one place a failed trial's rows are written (from on_trial_error, as the trial fails)."""
    cfg = trial_from_tune(trial.config)
    last = trial.last_result or {}
    rows = failed_rows(cfg, trial.trial_id, error, epochs_completed=last.get("epoch"), node=last.get("node"))
    return write_trial(sweep_uri, trial.trial_id, rows)
