"""`deepthink schema`: print the JSON Schema of a sweep file (DESIGN.md section 4).

    deepthink schema > sweeps/schema.json      # what the committed sweeps/ files point at

The schema comes from the typed config sections (deepthink/config.py and the sections it
assembles), so it is the same contract that `deepthink sweep` validates. Editors use it for
completion and checks: start a sweep file with

    # yaml-language-server: $schema=schema.json

(a path relative to the YAML file, or a URL) and the YAML language server (VS Code's YAML
extension, Neovim, Helix, ...) completes keys and flags unknown ones while typing.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def render() -> str:
    from deepthink.config import json_schema
    return json.dumps(json_schema(), indent=2) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=None, help="write the schema to this file instead of stdout")


def run(args: argparse.Namespace) -> int:
    text = render()
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0
