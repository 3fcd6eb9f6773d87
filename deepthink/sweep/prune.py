"""A Tune Callback (runs in the driver): a finished trial keeps only its last checkpoint.

While a trial trains Ray keeps its newest CHECKPOINTS_KEPT (2) checkpoints, so a crash in the
middle of writing one leaves an intact one beside it (repair.intact_checkpoint falls back to it).
Once the trial has finished (its results file is written) the older one serves nothing; the last
one stays, so a trial whose results file goes missing is evaluated again from it by --resume
instead of being trained again (repair.py).

Uses Ray's checkpoint bookkeeping (`trial.run_metadata.checkpoint_manager`, private in Ray 2.60):
the deleted checkpoints are dropped from it too, so Ray never tries to delete them again. Should
that API change, the callback logs once and keeps every checkpoint (nothing is lost).
"""
from __future__ import annotations

import logging

from ray.tune import Callback

log = logging.getLogger(__name__)


class KeepLastCheckpoint(Callback):
    def __init__(self):
        self._warned = False

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        try:
            manager = trial.run_metadata.checkpoint_manager
            latest = manager.latest_checkpoint_result
            older = [r for r in manager._checkpoint_results if r is not latest]
            if latest is None or not older:
                return
            for result in older:
                ckpt = result.checkpoint
                try:
                    ckpt.filesystem.delete_dir(ckpt.path)
                except FileNotFoundError:
                    pass
            manager._checkpoint_results = [latest]
            trial.run_metadata.invalidate_cache()
            trial.invalidate_json_state()
        except (AttributeError, OSError) as e:
            if not self._warned:
                self._warned = True
                log.warning("could not prune the checkpoints of finished trials (%s: %s); keeping them all",
                            type(e).__name__, e)
