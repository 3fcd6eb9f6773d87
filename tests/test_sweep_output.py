"""What `deepthink sweep` and `deepthink demo` print (issue 12, part 5).

A real sweep on embedded Ray, its stdout and stderr sent to a file (not a terminal), as a user's
`deepthink sweep FILE > out.txt 2>&1` would: every epoch line once and in order per trial, no ANSI
escape codes, none of Ray's wrong advice, evaluation progress lines, and a TensorBoard line that
names the directory holding the event files. The slow tests interrupt a sweep and a demo, given
options with spaces and quotes, and run the printed resume command through a shell exactly as
printed. The units (noise table, progress throttling, colour stripping, command quoting) are
table-driven below them.
"""
import io
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from argparse import Namespace
from pathlib import Path

import pandas as pd
import pytest

from deepthink.evaluate import EvalProgress
from deepthink.sweep import output
from test_sweep import ROOT, tiny_sweep

# What Ray (Tune's new output engine, its logs) printed into a redirected sweep before issue 12.
MISLEADING = [r"Tuner\.restore", r"Configuration for experiment", r"View detailed results here",
              r"To visualize your results with TensorBoard", r"driver_artifacts", r"/tmp/ray",
              r"Wrote the latest version", r"Failed to fetch metrics", r"\(train_trial pid="]
EPOCH = re.compile(r"^\d\d:\d\d:\d\d epoch  (\w+) \S+ (\d+)/(\d+) ", re.M)
PROGRESS = re.compile(r"^\d\d:\d\d:\d\d info   (\w+) \S+: evaluating: (\d+)%, now (\w+ \d+) at iteration (\d+)/\d+, ", re.M)


def deepthink(*args, env=None, out: Path, **popen):
    """`deepthink ARGS > out 2>&1` in a subprocess (Popen), the way a user redirects it."""
    env = {**os.environ, **(env or {})}
    env.pop("RAY_COLOR_PREFIX", None)
    return subprocess.Popen([sys.executable, "-m", "deepthink.cli", *map(str, args)], cwd=ROOT, env=env,
                            stdout=open(out, "w"), stderr=subprocess.STDOUT, **popen)


def test_a_redirected_sweep_prints_each_line_once_in_order_without_colour_or_ray_advice(tmp_path):
    storage = tmp_path / "my results"                 # a space: the printed paths must stay usable
    path, doc = tiny_sweep(tmp_path, name="quiet", storage=str(storage),
                           grid={"model": ["dt_recall"], "max_iters": [2], "width": [8], "lr": [0.001]},
                           seeds=[0, 1], train={"epochs": 3, "batch_size": 50, "clip": None},
                           test={"iterations": 20})
    out = tmp_path / "out.txt"
    run = deepthink("sweep", path, "--data-root", tmp_path / "data", out=out,
                    env={"DEEPTHINK_EVAL_PROGRESS_S": "0"})     # every 10% of evaluation, from the start
    assert run.wait(300) == 0, out.read_text()[-3000:]
    text = out.read_text()

    assert "\x1b" not in text, "no ANSI escape codes when stdout is not a terminal"
    for pattern in MISLEADING:
        m = re.search(pattern, text)        # on failure, the lines around the match (the message is cut)
        assert not m, (pattern, text[max(m.start() - 400, 0):m.end() + 800])

    epochs = EPOCH.findall(text)
    trials = sorted({t for t, _, _ in epochs})
    assert len(trials) == 2
    for trial in trials:      # each epoch line once, in order
        assert [int(e) for t, e, _ in epochs if t == trial] == [1, 2, 3], text
    lines = text.splitlines()
    for trial in trials:      # progress: rising percentages, each once, after the last epoch, before done
        pct = [int(p) for t, p, _, _ in PROGRESS.findall(text) if t == trial]
        places = [w for t, _, w, _ in PROGRESS.findall(text) if t == trial]
        assert places[0].startswith("train") and places[-1] == "test 10", places
        assert len(pct) >= 5 and pct == sorted(set(pct)) and pct[-1] == 100, text
        at = [i for i, line in enumerate(lines) if f" {trial} " in line]
        kinds = [lines[i][9:15].strip() + (" eval" if "evaluating:" in lines[i] else "") for i in at]
        first_eval, last_epoch = kinds.index("info eval"), len(kinds) - 1 - kinds[::-1].index("epoch")
        assert last_epoch < first_eval and kinds[-1] == "done", kinds

    board = re.search(r"^tensorboard: tensorboard --logdir (.+?)( \(pip install tensorboard\))?$", text, re.M)
    assert board, text
    logdir = Path(shlex.split(board.group(1))[0])
    assert logdir == storage / "_quiet" / "ray"
    assert len(list(logdir.glob("*/events.out.tfevents.*"))) == 2, "one event file per trial, where it says"

    log = (storage / "_quiet" / "logs" / "sweep.log").read_text()
    assert EPOCH.findall(log) == epochs and PROGRESS.findall(log) == PROGRESS.findall(text)
    assert len(pd.read_parquet(storage / "quiet")) == 2 * 3 * 20


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sweep", "demo"])
def test_the_resume_hint_after_ctrl_c_repeats_every_option_and_works_as_printed(tmp_path, command):
    """Interrupt once the first epoch line is out; the hint must be the command as given (quoted,
    --storage/--set/--data-root included), and running it through a shell finishes the sweep."""
    storage, data = tmp_path / "odd 'store'", tmp_path / "data dir"
    if command == "sweep":
        path, _ = tiny_sweep(tmp_path, name="cut", storage=str(tmp_path / "unused"),
                             data={"train": 16, "eval": [20], "count": 2000},
                             grid={"model": ["dt_recall"], "max_iters": [4], "width": [32], "lr": [0.001]},
                             seeds=[0, 1, 2], train={"epochs": 5, "batch_size": 50})
        args = ["sweep", path, "--storage", storage, "--set", "train.epochs=4", "--set", "name=cut run".replace(" ", "_"),
                "--data-root", data]
        sweep_dir = storage / "cut_run"
    else:
        args = ["demo", "--smoke", "--storage", storage, "--data-root", data]
        sweep_dir = storage / "quickstart_smoke"
    out = tmp_path / "first.txt"
    run = deepthink(*args, out=out)
    t0 = time.monotonic()
    while not EPOCH.search(out.read_text()):
        assert run.poll() is None and time.monotonic() - t0 < 240, out.read_text()[-3000:]
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    assert run.wait(120) == 130, out.read_text()[-3000:]
    text = out.read_text()
    assert "Tuner.restore" not in text and "\x1b" not in text
    assert "Stop signal received" not in text and len(re.findall(r"^\S+ interrupted: stopping the running trials", text, re.M)) == 1
    hint = re.search(r"^interrupted: finish the remaining trials with: (.+)$", text, re.M).group(1)
    words = shlex.split(hint)
    assert words[:2] == ["deepthink", command]
    for option in ("--storage", "--data-root"):
        assert words[words.index(option) + 1] == str(dict(zip(args, args[1:]))[option])
    if command == "sweep":
        assert words[2] == str(path) and words[-1] == "--resume"
        assert [words[i + 1] for i, w in enumerate(words) if w == "--set"] == ['train.epochs=4', 'name="cut_run"']

    finished = subprocess.run(["bash", "-c", f"PATH={Path(sys.executable).parent}:$PATH; {hint}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    df = pd.read_parquet(sweep_dir)
    assert set(df.status) == {"ok"} and not df.duplicated(["trial_id", "split", "difficulty", "test_iters"]).any()


# ---- units ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("message,dropped", [
    ('Experiment has been interrupted, but the most recent state was saved.\nResume experiment with: '
     'Tuner.restore(path="bucket/deepthink/x/_ray", trainable=...)', True),
    ("Wrote the latest version of all result files and experiment state to 'bucket/x/_ray' in 0.01s.", True),
    ("Trials did not complete: [train_trial_522b7_00000]", True),
    ("Failed to fetch metrics for 2 trial(s):\n- train_trial_1: FileNotFoundError(...)", True),
    ("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled to opt out.", True),
    ("Started a local Ray instance.", True),
    # real errors and true warnings pass
    ("Trial task failed for trial train_trial_522b7_00000", False),
    ("Token authentication is disabled for this Ray cluster. Anyone with network access ...", False),
    ("Connected to Ray cluster at 10.0.0.1:6379", False),
])
def test_ray_noise_is_dropped_and_real_messages_pass(message, dropped):
    assert output.is_noise(message) is dropped


def test_tune_stop_signal_is_reworded_and_printed_once(capsys):
    import ray  # noqa: F401
    message = ("Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run. This will try to "
               "checkpoint the experiment state one last time. Press CTRL+C (or send SIGINT/SIGKILL/SIGTERM) to skip. ")
    assert not output.is_noise(message)
    record = logging.LogRecord("ray.tune.tune", logging.WARNING, "tune.py", 219, message, None, None)
    assert output.RayNoiseFilter().filter(record) is False           # Ray's own line is not written
    assert output.RayNoiseFilter().filter(record) is False           # a second handler: printed once only
    out = capsys.readouterr().out
    assert re.fullmatch(r"\d\d:\d\d:\d\d interrupted: stopping the running trials and saving the sweep's state "
                        r"for --resume \(Ctrl-C again quits at once; .*\)\n", out), out
    other = logging.LogRecord("ray", logging.WARNING, "x.py", 1, "Trial task failed for trial t_00000", None, None)
    assert output.RayNoiseFilter().filter(other) is True and capsys.readouterr().out == ""


class _Pipe(io.StringIO):
    def isatty(self):
        return False


def test_quiet_ray_strips_colour_from_prints_and_ray_log_records_off_a_terminal(monkeypatch):
    import ray  # noqa: F401   (configures the `ray` logger and its handler)
    out, err = _Pipe(), _Pipe()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    handler = logging.getLogger("ray").handlers[0]
    monkeypatch.setattr(handler, "stream", err)
    with output.quiet_ray():
        print("\x1b[36m(train_trial pid=1)\x1b[0m hello")
        logging.getLogger("ray.tune.tune").error("\x1b[36mray::ImplicitFunc.train()\x1b[39m failed")
        logging.getLogger("ray.tune.tune").warning("Resume experiment with: Tuner.restore(path=\"x\")")
    assert out.getvalue() == "(train_trial pid=1) hello\n"
    assert "ray::ImplicitFunc.train() failed" in err.getvalue() and "\x1b" not in err.getvalue()
    assert "Tuner.restore" not in err.getvalue()
    assert sys.stdout is out and handler.stream is err, "everything restored afterwards"


@pytest.mark.parametrize("steps,quiet_s,seconds_per_step,expected", [
    (100, 10.0, 0.01, []),                                      # a 1-second evaluation says nothing
    (100, 0.0, 0.01, list(range(10, 101, 10))),                 # every 10%, each once
    (1000, 0.0, 0.001, list(range(10, 101, 10))),               # finer steps: still every 10%
    (10, 0.0, 1.0, list(range(10, 101, 10))),
    (3, 0.0, 1.0, [33, 66, 100]),                               # fewer steps than 10%: one line each
    (200, 50.0, 1.0, [25, 30, 40, 50, 60, 70, 80, 90, 100]),    # quiet for 50 s, then every 10%
    # 10% takes 100 s here: a line at each 10% and one 60 s after each line
    (1000, 0.0, 1.0, sorted({*range(10, 101, 10), *range(6, 97, 10)})),
])
def test_eval_progress_throttles_by_percent_and_time(steps, quiet_s, seconds_per_step, expected):
    now = [0.0]
    lines = []
    progress = EvalProgress(steps, lines.append, quiet_s=quiet_s, clock=lambda: now[0])
    for _ in range(steps):
        now[0] += seconds_per_step
        progress.step()
    assert [int(re.match(r"evaluating: (\d+)%", line).group(1)) for line in lines] == expected
    assert all(re.search(r", [\d.]+ (s|min) so far(, about [\d.]+ (s|min) left)?$", line) for line in lines), lines


def test_eval_progress_counts_work_not_batches_and_says_where_and_how_long():
    """A cheap split then one 9x as costly per step: after the cheap one 10% of the work is done
    (counting batches would say 50%), and the time left is extrapolated from the pace so far."""
    now = [0.0]
    lines = []
    progress = EvalProgress(100 * 1 + 100 * 9, lines.append, quiet_s=0.0, clock=lambda: now[0])
    for i in range(100):
        now[0] += 0.1
        progress.step(1, f"test 48 at iteration {i + 1}/100")
    assert lines[-1] == "evaluating: 10%, now test 48 at iteration 100/100, 10 s so far, about 90 s left"
    for i in range(100):
        now[0] += 0.9
        progress.step(9, f"test 512 at iteration {i + 1}/100")
    assert lines[-1] == "evaluating: 100%, now test 512 at iteration 100/100, 100 s so far"
    assert [int(re.match(r"evaluating: (\d+)%", line).group(1)) for line in lines] == list(range(10, 101, 10))


@pytest.mark.parametrize("given,expected", [
    (dict(), ["deepthink", "demo"]),
    (dict(smoke=True, storage="/tmp/a b", data_root=Path("/d/it's")),
     ["deepthink", "demo", "--smoke", "--storage", "/tmp/a b", "--data-root", "/d/it's"]),
    (dict(file=Path("my sweeps/q.yaml"), out=Path("fig 1.png")),
     ["deepthink", "demo", "--file", "my sweeps/q.yaml", "--out", "fig 1.png"]),
])
def test_the_demo_suggests_itself_with_every_option(given, expected):
    from deepthink.demo import QUICKSTART, command_line
    args = Namespace(**{**dict(file=QUICKSTART, smoke=False, storage=None, data_root=None, out=None,
                               fresh=True), **given})
    assert shlex.split(command_line(args)) == expected


@pytest.mark.parametrize("given,expected", [
    (dict(), ["deepthink", "sweep", "s.yaml", "--resume"]),
    (dict(file="my sweeps/s.yaml", storage="s3://b/p q", data_root=Path("/d d"), address="auto",
          overrides=[("train.epochs", 5), ("seeds", [0, 1]), ("name", "it's")]),
     ["deepthink", "sweep", "my sweeps/s.yaml", "--address", "auto", "--data-root", "/d d", "--storage", "s3://b/p q",
      "--set", "train.epochs=5", "--set", "seeds=[0, 1]", "--set", "name=\"it's\"", "--resume"]),
])
def test_the_sweep_suggests_itself_with_every_option(given, expected):
    from deepthink.configfile import split_assignment
    from deepthink.sweep.cli import command_line
    args = Namespace(**{**dict(file="s.yaml", address=None, data_root=None, storage=None, overrides=[],
                               max_trials=None, max_concurrent=None), **given})
    words = shlex.split(command_line(args, resume=True))
    assert words == expected
    sets = [split_assignment(words[i + 1]) for i, w in enumerate(words) if w == "--set"]
    assert sets == [tuple(kv) for kv in given.get("overrides", [])], "each --set reads back as given"


@pytest.mark.parametrize("env,ray_dir,local,expected", [
    ({}, "/r/_s/ray", True, r"^tensorboard: tensorboard --logdir /r/_s/ray( \(pip install tensorboard\))?$"),
    ({}, "/r r/_s/ray", True, r"^tensorboard: tensorboard --logdir '/r r/_s/ray'"),
    ({}, "s3://b/p/_s/ray", False, r"^tensorboard: event files under s3://b/p/_s/ray/<trial>/"),
    ({"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}, "/r/_s/ray", True, None),   # Tune writes no event files
])
def test_the_tensorboard_line_names_the_event_files_or_is_left_out(monkeypatch, env, ray_dir, local, expected):
    monkeypatch.delenv("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    line = output.tensorboard_hint(ray_dir, local)
    assert (line is None) if expected is None else re.match(expected, line), line


def test_ray_worker_shutdown_traceback_is_dropped_and_other_echo_kept():
    """Ray's echo of a worker's SystemExit at shutdown is dropped as a block; any other worker
    output, and a block that turns out not to end in SystemExit, is written unchanged."""
    import io as _io
    from deepthink.sweep.output import StripAnsi
    sink = _io.StringIO()
    s = StripAnsi(sink)
    shutdown = ["(train_trial pid=7) Exception ignored in: <function Foo.__del__ at 0x1>",
                "(train_trial pid=7) Traceback (most recent call last):",
                '(train_trial pid=7)   File "python/ray/_raylet.pyx", line 712, in raise_sys_exit',
                "(train_trial pid=7) SystemExit: 1"]
    other = ["(train_trial pid=8) Exception ignored in: <x>",
             "(train_trial pid=8) Traceback (most recent call last):",
             "(train_trial pid=8) ValueError: real"]
    s.write("\x1b[36mplain line\x1b[0m\n" + "\n".join(shutdown[:2]) + "\n")
    s.write("\n".join(shutdown[2:]) + "\n(train_trial pid=9) hello\n" + "\n".join(other) + "\npartial")
    s.close_blocks()
    assert sink.getvalue() == "plain line\n(train_trial pid=9) hello\n" + "\n".join(other) + "\npartial"


def test_summary_estimates_time_left_from_trials_timed_in_this_driver(tmp_path, monkeypatch):
    """Unit test of SweepProgress's arithmetic with a fake clock and stand-in trials: only trials
    trained here from their first epoch are timed; the final count has no estimate."""
    from types import SimpleNamespace as NS

    from deepthink.sweep.progress import SweepProgress
    clock = [0.0]
    monkeypatch.setattr("deepthink.sweep.progress.time.monotonic", lambda: clock[0])
    p = SweepProgress(str(tmp_path / "s"), 2)
    p.setup()

    def trial(tid, status="RUNNING", result=None):
        return NS(trial_id=tid, status=status, config={}, last_result=result or {}, num_failures=0)

    a, b = trial("t_00000"), trial("t_00001")
    p.on_trial_start(0, [], a)
    p.on_trial_start(0, [], b)
    p.on_trial_result(0, [], a, {"epoch": 1})
    p.on_trial_result(0, [], b, {"epoch": 5})              # resumed from a checkpoint here: not timed
    clock[0] = 300.0
    b.status, b.last_result = "TERMINATED", {"outcome": "ok", "epochs_completed": 20, "rows": 9}
    p.on_trial_complete(0, [], b)
    running = [trial("t_00002"), trial("t_00003", "PENDING"), trial("t_00004", "PENDING")]
    assert p.summary([a, b] + running).endswith("0 failed"), "no estimate before a timed trial ends"
    clock[0] = 600.0
    a.status, a.last_result = "TERMINATED", {"outcome": "ok", "epochs_completed": 20, "rows": 9}
    p.on_trial_complete(0, [], a)                          # 600 s from its first epoch
    c = running[0]
    p.on_trial_start(0, [], c)
    clock[0] = 900.0                                       # c: 300 s in, 300 s left of the mean
    line = p.summary([a, b] + running)
    # 2 pending x 600 s + 300 s for c, over 1 running trial: 1500 s
    assert line.endswith("0 failed; about 25 min left (10.0 min per trial, 1 timed here)"), line
    assert "left" not in p.summary([a, b] + running, final=True)
    assert "left" not in p.summary([a, b]), "nothing left to run"
    p.n_trials = 8                                         # 3 not created yet by Tune: pending too
    assert p.summary([a, b] + running).startswith("== 8 trials: 5 pending, 1 running, 2 done (2 ok, 0 diverged)")
    assert "about 55 min left" in p.summary([a, b] + running)     # 5 x 600 + 300 s


def test_time_left_is_estimated_per_kind_of_trial(tmp_path, monkeypatch):
    """The demo's sweep mixes a fast recurrent net and a slow feed-forward one: each pending or
    running trial is expected to take the mean of its own kind (model, width, iterations, alpha), not the
    mean of all; a running trial past its estimate is said, not counted as done."""
    from types import SimpleNamespace as NS

    from deepthink.config import DataConfig, TestConfig, TrainConfig, TrialConfig
    from deepthink.sweep.progress import SweepProgress
    clock = [0.0]
    monkeypatch.setattr("deepthink.sweep.progress.time.monotonic", lambda: clock[0])
    p = SweepProgress(str(tmp_path / "s"), 2)
    p.setup()

    def trial(tid, model, seed, status="RUNNING"):
        cfg = TrialConfig(sweep="s", task="prefix_sums", model=model, width=8, max_iters=4, depth=20, seed=seed,
                          data=DataConfig(train=8), train=TrainConfig(), test=TestConfig())
        return NS(trial_id=tid, status=status, config={"trial": cfg.to_dict()}, last_result={}, num_failures=0)

    def run(t, start, end):
        clock[0] = start
        p.on_trial_start(0, [], t)
        p.on_trial_result(0, [], t, {"epoch": 1})
        clock[0] = end
        t.status, t.last_result = "TERMINATED", {"outcome": "ok", "epochs_completed": 1, "rows": 1}
        p.on_trial_complete(0, [], t)

    fast, slow = trial("t_0", "dt_recall", 0), trial("t_1", "ff_net", 0)
    run(fast, 0.0, 100.0)
    run(slow, 100.0, 400.0)                                 # dt_recall 100 s, ff_net 300 s
    pending = [trial("t_2", "ff_net", 1, "PENDING"), trial("t_3", "ff_net", 2, "PENDING")]
    line = p.summary([fast, slow] + pending)
    # 2 ff_net x 300 s (not 2 x the overall mean of 200 s), over 1 (no trial running)
    assert line.endswith("; about 10 min left (1.7-5.0 min per trial by model and size, 2 timed here)"), line
    running = trial("t_4", "dt_recall", 1)
    p.on_trial_start(0, [], running)                        # at 400 s
    clock[0] = 450.0                                        # 50 s in, 50 s left of dt_recall's 100 s
    line = p.summary([fast, slow, running] + pending)
    assert "about 650 s left" not in line and "about 11 min left" in line, line    # (600 + 50) / 1
    clock[0] = 700.0                                        # 300 s in: past its 100 s estimate
    line = p.summary([fast, slow, running] + pending)
    assert line.endswith("2 timed here; 1 running past its estimate)"), line
    assert "about 10 min left" in line, line                # the pending ff_nets only
