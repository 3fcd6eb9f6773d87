"""What a running sweep prints: deepthink's own lines, Ray's real errors, nothing twice, no colour
codes in a file or a pipe.

    with quiet_ray():          # runner.run_sweep, around ray.init .. ray.shutdown
        ...

- Progress comes from one place, the driver (progress.SweepProgress): trial messages travel to it
  inside the trial's reports (trainable.py), so a trial's lines appear once each, in the order
  the trial produced them. Ray's echo of the workers' stdout/stderr (`log_to_driver`) stays on: it
  only carries what deepthink did not print itself (a library's warning, a crash).
- Ray Tune's own terminal output is the old engine at verbosity 0 (RAY_AIR_NEW_OUTPUT=0), which
  prints nothing; the new one prints, whatever the verbosity, an experiment table, the Ray state
  directory as "results", and a TensorBoard command for a temporary directory that is deleted
  when the sweep ends. deepthink prints where the event files really are (tensorboard_hint).
- RAY_NOISE: Ray log records that give wrong advice for a deepthink sweep are dropped (the table
  says why for each); RAY_REWORDED: true news in Tune's words (Ctrl-C received) is printed in the
  sweep's; every other record, warnings and errors included, goes through.
- When stdout (stderr) is not a terminal, ANSI escape sequences are removed from everything written
  to it while the sweep runs (Ray colours its workers' prefixes and its exception tracebacks);
  Ray's RAY_COLOR_PREFIX=0 is set too. A terminal keeps its colours.

Environment variables are set only where the user has not set them (os.environ.setdefault).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
import re
import time
import shlex
import sys

ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")

# (pattern searched in the record's message, why it is dropped)
RAY_NOISE: list[tuple[str, str]] = [
    (r"Resume experiment with: Tuner\.restore|Experiment has been interrupted, but",
     "Tune's restore advice; deepthink prints the `deepthink sweep ... --resume` command instead"),
    (r"^Wrote the latest version of all result files and experiment state to",
     "names Ray's state directory, on an object store without its scheme (bucket/path)"),
    (r"^Trials did not complete:",
     "the sweep's own summary counts unfinished and failed trials"),
    (r"^Failed to fetch metrics for \d+ trial",
     "after an interruption: trials that never started have no metrics yet"),
    (r"Token authentication is enabled for this Ray cluster",
     "a notice that Ray enabled its default; the embedded Ray listens on 127.0.0.1 only"),
    (r"^Started a local Ray instance",
     "the sweep's first line says where it runs"),
]
_NOISE = [re.compile(p) for p, _ in RAY_NOISE]

# (pattern, what deepthink prints instead): true news in Tune's words, which name Tune, not the sweep.
RAY_REWORDED: list[tuple[str, str]] = [
    (r"^Stop signal received \(e\.g\. via SIGINT",
     "interrupted: stopping the running trials and saving the sweep's state for --resume "
     "(Ctrl-C again quits at once; --resume then starts from the state saved before)"),
]
_REWORDED = [(re.compile(p), text) for p, text in RAY_REWORDED]


def is_noise(message: str) -> bool:
    return any(p.search(message) for p in _NOISE)


def reworded(message: str) -> str | None:
    """deepthink's line for a Ray record of RAY_REWORDED, else None."""
    return next((text for p, text in _REWORDED if p.search(message)), None)


class RayNoiseFilter(logging.Filter):
    """Drops the records of RAY_NOISE, and prints those of RAY_REWORDED in deepthink's words (to
    stdout, time-stamped like the progress lines, instead of the record); attached to the handlers
    of the `ray` logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:      # a malformed record: let logging report it as usual
            return True
        text = reworded(message)
        if text is not None:
            # The filter sits on every handler of the `ray` logger: print once per record.
            if not getattr(record, "_deepthink_printed", False):
                record._deepthink_printed = True
                print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)
            return False
        return not is_noise(message)


# Ray echoes a trial worker's shutdown as a traceback that ends in "SystemExit": Tune ends a finished
# trial's thread with sys.exit, and the interpreter sometimes reports it as "Exception ignored in ...".
# Harmless and not the trial's error (real failures are reported by the driver, "Trial task failed").
# Such a block, from its "Exception ignored" line to its "SystemExit: N" line, is held back and
# dropped; a block that turns out to be anything else is written out unchanged.
_ECHO = re.compile(r"^\(\w+ pid=(\d+)[^)]*\) (.*)$")
_BLOCK_START = re.compile(r"^Exception ignored")
_BLOCK_LINE = re.compile(r"^(Traceback |  |SystemExit|\^)")
_BLOCK_END = re.compile(r"^SystemExit: -?\d+\s*$")


class StripAnsi(io.TextIOBase):
    """A text stream that writes to `stream` without ANSI escape sequences, and without Ray's echo of
    a worker's harmless SystemExit-at-shutdown traceback (above)."""

    def __init__(self, stream):
        self.stream = stream
        self._partial = ""
        self._held: dict[str, list[str]] = {}      # worker pid -> the lines of an open block

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + ANSI.sub("", text)).split("\n")
        out = [kept for line in lines for kept in self._line(line)]
        if out:
            self.stream.write("".join(out))
        return len(text)

    def _line(self, line: str) -> list[str]:
        m = _ECHO.match(line)
        if m is None:
            return [line + "\n"]
        pid, body = m.groups()
        held = self._held.get(pid)
        if held is None:
            if _BLOCK_START.match(body):
                self._held[pid] = [line + "\n"]
                return []
            return [line + "\n"]
        if _BLOCK_END.match(body):
            del self._held[pid]                     # the shutdown traceback: dropped whole
            return []
        if _BLOCK_LINE.match(body):
            held.append(line + "\n")
            return []
        del self._held[pid]                         # something else: write it all out
        return held + [line + "\n"]

    def flush(self) -> None:
        if self._partial:
            self.stream.write(self._partial)
            self._partial = ""
        self.stream.flush()

    def close_blocks(self) -> None:
        """Write out blocks still held (a worker that never reached its SystemExit line)."""
        for held in self._held.values():
            self.stream.write("".join(held))
        self._held.clear()
        self.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self):
        return getattr(self.stream, "encoding", "utf-8")

    @property
    def errors(self):
        return getattr(self.stream, "errors", "strict")

    @property
    def buffer(self):
        return self.stream.buffer


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def quiet_ray():
    """Ray and Tune as quiet and true as module docstring says, for the duration of the block."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    plain = not _is_terminal(sys.stdout)
    if plain:
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    noise = RayNoiseFilter()
    handlers = list(logging.getLogger("ray").handlers)
    for h in handlers:
        h.addFilter(noise)
    old_out, old_err = sys.stdout, sys.stderr
    if plain:
        sys.stdout = StripAnsi(old_out)
    if not _is_terminal(old_err):
        sys.stderr = StripAnsi(old_err)
    # Ray's handler holds the stream it was created with (logging.StreamHandler), not sys.stderr
    # at emit time: point it at the stripping stream too.
    redirected = [(h, h.stream) for h in handlers if isinstance(h, logging.StreamHandler)
                  and h.stream in (old_out, old_err)]
    for h, stream in redirected:
        h.setStream(sys.stdout if stream is old_out else sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, StripAnsi):
                stream.close_blocks()
            else:
                stream.flush()
        sys.stdout, sys.stderr = old_out, old_err
        for h, stream in redirected:
            h.setStream(stream)
        for h in handlers:
            h.removeFilter(noise)


def writes_tensorboard() -> bool:
    """Whether Tune writes TensorBoard event files for this sweep: its TBXLoggerCallback is added
    unless TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1, and only when tensorboardX imports."""
    if os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0") == "1":
        return False
    return importlib.util.find_spec("tensorboardX") is not None


def tensorboard_hint(ray_dir: str, local: bool) -> str | None:
    """The line saying where the sweep's TensorBoard event files are (one per trial, written into
    Ray's trial directories as Ray saves the sweep's state), or None when none are written."""
    if not writes_tensorboard():
        return None
    viewer = "" if importlib.util.find_spec("tensorboard") else " (pip install tensorboard)"
    if local:
        return f"tensorboard: tensorboard --logdir {shlex.quote(ray_dir)}{viewer}"
    return f"tensorboard: event files under {ray_dir}/<trial>/ (copy them to a local directory, then tensorboard --logdir DIR{viewer})"
