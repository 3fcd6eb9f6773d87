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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 endpoint: moto's server (moto[server], in the `test` extra) on a free port of
    127.0.0.1, one for the whole session, stopped by its pid at the end (tests/services.py)."""
    from services import S3Server
    try:
        import moto  # noqa: F401
    except ImportError:
        pytest.skip("needs moto[server] (pip install -e '.[test]')")
    with S3Server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The S3 server, with its fake credentials in this process's environment (and none of the
    user's own); each test makes its own bucket."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    return s3_server
