"""`deepthink train RUN.yaml [--key value ...]`: train one model, without Ray.

RUN.yaml is a sweep file (DESIGN.md section 4) whose lists each hold one value; `--key value`
pairs override it (values are read as YAML scalars):

    deepthink train run.yaml --train.lr 0.0005 --width 64 --seed 3 --test.iterations 200
    deepthink train run.yaml --data-root /data --device cuda --precision fp32

Keys: `model`, `width`, `depth` or `max_iters`, `seed`, `storage`, or any dotted key such as
`train.epochs`, `data.eval`, `test.iterations`. Precedence: defaults < RUN.yaml < flags.
`--data-root` (else $DEEPTHINK_DATA, else ./data), `--device` (default: cuda if present, else cpu)
and `--precision` (auto | fp32 | bf16 = train.precision) may come anywhere on the line.

Writes (storage must be a local path here; use `deepthink sweep` for s3://):
    <storage>/<name>/trial-<id>.parquet           the results rows (deepthink/results.py)
    <storage>/_<name>/config/train-<id>.yaml      the resolved trial configuration
    <storage>/_<name>/checkpoints/<id>/           checkpoint.pt, every train.checkpoint_every epochs
<id> is a short hash of the resolved configuration that determines training (test.*, storage and
the sweep name excluded): running the same command again continues from its checkpoint, or, if
training had finished, only re-evaluates (e.g. with more --test.iterations) and replaces the rows.
Exit status: 0 trained (ok or diverged; the status is printed), 2 bad file, flag or checkpoint.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from deepthink import configfile
from deepthink.configfile import ConfigError
from deepthink.precision import PRECISIONS
from deepthink.tasks.storage import add_data_root_argument, resolve_data_root

SPECIAL = ("data-root", "device", "precision")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="RUN.yaml", help="a sweep file whose lists each hold one value")
    add_data_root_argument(p)
    p.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if present)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="overrides train.precision (auto: bf16 where the hardware runs it natively)")
    p.add_argument("overrides", nargs=argparse.REMAINDER, metavar="--key value",
                   help="config overrides, e.g. --train.lr 0.001 --width 64")


def parse_overrides(tokens: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """['--train.lr', '1e-3', '--device=cpu'] -> ({'train.lr': 0.001}, {'device': 'cpu'}): the one
    override parser (deepthink/configfile.py), shared with `deepthink sweep --set KEY=VALUE`."""
    return configfile.parse_overrides(tokens, SPECIAL)


def trial_hash(cfg_dict: dict[str, Any]) -> str:
    """Stable 10-hex-digit id of what a resolved TrialConfig trains: the keys the checkpoint check
    ignores (test.*, storage, sweep name) are left out, so changing only the evaluation re-evaluates
    the trained model (and replaces its rows) instead of training it again."""
    from deepthink.checkpoint import IGNORED_CONFIG_KEYS
    key = {k: v for k, v in cfg_dict.items() if k not in IGNORED_CONFIG_KEYS}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]


def run(args: argparse.Namespace) -> int:
    from deepthink.checkpoint import FILENAME, CheckpointError
    from deepthink.config import parse_sweep
    from deepthink.results import is_local, state_dir, write_trial
    from deepthink.train import run_trial

    overrides, special = parse_overrides(args.overrides or [])
    data_root = resolve_data_root(special.get("data-root", args.data_root))
    device = special.get("device", args.device)
    precision = special.get("precision", args.precision)
    if precision is not None:     # --precision anywhere on the line is train.precision
        overrides["train.precision"] = precision
    sweep = parse_sweep(args.file, overrides)
    trials = sweep.trials()
    if len(trials) != 1:
        multi = {k: v for k, v in sweep.grid.items() if len(v) > 1}
        if len(sweep.seeds) > 1:
            multi["seeds"] = sweep.seeds
        if sweep.search is not None:
            multi["search"] = f"{sweep.search.algorithm}, num_samples {sweep.search.num_samples}"
        raise ConfigError(f"{args.file}: expands to {len(trials)} trials ({multi}); `deepthink train` runs "
                          f"one: give each list one value (or override it, e.g. --seed 0), or run the "
                          f"whole grid with `deepthink sweep {args.file}`")
    cfg = trials[0]
    if not is_local(cfg.storage):
        raise ConfigError(f"{args.file}: key 'storage': found {cfg.storage!r}; `deepthink train` keeps "
                          f"checkpoints beside its results and needs a local path (use `deepthink sweep` "
                          f"for object storage)")
    trial_id = trial_hash(cfg.to_dict())
    storage = cfg.storage[len("file://"):] if cfg.storage.startswith("file://") else cfg.storage
    out_dir = Path(storage).expanduser().resolve() / cfg.sweep
    from deepthink.sweep.state import move_old_layout
    move_old_layout(str(out_dir))                       # an earlier version's _checkpoints/, _config/
    beside = Path(state_dir(str(out_dir)))             # <storage>/_<name>: not among the results
    ckpt_dir = beside / "checkpoints" / trial_id
    config_file = beside / "config" / f"train-{trial_id}.yaml"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    resume = ckpt_dir if (ckpt_dir / FILENAME).is_file() else None
    try:
        outcome = run_trial(cfg, data_root, trial_id=trial_id, checkpoint_dir=ckpt_dir, resume_from=resume,
                            device=device, log=lambda msg: print(msg, flush=True))
    except CheckpointError as e:
        # the way out that works: without the file, the same command trains the trial from the start
        print(f"deepthink train: error: {e}. To train this trial from the start: rm {ckpt_dir / FILENAME} "
              f"and run the same command again", file=sys.stderr)
        return 2
    path = write_trial(str(out_dir), trial_id, outcome.rows, replace_finished=True)   # re-evaluation
    print(f"status {outcome.status}: {outcome.epochs_completed} epochs, {outcome.train_seconds:.1f}s training, "
          f"{len(outcome.rows)} rows -> {path}")
    return 0
