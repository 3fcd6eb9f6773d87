"""Run a sweep on Ray Tune: start Ray (embedded) or join a cluster, check that the trials can run
and where their results go, build the Tuner (here and only here), fit, and sum up.

    from deepthink.sweep.runner import run_sweep     # what `deepthink sweep FILE.yaml` calls

Embedded Ray (no address): ray.init on this machine with its CPU/GPU counts, a small object store
(trials pass nothing through it) and no dashboard. With an address ("auto", "HOST:PORT", or
$RAY_ADDRESS as set by `ray job submit`) the sweep joins that cluster instead.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import ray
from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig

from deepthink.config import SweepConfig
from deepthink.trial import TrialConfig, trial_from_tune
from deepthink.results import filesystem, is_local
from deepthink.sweep import lock, plan, repair, state
from deepthink.sweep import output, progress
from deepthink.sweep.progress import SweepProgress
from deepthink.sweep.prune import KeepLastCheckpoint
from deepthink.sweep.schedulers import make_scheduler
from deepthink.sweep.searchers import make_search_alg
from deepthink.sweep.trainable import train_trial

OBJECT_STORE_BYTES = 128 * 2**20     # trials exchange only small metric dicts; Ray's default is 30% of RAM
CHECKPOINTS_KEPT = 2                 # per trial: the newest two, so a crash mid-write leaves one good one
LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"   # "0": Ray uses 127.0.0.1 as this node's address
_own_temp_dir: str | None = None     # embedded Ray's temp root (its session directory), removed on exit
RAY_EXIT_WAIT_S = 20                 # how long stop_ray waits for embedded Ray's processes to exit


# ---- Ray and the cluster ------------------------------------------------------------------------
def start_ray(address: str | None) -> plan.Capacity:
    """Start embedded Ray or connect to `address`; return where trials can run."""
    if address:
        ray.init(address=address, log_to_driver=True)
        return cluster_capacity(address)
    cap = plan.local_capacity()
    # address="local": always a new instance; without it ray.init would join whatever cluster
    # /tmp/ray/ray_current_cluster names (a `ray start` or a test's Cluster on this machine).
    # Ray starts workers at niceness 15 by default, so on a shared machine any other process (an
    # editor's test run, another user's job) takes the CPU from the trials; measured here: epochs of
    # two trials went from 18 s to 35-40 s while a test suite ran beside them. The trials are the
    # work, so they run at the default priority (a cluster sets this on `ray start`).
    os.environ.setdefault("RAY_worker_niceness", "0")
    # Local by default: Ray 2.60 refuses 127.0.0.1 as a node address (ray.init(_node_ip_address=...)
    # turns it into the machine's IP) and its gRPC servers then listen on every interface. With
    # this variable (Ray's own switch for single-machine use on macOS/Windows) the node's address
    # is 127.0.0.1 and every Ray process of the sweep (GCS, raylet, workers, agents) listens there
    # only; the value is inherited by the processes Ray starts. Set it to 1 to undo.
    os.environ.setdefault(LOCAL_ONLY_ENV, "0")
    if os.environ[LOCAL_ONLY_ENV] == "0":
        ray._private.ray_constants.ENABLE_RAY_CLUSTER = False   # read at call time; imported before the env was set
    # Ray's session directory (logs, sockets, spilled objects) goes under a directory of this
    # sweep's own, removed when the sweep ends (stop_ray), instead of piling up in /tmp/ray.
    global _own_temp_dir
    _own_temp_dir = tempfile.mkdtemp(prefix="deepthink-ray-")
    _ephemeral_token()
    ray.init(address="local", num_cpus=int(cap.total("CPU")), num_gpus=int(cap.total("GPU")),
             object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False, log_to_driver=True,
             _temp_dir=_own_temp_dir)
    return cap


def _ephemeral_token() -> None:
    """Ray 2.60 turns token authentication on for a new local instance and, when no token exists,
    writes one to ~/.ray/auth_token, where it stays: a later `ray start --head` (RAY_AUTH_MODE unset)
    then finds it and turns authentication on for that cluster too, whose `ray status`, workers and
    `ray job submit` fail unless they set RAY_AUTH_MODE=token. Embedded Ray gets a token of its own
    in the environment instead (inherited by its GCS, raylet and workers), so nothing is left behind.
    A token or mode the user configured is used as is."""
    if any(k in os.environ for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        return
    if (Path.home() / ".ray" / "auth_token").exists():
        return
    import secrets
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def stop_ray() -> None:
    """Disconnect (a cluster) or shut embedded Ray down and remove its session directory. The
    directory goes only once Ray's processes have exited: ray.shutdown() returns while the raylet
    and its agents are still ending, and they would write into it again."""
    global _own_temp_dir
    import psutil     # a Ray dependency (vendored in ray/thirdparty_files)
    own = psutil.Process().children(recursive=True) if _own_temp_dir else []   # GCS, raylet, workers, agents
    ray.shutdown()
    if _own_temp_dir:
        psutil.wait_procs(own, timeout=RAY_EXIT_WAIT_S)
        shutil.rmtree(_own_temp_dir, ignore_errors=True)
        _own_temp_dir = None


def cluster_capacity(address: str) -> plan.Capacity:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    resources = [{k: float(v) for k, v in n["Resources"].items()} for n in nodes]
    scalable = []
    for res, max_count in _autoscaler_node_types():
        alive = sum(1 for r in resources if all(r.get(k, 0) == v for k, v in res.items()))
        scalable.append((res, max(0, max_count - alive)))
    return plan.Capacity(f"the cluster at {address}", resources, [s for s in scalable if s[1] > 0])


def _autoscaler_node_types() -> list[tuple[dict[str, float], int]]:
    """Worker node types an autoscaler may add: (resources, max count). From the cluster config the
    autoscaler publishes in the GCS, else from ~/ray_bootstrap_config.yaml (what `ray up` leaves on
    the head node, where `ray submit`/`ray job submit` run the sweep). Empty when neither exists."""
    try:   # private Ray API (used by Ray Data/Train the same way); absent or changed -> fall back
        config = ray._private.state.state.get_cluster_config()
        if config is not None and config.node_group_configs:
            return [({k: float(v) for k, v in g.resources.items()}, g.max_count if g.max_count >= 0 else 10**6)
                    for g in config.node_group_configs if g.max_count != 0]
    except Exception:
        pass
    bootstrap = Path("~/ray_bootstrap_config.yaml").expanduser()
    if not bootstrap.exists():
        return []
    import yaml
    return plan.worker_types(yaml.safe_load(bootstrap.read_text()) or {})


def nodes_not_seeing(uri: str) -> list[str]:
    """Alive nodes on which a marker file written here does not appear (a local, unshared path)."""
    if not is_local(uri) or len([n for n in ray.nodes() if n.get("Alive")]) <= 1:
        return []
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    os.makedirs(uri, exist_ok=True)
    os.makedirs(state.state_dir(uri), exist_ok=True)
    marker = os.path.join(state.state_dir(uri), f".probe-{uuid.uuid4().hex}")    # never in the results
    Path(marker).touch()

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return os.path.exists(path)

    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(marker)
                for n in nodes]
        seen = ray.get(refs, timeout=120)
        return [f"{n['NodeManagerAddress']}/{n['NodeID'][:8]}" for n, ok in zip(nodes, seen) if not ok]
    finally:
        Path(marker).unlink(missing_ok=True)


# ---- the Tuner ------------------------------------------------------------------------------------
def trial_dirname(trial) -> str:
    """Ray's trial directory name: the trial id plus the readable trial name."""
    return f"{trial.trial_id}_{trial_from_tune(trial.config).trial_name}" if trial.config.get("trial") else trial.trial_id


def make_trainable(sweep: SweepConfig, uri: str, data_root: Path):
    fn = tune.with_parameters(train_trial, data_root=str(data_root), sweep_uri=uri,
                              cpus=sweep.resources.cpu, gpu_share=sweep.resources.gpu,
                              early_stopping=sweep.scheduler is not None,
                              metrics=tuple(sorted({m.metric for m in (sweep.scheduler, sweep.search) if m})))
    return tune.with_resources(fn, {"cpu": sweep.resources.cpu, "gpu": sweep.resources.gpu})


def build_tuner(sweep: SweepConfig, trials: list[TrialConfig], uri: str, data_root: Path,
                max_concurrent: int | None) -> tune.Tuner:
    """The one place the Tuner is configured. Ray's state goes to <storage>/_<name>/ray, beside the results.

    A grid or a random search: every trial listed (grid_search over their configs). An adaptive
    search (Optuna): the template trial, the seeds, and TPE's proposals (searchers.py). A
    `scheduler:` adds ASHA (schedulers.py); without one Tune's FIFO runs every trial to its end."""
    if sweep.adaptive:
        param_space = {"trial": sweep.template().to_dict(), "seeds": list(sweep.seeds)}
        num_samples = sweep.n_trials()
    else:
        param_space = {"trial": tune.grid_search([t.to_dict() for t in trials])}
        num_samples = 1
    return tune.Tuner(
        make_trainable(sweep, uri, data_root),
        param_space=param_space,
        tune_config=tune.TuneConfig(max_concurrent_trials=max_concurrent, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname, num_samples=num_samples,
                                    scheduler=make_scheduler(sweep, uri), search_alg=make_search_alg(sweep)),
        run_config=RunConfig(
            name=state.RAY_DIR, storage_path=state.state_dir(uri), verbose=0,
            checkpoint_config=CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            failure_config=FailureConfig(max_failures=sweep.max_failures),
            callbacks=[SweepProgress(uri, sweep.max_failures, n_trials=sweep.n_trials(trials)),
                       KeepLastCheckpoint()]))



def restore_tuner(sweep: SweepConfig, uri: str, data_root: Path, rerun_finished: bool = False) -> tune.Tuner:
    """--resume: Ray's saved experiment, unfinished and errored trials continue from their checkpoints.
    `rerun_finished`: finished trials are resumed too (some lack their results file: repair.py); the
    trainable skips at once those whose results are there."""
    resume_config = None
    if rerun_finished:
        from ray.tune import ResumeConfig
        resume_config = ResumeConfig(finished=ResumeConfig.ResumeType.RESUME,
                                     unfinished=ResumeConfig.ResumeType.RESUME,
                                     errored=ResumeConfig.ResumeType.RESUME)
    return tune.Tuner.restore(state.ray_dir(uri), make_trainable(sweep, uri, data_root),
                              resume_errored=True, _resume_config=resume_config)


# ---- the whole run -----------------------------------------------------------------------------------
def run_sweep(sweep: SweepConfig, trials: list[TrialConfig], *, sweep_file: str, uri: str, data_root: Path,
              address: str | None, resume: bool, max_concurrent: int | None, source_text: str,
              wait: bool = False, rerun: Callable[..., str] | None = None) -> int:
    """Run (or --resume) the sweep. Returns 0 when every trial finished (ok or diverged), 1 when some
    failed for good, 130 when interrupted (finish with --resume).

    One driver per sweep directory (lock.py): another one running there refuses this one, or with
    `wait` this one waits for it. `rerun(resume=, wait=)` gives the command the messages suggest."""
    rerun = rerun or (lambda resume, wait=False: f"deepthink sweep {sweep_file}" + " --resume" * resume
                      + " --wait" * wait)
    state.move_old_layout(uri)      # a directory of an earlier version: its state goes beside it
    with output.quiet_ray(), lock.hold(uri, wait=wait, hint=rerun(resume=True, wait=True)):
        return _run_locked(sweep, trials, sweep_file=sweep_file, uri=uri, data_root=data_root, address=address,
                           resume=resume, max_concurrent=max_concurrent, source_text=source_text, rerun=rerun)


def _run_locked(sweep: SweepConfig, trials: list[TrialConfig], *, sweep_file: str, uri: str, data_root: Path,
                address: str | None, resume: bool, max_concurrent: int | None, source_text: str,
                rerun: Callable[..., str]) -> int:
    n_trials = sweep.n_trials(trials)
    done_before = state.check_start(uri, n_trials, resume, sweep_file,
                                    resume_command=rerun(resume=True))   # before Ray starts
    rerun_finished = False
    if resume:
        state.check_same_trials(uri, trials, sweep_file, sweep)
        saved = state.saved_run_options(uri)
        kept = saved.get("max_concurrent") if saved else None
        if saved is None and max_concurrent:
            print("note: --max-concurrent is fixed when a sweep starts; --resume keeps the first run's setting")
        elif saved is not None and max_concurrent and max_concurrent != kept:
            print(f"note: --max-concurrent {max_concurrent} ignored: --resume keeps the setting the sweep started "
                  f"with ({kept if kept else 'none: as many at once as resources allow'}); Ray saves it with "
                  f"the experiment")
        if saved is not None:
            max_concurrent = kept          # what Ray will really do: the start line says so
        rerun_finished = repair.before_resume(uri, state.ray_dir(uri))
        done_before = state.finished_trials(uri)
    if not address:
        plan.check_feasible(sweep, plan.local_capacity())
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    return _run_on_ray(sweep, trials, sweep_file=sweep_file, uri=uri, data_root=data_root, address=address,
                       resume=resume, max_concurrent=max_concurrent, source_text=source_text, rerun=rerun,
                       done_before=done_before, rerun_finished=rerun_finished)


def _run_on_ray(sweep: SweepConfig, trials: list[TrialConfig], *, sweep_file: str, uri: str, data_root: Path,
                address: str | None, resume: bool, max_concurrent: int | None, source_text: str,
                rerun: Callable[..., str], done_before: set[str], rerun_finished: bool) -> int:
    n_trials = sweep.n_trials(trials)     # an adaptive search: num_samples x seeds, created as it goes
    cap = start_ray(address)
    try:
        plan.check_feasible(sweep, cap)
        problem = plan.storage_problem(uri, cap, nodes_not_seeing(uri) if cap.cluster else None)
        if problem:
            raise state.SweepError(problem)
        if not resume:
            state.save_config(uri, sweep, trials, source_text)
            state.save_run_options(uri, max_concurrent)
        log_path = state.log_path(uri)
        now, full = plan.concurrency(cap, sweep.resources.cpu, sweep.resources.gpu)
        at_once = min(now or full or 0, max_concurrent or n_trials, n_trials)
        scaling = " once the autoscaler adds nodes" if now == 0 and full else ""
        board = output.tensorboard_hint(state.ray_dir(uri), is_local(uri))
        print(f"sweep {sweep.name}: {n_trials} trials, {len(done_before)} already done, up to "
              f"{at_once} at once on {cap.where}{scaling}\n"
              f"results: {uri}\nlog: {log_path}" + (f"\n{board}" if board else ""), flush=True)
        tuner = restore_tuner(sweep, uri, data_root, rerun_finished) if resume else build_tuner(
            sweep, trials, uri, data_root, max_concurrent)
        progress.storage_error = None
        with _sigterm_as_sigint():
            grid = tuner.fit()
        if progress.storage_error:
            return _storage_failed(progress.storage_error, uri, rerun)
        return _finish(sweep, sweep_file, uri, grid, log_path, rerun)
    except OSError as e:       # the driver's own storage: full, read-only, gone (config, log, summary)
        return _storage_failed(f"{type(e).__name__}: {e}", uri, rerun, started=resume or _ray_state_saved(uri))
    finally:
        stop_ray()


def _ray_state_saved(uri: str) -> bool:
    """Whether Tune saved its experiment before the storage failed (then --resume has something to
    resume); a storage that cannot even answer this counts as not saved."""
    try:
        return state.has_ray_state(uri)
    except OSError:
        return False


def _storage_failed(error: str, uri: str, rerun: Callable[..., str], started: bool = True) -> int:
    """One message and exit 130. `started`: Ray's state is in the storage, so --resume finishes the
    sweep; before that (the config or Tune's first save failed) the same command starts it again."""
    then = (f"then finish it with: {rerun(resume=True)}" if started else
            f"then start it again with: {rerun(resume=False)} (no trial had started; nothing to resume)")
    print(f"deepthink sweep: error: the sweep's storage failed ({error}); the sweep stopped.\n"
          f"Free space or restore write access to {uri}, {then}",
          file=sys.stderr, flush=True)
    return 130


class _sigterm_as_sigint:
    """Tune stops gracefully (saving its state) on SIGINT only; treat SIGTERM (kill, a scheduler's
    stop, a spot notice forwarded) the same, so --resume finds up-to-date state."""

    def __enter__(self):
        self._old = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self._old)


def _finish(sweep: SweepConfig, sweep_file: str, uri: str, grid, log_path: str, rerun: Callable[..., str]) -> int:
    """Sum up from the Parquet files (the source of truth: after Ctrl-C Ray reports the trials it
    stopped as terminated; failed trials' rows were written by SweepProgress.on_trial_error), copy
    the log next to URI storage, choose the exit status."""
    results = list(grid)
    if not is_local(uri) and Path(log_path).exists():
        fs, path = filesystem(state.join(state.log_dir(uri), "sweep.log"))
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as fh:
            fh.write(Path(log_path).read_bytes())
    ids = {r.metrics.get("trial_id") for r in results} - {None}
    status = repair.trial_statuses(uri)      # per file: an unreadable one counts as unfinished
    counts = {s: sum(1 for tid in ids if status.get(tid) == s) for s in ("ok", "diverged", "stopped", "failed")}
    unfinished = sum(1 for tid in ids if status.get(tid) not in ("ok", "diverged", "stopped", "failed"))
    # Trials the search had not created yet when it was interrupted (an adaptive search creates
    # them as it goes) are unfinished too.
    not_created = max(0, sweep.n_trials() - len(ids))
    unfinished += not_created
    stopped = f"{counts['stopped']} stopped, " if sweep.scheduler is not None or counts["stopped"] else ""
    print(f"sweep {sweep.name}: {len(ids) + not_created} trials: {counts['ok']} ok, {counts['diverged']} diverged, "
          f"{stopped}{counts['failed']} failed, {unfinished} unfinished\n"
          f"results: {uri}  (pandas.read_parquet({uri!r}))", flush=True)
    if unfinished:
        print(f"interrupted: finish the remaining trials with: {rerun(resume=True)}", flush=True)
        return 130
    if counts["failed"]:
        print(f"some trials failed for good (rows with status 'failed' and the error); `{rerun(resume=True)}` "
              f"retries them from their last checkpoints", flush=True)
        return 1
    return 0
