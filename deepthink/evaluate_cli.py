"""`deepthink evaluate CHECKPOINT ... --out RESULTS_DIR`: evaluate trained trials again, without Ray.

A trained model answers more questions than its sweep asked: more test iterations, harder
problems, other examples, another machine or kernel path (`ONEDNN_MAX_CPU_ISA=AVX2`, another
precision). This command takes finished trials' checkpoints and writes the rows they would have
written with the given test settings, one results file per trial, into RESULTS_DIR (a results
directory like a sweep's: `analysis.tables`, `analysis.stability` and `analysis.agreement` read it).

    deepthink evaluate results/_my_sweep/ray/*_dt_recall_* --out results/my_sweep_1024 --eval 1024 --iterations 2000
    ONEDNN_MAX_CPU_ISA=AVX2 deepthink evaluate results/_my_sweep/ray/* --out results/my_sweep_avx2
    python -m analysis.agreement results/my_sweep results/my_sweep_avx2 --labels native avx2

CHECKPOINT: a `checkpoint.pt`, a directory holding one (`deepthink train`'s
`<storage>/_<name>/checkpoints/<id>/`), or a Ray trial directory (`<storage>/_<name>/ray/<trial>/`:
its newest `checkpoint_*`). The configuration is the one saved in the checkpoint; the options
replace its test settings (the rest of the configuration, the data above all, is the trial's).
Trial ids are the checkpoint configuration's hash (as `deepthink train`'s): evaluating the same
checkpoint again into the same directory replaces its rows. A checkpoint of unfinished training is
refused. Exit status: 0 all evaluated, 2 a bad checkpoint, option or missing data (nothing written
for that trial; the others are evaluated).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deepthink.configfile import positive_int
from deepthink.precision import PRECISIONS
from deepthink.tasks.storage import add_data_root_argument, resolve_data_root


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                   help="checkpoint.pt files, directories holding one, or Ray trial directories")
    p.add_argument("--out", required=True, metavar="RESULTS_DIR",
                   help="results directory to write (its last path component becomes the rows' `sweep`)")
    add_data_root_argument(p)
    p.add_argument("--iterations", type=positive_int, help="test iterations 1..K (default: the trial's)")
    p.add_argument("--eval", type=int, nargs="+", metavar="D",
                   help="test difficulties (default: the trial's); generated on first use like any data")
    p.add_argument("--max-examples", type=positive_int, help="evaluate the first N examples of each split")
    p.add_argument("--train-val-iterations", type=positive_int,
                   help="evaluate the train and val splits only to this iteration")
    p.add_argument("--batch-size", type=positive_int, help="examples per evaluation chunk")
    p.add_argument("--device", default=None, help="torch device (default: cuda if present, else cpu)")
    p.add_argument("--precision", default=None, choices=[x for x in PRECISIONS if x != "auto"],
                   help="evaluate in this precision instead of the one the trial trained in")


def run(args: argparse.Namespace) -> int:
    from deepthink.checkpoint import CheckpointError, find_checkpoint, read_checkpoint
    from deepthink.config import ConfigError
    from deepthink.results import write_trial
    from deepthink.tasks.storage import DataError
    from deepthink.train import evaluate_checkpoint
    from deepthink.train_cli import trial_hash

    data_root = resolve_data_root(args.data_root)
    out = str(args.out).rstrip("/")
    sweep = out.split("?", 1)[0].rsplit("/", 1)[-1]
    changes = {k: v for k, v in (("iterations", args.iterations), ("max_examples", args.max_examples),
                                 ("train_val_iterations", args.train_val_iterations),
                                 ("batch_size", args.batch_size)) if v is not None}
    failed = 0
    for i, path in enumerate(args.checkpoints, 1):
        try:
            ckpt_file = find_checkpoint(Path(path))
            ckpt = read_checkpoint(ckpt_file)
            trial_id = trial_hash(ckpt.get("config", {}))
            outcome = evaluate_checkpoint(ckpt_file, ckpt, data_root, trial_id=trial_id, sweep=sweep,
                                          test_changes=changes, eval_difficulties=args.eval, device=args.device,
                                          precision=args.precision, log=lambda m: print(f"  {m}", flush=True))
        except (CheckpointError, ConfigError, DataError, ValueError) as e:
            print(f"deepthink evaluate: error: {e}", file=sys.stderr, flush=True)
            failed += 1
            continue
        written = write_trial(out, trial_id, outcome.rows, replace_finished=True)
        print(f"[{i}/{len(args.checkpoints)}] {path}: {outcome.status}, {len(outcome.rows)} rows -> {written}",
              flush=True)
    if failed:
        print(f"deepthink evaluate: {failed} of {len(args.checkpoints)} checkpoints not evaluated (above)",
              file=sys.stderr)
    return 2 if failed else 0
