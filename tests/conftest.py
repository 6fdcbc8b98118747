"""Shared fixtures. Real data: CamVid from ../shared/data/camvid (or $SEGCORE_CAMVID)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def camvid_path() -> Path:
    return Path(os.environ.get("SEGCORE_CAMVID", REPO.parent / "shared" / "data" / "camvid"))


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    root = camvid_path()
    if not (root / "trainannot").is_dir():
        pytest.skip(f"CamVid not found at {root} (set SEGCORE_CAMVID to run the real-data tests)")
    return root


@pytest.fixture(autouse=True)
def _few_threads():
    # The CI machine has 2 cores; tests stay deterministic and polite.
    torch.set_num_threads(2)
    yield


# --- PostgreSQL databases and an `mlflow server` on loopback -------------------------------
# Used by the tests of the MLflow server and by tests/test_faults.py.

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"


def _pg_admin():
    psycopg2 = pytest.importorskip("psycopg2")
    last = None
    for dbname in ("postgres", "test"):
        try:
            conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname,
                                    connect_timeout=3)
            conn.autocommit = True
            return conn
        except psycopg2.OperationalError as exc:
            last = exc
    pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} as {PG_USER} ({last})")


def _pg_uri(name: str) -> str:
    return f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


@pytest.fixture(scope="session")
def _mlflow_pg_template():
    """A PostgreSQL database with MLflow's schema, cloned per test (migrating costs seconds)."""
    import subprocess
    import sys
    import uuid

    name = f"segcore_tmpl_{uuid.uuid4().hex[:12]}"
    conn = _pg_admin()
    conn.cursor().execute(f'CREATE DATABASE "{name}"')
    code = "from mlflow import MlflowClient; import sys; MlflowClient(sys.argv[1]).search_experiments()"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    try:
        subprocess.run([sys.executable, "-c", code, _pg_uri(name)], check=True, env=env,
                       capture_output=True, timeout=300)
        yield name
    finally:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture
def postgres_uri(_mlflow_pg_template):
    """A fresh PostgreSQL database (MLflow schema in place) for this test, dropped after it."""
    import uuid

    name = f"segcore_test_{uuid.uuid4().hex[:12]}"
    conn = _pg_admin()
    conn.cursor().execute(f'CREATE DATABASE "{name}" TEMPLATE "{_mlflow_pg_template}"')
    try:
        yield _pg_uri(name)
    finally:
        conn.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a given backend store and proxied artifacts in a folder.

    ``stop()`` kills it (SIGKILL to its process group: a crash, not a clean shutdown) and
    ``start()`` brings it back on the same port, for outage tests.
    """

    def __init__(self, backend_uri: str, artifacts: Path, log: Path, port: int | None = None,
                 workers: int = 1) -> None:
        self.backend_uri, self.artifacts, self.log = backend_uri, artifacts, log
        self.port = port or free_port()
        self.workers = workers
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, timeout: float = 90.0) -> None:
        import subprocess
        import sys
        import time
        import urllib.request

        mlflow_bin = Path(sys.executable).parent / "mlflow"
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(mlflow_bin), "server", "--backend-store-uri", self.backend_uri,
                 "--serve-artifacts", "--artifacts-destination", str(self.artifacts),
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.proc.returncode}):\n"
                                   + self.log.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        self._warm_up()
                        return
            except OSError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"mlflow server not up in {timeout}s:\n" + self.log.read_text()[-3000:])

    def _warm_up(self) -> None:
        # MLflow 3.17.2 imports mlflow.server.auth lazily inside the runs/search handler; the first
        # concurrent searches on a fresh server race on that import and one of them can fail with
        # "module 'mlflow.server.auth' has no attribute 'auth_config'" (a 500 and a traceback in
        # the log; seen here with sixteen writers). One search before the clients start makes the
        # import happen once, alone.
        import json
        import urllib.request

        request = urllib.request.Request(
            f"{self.uri}/api/2.0/mlflow/runs/search", data=json.dumps({"experiment_ids": ["0"]}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as resp:
            resp.read()

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def mlflow_server(postgres_uri, tmp_path):
    """A running MLflow tracking server: fresh PostgreSQL backend, proxied artifacts in tmp."""
    server = MlflowServer(postgres_uri, tmp_path / "mlartifacts", tmp_path / "mlflow-server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
