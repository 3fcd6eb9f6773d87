"""Real services for the slow tests: a moto S3 server and a `ray start --head` cluster, each on free
ports of 127.0.0.1, each stopped by its own process ids only (never `ray stop`, which ends every
Ray process of the user on the machine, other sweeps' and other tests' included).

    with S3Server() as s3:            # s3.endpoint = "127.0.0.1:PORT"; s3.make_bucket("b")
        ...
    with RayHead(tmp_path) as head:   # head.dashboard = "http://127.0.0.1:PORT"; head.env(): the
        head.job_submit(...)          # environment every Ray command and driver of it needs

Both also run by hand: `python tests/services.py s3` or `python tests/services.py ray DIR` start one
and print how to reach it, until Ctrl-C.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent
# Credentials moto accepts (any value); a real AWS key in the environment must not reach the fake.
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_SESSION_TOKEN": "testing", "AWS_EC2_METADATA_DISABLED": "true"}


def free_ports(n: int) -> list[int]:
    """n distinct ports free on 127.0.0.1 now (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_port(port: int, proc: subprocess.Popen, timeout: float, what: str, log: Path) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop_tree(proc: subprocess.Popen, timeout: float = 10) -> None:
    """End `proc` and every process below it (by pid): SIGTERM, then SIGKILL what is left."""
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for p in tree:        # all at once, as `ray stop` does (a `ray start --block` alone drains for 30 s)
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=timeout)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=5)
    proc.wait(timeout=5)


class S3Server:
    """moto's S3 server (`moto_server`, from moto[server] in the `test` extra) on a free port."""

    def __init__(self, log_dir: str | Path | None = None):
        self.port = free_ports(1)[0]
        self.endpoint = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.endpoint}"
        self.log = Path(log_dir or tempfile.mkdtemp(prefix="moto-")) / "moto.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "S3Server":
        exe = BIN / "moto_server"
        if not exe.exists():
            raise FileNotFoundError(f"{exe}: install the test extra (pip install -e '.[test]')")
        self.proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     env={**os.environ, **FAKE_AWS})
        try:
            _wait_port(self.port, self.proc, 60, "moto_server", self.log)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            stop_tree(self.proc)

    def env(self) -> dict[str, str]:
        """Environment for a process that talks to this server (fake credentials)."""
        return {**FAKE_AWS}

    def uri(self, bucket: str, path: str = "") -> str:
        """s3://bucket/path with the endpoint in the query string (pyarrow's own syntax)."""
        return f"s3://{bucket}/{path.strip('/')}".rstrip("/") + f"?endpoint_override={self.endpoint}&scheme=http"

    def filesystem(self):
        import pyarrow.fs as pafs
        return pafs.S3FileSystem(endpoint_override=self.endpoint, scheme="http", access_key="testing",
                                 secret_key="testing", region="us-east-1", allow_bucket_creation=True)

    def make_bucket(self, name: str) -> None:
        self.filesystem().create_dir(name)

    def list(self, prefix: str) -> list[str]:
        import pyarrow.fs as pafs
        infos = self.filesystem().get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)


class RayHead:
    """`ray start --head --block` (ray[default], the `cluster` extra) on free ports of 127.0.0.1 with
    its own --temp-dir and token authentication (a token of its own in a file, RAY_AUTH_TOKEN_PATH;
    ~/.ray is not touched). Stopped by ending the blocking `ray start` and everything below it."""

    def __init__(self, work: str | Path, num_cpus: int = 2):
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        # Unix socket paths must stay under ~100 characters: a short temp dir of its own
        self.temp_dir = Path(tempfile.mkdtemp(prefix="dtr-", dir="/tmp"))
        self.token_file = self.work / "ray-token"
        self.token_file.write_text(secrets.token_hex(32))
        self.token_file.chmod(0o600)
        (self.gcs_port, self.dashboard_port, self.client_port, self.node_manager_port, self.object_manager_port,
         self.agent_port, self.agent_grpc_port, self.runtime_env_port, self.metrics_port) = free_ports(9)
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.num_cpus = num_cpus
        self.log = self.work / "ray-start.log"
        self.proc: subprocess.Popen | None = None

    def env(self, **extra: str) -> dict[str, str]:
        """What every process of this cluster needs: token auth on, this cluster's token, local only
        (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: node address 127.0.0.1), no address inherited."""
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file),
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_DEDUP_LOGS": "0",
                # trial workers at normal priority, as an embedded sweep's (Ray's default is 15)
                "RAY_worker_niceness": "0", **extra}

    def __enter__(self) -> "RayHead":
        ray = BIN / "ray"
        cmd = [str(ray), "start", "--head", "--block", "--disable-usage-stats",
               f"--port={self.gcs_port}", f"--dashboard-port={self.dashboard_port}", "--dashboard-host=127.0.0.1",
               f"--ray-client-server-port={self.client_port}", f"--node-manager-port={self.node_manager_port}",
               f"--object-manager-port={self.object_manager_port}",
               f"--dashboard-agent-listen-port={self.agent_port}", f"--dashboard-agent-grpc-port={self.agent_grpc_port}",
               f"--runtime-env-agent-port={self.runtime_env_port}", f"--metrics-export-port={self.metrics_port}",
               f"--num-cpus={self.num_cpus}", "--num-gpus=0", f"--object-store-memory={100 * 2**20}",
               f"--temp-dir={self.temp_dir}"]
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=open(self.log, "w"), stderr=subprocess.STDOUT,
                                     cwd=self.work)
        try:
            _wait_port(self.dashboard_port, self.proc, 120, "ray start --head", self.log)
            self._wait_jobs_api()
        except BaseException:         # never leave a half-started cluster behind
            self.__exit__()
            raise
        return self

    def _wait_jobs_api(self, timeout: float = 120) -> None:
        """The dashboard listens before its job module answers: wait for `ray job list`."""
        t0 = time.monotonic()
        while True:
            done = self.ray("job", "list", "--address", self.dashboard, timeout=60)
            if done.returncode == 0:
                return
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"`ray job list` kept failing:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
            time.sleep(1)

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            stop_tree(self.proc)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def ray(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """A `ray` command (status, job ...) as a user of this cluster runs it."""
        return subprocess.run([str(BIN / "ray"), *args], env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout, cwd=self.work)

    def submit(self, *entrypoint: str, env: dict[str, str] | None = None, working_dir: str | Path | None = None) -> str:
        """`ray job submit --no-wait [--working-dir DIR] -- ENTRYPOINT`; returns the submission id."""
        sid = f"dt-{secrets.token_hex(4)}"
        wd = ["--working-dir", str(working_dir)] if working_dir else []
        done = self.ray("job", "submit", "--address", self.dashboard, "--submission-id", sid, "--no-wait", *wd,
                        "--", *entrypoint, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return sid

    def _api(self, path: str) -> dict:
        """The job server's REST API with this cluster's token (the jobs SDK's own requests), for
        polling without starting a `ray` command (a Python process importing Ray) every second."""
        import json
        import urllib.request
        req = urllib.request.Request(f"{self.dashboard}{path}",
                                     headers={"Authorization": f"Bearer {self.token_file.read_text().strip()}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def job_status(self, sid: str) -> str:
        return self._api(f"/api/jobs/{sid}")["status"]

    def job_logs(self, sid: str) -> str:
        return self._api(f"/api/jobs/{sid}/logs")["logs"]

    def cli_job_status(self, sid: str) -> str:
        """`ray job status` as a user runs it: RUNNING, SUCCEEDED, FAILED, ..."""
        done = self.ray("job", "status", "--address", self.dashboard, sid)
        text = done.stdout + done.stderr     # running: "Status for job 'ID': RUNNING"; ended: "Job 'ID' failed"
        m = re.search(rf"Status for job '{sid}': (\w+)|Job '{sid}' (succeeded|failed|stopped)", text)
        return (m.group(1) or m.group(2).upper()) if m else f"unknown: {text[-1000:]}"

    def cli_job_logs(self, sid: str) -> str:
        """`ray job logs` as a user runs it."""
        return self.ray("job", "logs", "--address", self.dashboard, sid).stdout

    def wait_job(self, sid: str, timeout: float = 400) -> str:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            status = self.job_status(sid)
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            time.sleep(2)
        raise AssertionError(f"job {sid} did not end within {timeout} s:\n{self.job_logs(sid)[-3000:]}")


if __name__ == "__main__":       # start one by hand
    kind = sys.argv[1] if len(sys.argv) > 1 else "s3"
    service = S3Server() if kind == "s3" else RayHead(sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp())
    with service:
        if kind == "s3":
            print(f"moto S3 at {service.url}  (AWS_ENDPOINT_URL={service.url}; any credentials)", flush=True)
        else:
            print(f"ray at {service.address}, dashboard {service.dashboard}, token {service.token_file}", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
