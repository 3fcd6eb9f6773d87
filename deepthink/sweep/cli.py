"""`deepthink sweep FILE.yaml`: run a YAML grid of trainings as a Ray Tune sweep.

    deepthink sweep sweeps/paper2_prefix_sums.yaml --dry-run   # validate; print trials, resources, cost
    deepthink sweep sweeps/paper2_prefix_sums.yaml             # run on this machine (embedded Ray)
    deepthink sweep sweeps/paper2_prefix_sums.yaml --resume    # finish an interrupted sweep
    deepthink sweep sweeps/paper1_mazes.yaml --address auto    # join a running Ray cluster

Results: <storage>/<name>/trial-<id>.parquet and nothing else there (pandas, polars, DuckDB, pyarrow
read the directory whole); beside it, <storage>/_<name>/ holds config/ (the resolved sweep), ray/
(Ray's state, for --resume), logs/sweep.log, the lock and stops/ (early stopping's decisions).
Exit status: 0 all trials finished (ok, diverged or stopped early), 1 some failed for good, 2 bad file or refused
(another driver running the same directory included: --wait waits for it instead), 130 interrupted
(Ctrl-C or SIGTERM; finish with --resume).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from deepthink.configfile import positive_int


def _key_value(text: str) -> tuple[str, object]:
    from deepthink.configfile import ConfigError, split_assignment
    try:
        return split_assignment(text)      # the same value parser as `deepthink train --key value`
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    from deepthink.tasks.storage import add_data_root_argument
    p.add_argument("file", metavar="FILE.yaml", help="sweep definition (see sweeps/ and DESIGN.md section 4)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and print the trial table, trials at once and estimated cost; run nothing")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted sweep: only missing trials run, failed ones are retried")
    p.add_argument("--address", metavar="auto|HOST:PORT", default=None,
                   help="join this Ray cluster (default: $RAY_ADDRESS if set, else start Ray on this machine)")
    add_data_root_argument(p)
    p.add_argument("--storage", default=None, metavar="PATH|URI",
                   help="override the file's `storage:` (local path, shared mount, s3://..., gs://...)")
    p.add_argument("--set", action="append", default=[], type=_key_value, metavar="KEY=VALUE", dest="overrides",
                   help="override a key of the file (repeatable; VALUE read as YAML): train.epochs=5, "
                        "train.lr=1e-3, data.count=500, seeds=[0,1], width=64 (a grid key becomes a one-value "
                        "list), width=[16,32] or width=16,32 (a list: grid values; also lr/alpha/epochs), "
                        "search.num_samples=1")
    p.add_argument("--max-concurrent", type=positive_int, default=None, metavar="N",
                   help="run at most N trials at once (default: as many as resources allow)")
    p.add_argument("--max-trials", type=positive_int, default=None, metavar="N",
                   help="allow a grid of up to N trials (default: the file's max_trials, 10,000)")
    p.add_argument("--wait", action="store_true",
                   help="if another driver is running this sweep directory, wait for it to end "
                        "(default: refuse, naming it)")


def command_line(args: argparse.Namespace, *, resume: bool, wait: bool = False) -> str:
    """This command as a user would type it again, with --resume/--wait as asked: what the error and
    exit messages suggest (with every option given, so the suggestion acts on the same directory)."""
    import json
    import shlex
    words = ["deepthink", "sweep", args.file]
    if args.address:
        words += ["--address", args.address]
    if args.data_root:
        words += ["--data-root", str(args.data_root)]
    if args.storage:
        words += ["--storage", args.storage]
    for key, value in args.overrides:
        words += ["--set", f"{key}={json.dumps(value)}"]
    if getattr(args, "max_trials", None):
        words += ["--max-trials", str(args.max_trials)]
    if args.max_concurrent and not resume:
        words += ["--max-concurrent", str(args.max_concurrent)]
    words += ["--resume"] * resume + ["--wait"] * wait
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from deepthink.config import parse_sweep
    from deepthink.sweep import plan, state
    from deepthink.tasks.storage import resolve_data_root

    overrides = dict(args.overrides)
    if args.storage:
        overrides["storage"] = args.storage
    sweep = parse_sweep(args.file, overrides)
    uri = state.sweep_uri(sweep.storage, sweep.name)
    from deepthink.sweep.precheck import check_storage
    where = " (--storage)" if args.storage else ""
    max_trials = getattr(args, "max_trials", None)
    cap_from = " (--max-trials)" if max_trials else ""
    checked = False
    if args.resume and not max_trials:       # --resume allows the grid its first run allowed
        check_storage(sweep.path, sweep.storage, uri, where)
        checked = True
        saved = state.saved_max_trials(uri)
        if saved and saved > sweep.max_trials:
            max_trials, cap_from = saved, f" (saved in {state.join(state.config_dir(uri), 'sweep.yaml')})"
    if sweep.grid_size() > (max_trials or sweep.max_trials):
        if args.dry_run:
            print(plan.describe_large(sweep), flush=True)
        sweep.check_trial_count(max_trials, cap_from)   # raises: refused
    if max_trials:
        sweep.max_trials = max_trials       # saved in _<name>/config/sweep.yaml for a later --resume
    trials = sweep.trials()
    if not checked:
        check_storage(sweep.path, sweep.storage, uri, where)
    data_root = resolve_data_root(args.data_root)     # the same path on every node
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    from deepthink.sweep.searchers import missing_optuna
    problem = missing_optuna(sweep)
    try:
        if args.dry_run:
            code = _dry_run(sweep, trials, uri, address, args.max_concurrent)
            if problem:
                print(f"warning: a real run here is refused: {problem}")
            return code
        if problem:
            raise state.SweepError(problem)
        from deepthink.sweep.runner import run_sweep   # imports Ray: only when a sweep really runs
        return run_sweep(sweep, trials, sweep_file=args.file, uri=uri, data_root=data_root, address=address,
                         resume=args.resume, max_concurrent=args.max_concurrent,
                         source_text=Path(args.file).read_text(), wait=args.wait,
                         rerun=lambda **kw: command_line(args, **kw))
    except state.SweepError as e:
        print(f"deepthink sweep: error: {e}", file=sys.stderr)
        return 2


def _dry_run(sweep, trials, uri, address, max_concurrent) -> int:
    from deepthink.config import ConfigError
    from deepthink.sweep import plan, state
    if address:   # the cluster's resources: connect, look, disconnect (no trial is started)
        import ray
        from deepthink.sweep.runner import cluster_capacity
        ray.init(address=address, log_to_driver=False)
        try:
            cap = cluster_capacity(address)
        finally:
            ray.shutdown()
    else:
        cap = plan.local_capacity()
    print(plan.describe(sweep, trials, cap, uri, max_concurrent), flush=True)
    problem = plan.storage_problem(uri, cap, None)
    if problem:
        print(f"warning: {problem}")
    from deepthink.sweep.lock import running_driver
    if driver := running_driver(uri):       # read the lock once: the driver can end between two reads
        print(f"note: a driver is running this sweep now ({driver.describe()}); a real run "
              f"beside it is refused (--wait waits for it)")
    elif state.has_ray_state(uri):
        print(f"note: {uri} already holds this sweep's Ray state: run with --resume to finish it")
    try:
        plan.check_feasible(sweep, cap)
    except ConfigError as e:
        if address:          # the cluster it would run on cannot run it: refuse
            raise
        # A dry run on a laptop is how one checks a file meant for a GPU cluster: say it, don't fail.
        print(f"warning: this machine cannot run it as is: {e}\n"
              f"         (a real run here refuses; on a cluster: deepthink sweep {sweep.path} --address auto)")
    return 0
