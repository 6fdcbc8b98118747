"""The head's MLflow start command, exactly as cluster.yaml writes it, against real PostgreSQL.

The line that runs scripts/start_mlflow.sh is taken from ``head_start_ray_commands``; only what is
machine-specific is replaced: a free port, the loopback host, a fresh database on the local
PostgreSQL (127.0.0.1:5432, created and dropped here) and a temporary artifact directory. A run is
then logged over HTTP, artifacts included, and read back through the server.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

psycopg2 = pytest.importorskip("psycopg2")
mlflow = pytest.importorskip("mlflow")

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[1]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
START = "~/segcore/scripts/start_mlflow.sh"


def start_line(config_name: str) -> list[str]:
    """The start_mlflow.sh command of the YAML's head start commands, split like bash would."""
    config = yaml.safe_load((REPO / config_name).read_text())
    (line,) = [c for c in config["head_start_ray_commands"] if START in c]
    return shlex.split(line)


def substitute(words: list[str], values: dict[str, str]) -> list[str]:
    """Replace the values of the given ``--options``; every one must be in the line."""
    out = [str(REPO / "scripts" / "start_mlflow.sh") if w == START else w for w in words]
    for name, value in values.items():
        assert name in out, f"{name} not in the YAML's start command: {words}"
        out[out.index(name) + 1] = value
    return out


def server_session(sid: int) -> list[str]:
    return subprocess.run(["ps", "-o", "pid=", "-s", str(sid)], capture_output=True, text=True).stdout.split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fresh_database():
    try:
        admin = psycopg2.connect(connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG['host']}:{PG['port']} ({exc})")
    admin.autocommit = True
    name = f"segcore_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def head_mlflow(tmp_path, fresh_database):
    """Start the server with cluster.yaml's command; stop it (its process group) afterwards."""
    port = free_port()
    state = tmp_path / "state"
    artifacts = tmp_path / "artifacts"
    backend = f"postgresql+psycopg2://postgres@127.0.0.1:5432/{fresh_database}"
    argv = substitute(
        start_line("cluster.yaml"),
        {"--host": "127.0.0.1", "--port": str(port), "--backend-store-uri": backend,
         "--artifacts-destination": str(artifacts)},
    ) + ["--state-dir", str(state), "--advertise", "127.0.0.1", "--wait", "90"]
    # The head's PATH holds the venv (setup_node.sh); here, the interpreter running the tests.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    started = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, f"start failed:\n{started.stdout}\n{started.stderr}"
        yield {"uri": f"http://127.0.0.1:{port}", "port": port, "db": fresh_database,
               "artifacts": artifacts, "state": state}
    finally:
        subprocess.run(["bash", str(REPO / "scripts" / "stop_mlflow.sh"), "--state-dir", str(state)],
                       capture_output=True, timeout=30)


def test_head_mlflow_command_logs_a_run_over_http_with_artifacts(head_mlflow, tmp_path):
    import requests

    uri, port = head_mlflow["uri"], head_mlflow["port"]
    assert (head_mlflow["state"] / "tracking_uri").read_text().strip() == uri
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment("cluster-smoke")
    run = client.create_run(experiment_id, tags={"segcore.node": "gpu-worker-1"})
    run_id = run.info.run_id
    client.log_param(run_id, "grid_stride", "8")
    for epoch, miou in enumerate([0.31, 0.42], start=1):
        client.log_metric(run_id, "miou", miou, step=epoch)
    client.log_text(run_id, '{"miou": 0.42}', "result/metrics.json")
    panel = tmp_path / "samples.png"
    panel.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    client.log_artifact(run_id, str(panel), "samples")
    client.set_terminated(run_id, "FINISHED")

    # Read back through the server with a fresh client.
    reader = mlflow.MlflowClient(tracking_uri=uri)
    got = reader.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"grid_stride": "8"}
    assert [(m.step, m.value) for m in reader.get_metric_history(run_id, "miou")] == [(1, 0.31), (2, 0.42)]
    # Artifacts are proxied: the run points at the server, not at a bucket or the head's disk.
    assert got.info.artifact_uri.startswith("mlflow-artifacts:/")
    listed = {a.path for a in reader.list_artifacts(run_id, "samples")}
    assert listed == {"samples/samples.png"}
    down = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="samples/samples.png",
                                                    tracking_uri=uri, dst_path=str(tmp_path / "down")))
    assert down.read_bytes() == panel.read_bytes()
    metrics_json = Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="result/metrics.json", tracking_uri=uri, dst_path=str(tmp_path / "d2")))
    assert metrics_json.read_text() == '{"miou": 0.42}'
    # ... and stored under --artifacts-destination on the head.
    stored = list(head_mlflow["artifacts"].rglob("samples.png"))
    assert len(stored) == 1 and stored[0].read_bytes() == panel.read_bytes()

    # The run is in the PostgreSQL backend store.
    with psycopg2.connect(**{**PG, "dbname": head_mlflow["db"]}) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_uuid = %s", (run_id,))
        assert cur.fetchone() == ("FINISHED",)

    # --allowed-hosts is in force: a request naming another host (DNS rebinding) is refused.
    api = f"{uri}/api/2.0/mlflow/experiments/get-by-name"
    assert requests.get(api, params={"experiment_name": "cluster-smoke"}, timeout=10).status_code == 200
    evil = requests.get(api, params={"experiment_name": "cluster-smoke"},
                        headers={"Host": f"attacker.example:{port}"}, timeout=10)
    assert evil.status_code == 403

    # Stopping (a repeated `ray up` does it first) ends the whole session start_mlflow.sh made.
    pid = int((head_mlflow["state"] / "mlflow.pid").read_text())
    assert len(server_session(pid)) >= 2  # mlflow server + uvicorn (+ its workers)
    subprocess.run(["bash", str(REPO / "scripts" / "stop_mlflow.sh"), "--state-dir", str(head_mlflow["state"])],
                   check=True, capture_output=True, timeout=30)
    assert server_session(pid) == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
