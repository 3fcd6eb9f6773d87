"""The Ray Tune function trainable: one sweep trial = one `deepthink.train.run_trial` call.

    tune.get_checkpoint()   -> resume_from    (a retry or a --resume continues from the last epoch saved)
    on_epoch(metrics, dir)  -> tune.report(metrics, checkpoint=Checkpoint.from_directory(dir))
    log(message)            -> tune.report({"log": message})   (the driver prints it: progress.py)
    TrialOutcome.rows       -> <storage>/<name>/trial-<Ray trial id>.parquet, plus `node` and `device`

An exception from the trainer propagates, so Ray retries the trial from its last checkpoint
(FailureConfig.max_failures); a diverged trial returns normally with status 'diverged' and is not
retried. With early stopping, the trial reads the scheduler's decision before each epoch
(deepthink/sweep/schedulers.py): once stopped it evaluates its last weights and returns normally
with status 'stopped'. The last report repeats the last epoch's metrics, so that a scheduler or a
searcher (Optuna: its objective) sees them with the outcome. Imported only by runner.py (it
imports Ray at module level).

The trial prints nothing itself: its messages (device, resumed from, evaluation progress, ...)
travel in its reports to the driver, which prints each once, in order, beside the epoch lines it
prints from the epoch reports (so the trainer's own epoch lines are switched off here). What the
worker process prints otherwise (a library's warning, a crash) still reaches the terminal through
Ray's log echo. The scheduler passes over these message reports (their metrics are None).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import ray
from ray import tune
from ray.tune import Checkpoint


EPOCH_METRICS = ("epoch", "loss", "train_acc", "val_acc", "lr", "seconds", "node")   # deepthink.train's on_epoch + node


def node_label() -> str:
    """'<node IP>/<Ray node id prefix>': the IP says which machine; the id tells apart several Ray
    nodes on one machine (ray.cluster_utils.Cluster in the tests)."""
    return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"


def pick_device(gpu_share: float, log) -> tuple[str, str]:
    """(torch device, label for the results' `device` column). 'cuda' when the trial was given a
    GPU share and this worker sees a GPU (Ray sets CUDA_VISIBLE_DEVICES, so it is cuda:0 here),
    else 'cpu'. A fractional share caps this process's GPU memory: Ray packs 1/share trials on one
    GPU but does not isolate their memory."""
    import torch
    if gpu_share > 0 and torch.cuda.is_available():
        if gpu_share < 1:
            torch.cuda.set_per_process_memory_fraction(gpu_share, 0)
        label = f"cuda:{os.environ.get('CUDA_VISIBLE_DEVICES', '0')} {torch.cuda.get_device_name(0)} x{gpu_share:g}"
        log(f"device {label} (memory fraction {min(gpu_share, 1.0):g})")
        return "cuda", label
    if gpu_share > 0:
        log(f"warning: resources.gpu is {gpu_share:g} but this worker sees no CUDA device; using the CPU")
    log("device cpu")
    return "cpu", "cpu"


def intact_checkpoint(checkpoint: Checkpoint | None, config: dict, log) -> Checkpoint | None:
    """The checkpoint to resume from: Ray's latest if it loads, else the newest older one that does,
    else None (the trial starts over); deepthink/sweep/repair.py says which in the log."""
    from deepthink.sweep.repair import intact_checkpoint as pick
    if checkpoint is None:
        return None
    path = pick(checkpoint.filesystem, checkpoint.path, config, log)
    if path is None:
        return None
    return checkpoint if path == checkpoint.path else Checkpoint(path, filesystem=checkpoint.filesystem)


def train_trial(config: dict, *, data_root: str, sweep_uri: str, cpus: float, gpu_share: float,
                early_stopping: bool = False, metrics: tuple[str, ...] = ()) -> None:
    """Run one trial. `config["trial"]` is a TrialConfig dict (the sweep's grid_search over trials),
    or an adaptive search's template with config["sample"] (deepthink.trial.trial_from_tune).
    `early_stopping`: the sweep has a scheduler (read its stop markers). `metrics`: the ones the
    scheduler and searcher read; every report carries them (NaN where there is no value)."""
    import torch

    from deepthink.trial import trial_from_tune
    from deepthink.results import FinishedResultsExist, write_trial
    from deepthink.sweep.state import read_stop, trial_finished
    from deepthink.train import run_trial

    # Ray logs every persisted checkpoint at INFO; one line per epoch per trial drowns the progress.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    # ... and every restore ("Restored on <ip> from checkpoint: ..."); the trial says it itself.
    logging.getLogger("ray.tune.trainable.trainable").setLevel(logging.WARNING)
    cfg = trial_from_tune(config)
    trial_id = tune.get_context().get_trial_id()
    node = node_label()

    def log(msg: str) -> None:
        # A report of its own, printed by the driver as it arrives. It names the epoch metrics too
        # (as None): Ray's progress.csv takes its columns from a trial's first report.
        tune.report({**dict.fromkeys(EPOCH_METRICS), "log": msg})

    last: dict = {m: float("nan") for m in metrics}    # the last epoch's metrics, for the last report

    if trial_finished(sweep_uri, trial_id):
        # Finished before an interruption that Ray's saved state did not record yet: nothing to redo.
        # (A file of 'failed' rows does not count: --resume retries those trials.)
        log("finished results already written; skipping")
        tune.report({**last, "outcome": "written_before", "node": node})
        return

    torch.set_num_threads(max(1, int(cpus)))
    device, device_label = pick_device(gpu_share, log)

    def on_epoch(metrics: dict, ckpt_dir: Path | None) -> None:
        # tune.report persists the checkpoint directory to storage before it returns, so the
        # trainer may overwrite checkpoint.pt in the same directory next epoch.
        checkpoint = Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir is not None else None
        last.update({k: metrics[k] for k in ("epoch", "loss", "train_acc", "val_acc") if k in metrics})
        tune.report({**metrics, "node": node}, checkpoint=checkpoint)

    def should_stop(epoch: int) -> str | None:
        """The scheduler's reason when it stopped this trial after `epoch` or earlier
        (a resumed trial retrains from an older checkpoint up to that epoch, then stops)."""
        stop = read_stop(sweep_uri, trial_id)
        if stop is not None and epoch >= int(stop.get("epoch", 0)):
            return str(stop.get("reason", "stopped by the scheduler"))
        return None

    scratch = Path(tempfile.mkdtemp(prefix=f"deepthink-{trial_id}-"))
    checkpoint = intact_checkpoint(tune.get_checkpoint(), cfg.to_dict(), log)
    try:
        with (checkpoint.as_directory() if checkpoint else contextlib.nullcontext(None)) as resume_dir:
            if resume_dir:
                log(f"resuming from checkpoint {checkpoint.path}")
            outcome = run_trial(cfg, Path(data_root), trial_id=trial_id, checkpoint_dir=scratch,
                                resume_from=Path(resume_dir) if resume_dir else None,
                                on_epoch=on_epoch, device=device, log=log, node=node, device_label=device_label,
                                should_stop=should_stop if early_stopping else None, log_epochs=False)
        rows = outcome.rows
        try:
            write_trial(sweep_uri, trial_id, rows)
        except FinishedResultsExist as e:   # another run of this trial finished first: keep its rows
            log(f"{outcome.status}, but {e}")
            tune.report({**last, "outcome": "written_before", "node": node})
            return
        last.setdefault("epoch", outcome.epochs_completed)
        tune.report({**last, "outcome": outcome.status, "epochs_completed": outcome.epochs_completed,
                     "train_seconds": outcome.train_seconds, "rows": len(rows), "node": node})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
