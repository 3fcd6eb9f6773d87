"""The driver survives its own storage failing (issue 13), on real Ray (slow): the progress log
becomes unwritable mid-run (ENOSPC injected into the driver's writes of sweep.log after its first
lines); the sweep stops with one clear message and --resume instructions, no traceback, and
--resume then finishes it."""
import os
import subprocess
import sys

import pytest

from test_sweep import ROOT, run_cli, tiny_sweep

pytestmark = pytest.mark.slow

DRIVER = """
import builtins, errno, sys
real_open, writes = builtins.open, [0]
def failing_open(path, *a, **kw):
    if str(path).endswith("sweep.log"):
        writes[0] += 1
        if writes[0] > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
    return real_open(path, *a, **kw)
builtins.open = failing_open
from deepthink.cli import main
sys.exit(main(["sweep", sys.argv[1]]))
"""


def test_progress_log_failing_mid_run_stops_with_resume_instructions(tmp_path):
    path, doc = tiny_sweep(tmp_path, name="full")
    env = dict(os.environ, RAY_DEDUP_LOGS="0")
    r = subprocess.run([sys.executable, "-c", DRIVER, str(path)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    out = r.stdout + r.stderr
    assert "Traceback" not in out.split("storage failed")[-1], out[-3000:]
    assert "storage failed while writing the log" in out and "No space left on device" in out, out[-3000:]
    assert r.returncode == 130, out[-3000:]
    assert "--resume" in out.split("the sweep stopped")[-1], out[-3000:]
    again = run_cli(path, "--resume")
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
