"""`deepthink` command line. Each subcommand's options live beside its code:

    deepthink data {prefix-sums,mazes,chess}   deepthink/data_cli.py
    deepthink models                           deepthink/models/cli.py
    deepthink train RUN.yaml [--key value]     deepthink/train_cli.py
    deepthink evaluate CHECKPOINT --out DIR    deepthink/evaluate_cli.py
    deepthink sweep FILE.yaml [--dry-run]      deepthink/sweep/cli.py
    deepthink demo                             the quickstart (what `make demo` runs)
    deepthink schema                           the JSON Schema of a sweep file (editor completion)

Run `deepthink COMMAND --help` for each command's options.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> module with add_arguments(parser) and run(args) -> int
COMMANDS = {
    "data": ("deepthink.data_cli", "generate or convert task data in the easy-to-hard-data layout"),
    "models": ("deepthink.models.cli", "list registered models with their parameter counts"),
    "train": ("deepthink.train_cli", "train one model from a run/sweep YAML file"),
    "evaluate": ("deepthink.evaluate_cli", "evaluate trained trials' checkpoints again (more iterations, "
                                          "harder problems, another kernel path)"),
    "sweep": ("deepthink.sweep.cli", "run a YAML grid of trainings as a Ray Tune sweep"),
    "demo": ("deepthink.demo", "run the quickstart sweep and print its table and figure"),
    "schema": ("deepthink.schema_cli", "print the JSON Schema of a sweep file"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepthink", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from deepthink.checkpoint import CheckpointError
    from deepthink.config import ConfigError
    from deepthink.sweep.state import SweepError
    from deepthink.tasks.storage import DataError
    try:
        return int(args._run(args) or 0)
    except (ConfigError, DataError, CheckpointError, SweepError) as e:
        print(f"deepthink {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepthink {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
