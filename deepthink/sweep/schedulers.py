"""Early stopping (`scheduler:` in a sweep file): Ray Tune's ASHA, with stopped trials evaluated.

Ray's own STOP ends a trial's process at its next report: the trial would leave no results. Here
ASHA decides exactly as Ray's AsyncHyperBandScheduler does (it is one, on the per-epoch `epoch`
count), but a STOP becomes a marker `<storage>/_<name>/stops/<trial id>.json` ("stop after epoch
E"; beside the results, which hold only Parquet) and the trial goes on to its next report. The
trial reads the marker before its next epoch, ends training there, evaluates the weights of epoch E
at every test iteration and writes its rows with status 'stopped' and epochs_completed E, on its
own resources; then it returns like any finished trial. A trial's message reports (trainable.py)
carry no metrics and are passed over.

Why that works without waiting: a Tune function trainable reports synchronously (Ray 2.60: the
training thread blocks in `tune.report` until the driver has processed the result, scheduler
decision included, and asks for the next one), so the marker exists before `tune.report` returns.
The marker is durable: a trial interrupted after its stop (Ctrl-C, a lost node) and resumed reads it
again and stops at the same epoch; --resume never trains a stopped trial on (its rows count as
finished). ASHA's own state is not part of Tune's experiment checkpoint: after --resume the rungs
start empty, so trials resumed mid-way are compared only with the trials that report after it.

Imported only by runner.py (imports Ray).
"""
from __future__ import annotations

import sys
import time

from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from deepthink.config import SweepConfig
from deepthink.trial import trial_from_tune
from deepthink.sweep import state


class StopAfterEpoch(AsyncHyperBandScheduler):
    def __init__(self, sweep_uri: str, *, metric: str, mode: str, grace_period: int, reduction_factor: float,
                 max_t: int):
        super().__init__(time_attr="epoch", metric=metric, mode=mode, max_t=max_t, grace_period=grace_period,
                         reduction_factor=reduction_factor, brackets=1, stop_last_trials=True)
        self.sweep_uri = sweep_uri
        self._marked: set[str] = set()

    @property
    def log_path(self) -> str:
        """The sweep's progress log, computed (as SweepProgress.log_path): the scheduler is saved
        with the experiment, and one of an earlier version stored a path inside the results."""
        return state.log_path(self.sweep_uri)

    def _say(self, line: str) -> None:
        """A line in the progress format, to the terminal and the sweep's log (best effort)."""
        line = f"{time.strftime('%H:%M:%S')} {line}"
        print(line, flush=True)
        if self.log_path:
            try:
                with open(self.log_path, "a") as fh:
                    fh.write(line + "\n")
            except OSError:
                pass

    def _cutoff(self, trial_id: str, epoch: float) -> tuple[float | None, float | None]:
        """(rung epoch, cutoff) that ASHA compares this result with (for the log; Ray's bookkeeping)."""
        try:
            bracket = self._trial_info[trial_id]
            for milestone, recorded in bracket._rungs:
                if epoch < milestone or trial_id in recorded:
                    continue
                cutoff = bracket.cutoff(recorded)    # in ASHA's sign (x -1 for mode min)
                return milestone, None if cutoff is None else float(cutoff) * self._metric_op
        except (AttributeError, KeyError, TypeError):
            pass
        return None, None

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if "outcome" in result or result.get("log") is not None or trial.trial_id in self._marked:
            # a trial's last report, a message (trainable.py: its metrics are None), or a trial
            # already told to stop
            return TrialScheduler.CONTINUE
        if trial.trial_id not in self._trial_info:       # restored trials (--resume)
            self.on_trial_add(tune_controller, trial)
        epoch, value = result.get("epoch"), result.get(self._metric)
        rung, cutoff = self._cutoff(trial.trial_id, epoch) if epoch is not None else (None, None)
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision != TrialScheduler.STOP:
            return decision
        if epoch >= trial_from_tune(trial.config).train.epochs:
            return TrialScheduler.CONTINUE     # its last epoch: it ends by itself, not stopped
        if epoch >= self._max_t:
            reason = f"ASHA: reached max_t ({self._max_t} epochs)"
        else:
            cut = f"{cutoff:.4g}" if cutoff is not None else "?"
            reason = (f"ASHA: {self._metric} {value:.4g} {'below' if self._mode == 'max' else 'above'} the cutoff "
                      f"{cut} at the rung of epoch {rung:g} (the best 1/{self._reduction_factor:g} go on)")
        try:
            state.write_stop(self.sweep_uri, trial.trial_id, int(epoch), reason)
        except OSError as e:    # cannot tell the trial: it trains on (nothing is lost)
            print(f"warning: could not record that trial {trial.trial_id} stops ({e}); it trains on",
                  file=sys.stderr, flush=True)
            return TrialScheduler.CONTINUE
        self._marked.add(trial.trial_id)
        self._say(f"stop   {trial.trial_id} after epoch {int(epoch)}: {reason}; it evaluates its last weights")
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if trial.trial_id in self._trial_info:
            super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._trial_info.pop(trial.trial_id, None)


def make_scheduler(sweep: SweepConfig, uri: str) -> StopAfterEpoch | None:
    """The sweep's scheduler, or None (Tune's FIFO: every trial runs all its epochs)."""
    s = sweep.scheduler
    if s is None:
        return None
    return StopAfterEpoch(uri, metric=s.metric, mode=s.direction, grace_period=s.grace_period,
                          reduction_factor=s.reduction_factor, max_t=s.max_t or sweep.max_epochs())
