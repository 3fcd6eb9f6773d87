"""Ray Tune sweeps: `deepthink sweep FILE.yaml [--dry-run] [--resume] [--address auto]`.

This package is the only code in deepthink that imports Ray, and only these modules do, lazily:
    runner.py     starts/joins Ray, checks the cluster, builds the Tuner (in one place), runs it
    trainable.py  the function trainable: wraps deepthink.train.run_trial, reports, writes Parquet
    progress.py   a Tune Callback: pending/running/done/failed counts and latest metrics -> terminal + log
    prune.py      a Tune Callback: a finished trial keeps only its last checkpoint
Ray-free (imported by `deepthink --help` and by --dry-run):
    cli.py        command-line options and `run(args)`
    plan.py       capacity (trials at once), resources that cannot exist, storage rules, dry-run text
    state.py      the sweep directory <storage>/<name>/: what exists, resume/refuse, saved config, rows
    lock.py       one driver per sweep directory (flock + heartbeat; an object with a heartbeat on s3/gs)
    repair.py     ways out: unreadable/missing results files, checkpoints that do not load
"""
