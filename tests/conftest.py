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
