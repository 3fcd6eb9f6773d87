"""How the embedded Ray instance of a sweep is started."""
import os

import pytest
import ray

from deepthink.sweep import runner
from deepthink.sweep.runner import start_ray, stop_ray


def test_embedded_ray_runs_trials_at_normal_priority(monkeypatch):
    """Ray's default worker niceness is 15: on a shared machine every other process would take the
    CPU from the trials. The embedded instance starts its workers at niceness 0 (unless the user
    sets RAY_worker_niceness)."""
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    # start_ray sets these for the embedded instance; put them back for the tests that follow
    monkeypatch.delenv(runner.LOCAL_ONLY_ENV, raising=False)
    monkeypatch.setattr(ray._private.ray_constants, "ENABLE_RAY_CLUSTER", ray._private.ray_constants.ENABLE_RAY_CLUSTER)
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    cap = start_ray(None)
    session = runner._own_temp_dir
    try:
        assert cap.total("CPU") >= 1

        @ray.remote(num_cpus=1)
        def niceness():
            return os.nice(0)

        assert ray.get(niceness.remote()) == os.nice(0)
        assert ray.util.get_node_ip_address() == "127.0.0.1"      # local by default
    finally:
        stop_ray()
    assert session and not os.path.exists(session), "its session directory is removed"
