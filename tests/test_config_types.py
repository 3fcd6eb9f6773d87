"""The typed config contract: every field type coerces and rejects the same way in a file and in
every override form, errors name file, key and line, and the JSON Schema (`deepthink schema`)
accepts every committed sweep file and rejects malformed ones.

    .venv/bin/python -m pytest tests/test_config_types.py -q
"""
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from deepthink.config import ConfigError, json_schema, parse_sweep
from deepthink.configfile import ConfigLoader, load_file, parse_overrides, parse_value, split_assignment

SWEEPS = sorted((Path(__file__).resolve().parents[1] / "sweeps").glob("*.yaml"))

BASE = """\
name: t
task: prefix_sums
grid:
  model: [dt_net]
  max_iters: [2]
  width: [8]
train:
  epochs: 1
data:
  train: 8
  count: 100
"""


def _file(tmp_path, section, key, text):
    """BASE with `key: text` (YAML text) under `section`; returns the file and that line's number."""
    lines = BASE.splitlines()
    if f"{section}:" not in lines:
        lines.append(f"{section}:")
    at = lines.index(f"{section}:") + 1
    lines = [x for x in lines if not x.startswith(f"  {key}:")]       # replace the key, not repeat it
    lines.insert(at, f"  {key}: {text}")
    f = tmp_path / "s.yaml"
    f.write_text("\n".join(lines) + "\n")
    return f, at + 1


# (section, key, YAML text, value after parsing)
COERCE = [
    ("train", "lr", "1e-3", 0.001),
    ("train", "lr", "2E-4", 2e-4),
    ("train", "lr", "'1e-3'", 0.001),         # quoted: text that spells a number is a number
    ("train", "lr", "3", 3.0),                # an integer where a number is expected
    ("train", "weight_decay", "0", 0.0),
    ("train", "epochs", "7", 7),
    ("train", "clip", "null", None),
    ("train", "milestones", "[1, 2]", [1, 2]),
    ("train", "milestones", "5", [5]),         # one value means a list of one
    ("train", "precision", "bf16", "bf16"),
    ("data", "eval", "12", [12]),
    ("data", "train_count", "50", 50),
    ("test", "max_examples", "null", None),
    ("test", "max_examples", "7", 7),
    ("test", "max_examples", "{8: 30}", {8: 30}),        # a cap per difficulty
    ("test", "max_examples", "{'8': 30}", {8: 30}),      # keys as text (JSON) are difficulties too
    ("resources", "gpu", "0.25", 0.25),
]

# (section, key, YAML text, what the error must say was expected)
REJECT = [
    ("train", "lr", "fast", "a number"),
    ("train", "lr", "true", "a number"),            # booleans are not numbers
    ("train", "lr", "-1e-3", "a positive number"),
    ("train", "lr", ".nan", "a finite number"),
    ("train", "weight_decay", "[0.1]", "a number"),   # a list for lr is a grid on the command line
    ("train", "epochs", "1.5", "an integer"),
    ("train", "epochs", "'3'", "an integer"),       # quoted integers stay text
    ("train", "epochs", "true", "an integer"),
    ("train", "epochs", "0", "an integer >= 1"),
    ("train", "optimizer", "lbfgs", "one of 'adam', 'adamw' or 'sgd'"),
    ("train", "precision", "fp16", "'bf16'"),
    ("train", "milestones", "[1, x]", "an integer"),
    ("train", "milestones", "{a: 1}", "a list"),
    ("train", "alpha", "1.5", "a number in [0, 1]"),
    ("data", "source", "web", "'published'"),
    ("data", "count", "0", "an integer >= 1"),
    ("data", "eval", "[]", "a non-empty list"),
    ("data", "val_fraction", "1", "strictly between 0 and 1"),
    ("test", "iterations", "yes", "an integer"),
    ("test", "max_examples", "0", "a positive integer (every split) or a mapping difficulty: positive integer"),
    ("test", "max_examples", "{8: 0}", "a mapping difficulty: positive integer"),
    ("test", "max_examples", "[1, 2]", "a mapping difficulty: positive integer"),
    ("test", "max_examples", "true", "a positive integer"),
    ("test", "max_examples", "{3: 5}", "a difficulty of this sweep (train 8; eval"),
    ("resources", "cpu", "0", "a positive number of CPUs"),
    ("resources", "gpu", "0.3", "divides 1"),
]


@pytest.mark.parametrize("section,key,text,value", COERCE, ids=[f"{c[0]}.{c[1]}={c[2]}" for c in COERCE])
def test_field_coerces_in_file_and_in_both_override_forms(tmp_path, section, key, text, value):
    f, _ = _file(tmp_path, section, key, text)
    sweep = parse_sweep(f)
    assert sweep.to_dict()[section][key] == value
    plain = tmp_path / "plain.yaml"
    plain.write_text(BASE)
    dotted = f"{section}.{key}"
    for overrides in (dict([split_assignment(f"{dotted}={text}")]),          # deepthink sweep --set
                      parse_overrides([f"--{dotted}", text])[0],              # deepthink train --key value
                      parse_overrides([f"--{dotted}={text}"])[0]):
        assert parse_sweep(plain, overrides).to_dict()[section][key] == value


@pytest.mark.parametrize("section,key,text,expected", REJECT, ids=[f"{c[0]}.{c[1]}={c[2]}" for c in REJECT])
def test_field_rejects_naming_file_key_line_found_and_allowed(tmp_path, section, key, text, expected):
    f, line = _file(tmp_path, section, key, text)
    with pytest.raises(ConfigError) as e:
        parse_sweep(f)
    msg = str(e.value)
    assert f"{f}: key '{section}.{key}" in msg and f"(line {line})" in msg and expected in msg, msg
    plain = tmp_path / "plain.yaml"
    plain.write_text(BASE)
    with pytest.raises(ConfigError) as e:
        parse_sweep(plain, dict([split_assignment(f"{section}.{key}={text}")]))
    assert "set on the command line" in str(e.value) and expected in str(e.value), str(e.value)


def test_nested_and_grid_overrides(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(BASE.replace("width: [8]", "width: [8, 16]\n  lr: [1e-3, 2e-3]"))
    sweep = parse_sweep(f)
    assert sweep.grid["lr"] == [0.001, 0.002] and len(sweep.trials()) == 4
    one = parse_sweep(f, {"width": 16, "train.lr": parse_value("5e-4"), "seeds": [1, 2], "data.eval": [10, 12]})
    assert one.grid["width"] == [16] and one.grid["lr"] == [0.0005] and one.seeds == [1, 2]
    assert [(t.width, t.train.lr, t.seed) for t in one.trials()] == [(16, 0.0005, 1), (16, 0.0005, 2)]
    two = parse_sweep(f, dict([split_assignment("model=[dt_net, dt_recall]"), split_assignment("width=8")]))
    assert two.grid["model"] == ["dt_net", "dt_recall"] and two.grid["width"] == [8]
    with pytest.raises(ConfigError, match=r"grid.lr\[1\]' \(line 7\): found -1.0; expected a positive number"):
        f.write_text(BASE.replace("width: [8]", "width: [8]\n  lr: [1e-3, -1e0]"))
        parse_sweep(f)


def test_lines_point_at_keys_and_list_items(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(BASE + "seeds:\n  - 0\n  - 1.5\n")
    _, lines = load_file(f)
    assert lines[("grid", "width")] == 6 and lines[("seeds", 1)] == 14
    with pytest.raises(ConfigError, match=r"key 'seeds\[1\]' \(line 14\): found 1.5; expected an integer"):
        parse_sweep(f)


def test_exponent_floats_only_where_yaml_1_2_has_them():
    load = lambda text: yaml.load(text, Loader=ConfigLoader)     # noqa: E731
    assert load("[1e-3, 1E5, -2.5e+2, 1_000, 0x10, 1.5]") == [0.001, 1e5, -250.0, 1000, 16, 1.5]
    assert load("[e5, 1e, v1e3]") == ["e5", "1e", "v1e3"]
    assert yaml.safe_load("1e-3") == "1e-3"                      # plain PyYAML is left alone


def test_committed_schema_is_current_and_every_sweep_file_points_at_it():
    committed = json.loads((SWEEPS[0].parent / "schema.json").read_text())
    assert committed == json.loads(json.dumps(json_schema())), "run: deepthink schema --out sweeps/schema.json"
    for f in SWEEPS:
        assert f.read_text().splitlines()[0] == "# yaml-language-server: $schema=schema.json", f


@pytest.mark.parametrize("path", SWEEPS, ids=[p.name for p in SWEEPS])
def test_schema_accepts_every_sweep_file(path):
    doc, _ = load_file(path)
    jsonschema.validate(doc, json_schema())


@pytest.mark.parametrize("change", [
    {"train": {"lr": "fast"}}, {"train": {"learning_rate": 0.1}}, {"grid": {"model": ["transformer"], "width": [8],
                                                                             "depth": [8]}},
    {"epochs": 3}, {"resources": {"gpu": -1}}, {"seeds": [True]}, {"data": [8, 10]}, {"task": "sudoku"},
], ids=lambda c: json.dumps(c))
def test_schema_rejects_malformed_files(change):
    doc, _ = load_file(SWEEPS[0])
    doc.update(change)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, json_schema())


def test_schema_command_prints_it(capsys):
    from deepthink.cli import main
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "deepthink sweep file"
