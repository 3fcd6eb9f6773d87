"""Generate or convert task data in the published easy-to-hard-data layout.

    deepthink data prefix-sums --bits 16 32 48 512 [--count 10000] [--seed 0]
    deepthink data mazes --sizes 9 13 59 [--split train|test] [--count N] [--seed 0]
    deepthink data chess --csv lichess_db_puzzle.csv.zst [--limit N]

Files go under --data-root (default $DEEPTHINK_DATA, else ./data) and load with the
easy_to_hard_data package's classes (download=False). Each task's options are defined by the
task class itself (deepthink/tasks/*.py: add_cli_arguments / run_cli).
"""
from __future__ import annotations

import argparse

from deepthink.tasks import TASKS
from deepthink.tasks.storage import add_data_root_argument, ensure_writable, resolve_data_root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="task", required=True, metavar="TASK")
    for task in TASKS.values():
        p = sub.add_parser(task.cli_name, help=task.cli_help, description=task.__class__.__doc__ or task.cli_help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        add_data_root_argument(p)
        task.add_cli_arguments(p)
        p.set_defaults(_task=task)


def run(args: argparse.Namespace) -> int:
    root = resolve_data_root(args.data_root)
    ensure_writable(root)
    return int(args._task.run_cli(args, root) or 0)
