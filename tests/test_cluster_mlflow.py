"""The head's MLflow start command, exactly as cluster.yaml writes it, against real PostgreSQL.

The line that runs scripts/start_mlflow.sh is taken from ``head_start_ray_commands``; only what is
machine-specific is replaced: a free port, the loopback host, a fresh database on the local
PostgreSQL (made by the YAML's own head_setup_commands line, scripts/setup_head.sh, with a new
database name, and dropped here), a temporary artifact directory, and one uvicorn worker instead of
the head's default. The backend store URI is the YAML's (Unix socket, no password) but for the
database name. Runs are then logged over HTTP, artifacts included,
with MLflow's client and with segcore's own ``SweepRecorder`` (what trials on workers use), and
read back through the server.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

psycopg2 = pytest.importorskip("psycopg2")
mlflow = pytest.importorskip("mlflow")

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}


def yaml_line(config_name: str, key: str, script: str) -> list[str]:
    """The command of ``key`` in the YAML that runs ``~/segcore/scripts/<script>``, split like bash."""
    config = yaml.safe_load((REPO / config_name).read_text())
    (line,) = [c for c in config[key] if f"~/segcore/scripts/{script}" in c]
    return shlex.split(line)


def substitute(words: list[str], values: dict[str, str]) -> list[str]:
    """The script's path in this checkout, and new values for the given ``--options`` (each must
    be in the line)."""
    out = [str(REPO / w[len("~/segcore/"):]) if w.startswith("~/segcore/scripts/") else w for w in words]
    for name, value in values.items():
        assert name in out, f"{name} not in the YAML's command: {words}"
        out[out.index(name) + 1] = value
    return out


def with_database(uri: str, name: str) -> str:
    """``uri`` naming database ``name`` instead (socket, user and options kept)."""
    head, sep, query = uri.partition("?")
    scheme_and_host = head.rsplit("/", 1)[0]  # "postgresql+psycopg2://" (socket) or "...//host"
    assert urlsplit(uri).path.count("/") == 1, uri
    return f"{scheme_and_host}/{name}{sep}{query}"


def server_session(sid: int) -> list[str]:
    return subprocess.run(["ps", "-o", "pid=", "-s", str(sid)], capture_output=True, text=True).stdout.split()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def head_database():
    """A fresh database made by the head's setup line (scripts/setup_head.sh), dropped after."""
    try:
        admin = psycopg2.connect(connect_timeout=3, **PG)
    except psycopg2.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {PG['host']}:{PG['port']} ({exc})")
    admin.autocommit = True
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode:
        admin.close()
        pytest.skip("scripts/setup_head.sh needs root or passwordless sudo (as on cluster nodes)")
    name = f"segcore_test_{uuid.uuid4().hex[:12]}"
    argv = substitute(yaml_line("cluster.yaml", "head_setup_commands", "setup_head.sh"), {"--db": name})
    try:
        made = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, f"{argv} failed:\n{made.stdout}\n{made.stderr}"
        yield name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def head_mlflow(tmp_path_factory, head_database):
    """Start the server with cluster.yaml's command, once for this module; stop it afterwards.

    The backend store URI is the YAML's own (Unix socket, peer authentication, no password) with
    only the database name replaced.
    """
    tmp_path = tmp_path_factory.mktemp("head")
    port = free_port()
    state = tmp_path / "state"
    artifacts = tmp_path / "artifacts"
    words = yaml_line("cluster.yaml", "head_start_ray_commands", "start_mlflow.sh")
    backend = with_database(words[words.index("--backend-store-uri") + 1], head_database)
    argv = substitute(
        words,
        {"--host": "127.0.0.1", "--port": str(port), "--backend-store-uri": backend,
         "--artifacts-destination": str(artifacts)},
    ) + ["--state-dir", str(state), "--advertise", "127.0.0.1", "--wait", "90",
         "--workers", "1"]  # one uvicorn worker: the CI machine has 2 cores, the head 8
    # The head's PATH holds the venv (setup_node.sh); here, the interpreter running the tests.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    started = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    try:
        assert started.returncode == 0, f"start failed:\n{started.stdout}\n{started.stderr}"
        yield {"uri": f"http://127.0.0.1:{port}", "port": port, "db": head_database,
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


def test_segcore_recorder_logs_a_sweep_through_the_head_server(head_mlflow):
    """What trials on GPU workers do: segcore's own writer, over HTTP, artifacts proxied."""
    import numpy as np

    from segcore.tracking import schema
    from segcore.tracking import SweepRecorder

    uri = head_mlflow["uri"]
    recorder = SweepRecorder(uri, "cityscapes-smoke", "sweep-1")
    parent = recorder.start_sweep({"name": "sweep-1", "epochs": 2})
    child = recorder.trial_run("trial_0001", {"network": "unet", "grid_stride": 8, "keep": 0.5,
                                               "block": 4}, node="10.0.0.11")
    for epoch, miou in enumerate([0.2, 0.3], start=1):
        recorder.log_epoch("trial_0001", {"miou": miou, "train_loss": 1.0 / epoch}, step=epoch)
    panel = np.zeros((8, 24, 3), dtype=np.uint8)
    panel[:, 8:16] = 200
    recorder.finish_trial("trial_0001", schema.STATUS_COMPLETED, {"miou": 0.3, "gflops": 1.5},
                          artifacts={schema.ARTIFACT_SAMPLES: panel,
                                     schema.ARTIFACT_PER_CLASS_IOU: b'{"road": 0.9}'})
    recorder.end_sweep()
    assert recorder.close(timeout=60) and recorder.errors == []

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(child)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags[schema.TAG_STATUS] == schema.STATUS_COMPLETED
    assert run.data.tags[schema.TAG_NODE] == "10.0.0.11"
    assert run.data.params["grid_stride"] == "8"
    assert [m.value for m in client.get_metric_history(child, "miou")][-1] == pytest.approx(0.3)
    assert {a.path for a in client.list_artifacts(child)} >= {schema.ARTIFACT_SAMPLES,
                                                              schema.ARTIFACT_PER_CLASS_IOU}
    png = client.download_artifacts(child, schema.ARTIFACT_SAMPLES)
    assert Path(png).read_bytes().startswith(b"\x89PNG")
    assert client.get_run(parent).info.status == "FINISHED"


def test_laptop_reads_the_sweep_back_through_the_server(head_mlflow):
    """README: ``load_trials(..., tracking_uri=<forwarded port>)`` on what the recorder wrote."""
    from segcore.analysis import load_trials

    df = load_trials("cityscapes-smoke", tracking_uri=head_mlflow["uri"])
    assert len(df) == 1
    row = df.iloc[0]
    assert float(row["miou"]) == pytest.approx(0.3)
    assert float(row["gflops"]) == pytest.approx(1.5)


def test_laptop_pareto_command_through_the_server(head_mlflow, capsys):
    """README: ``segcore pareto cityscapes --tracking-uri http://127.0.0.1:5000`` (the tunnel)."""
    from segcore.cli import main

    assert main(["pareto", "cityscapes-smoke", "--tracking-uri", head_mlflow["uri"]]) == 0
    out = capsys.readouterr().out
    assert "1 trials" in out and "Pareto front" in out and "unet" in out


def test_stop_script_ends_the_head_server(head_mlflow):
    port = head_mlflow["port"]
    # Stopping (a repeated `ray up` does it first) ends the whole session start_mlflow.sh made.
    pid = int((head_mlflow["state"] / "mlflow.pid").read_text())
    assert len(server_session(pid)) >= 2  # mlflow server + uvicorn (+ its workers)
    subprocess.run(["bash", str(REPO / "scripts" / "stop_mlflow.sh"), "--state-dir", str(head_mlflow["state"])],
                   check=True, capture_output=True, timeout=30)
    assert server_session(pid) == []
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
