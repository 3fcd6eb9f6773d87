"""Ways out of broken sweep states, used by `deepthink sweep --resume` and the trainable.

    trial_statuses(uri)          {trial id: 'ok' | 'diverged' | 'stopped' | 'failed' | 'corrupt'} (results.py)
    set_aside_corrupt(uri, log)  unreadable trial files -> corrupt/ (kept for a look); retrained
    finished_without_results()   trials Ray recorded as finished whose results file is missing
    before_resume(uri, ray_dir)  both of the above, said in the log (what --resume calls)
    intact_checkpoint(...)       the newest checkpoint of a trial that loads, newest first

Every state has a way out that --resume takes by itself:
- a trial file that cannot be read: moved to `corrupt/`, the trial is run again;
- a trial Ray recorded as finished but without its results file (deleted, lost in a copy): Ray is
  asked to resume finished trials too; those with their results skip at once, the missing one
  continues from its last checkpoint (after its last epoch: it is only evaluated again) or, without
  one, trains from the start;
- a checkpoint that cannot be loaded (truncated, foreign): the trial falls back to the newest older
  checkpoint that loads, or starts over, alone.

Ray-free except finished_without_results and before_resume (they read Ray's experiment state).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pyarrow.fs as pafs

from deepthink.results import FINISHED, filesystem, state_dir, trial_file, trial_statuses

CORRUPT_DIR = "corrupt"     # in the sweep's state directory <storage>/_<name>/, never among the results


def _say(msg: str) -> None:
    print(msg, flush=True)


def set_aside_corrupt(uri: str, log: Callable[[str], None] = _say) -> list[str]:
    """Move unreadable trial files to <storage>/_<name>/corrupt/ (out of the dataset) and say so.
    They keep their name but not the .parquet ending (`.parquet.corrupt`): no reader globbing
    for *.parquet below the storage picks them up."""
    fs, base = filesystem(uri)
    moved = []
    for tid, status in trial_statuses(uri).items():
        if status != "corrupt":
            continue
        src = trial_file(base, tid)
        dst_dir = f"{state_dir(base)}/{CORRUPT_DIR}"
        fs.create_dir(dst_dir, recursive=True)
        dst = f"{dst_dir}/trial-{tid}.{time.strftime('%Y%m%d-%H%M%S')}.parquet.corrupt"
        fs.move(src, dst)
        moved.append(tid)
        log(f"note: results file of trial {tid} cannot be read; moved it to {dst} and this --resume "
            f"runs the trial again")
    return moved


def finished_without_results(uri: str, ray_dir: str) -> list[str]:
    """Trial ids that Ray's saved experiment marks TERMINATED but that have no finished results
    file (ok, diverged or stopped): Ray would never run them again on its own."""
    from ray.tune import ExperimentAnalysis
    statuses = trial_statuses(uri)
    trials = ExperimentAnalysis(ray_dir).trials
    return sorted(t.trial_id for t in trials
                  if t.status == "TERMINATED" and statuses.get(t.trial_id) not in FINISHED)


def before_resume(uri: str, ray_dir: str, log: Callable[[str], None] = _say) -> bool:
    """Get the sweep directory ready for --resume, saying what it does: unreadable results files
    set aside; returns whether Ray must resume finished trials too (some lack their results)."""
    set_aside_corrupt(uri, log)
    missing = finished_without_results(uri, ray_dir)
    for tid in missing:
        log(f"note: trial {tid} finished but its results file is missing: this --resume runs it again "
            f"(from its last checkpoint if one loads, else from the start)")
    return bool(missing)


# ---- checkpoints -------------------------------------------------------------------------------
def checkpoint_problem(fs: pafs.FileSystem, path: str, config: dict[str, Any]) -> str | None:
    """Why the checkpoint directory `path` cannot be resumed from for `config`, or None if it can."""
    from deepthink.checkpoint import FILENAME, CheckpointError, load_checkpoint
    try:
        if isinstance(fs, pafs.LocalFileSystem):
            load_checkpoint(Path(path), config)
            return None
        with tempfile.TemporaryDirectory(prefix="deepthink-ckpt-") as tmp:
            try:
                with fs.open_input_stream(f"{path.rstrip('/')}/{FILENAME}") as src:
                    (Path(tmp) / FILENAME).write_bytes(src.read())
            except (FileNotFoundError, OSError):
                pass    # load_checkpoint names the missing file
            load_checkpoint(Path(tmp), config)
        return None
    except CheckpointError as e:
        return str(e)


def older_checkpoints(fs: pafs.FileSystem, path: str) -> list[str]:
    """Ray's other checkpoint directories of the same trial (checkpoint_NNNNNN), newest first,
    older than `path`."""
    parent, name = path.rstrip("/").rsplit("/", 1)
    try:
        infos = fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    except OSError:
        return []
    return sorted((i.path for i in infos if i.type == pafs.FileType.Directory
                   and i.base_name.startswith("checkpoint_") and i.base_name < name), reverse=True)


def intact_checkpoint(fs: pafs.FileSystem, path: str, config: dict[str, Any],
                      log: Callable[[str], None] = _say) -> str | None:
    """`path` if it loads; else the newest older checkpoint of the trial that loads (said in the
    log); else None: the trial starts over (said too)."""
    problem = checkpoint_problem(fs, path, config)
    if problem is None:
        return path
    for older in older_checkpoints(fs, path):
        if checkpoint_problem(fs, older, config) is None:
            log(f"latest checkpoint unusable ({problem}); resuming from the older checkpoint {older}")
            return older
    log(f"latest checkpoint unusable ({problem}) and no older one loads; training this trial from the start")
    return None
