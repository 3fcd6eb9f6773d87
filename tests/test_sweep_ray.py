"""How the embedded Ray instance of a sweep is started."""
import os

import pytest
import ray

from deepthink.sweep.runner import start_ray


def test_embedded_ray_runs_trials_at_normal_priority(monkeypatch):
    """Ray's default worker niceness is 15: on a shared machine every other process would take the
    CPU from the trials. The embedded instance starts its workers at niceness 0 (unless the user
    sets RAY_worker_niceness)."""
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    cap = start_ray(None)
    try:
        assert cap.total("CPU") >= 1

        @ray.remote(num_cpus=1)
        def niceness():
            return os.nice(0)

        assert ray.get(niceness.remote()) == os.nice(0)
    finally:
        ray.shutdown()
