"""SweepRecorder against a real `mlflow server` (PostgreSQL backend, proxied artifacts) on
loopback: concurrent writers, a server outage mid-stream, sixteen concurrent trial writers."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

import _sweep_store  # noqa: F401  (no MLflow telemetry in tests)
from segcore.tracking import SweepRecorder, schema, trial_artifacts

pytest.importorskip("psycopg2")

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SPEC = {"name": "server", "search": {"algorithm": "random"}, "networks": ["unet_tiny"]}
METRICS = ("miou", "pixel_accuracy", "train_loss", "gflops", "latency_ms")


def _config(i: int) -> dict:
    return {"network": "unet_tiny", "grid_stride": 2 ** (i % 4), "keep": 0.5, "block": 1 + i % 3,
            "lr": 0.001 * (i + 1), "seed": i, "model_options": {"width": 8}}


def _epoch(i: int, epoch: int) -> dict:
    return {"epoch": epoch, "miou": 0.01 * i + 0.1 * epoch, "pixel_accuracy": 0.5,
            "train_loss": 1.0 / epoch, "gflops": 0.1 * i, "latency_ms": 3.0, "lr": 0.1}


class _Result:
    def __init__(self, i: int) -> None:
        self.per_class_iou = {"a": 0.1 * i, "b": 0.5}
        self.samples = np.full((8, 24, 3), i, np.uint8)


def _write_trial(rec: SweepRecorder, i: int, epochs: int, pause: float = 0.0) -> None:
    tid = f"trial_{i:02d}"
    rec.trial_run(tid, _config(i), node=f"node-{i % 3}")
    for epoch in range(1, epochs + 1):
        rec.log_epoch(tid, _epoch(i, epoch), step=epoch)
        time.sleep(pause)
    rec.finish_trial(tid, schema.STATUS_COMPLETED, _epoch(i, epochs),
                     artifacts=trial_artifacts(_Result(i)))


def _check_record(server, experiment: str, sweep: str, n: int, epochs: int, tmp: Path) -> None:
    """Every run, param, metric step and artifact is in the store, exactly once.

    Runs, params and tags are read through the server's REST API; metric steps straight from the
    PostgreSQL ``metrics`` table (one query instead of one REST call per run and key); artifacts
    from the proxied artifact folder, and one of each kind downloaded back through the proxy.
    """
    import psycopg2

    client = MlflowClient(server.uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`{schema.TAG_SWEEP}` = '{sweep}'",
                              max_results=1000)
    parents = [r for r in runs if r.data.tags[schema.TAG_ROLE] == schema.ROLE_SWEEP]
    children = [r for r in runs if r.data.tags[schema.TAG_ROLE] == schema.ROLE_TRIAL]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    trial_ids = sorted(r.data.tags[schema.TAG_TRIAL_ID] for r in children)
    assert trial_ids == [f"trial_{i:02d}" for i in range(n)], "missing or duplicate trial runs"

    dsn = server.backend_uri.replace("postgresql+psycopg2://", "postgresql://")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_uuid, key, step FROM metrics")
        steps: dict[tuple[str, str], set[int]] = {}
        for run_uuid, key, step in cur.fetchall():
            steps.setdefault((run_uuid, key), set()).add(step)
    for run in children:
        i = int(run.data.tags[schema.TAG_TRIAL_ID].split("_")[1])
        run_id = run.info.run_id
        assert run.info.status == "FINISHED", run_id
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags[schema.TAG_NODE] == f"node-{i % 3}"
        assert run.data.params["grid_stride"] == str(2 ** (i % 4))
        assert run.data.params["model_options.width"] == "8"
        assert set(schema.KNOB_PARAMS) <= set(run.data.params)
        assert "lr" not in run.data.metrics and ("lr", run_id) not in steps
        for key in METRICS:
            assert steps.get((run_id, key)) == set(range(1, epochs + 1)), (run_id, key)
        assert run.data.metrics["miou"] == pytest.approx(0.01 * i + 0.1 * epochs)
        stored = server.artifacts / exp.experiment_id / run_id / "artifacts"
        iou = json.loads((stored / schema.ARTIFACT_PER_CLASS_IOU).read_text())
        assert iou["a"] == pytest.approx(0.1 * i)
        assert (stored / schema.ARTIFACT_SAMPLES).read_bytes().startswith(b"\x89PNG")
    first = children[0].info.run_id
    png = Path(client.download_artifacts(first, schema.ARTIFACT_SAMPLES, str(tmp)))
    assert png.read_bytes().startswith(b"\x89PNG")
    spec = Path(client.download_artifacts(parents[0].info.run_id, schema.ARTIFACT_SPEC, str(tmp)))
    assert "unet_tiny" in spec.read_text()


def test_server_outage_loses_no_metric_step(mlflow_server, tmp_path):
    rec = SweepRecorder(mlflow_server.uri, "srv", "sweep-outage", retry_initial_s=0.2,
                        retry_max_s=1.0)
    rec.start_sweep(SPEC)
    n, epochs = 3, 20
    for i in range(n):
        rec.trial_run(f"trial_{i:02d}", _config(i), node=f"node-{i % 3}")
    slowest = 0.0
    for epoch in range(1, epochs + 1):
        if epoch == 5:
            mlflow_server.stop()          # the tracking server crashes mid-sweep ...
            down_at = time.monotonic()
        if epoch == 15:
            time.sleep(max(0.0, 3.0 - (time.monotonic() - down_at)))
            mlflow_server.start()         # ... and comes back on the same port
        for i in range(n):
            start = time.perf_counter()
            rec.log_epoch(f"trial_{i:02d}", _epoch(i, epoch), step=epoch)
            slowest = max(slowest, time.perf_counter() - start)
        time.sleep(0.05)
    for i in range(n):
        rec.finish_trial(f"trial_{i:02d}", schema.STATUS_COMPLETED, _epoch(i, epochs),
                         artifacts=trial_artifacts(_Result(i)))
    rec.end_sweep()
    assert rec.flush(120), f"{rec.pending()} writes still pending"
    assert rec.errors == []
    assert rec.stats["retries"] > 0, "the outage was not noticed"
    assert slowest < 0.5, f"log_epoch blocked the sweep for {slowest:.2f}s"
    _check_record(mlflow_server, "srv", "sweep-outage", n, epochs, tmp_path)


def test_sixteen_concurrent_trial_writers(mlflow_server, tmp_path):
    # The driver opens the sweep; sixteen trials write at once, each through its own recorder
    # (as trial workers would: own client, own queue), with proxied artifact uploads.
    driver = SweepRecorder(mlflow_server.uri, "srv", "sweep-16")
    driver.start_sweep(SPEC)
    writers = [SweepRecorder(mlflow_server.uri, "srv", "sweep-16") for _ in range(16)]
    failures: list[BaseException] = []

    def run(i: int) -> None:
        try:
            _write_trial(writers[i], i, 5)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    for w in writers:
        assert w.flush(90) and w.errors == [], w.errors
    driver.reconcile()
    driver.end_sweep()
    assert driver.flush(60) and driver.errors == []
    _check_record(mlflow_server, "srv", "sweep-16", 16, 5, tmp_path)
    log = mlflow_server.log.read_text()
    assert "database is locked" not in log and "Traceback" not in log
