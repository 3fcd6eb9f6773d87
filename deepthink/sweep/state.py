"""The sweep directory `<storage>/<name>/`: what already exists there, resume/refuse, saved config, rows.

    trial-<ray trial id>.parquet   results: one file per finished trial (deepthink.results.write_trial)
    _config/sweep.yaml             the resolved sweep (every default filled in)
    _config/trials.yaml            one entry per trial: the exact TrialConfig each trial runs
    _config/source.yaml            the sweep file as given
    _ray/                          Ray Tune's experiment state and checkpoints (what --resume restores)
    _logs/sweep.log                the progress log (local storage; see progress.py for URIs)
    _stops/<trial id>.json         early stopping: the scheduler's decision that a trial stops after
                                   an epoch (the trial reads it, evaluates and writes status 'stopped')

Names starting with '_' are ignored by pyarrow, so `pandas.read_parquet(<storage>/<name>)` reads only
results. A directory that already holds Ray state or results is never reused silently: without
--resume the sweep refuses (and says how to finish or start fresh); with --resume Ray restores the
experiment with the trials it was started with, so a changed sweep file is refused as well.

Ray-free: the dry run and the refusal happen before Ray starts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import yaml

from deepthink.config import SweepConfig, TrialConfig
from deepthink.results import (FINISHED, filesystem, finished_status, is_local, join_uri, trial_file,
                               trial_statuses, written_trials)

RAY_DIR = "_ray"
CONFIG_DIR = "_config"
LOG_DIR = "_logs"
STOPS_DIR = "_stops"
# Ray Tune writes this file when an experiment starts; Tuner.can_restore() looks for the same name.
TUNER_STATE = "tuner.pkl"


class SweepError(RuntimeError):
    """The sweep cannot run as asked; the message says why and what to do instead."""


def sweep_uri(storage: str, name: str) -> str:
    """`<storage>/<name>` as an absolute local path or a URI (s3://, gs://)."""
    if is_local(storage):
        local = storage[len("file://"):] if storage.startswith("file://") else storage
        return str(Path(local).expanduser().resolve() / name)
    return join_uri(storage, name)


def join(uri: str, *parts: str) -> str:
    """A path below the sweep directory (before a URI's query string: results.join_uri)."""
    return join_uri(uri, *parts)


def _exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def has_ray_state(uri: str) -> bool:
    return _exists(join(uri, RAY_DIR, TUNER_STATE))


def finished_trials(uri: str) -> set[str]:
    """Trial ids whose results file holds a finished trial (status ok, diverged or stopped, not
    failed). A file that cannot be read is not finished (--resume sets it aside and runs the trial again)."""
    return {tid for tid, s in trial_statuses(uri).items() if s in FINISHED}


def trial_finished(uri: str, trial_id: str) -> bool:
    """Whether this one trial already has finished results (a retry or resume can skip it)."""
    fs, base = filesystem(uri)
    return finished_status(fs, trial_file(base, trial_id)) is not None


def stop_marker(uri: str, trial_id: str) -> str:
    return join(uri, STOPS_DIR, f"{trial_id}.json")


def write_stop(uri: str, trial_id: str, epoch: int, reason: str) -> None:
    """The scheduler's decision: trial `trial_id` stops after `epoch` (written once, by the driver)."""
    import json
    _write_text(stop_marker(uri, trial_id), json.dumps({"epoch": int(epoch), "reason": reason}))


def read_stop(uri: str, trial_id: str) -> dict | None:
    """{"epoch": E, "reason": text} when the scheduler stopped this trial after epoch E, else None
    (also when the marker cannot be read: the trial then trains on)."""
    import json
    try:
        text = _read_text(stop_marker(uri, trial_id))
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def check_start(uri: str, n_trials: int, resume: bool, sweep_file: str, resume_command: str | None = None) -> set[str]:
    """Refuse to start over an existing sweep, or to resume one that does not exist.
    `resume_command`: the command to suggest for finishing it (default: FILE --resume).

    Returns the trial ids that already have finished results."""
    state, done, files = has_ray_state(uri), finished_trials(uri), written_trials(uri)
    if not resume and (state or files):
        what = "Ray state" if state else "results but no Ray state"
        finished = "finished" if len(done) >= n_trials else "unfinished"
        failed = len(files - done)
        hint = (f"To finish it: {resume_command or f'deepthink sweep {sweep_file} --resume'}\n" if state else "")
        raise SweepError(
            f"sweep directory {uri} already exists ({what}; {len(done)} of {n_trials} trials finished"
            f"{f', {failed} failed' if failed else ''}; the sweep looks {finished}). Refusing to start it "
            f"again over old results.\n"
            f"{hint}To start fresh: delete {uri} (e.g. rm -r {uri}) or change `name:` in {sweep_file}.")
    if resume and not state:
        extra = f" ({len(files)} results files, but no Ray state under {RAY_DIR}/)" if files else ""
        raise SweepError(f"nothing to resume at {uri}{extra}. Run without --resume to start the sweep.")
    return done


def _trial_entries(trials: list[TrialConfig]) -> list[dict[str, Any]]:
    # `storage` is where results go, not what a trial computes: --storage may move a sweep.
    return [{k: v for k, v in t.to_dict().items() if k != "storage"} for t in trials]


def _write_text(uri: str, text: str) -> None:
    fs, path = filesystem(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as fh:
        fh.write(text.encode())


def _read_text(uri: str) -> str | None:
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as fh:
        return fh.read().decode()


def save_config(uri: str, sweep: SweepConfig, trials: list[TrialConfig], source_text: str) -> None:
    resolved = sweep.to_dict()
    _write_text(join(uri, CONFIG_DIR, "sweep.yaml"), yaml.safe_dump(resolved, sort_keys=False))
    _write_text(join(uri, CONFIG_DIR, "trials.yaml"), yaml.safe_dump(_trial_entries(trials), sort_keys=False))
    _write_text(join(uri, CONFIG_DIR, "source.yaml"), source_text)


def saved_max_trials(uri: str) -> int | None:
    """The trial cap a sweep was started with (the file's `max_trials:` or --max-trials), from
    _config/sweep.yaml: --resume allows the grid that the first run allowed. None when not saved
    (no sweep there, or one started by an older version)."""
    text = _read_text(join(uri, CONFIG_DIR, "sweep.yaml"))
    try:
        value = (yaml.safe_load(text) or {}).get("max_trials") if text else None
    except yaml.YAMLError:
        return None
    return value if isinstance(value, int) and value > 0 else None


def _sweep_entry(sweep: SweepConfig) -> dict[str, Any]:
    return {k: v for k, v in sweep.to_dict().items() if k not in ("storage", "description", "max_trials")}


def check_same_sweep(uri: str, sweep: SweepConfig, sweep_file: str) -> None:
    """On --resume of an adaptive search (no trial list before the run): the resolved sweep must be
    the one it was started with."""
    saved_text = _read_text(join(uri, CONFIG_DIR, "sweep.yaml"))
    if saved_text is None:
        return
    saved = {k: v for k, v in (yaml.safe_load(saved_text) or {}).items() if k not in ("storage", "description", "max_trials")}
    now = yaml.safe_load(yaml.safe_dump(_sweep_entry(sweep), sort_keys=False))
    if saved == now:
        return
    keys = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    raise SweepError(
        f"{sweep_file} no longer matches the sweep saved at {join(uri, CONFIG_DIR)} (it differs in {keys}). "
        f"Ray resumes the search a sweep was started with; restore the file, or start a new sweep under "
        f"another `name:`.")


def check_same_trials(uri: str, trials: list[TrialConfig], sweep_file: str, sweep: SweepConfig | None = None) -> None:
    """On --resume: the file must still describe the trials the experiment was started with."""
    if sweep is not None and sweep.adaptive:
        return check_same_sweep(uri, sweep, sweep_file)
    saved_text = _read_text(join(uri, CONFIG_DIR, "trials.yaml"))
    if saved_text is None:
        return   # started by an older version or the config write was lost; Ray's state rules
    saved = yaml.safe_load(saved_text)
    now = _trial_entries(trials)
    if saved == now:
        return
    if len(saved) != len(now):
        diff = f"the file now gives {len(now)} trials, the sweep was started with {len(saved)}"
    else:
        i = next(i for i, (a, b) in enumerate(zip(saved, now)) if a != b)
        keys = sorted(k for k in set(saved[i]) | set(now[i]) if saved[i].get(k) != now[i].get(k))
        diff = f"trial {i} differs in {keys}: started with {[saved[i].get(k) for k in keys]}, now {[now[i].get(k) for k in keys]}"
    raise SweepError(
        f"{sweep_file} no longer matches the sweep saved at {join(uri, CONFIG_DIR)} ({diff}). Ray resumes "
        f"the trials a sweep was started with; restore the file, or start a new sweep under another `name:`.")
