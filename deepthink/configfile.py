"""Reading config text: the YAML loader (with line numbers), the one override parser, and errors.

Everything that turns user text into config values lives here, so a file, `--set key=value`
(`deepthink sweep`) and `--key value` (`deepthink train`) read values the same way:

- `load_file(path) -> (mapping, lines)`: YAML as written, plus the line of every key and list item
  (`lines[("train", "lr")] == 12`), so that errors can point at the line.
- Numbers in exponent form (`1e-3`, `2E4`) are numbers: YAML 1.1 (PyYAML) reads them as strings
  because they have no dot; `ConfigLoader` adds YAML 1.2's float pattern.
- `parse_value(text)` reads one override value with the same loader; `parse_overrides(tokens)` reads
  `--key value` / `--key=value` pairs; `split_assignment("k=v")` reads `--set k=v`.
- `ConfigError(path, key, found, expected, line)`: the message names all of them.
"""
from __future__ import annotations

import argparse
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable

import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

Key = tuple[Any, ...]          # ("train", "lr") or ("grid", "width", 0)


class ConfigError(ValueError):
    """A bad sweep/run file or override. The message names the file, key, what was found, what is
    allowed and, for a key read from a file, its line."""


def config_error(path: str, key: str, found: Any, expected: str, line: int | None = None,
                 where: str = "") -> ConfigError:
    """`where`: said instead of the line, e.g. ' (set on the command line)'."""
    where = f" (line {line})" if line else where
    return ConfigError(f"{path}: key '{key}'{where}: found {found!r}; expected {expected}")


def dotted(key: Key) -> str:
    """("grid", "width", 0) -> 'grid.width[0]'."""
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml (C) when available: ~700x faster
MAX_ALIASES = 100            # alias nodes (`*name`) a file may hold
MAX_NODES = 100_000          # nodes of the file with every alias expanded (a "billion laughs" has 10^9)


class ConfigLoader(_BaseLoader):
    """SafeLoader (the C one when PyYAML has libyaml) that reads YAML 1.2 exponent floats (`1e-3`) as
    floats. Nodes keep their marks (line numbers) with either loader."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def _lines(node: yaml.Node, key: Key, out: dict[Key, int]) -> None:
    out[key] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                out[key + (k.value,)] = k.start_mark.line + 1
                _lines(v, key + (k.value,), out)
                out[key + (k.value,)] = k.start_mark.line + 1     # the key's line, not its value's
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, key + (i,), out)


def _compose_limited(path: str, text: str) -> yaml.Node | None:
    """The file's node graph, refused (ConfigError) when it holds more than MAX_ALIASES aliases or
    expands (aliases followed) to more than MAX_NODES nodes: both are counted before anything is
    expanded, so a "billion laughs" file is refused in milliseconds."""
    aliases = sum(1 for ev in yaml.parse(text, Loader=ConfigLoader) if isinstance(ev, yaml.AliasEvent))
    if aliases > MAX_ALIASES:
        raise ConfigError(f"{path}: found {aliases} YAML aliases (*name); expected at most {MAX_ALIASES}: "
                          f"write the values out instead of repeating anchors")
    node = yaml.compose(text, Loader=ConfigLoader)
    if node is None:
        return None
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(n: yaml.Node) -> int:        # nodes of n with aliases expanded (shared nodes counted per use)
        if id(n) in sizes:
            return sizes[id(n)]
        if id(n) in visiting:
            raise ConfigError(f"{path}: line {n.start_mark.line + 1}: found a YAML alias inside its own anchor; "
                              f"expected no recursive anchors")
        visiting.add(id(n))
        total = 1
        if isinstance(n, yaml.SequenceNode):
            total += sum(size(c) for c in n.value)
        elif isinstance(n, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in n.value)
        visiting.discard(id(n))
        sizes[id(n)] = total = min(total, MAX_NODES + 1)
        return total

    if size(node) > MAX_NODES:
        raise ConfigError(f"{path}: found YAML anchors/aliases that expand to more than {MAX_NODES:,} values; "
                          f"expected a sweep file of ordinary size: write the values out instead of nesting aliases")
    return node


def load_file(path: str | Path) -> tuple[dict[str, Any], dict[Key, int]]:
    """The top-level mapping of a YAML file and the line (1-based) of every key and list item."""
    path = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        node = _compose_limited(path, text)
        loader = ConfigLoader("")
        try:
            raw = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}: YAML syntax error{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sweep keys at the top level, found {type(raw).__name__}")
    lines: dict[Key, int] = {}
    _lines(node, (), lines)
    return raw, lines


def parse_value(text: str) -> Any:
    """One override value, read as the file would read it (`1e-3` -> 0.001, `[0, 1]` -> list)."""
    try:
        if len(text) > 10_000:
            raise yaml.YAMLError("too long")
        node = _compose_limited("command line", text)
        loader = ConfigLoader("")
        try:
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except (yaml.YAMLError, ConfigError):
        return text


def split_assignment(text: str) -> tuple[str, Any]:
    """`--set KEY=VALUE` -> (KEY, value)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"command line: expected KEY=VALUE (e.g. train.epochs=5), found {text!r}")
    return key.strip(), parse_value(value)


def parse_overrides(tokens: list[str], special: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """['--train.lr', '1e-3', '--device=cpu'] -> ({'train.lr': 0.001}, {'device': 'cpu'}).

    Options named in `special` (e.g. 'data-root') are returned apart, as text."""
    overrides: dict[str, Any] = {}
    options: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise ConfigError(f"command line: expected --key value pairs, found {tok!r}")
        key, sep, value = tok[2:].partition("=")
        if not sep:
            if i + 1 >= len(tokens):
                raise ConfigError(f"command line: {tok} needs a value")
            value = tokens[i + 1]
            i += 1
        i += 1
        if key.replace("_", "-") in special:
            options[key.replace("_", "-")] = value
        else:
            overrides[key.replace("-", "_")] = parse_value(value)
    return overrides, options


# ---- typed sections (pydantic v2) ---------------------------------------------------------------
# Each component declares its own section with these pieces (data: tasks/options.py, train:
# optim.py, test: evaluate.py, grid/resources/the file: config.py); config.py turns pydantic's
# errors into ConfigErrors with `explain`.


class Section(BaseModel):
    """A config section: unknown keys and wrong types are errors (strict: no bool as int, no '3' as
    3); numbers in exponent form are floats. `replace(**changes)` validates the result."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def replace(self, **changes: Any):
        return type(self).model_validate({**self.model_dump(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def _number(v: Any) -> Any:
    """Numbers pass; text that spells a finite number ('1e-3', quoted in the file) becomes one."""
    if isinstance(v, str):
        try:
            return float(v.replace("_", ""))
        except ValueError:
            raise ValueError("a number") from None
    return v


def _finite(v: float) -> float:
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError("a finite number")
    return v


def _as_list(v: Any) -> Any:
    return [v] if not isinstance(v, (list, tuple, dict)) else v


def rule(ok: Callable[[Any], bool], expected: str) -> AfterValidator:
    """A check whose failure reads 'expected EXPECTED' in the ConfigError."""
    def check(v: Any) -> Any:
        if not ok(v):
            raise ValueError(expected)
        return v
    return AfterValidator(check)


def distinct(what: str = "distinct values") -> AfterValidator:
    return rule(lambda v: len({repr(x) for x in v}) == len(v), what)


def number(**constraints: Any) -> Any:
    """A Number with pydantic bounds (ge=0, ...), placed so that the JSON Schema shows them."""
    return Annotated[float, Field(**constraints), BeforeValidator(_number), AfterValidator(_finite)]


Number = number()
Positive = Annotated[Number, rule(lambda v: v > 0, "a positive number")]
OneOrMore = BeforeValidator(_as_list)     # `eval: 40` means [40]

EXPECTED = {     # pydantic error type -> what a ConfigError says was expected
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "string_type": "a string",
    "bool_type": "true or false", "list_type": "a list", "dict_type": "a mapping",
    "model_type": "a mapping", "model_attributes_type": "a mapping", "too_short": "a non-empty list",
}


def explain(e: ValidationError, model: type[BaseModel] | None = None) -> list[tuple[Key, Any, str]]:
    """pydantic's errors -> [(key, found, expected)], in the words ConfigError uses."""
    out = []
    for err in e.errors(include_url=False):
        loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
        if kind == "extra_forbidden":
            out.append((loc, loc[-1], f"one of {known_keys(model, loc[:-1])} (unknown key)"))
        elif kind == "missing":
            out.append((loc, None, "this key to be present" + _described(model, loc)))
        elif kind == "value_error":
            out.append((loc, err["input"], str(ctx.get("error", err["msg"]))))
        elif kind == "literal_error":
            out.append((loc, err["input"], f"one of {ctx.get('expected')}"))
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
            bound = next(iter(ctx.values()))
            noun = "an integer" if isinstance(err["input"], int) else "a number"
            out.append((loc, err["input"], f"{noun} {op} {bound}"))
        elif kind in ("model_type", "dict_type"):
            out.append((loc, err["input"], f"a mapping with keys {known_keys(model, loc)}"))
        else:
            out.append((loc, err["input"], EXPECTED.get(kind, err["msg"])))
    return out


def _inner(ann: Any) -> Any:
    """A section class in an annotation (`X`, `X | None`), or ("mapping", value annotation) for a
    `dict[str, X]`; None otherwise."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    if typing.get_origin(ann) is dict:
        return ("mapping", typing.get_args(ann)[1])
    for arg in typing.get_args(ann) if typing.get_origin(ann) in (typing.Union, types.UnionType) else ():
        found = _inner(arg)
        if found is not None:
            return found
    return None


def _section(model: type[BaseModel] | None, loc: Key) -> type[BaseModel] | None:
    """The nested section class at `loc` (None where the path leaves the sections)."""
    current: Any = model
    for part in loc:
        if isinstance(current, tuple):            # a mapping of sections: any key leads to its value
            current = _inner(current[1])
            continue
        if current is None or isinstance(part, int) or part not in current.model_fields:
            return None
        current = _inner(current.model_fields[part].annotation)
    return current if isinstance(current, type) else None


def known_keys(model: type[BaseModel] | None, loc: Key) -> list[str]:
    section = _section(model, loc)
    return sorted(section.model_fields) if section is not None else []


def _described(model: type[BaseModel] | None, loc: Key) -> str:
    parent = _section(model, loc[:-1])
    field = parent.model_fields.get(loc[-1]) if parent is not None else None
    return f": {field.description}" if field is not None and field.description else ""


def positive_int(text: str) -> int:
    """argparse type of the commands' count options (--max-concurrent, --iterations, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {value}")
    return value
