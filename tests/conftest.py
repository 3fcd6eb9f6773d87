"""Shared fixtures. Tests run on 2 CPU cores: keep data tiny and torch single-threaded-ish."""
import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (bit-exact comparisons; no OpenMP stalls on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
