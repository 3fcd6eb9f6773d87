"""A sweep's two directories: what already exists there, resume/refuse, saved config, rows.

    <storage>/<name>/              the results, and nothing else (any Parquet reader takes it whole)
      trial-<ray trial id>.parquet   one file per finished trial (deepthink.results.write_trial)
    <storage>/_<name>/             everything else of the sweep (state_dir)
      config/sweep.yaml              the resolved sweep (every default filled in)
      config/trials.yaml             one entry per trial: the exact TrialConfig each trial runs
      config/source.yaml             the sweep file as given
      config/run.yaml                the first run's --max-concurrent (kept by Ray on --resume)
      ray/                           Ray Tune's experiment state and checkpoints (what --resume restores)
      logs/sweep.log                 the progress log (local storage; see log_path for URIs)
      driver.lock                    the running driver (lock.py)
      corrupt/                       unreadable results files set aside by --resume (repair.py)
      tmp/                           results files being written (renamed into <name>/ when whole)
      stops/<trial id>.json          early stopping: the scheduler's decision that a trial stops after
                                     an epoch (the trial reads it, evaluates and writes status 'stopped')

On object storage with options in the URI's query string (s3://b/runs?endpoint_override=...), both
lie before the query: s3://b/runs/<name>?... and s3://b/runs/_<name>?... (results.join_uri).

A directory that already holds Ray state or results is never reused silently: without
--resume the sweep refuses (and says how to finish or start fresh); with --resume Ray restores the
experiment with the trials it was started with, so a changed sweep file is refused as well.

Ray-free: the dry run and the refusal happen before Ray starts.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import yaml

from deepthink.config import SweepConfig
from deepthink.trial import TrialConfig
from deepthink.results import (FINISHED, filesystem, finished_status, is_local, join_uri, state_dir, trial_file,
                               trial_statuses, written_trials)

RAY_DIR = "ray"
CONFIG_DIR = "config"
LOG_DIR = "logs"
STOPS_DIR = "stops"
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


def ray_dir(uri: str) -> str:
    """Ray Tune's experiment directory of the sweep whose results go to `uri`."""
    return join(state_dir(uri), RAY_DIR)


def config_dir(uri: str) -> str:
    return join(state_dir(uri), CONFIG_DIR)


def log_dir(uri: str) -> str:
    return join(state_dir(uri), LOG_DIR)


def log_path(uri: str) -> str:
    """Where the driver appends the progress log: <storage>/_<name>/logs/sweep.log; on an object
    store (which cannot append) a local file, copied there when the sweep ends."""
    if is_local(uri):
        return join(log_dir(uri), "sweep.log")
    import tempfile
    name = uri.partition("?")[0].rstrip("/").rsplit("/", 1)[-1]     # before a query string (join_uri)
    return str(Path(tempfile.gettempdir()) / "deepthink-sweeps" / name / "sweep.log")


def _exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def has_ray_state(uri: str) -> bool:
    return _exists(join(ray_dir(uri), TUNER_STATE))


def finished_trials(uri: str) -> set[str]:
    """Trial ids whose results file holds a finished trial (status ok, diverged or stopped, not
    failed). A file that cannot be read is not finished (--resume sets it aside and runs the trial again)."""
    return {tid for tid, s in trial_statuses(uri).items() if s in FINISHED}


def trial_finished(uri: str, trial_id: str) -> bool:
    """Whether this one trial already has finished results (a retry or resume can skip it)."""
    fs, base = filesystem(uri)
    return finished_status(fs, trial_file(base, trial_id)) is not None


def stop_marker(uri: str, trial_id: str) -> str:
    """<storage>/_<name>/stops/<trial id>.json: beside the results, which hold only Parquet."""
    return join(state_dir(uri), STOPS_DIR, f"{trial_id}.json")


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
            f"{hint}To start fresh: delete {uri} and {state_dir(uri)} (e.g. rm -r {shlex.join([uri, state_dir(uri)])}) "
            f"or change `name:` in {sweep_file}.")
    if resume and not state:
        extra = f" ({len(files)} results files, but no Ray state in {ray_dir(uri)})" if files else ""
        raise SweepError(f"nothing to resume at {uri}{extra}. Run without --resume to start the sweep.")
    return done


# What earlier versions kept inside the results directory, and where it lies now.
OLD_LAYOUT = {"_ray": RAY_DIR, "_config": CONFIG_DIR, "_logs": LOG_DIR, "_corrupt": "corrupt",
              "_figures": "figures", "_checkpoints": "checkpoints", "_stops": STOPS_DIR}
OLD_LOCK = "_driver.lock"


def move_old_layout(uri: str, log=print) -> list[str]:
    """A sweep directory written by an earlier deepthink kept its state inside the results
    (`_ray/`, `_config/`, ...): move those folders to <storage>/_<name>/ under their new names (Ray
    restores an experiment from wherever its directory now lies) and drop the old lock file, saying
    so. Refused while an earlier driver still holds that lock; local paths only (on an object
    store the message names the moves to make). Returns what was moved."""
    if not is_local(uri):
        fs, base = filesystem(uri)
        old = [n for n in OLD_LAYOUT if fs.get_file_info(f"{base}/{n}").type != pafs.FileType.NotFound]
        if old:
            raise SweepError(f"{uri} holds {', '.join(old)} as written by an earlier deepthink; move each "
                             f"folder to {state_dir(uri)}/ without its leading '_' (e.g. {uri}/_ray -> "
                             f"{ray_dir(uri)}), then run again")
        return []
    base = Path(filesystem(uri)[1])
    old = [n for n in OLD_LAYOUT if (base / n).exists()]
    if not old:
        return []
    lock_path = base / OLD_LOCK
    if lock_path.exists():
        import fcntl
        with open(lock_path, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise SweepError(f"{uri} is in use by a driver of an earlier deepthink (it holds {lock_path}); "
                                 f"run this again after it ends") from None
    beside = Path(state_dir(str(base)))
    clash = [OLD_LAYOUT[n] for n in old if (beside / OLD_LAYOUT[n]).exists()]
    if clash:
        raise SweepError(f"{uri} holds {', '.join(old)} as written by an earlier deepthink, and {beside} "
                         f"already holds {', '.join(clash)}: keep one of each and run again")
    beside.mkdir(parents=True, exist_ok=True)
    for n in old:
        (base / n).rename(beside / OLD_LAYOUT[n])
    lock_path.unlink(missing_ok=True)
    log(f"note: moved {', '.join(old)} out of the results directory {uri} to {beside}/ "
        f"({', '.join(OLD_LAYOUT[n] for n in old)}): it now holds only Parquet")
    return old


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
    _write_text(join(config_dir(uri), "sweep.yaml"), yaml.safe_dump(resolved, sort_keys=False))
    _write_text(join(config_dir(uri), "trials.yaml"), yaml.safe_dump(_trial_entries(trials), sort_keys=False))
    _write_text(join(config_dir(uri), "source.yaml"), source_text)


def save_run_options(uri: str, max_concurrent: int | None) -> None:
    """_<name>/config/run.yaml: the command-line settings Ray keeps from the first run (Tune saves
    its concurrency limit with the experiment: --resume cannot change it)."""
    _write_text(join(config_dir(uri), "run.yaml"), yaml.safe_dump({"max_concurrent": max_concurrent}))


def saved_run_options(uri: str) -> dict[str, Any] | None:
    """What save_run_options wrote; None for a sweep started before it existed (or unreadable)."""
    text = _read_text(join(config_dir(uri), "run.yaml"))
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return None
    return value if isinstance(value, dict) else None


def saved_max_trials(uri: str) -> int | None:
    """The trial cap a sweep was started with (the file's `max_trials:` or --max-trials), from
    _<name>/config/sweep.yaml: --resume allows the grid that the first run allowed. None when not saved
    (no sweep there, or one started by an older version)."""
    text = _read_text(join(config_dir(uri), "sweep.yaml"))
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
    saved_text = _read_text(join(config_dir(uri), "sweep.yaml"))
    if saved_text is None:
        return
    saved = {k: v for k, v in (yaml.safe_load(saved_text) or {}).items() if k not in ("storage", "description", "max_trials")}
    now = yaml.safe_load(yaml.safe_dump(_sweep_entry(sweep), sort_keys=False))
    if saved == now:
        return
    keys = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    raise SweepError(
        f"{sweep_file} no longer matches the sweep saved at {config_dir(uri)} (it differs in {keys}). "
        f"Ray resumes the search a sweep was started with; restore the file, or start a new sweep under "
        f"another `name:`.")


def check_same_trials(uri: str, trials: list[TrialConfig], sweep_file: str, sweep: SweepConfig | None = None) -> None:
    """On --resume: the file must still describe the trials the experiment was started with."""
    if sweep is not None and sweep.adaptive:
        return check_same_sweep(uri, sweep, sweep_file)
    saved_text = _read_text(join(config_dir(uri), "trials.yaml"))
    if saved_text is None:
        return   # started by an older version or the config write was lost; Ray's state rules
    saved = yaml.safe_load(saved_text)
    now = _trial_entries(trials)
    if saved == now:
        return
    if len(saved) != len(now):
        diff = f"the file now gives {len(now)} trials, the sweep was started with {len(saved)}"
    elif sorted(map(repr, saved)) == sorted(map(repr, now)):
        diff = "the same trials in another order: was `order:` changed?"
    else:
        i = next(i for i, (a, b) in enumerate(zip(saved, now)) if a != b)
        keys = sorted(k for k in set(saved[i]) | set(now[i]) if saved[i].get(k) != now[i].get(k))
        diff = f"trial {i} differs in {keys}: started with {[saved[i].get(k) for k in keys]}, now {[now[i].get(k) for k in keys]}"
    raise SweepError(
        f"{sweep_file} no longer matches the sweep saved at {config_dir(uri)} ({diff}). Ray resumes "
        f"the trials a sweep was started with; restore the file, or start a new sweep under another `name:`.")
