"""A results table beside published numbers: `python -m analysis.tables ... --compare FILE`.

FILE is a small CSV of published cells (one per line; `#` lines are comments, and a comment that
starts with `Source:`, with its indented continuation lines, is printed under each comparison):

    model,depth,split,difficulty,iteration,metric,mean,std,sem,n
    recur_net,40,test,40,train,iteration,24.96,,2.96,

Key columns name the cell the way analysis.tables does: the --rows and --cols keys, and split,
difficulty, iteration (train | best | K) and metric (iteration | max_confidence), all required;
any other config key (width, alpha, task, ...) may be added and must then equal the table's value.
Value columns: mean (required); std and sem, the published ± read as a standard deviation or as a
standard error (either may be empty); n, the runs behind the cell (empty where the paper does not
say it).

Per cell:  z = (mean_run - mean_pub) / sqrt(se_run² + se_pub²),  se_run = std_run / sqrt(n_run),
se_pub = sem if given, else std / sqrt(n). No number is guessed: z is `n/a`, with the reason in a
note, where one side has no standard error (one seed in the run; a published std without n; no
published ± at all; both zero). A cell on one side only shows `—` on the other and is listed in a
note; published cells that match no table are listed after the last one.
"""
from __future__ import annotations

import csv
import io
import math
import numbers
from dataclasses import dataclass
from pathlib import Path

from analysis.common import CONFIG_KEYS, GROUP_KEYS, METRIC_COLUMNS, AnalysisError, describe, fmt_value
from analysis.tables import DASH, _sort_key, _tex, cell_text, to_latex, to_markdown

CONTEXT_KEYS = ["split", "difficulty", "metric", "iteration"]        # required in every file
KEY_COLUMNS = GROUP_KEYS + CONTEXT_KEYS
VALUE_COLUMNS = ["mean", "std", "sem", "n"]
NUMERIC_KEYS = {"width", "depth", "max_iters", "alpha", "lr", "epochs", "train_difficulty", "difficulty"}
SPLITS = ("train", "val", "test")


@dataclass
class Published:
    line: int                  # line number in the file (for messages)
    key: dict                  # key column -> value (str, float; iteration: 'train' | 'best' | int)
    mean: float
    std: float | None
    sem: float | None
    n: int | None

    @property
    def se(self) -> float | None:
        if self.sem is not None:
            return self.sem
        if self.std is not None and self.n is not None:
            return self.std / math.sqrt(self.n)
        return None

    def text(self) -> str:
        """'24.96 ± 2.96 s.e. (n unknown)', '22.17 ± 0.85 (n=5)', '24.96 (n=3)'."""
        n = f"n={self.n}" if self.n is not None else "n unknown"
        if self.std is not None:
            return f"{self.mean:.2f} ± {self.std:.2f} ({n})"
        if self.sem is not None:
            return f"{self.mean:.2f} ± {self.sem:.2f} s.e. ({n})"
        return f"{self.mean:.2f} ({n})"


@dataclass
class PublishedFile:
    path: str
    source: str | None
    key_columns: list[str]
    rows: list[Published]


@dataclass
class Line:
    row: object
    col: object
    run: object                # analysis.tables.Cell, or None: no trial at that grid point
    pub: Published | None
    z: float | None
    why: str | None            # why there is no z although both sides exist


@dataclass
class Comparison:
    table: object              # analysis.tables.Table
    lines: list[Line]
    notes: list[str]


def _number(path, column, line, text, kind=float):
    try:
        v = float(text)
    except ValueError:
        raise AnalysisError(f"{path}: column {column}, line {line}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise AnalysisError(f"{path}: column {column}, line {line}: {text!r} is not a finite number")
    if kind is int:
        if v != int(v) or v < 1:
            raise AnalysisError(f"{path}: column {column}, line {line}: {text!r} is not a positive "
                                f"whole number")
        return int(v)
    return v


def _key_value(path, column, line, text):
    if text == "":
        raise AnalysisError(f"{path}: column {column}, line {line}: empty (a key column needs a value)")
    if column in NUMERIC_KEYS:
        v = _number(path, column, line, text)
        return int(v) if v.is_integer() else v       # 40, not 40.0, where the file is shown back
    if column == "iteration":
        if text in ("train", "best"):
            return text
        if text.isdigit() and int(text) >= 1:
            return int(text)
        raise AnalysisError(f"{path}: column iteration, line {line}: {text!r} is not train, best "
                            f"or a positive integer")
    if column == "split" and text not in SPLITS:
        raise AnalysisError(f"{path}: column split, line {line}: {text!r} is not one of {', '.join(SPLITS)}")
    if column == "metric" and text not in METRIC_COLUMNS:
        raise AnalysisError(f"{path}: column metric, line {line}: {text!r} is not one of "
                            f"{', '.join(METRIC_COLUMNS)}")
    return text


def _scan(path: str, text: str) -> tuple[str | None, list[tuple[int, list[str]]]]:
    """(the 'Source:' comment with its indented continuation lines, [(line number, fields)])."""
    source: list[str] = []
    in_source = False
    lines = []
    for i, raw in enumerate(text.splitlines(), start=1):
        s = raw.strip()
        if s.startswith("#"):
            body = s[1:]
            if not source and body.strip().lower().startswith("source:"):
                source.append(body.strip()[len("source:"):].strip())
                in_source = True
            elif in_source and body.startswith("   ") and body.strip():
                source.append(body.strip())
            else:
                in_source = False
            continue
        in_source = False
        if s:
            try:
                lines.append((i, next(csv.reader([raw]))))
            except csv.Error as e:
                raise AnalysisError(f"{path}: line {i}: not a CSV line ({e})") from None
    return " ".join(source) or None, lines


def read_published(path: str) -> PublishedFile:
    """Parse FILE; an AnalysisError naming the file (and column and line) for anything wrong."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise AnalysisError(f"{path}: no such published-results file" if not p.exists()
                            else f"{path}: not a file")
    try:
        text = p.read_text(encoding="utf-8-sig")      # -sig: a spreadsheet's byte-order mark
    except (OSError, UnicodeDecodeError) as e:
        raise AnalysisError(f"{path}: cannot read it ({e})") from None
    source, lines = _scan(path, text)
    if not lines:
        raise AnalysisError(f"{path}: no header line (expected e.g. model,depth,split,difficulty,"
                            f"iteration,metric,mean,std,sem,n)")
    head_line, header = lines[0]
    header = [h.strip() for h in header]
    for h in header:
        if header.count(h) > 1:
            raise AnalysisError(f"{path}: column {h} appears twice in the header (line {head_line})")
        if h not in KEY_COLUMNS and h not in VALUE_COLUMNS:
            raise AnalysisError(f"{path}: column {h!r} is neither a key column ({', '.join(KEY_COLUMNS)}) "
                                f"nor a value column ({', '.join(VALUE_COLUMNS)})")
    for need in ["mean"] + CONTEXT_KEYS:
        if need not in header:
            raise AnalysisError(f"{path}: no {need} column (needed: the --rows and --cols keys, "
                                f"{', '.join(CONTEXT_KEYS)} and mean)")
    keys = [h for h in header if h in KEY_COLUMNS]
    rows: list[Published] = []
    seen: dict[tuple, int] = {}
    for i, fields in lines[1:]:
        if len(fields) != len(header):
            raise AnalysisError(f"{path}: line {i}: {len(fields)} fields, the header has {len(header)}")
        f = dict(zip(header, (x.strip() for x in fields)))
        key = {c: _key_value(path, c, i, f[c]) for c in keys}
        if f["mean"] == "":
            raise AnalysisError(f"{path}: column mean, line {i}: empty (every published cell needs a mean)")
        opt = {c: (_number(path, c, i, f[c], int if c == "n" else float) if f.get(c, "") != "" else None)
               for c in ("std", "sem", "n")}
        for c in ("std", "sem"):
            if opt[c] is not None and opt[c] < 0:
                raise AnalysisError(f"{path}: column {c}, line {i}: {f[c]} is negative")
        ident = tuple(key[c] for c in keys)
        if ident in seen:
            raise AnalysisError(f"{path}: lines {seen[ident]} and {i} give the same cell ({describe(key)})")
        seen[ident] = i
        rows.append(Published(i, key, _number(path, "mean", i, f["mean"]), opt["std"], opt["sem"], opt["n"]))
    if not rows:
        raise AnalysisError(f"{path}: no published cells (only a header)")
    return PublishedFile(path, source, keys, rows)


def _is_number(v) -> bool:
    # numbers.Real also covers numpy's int64/float64 (table values come from pandas)
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _same(pub_value, table_value) -> bool:
    """A file's value equals a table's: numbers as numbers (40 == 40.0), anything else as text."""
    if _is_number(pub_value) or _is_number(table_value):
        return (_is_number(pub_value) and _is_number(table_value)
                and math.isclose(float(pub_value), float(table_value), rel_tol=1e-9, abs_tol=1e-12))
    return str(pub_value) == str(table_value)


def _z(run, pub: Published) -> tuple[float | None, str | None]:
    if run is None or run.n == 0:
        return None, None                    # nothing averaged in this run: shown as '—'
    if run.n == 1:
        return None, "one seed in this run, so no std"
    if pub.se is None:
        return None, ("the published std has no n" if pub.std is not None else "no published std or sem")
    se2 = run.std ** 2 / run.n + pub.se ** 2
    if se2 == 0:
        return None, "both standard errors are 0"
    return (run.mean - pub.mean) / math.sqrt(se2), None


def compare(tables: list, pub: PublishedFile) -> tuple[list[Comparison], list[Published]]:
    """One Comparison per table, and the published cells that matched no table."""
    used: set[int] = set()
    out = []
    for t in tables:
        for k in (t.rows_key, t.cols_key):
            if k not in pub.key_columns:
                side = "rows" if k == t.rows_key else "columns"
                raise AnalysisError(f"{pub.path}: no {k} column, but the tables' {side} are {k} "
                                    f"(its key columns: {', '.join(pub.key_columns)})")
        table_values = {**t.fixed, **t.context}      # every key with one value over this table
        others = [c for c in pub.key_columns if c not in (t.rows_key, t.cols_key)]
        for c in others:
            if c not in table_values:
                raise AnalysisError(f"{pub.path}: column {c}: takes several values within one table "
                                    f"({t.title}); drop the column or make it --rows/--cols")
        matched: dict = {}
        for p in pub.rows:
            if all(_same(p.key[c], table_values[c]) for c in others):
                r = next((v for v in t.row_values if _same(p.key[t.rows_key], v)), p.key[t.rows_key])
                c = next((v for v in t.col_values if _same(p.key[t.cols_key], v)), p.key[t.cols_key])
                matched[(r, c)] = p
                used.add(p.line)
        out.append(_comparison(t, matched, pub.path))
    return out, [p for p in pub.rows if p.line not in used]


def _comparison(t, matched: dict, path: str) -> Comparison:
    if not matched:
        return Comparison(t, [], [f"no published cell in {path} matches this table"])
    keys = sorted(set(t.cells) | set(matched), key=lambda k: (_sort_key(k[0]), _sort_key(k[1])))
    lines = []
    for r, c in keys:
        run, p = t.cells.get((r, c)), matched.get((r, c))
        z, why = _z(run, p) if p is not None else (None, None)
        lines.append(Line(r, c, run, p, z, why))
    name = lambda ln: describe({t.rows_key: ln.row, t.cols_key: ln.col})   # noqa: E731
    notes = ["z = (run mean - published mean) / sqrt(se_run² + se_pub²); se = std/sqrt(n), "
             "or the published s.e. as given"]
    reasons: dict[str, list[str]] = {}
    for ln in lines:
        if ln.why:
            reasons.setdefault(ln.why, []).append(name(ln))
    notes += [f"z n/a, {why}: {'; '.join(cells)}" for why, cells in reasons.items()]
    only_pub = [f"{name(ln)} (line {ln.pub.line})" for ln in lines if ln.pub and ln.run is None]
    if only_pub:
        notes.append("published cells with no run cell: " + "; ".join(only_pub))
    only_run = [name(ln) for ln in lines if ln.pub is None]
    if only_run:
        notes.append("run cells with no published cell: " + "; ".join(only_run))
    return Comparison(t, lines, notes)


def _unmatched_note(unmatched: list[Published], path: str) -> list[str]:
    if not unmatched:
        return []
    cells = "; ".join(f"line {p.line} ({describe(p.key)})" for p in unmatched)
    return [f"published cells in {path} that match no table here: {cells}"]


def _z_text(ln: Line) -> str:
    if ln.z is not None:
        return f"{ln.z:+.2f}"
    return "n/a" if ln.why else DASH


def _run_text(ln: Line, latex: bool = False) -> str:
    if ln.run is None:
        return "---" if latex else DASH
    return cell_text(ln.run, show_n=True, latex=latex)


def _heading(pub: PublishedFile) -> list[str]:
    return [f"vs published: {pub.path}"] + ([f"Source: {pub.source}"] if pub.source else [])


def compare_markdown(comps: list[Comparison], unmatched: list[Published], pub: PublishedFile) -> str:
    out = []
    for cmp in comps:
        t = cmp.table
        head, *src = _heading(pub)
        block = [to_markdown([t]).rstrip("\n"), "", f"#### {head}"] + (["", src[0]] if src else [])
        if cmp.lines:
            block += ["", f"| {t.rows_key} | {t.cols_key} | this run | published | z |",
                      "|:---|:---:|:---:|:---:|:---:|"]
            block += [f"| {fmt_value(ln.row)} | {fmt_value(ln.col)} | {_run_text(ln)} | "
                      f"{ln.pub.text() if ln.pub else DASH} | {_z_text(ln)} |" for ln in cmp.lines]
        block += [""] + [f"Note: {n}" for n in cmp.notes]
        out.append("\n".join(block))
    out += [f"Note: {n}" for n in _unmatched_note(unmatched, pub.path)]
    return "\n\n".join(out) + "\n"


def compare_latex(comps: list[Comparison], unmatched: list[Published], pub: PublishedFile) -> str:
    out = []
    for cmp in comps:
        t = cmp.table
        block = [to_latex([t]).rstrip("\n"), ""] + [f"% {h}" for h in _heading(pub)]
        block += ["\\begin{tabular}{llccc}", "\\toprule",
                  f"{_tex(t.rows_key)} & {_tex(t.cols_key)} & this run & published & $z$ \\\\", "\\midrule"]
        block += [f"{_tex(fmt_value(ln.row))} & {_tex(fmt_value(ln.col))} & {_run_text(ln, latex=True)} & "
                  f"{_tex(ln.pub.text() if ln.pub else DASH)} & {_tex(_z_text(ln))} \\\\" for ln in cmp.lines]
        block.append("\\bottomrule")
        block += [f"\\multicolumn{{5}}{{l}}{{\\footnotesize {_tex(n)}}} \\\\" for n in cmp.notes]
        block.append("\\end{tabular}")
        out.append("\n".join(block))
    out += [f"% Note: {n}" for n in _unmatched_note(unmatched, pub.path)]
    return "\n\n".join(out) + "\n"


def _f(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def compare_csv(comps: list[Comparison], unmatched: list[Published], pub: PublishedFile) -> str:
    """Tidy: one line per cell (either side), both sides, the standard errors used and z."""
    buf = io.StringIO()
    extra = sorted({k for c in comps for k in c.table.context} - set(CONTEXT_KEYS),
                   key=lambda k: CONFIG_KEYS.index(k) if k in CONFIG_KEYS else len(CONFIG_KEYS))
    fields = [*CONTEXT_KEYS, *extra, "rows_key", "row", "cols_key", "col", "mean", "std", "n", "seeds",
              "n_excluded", "n_missing", "pub_mean", "pub_std", "pub_sem", "pub_n", "pub_line",
              "se", "pub_se", "z", "z_note"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for cmp in comps:
        t = cmp.table
        for ln in cmp.lines:
            run, p = ln.run, ln.pub
            has = run is not None and run.n > 0
            note = ln.why or ("no run cell" if run is None else "no published cell" if p is None
                              else "no averaged run value" if not has else "")
            w.writerow({**{k: t.context.get(k, "") for k in CONTEXT_KEYS + extra},
                        "rows_key": t.rows_key, "row": ln.row, "cols_key": t.cols_key, "col": ln.col,
                        "mean": _f(run.mean) if has else "", "std": _f(run.std) if has else "",
                        "n": run.n if run else 0,
                        "seeds": " ".join(map(str, sorted(run.seeds))) if run else "",
                        "n_excluded": run.n_excluded if run else 0,
                        "n_missing": len(run.missing) if run else 0,
                        "pub_mean": _f(p.mean) if p else "", "pub_std": _f(p.std) if p else "",
                        "pub_sem": _f(p.sem) if p else "", "pub_n": p.n if p and p.n is not None else "",
                        "pub_line": p.line if p else "",
                        "se": _f(run.std / math.sqrt(run.n)) if has and run.n > 1 else "",
                        "pub_se": _f(p.se) if p else "", "z": _f(ln.z), "z_note": note})
    return buf.getvalue()


RENDERERS = {"markdown": compare_markdown, "latex": compare_latex, "csv": compare_csv}


def render(tables: list, pub: PublishedFile, fmt: str) -> tuple[str, list[str]]:
    """(text for stdout, notes for stderr). CSV keeps stdout one clean table: the notes of
    published cells that match no table go to stderr there; the other formats print them inline."""
    comps, unmatched = compare(tables, pub)
    text = RENDERERS[fmt](comps, unmatched, pub)
    return text, (_unmatched_note(unmatched, pub.path) if fmt == "csv" else [])
