"""SweepRecorder against a SQLite MLflow store: what it writes, idempotence, reconcile, outages."""

from __future__ import annotations

import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

import _sweep_store
from segcore.tracking import SweepRecorder, flatten_config, png_bytes, schema, trial_artifacts

SPEC = {"name": "unit", "dataset": {"name": "synthetic", "size": 32},
        "search": {"algorithm": "grid"}, "networks": ["unet_tiny", "dan_tiny"]}
SPECTRUM = {
    "dataset": "synthetic", "split": "train", "num_labels": 8, "num_classes": 4, "ignore_index": 255,
    "strides": [1, 2, 4, 8], "band_energy": [1.0, 0.97, 0.9, 0.6],
    "band_energy_no_dc": [1.0, 0.9, 0.7, 0.3], "ce_floor": [0.0, 0.05, 0.2, 0.6],
    "oracle_miou": {"soft": [1.0, 0.98, 0.93, 0.7], "majority": [1.0, 0.96, 0.9, 0.65]},
    "blocks": [1, 2, 4, 8], "block_oracle_miou": {"hard": [1.0, 0.95, 0.85, 0.6],
                                                  "soft": [1.0, 0.97, 0.9, 0.7]},
    "efficient_grid": {"by_miou": 2, "by_energy": 2},
}
CONFIG = {"network": "unet_tiny", "grid_stride": 4, "keep": 0.5, "block": 2, "lr": 0.01,
          "epochs": 3, "model_options": {"width": 8}, "crop": [32, 32]}


@pytest.fixture
def sqlite_uri(tmp_path) -> str:
    return _sweep_store.sqlite_uri(tmp_path)


def _epoch_metrics(epoch: int) -> dict:
    return {"epoch": epoch, "miou": 0.1 * epoch, "pixel_accuracy": 0.5 + 0.1 * epoch,
            "train_loss": 1.0 / epoch, "gflops": 1.5, "annotation_units": 64.0,
            # Tune bookkeeping and a key named like a param: never metrics.
            "lr": 0.01, "config/lr": 0.01, "pid": 1234, "done": False, "node_ip": "127.0.0.1"}


def _children(client: MlflowClient, experiment: str, sweep: str):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id],
                              f"tags.`{schema.TAG_SWEEP}` = '{sweep}' and "
                              f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_TRIAL}'")


def _steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def test_flatten_config():
    flat = flatten_config({"a": {"b": 1, "c": {"d": None}}, "l": (1, 2), "e": {}})
    assert flat == {"a.b": "1", "a.c.d": "None", "l": "[1, 2]", "e": "{}"}


def test_sweep_and_trial_record(sqlite_uri, tmp_path):
    plot = tmp_path / "spectrum.png"
    plot.write_bytes(png_bytes(np.full((8, 8, 3), 200, np.uint8)))
    rec = SweepRecorder(sqlite_uri, "unit", "sweep-a")
    parent = rec.start_sweep(SPEC, spectrum=SPECTRUM, spectrum_png=str(plot))
    assert parent
    run_id = rec.trial_run("t1", CONFIG, node="node-1")
    for epoch in (1, 2, 3):
        rec.log_epoch("t1", _epoch_metrics(epoch), step=epoch)
    samples = np.zeros((8, 24, 3), np.uint8)
    samples[:, 8:16] = 255
    result = type("R", (), {"per_class_iou": {"road": 0.9, "sky": 0.5}, "samples": samples})()
    rec.finish_trial("t1", schema.STATUS_COMPLETED,
                     {"epoch": 3, "miou": 0.1 * 3, "gflops": 1.5, "params_m": 0.2},
                     artifacts=trial_artifacts(result))
    failed = rec.trial_run("t2", {**CONFIG, "network": "dan_tiny"}, node="node-2")
    rec.log_epoch("t2", {"epoch": 1, "miou": 0.05, "train_loss": float("nan")}, step=1)
    rec.finish_trial("t2", schema.STATUS_FAILED,
                     error="FloatingPointError: non-finite training loss at epoch 1")
    stopped = rec.trial_run("t3", CONFIG)
    rec.log_epoch("t3", {"epoch": 1, "miou": 0.01}, step=1)
    rec.finish_trial("t3", schema.STATUS_EARLY_STOPPED, {"miou": 0.01})
    rec.end_sweep()
    assert rec.flush(30)
    assert rec.errors == []

    client = MlflowClient(sqlite_uri)
    prun = client.get_run(parent)
    assert prun.info.status == "FINISHED"
    assert prun.data.tags[schema.TAG_ROLE] == schema.ROLE_SWEEP
    assert prun.data.params["search.algorithm"] == "grid"
    assert prun.data.params["spectrum.efficient_grid.by_miou"] == "2"
    assert _steps(client, parent, "spectrum.band_energy") == [1, 2, 4, 8]
    energy = {m.step: m.value for m in client.get_metric_history(parent, "spectrum.band_energy")}
    assert energy[4] == pytest.approx(0.9)
    assert _steps(client, parent, "spectrum.block_oracle_miou.soft") == [1, 2, 4, 8]
    assert _steps(client, parent, "spectrum.oracle_miou.majority") == [1, 2, 4, 8]
    names = {a.path for a in client.list_artifacts(parent)} | {
        a.path for a in client.list_artifacts(parent, "spectrum")}
    assert {schema.ARTIFACT_SPEC, schema.ARTIFACT_SPECTRUM_JSON,
            schema.ARTIFACT_SPECTRUM_PLOT} <= names
    spec_back = Path(client.download_artifacts(parent, schema.ARTIFACT_SPEC, str(tmp_path)))
    assert "unet_tiny" in spec_back.read_text()
    spec_json = client.download_artifacts(parent, schema.ARTIFACT_SPECTRUM_JSON, str(tmp_path))
    assert json.loads(Path(spec_json).read_text())["strides"] == [1, 2, 4, 8]

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags[schema.TAG_TRIAL_ID] == "t1"
    assert run.data.tags[schema.TAG_NODE] == "node-1"
    assert run.data.tags[schema.TAG_STATUS] == schema.STATUS_COMPLETED
    params = run.data.params
    for knob in schema.KNOB_PARAMS:
        assert knob in params
    assert params["grid_stride"] == "4" and params["backbone"] == "None"
    assert params["model_options.width"] == "8" and params["crop"] == "[32, 32]"
    assert not set(run.data.metrics) & set(params), "a metric is named like a param"
    assert not {"pid", "done", "node_ip", "config/lr"} & set(run.data.metrics)
    for key in ("miou", "pixel_accuracy", "train_loss", "epoch", "gflops"):
        assert _steps(client, run_id, key) == [1, 2, 3], key
    assert _steps(client, run_id, "params_m") == [3]  # final-only metric at the last epoch
    assert run.data.metrics["miou"] == pytest.approx(0.3)
    assert {a.path for a in client.list_artifacts(run_id)} == {
        schema.ARTIFACT_PER_CLASS_IOU, schema.ARTIFACT_SAMPLES}
    iou = client.download_artifacts(run_id, schema.ARTIFACT_PER_CLASS_IOU, str(tmp_path))
    assert json.loads(Path(iou).read_text()) == {"road": 0.9, "sky": 0.5}

    frun = client.get_run(failed)
    assert frun.info.status == "FAILED"
    assert frun.data.tags[schema.TAG_STATUS] == schema.STATUS_FAILED
    assert "non-finite training loss" in frun.data.tags[schema.TAG_ERROR]
    assert np.isnan(frun.data.metrics["train_loss"])
    srun = client.get_run(stopped)
    assert srun.info.status == "FINISHED"
    assert srun.data.tags[schema.TAG_STATUS] == schema.STATUS_EARLY_STOPPED
    assert srun.data.tags[schema.TAG_EARLY_STOPPED] == "true"
    assert _steps(client, stopped, "miou") == [1]  # the final value equals epoch 1's: not twice
    rec.close()


def test_restarted_driver_finds_its_runs_and_reconciles(sqlite_uri):
    first = SweepRecorder(sqlite_uri, "unit", "sweep-r")
    parent = first.start_sweep(SPEC)
    ids = {t: first.trial_run(t, {**CONFIG, "seed": i}) for i, t in enumerate(("a", "b", "c"))}
    first.log_epoch("a", {"epoch": 1, "miou": 0.2}, step=1)
    first.finish_trial("a", schema.STATUS_COMPLETED, {"miou": 0.2})
    first.log_epoch("b", {"epoch": 1, "miou": 0.1}, step=1)
    assert first.flush(30)
    # The driver dies here: "b" and "c" stay RUNNING, the parent too. A new driver resumes.
    second = SweepRecorder(sqlite_uri, "unit", "sweep-r")
    assert second.start_sweep(SPEC) == parent
    assert second.trial_run("b", {**CONFIG, "seed": 1}) == ids["b"]
    second.reconcile(live_trial_ids={"b"})   # "c" is not coming back
    second.log_epoch("b", {"epoch": 2, "miou": 0.15}, step=2)
    second.finish_trial("b", schema.STATUS_COMPLETED, {"miou": 0.15})
    assert second.trial_run("d", CONFIG) not in ids.values()
    second.reconcile()
    second.end_sweep()
    assert second.flush(30) and second.errors == []

    client = MlflowClient(sqlite_uri)
    children = _children(client, "unit", "sweep-r")
    by_trial = {}
    for run in children:
        by_trial.setdefault(run.data.tags[schema.TAG_TRIAL_ID], []).append(run)
    assert sorted(by_trial) == ["a", "b", "c", "d"]
    assert all(len(runs) == 1 for runs in by_trial.values()), "duplicate runs"
    assert not [r for r in children if r.info.status == "RUNNING"]
    assert by_trial["b"][0].info.status == "FINISHED"
    assert _steps(client, ids["b"], "miou") == [1, 2]
    assert by_trial["c"][0].info.status == "KILLED"
    assert by_trial["c"][0].data.tags[schema.TAG_STATUS] == schema.STATUS_FAILED
    assert "interrupted" in by_trial["c"][0].data.tags[schema.TAG_ERROR]
    parents = client.search_runs([children[0].info.experiment_id],
                                 f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_SWEEP}'")
    assert [p.info.run_id for p in parents] == [parent]
    assert client.get_run(parent).info.status == "FINISHED"
    first.close()
    second.close()


def test_writers_in_two_processes_share_runs(sqlite_uri):
    # A worker-side recorder (unpickled, no start_sweep) logs the epochs; the driver's recorder
    # (another instance) ends the run, as Tune's driver callback does for an early stop.
    driver = SweepRecorder(sqlite_uri, "unit", "sweep-w")
    parent = driver.start_sweep(SPEC)
    worker = pickle.loads(pickle.dumps(driver))
    assert worker.parent_run_id == parent  # resolved ids travel with the pickle
    assert worker.trial_run("w1", {**CONFIG, "device": "cpu"}, node="worker-node",
                            wait=False) == ""
    for epoch in (1, 2):
        worker.log_epoch("w1", {"epoch": epoch, "miou": 0.1 * epoch}, step=epoch)
    assert worker.flush(30) and worker.errors == []
    run_id = worker.trial_run("w1", {**CONFIG, "device": "cpu"})
    assert worker.flush(30)
    callback = SweepRecorder(sqlite_uri, "unit", "sweep-w")
    callback.finish_trial("w1", schema.STATUS_EARLY_STOPPED,
                          {"epoch": 2, "miou": 0.2, "training_iteration": 2})
    assert callback.flush(30) and callback.errors == []
    client = MlflowClient(sqlite_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[schema.TAG_STATUS] == schema.STATUS_EARLY_STOPPED
    assert run.data.tags[schema.TAG_NODE] == "worker-node"
    assert _steps(client, run_id, "miou") == [1, 2]  # the final value is not logged twice
    assert _steps(client, run_id, "training_iteration") == [2]
    assert len(_children(client, "unit", "sweep-w")) == 1
    # A retried trial reopens the same run; the driver's config ("auto") does not clash.
    assert callback.trial_run("w1", {**CONFIG, "device": "auto"}) == run_id
    callback.finish_trial("w1", schema.STATUS_FAILED, error="ValueError: boom")
    assert callback.flush(30) and callback.errors == []
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.params["device"] == "cpu"
    assert run.data.tags[schema.TAG_NODE] == "worker-node"
    assert schema.TAG_EARLY_STOPPED not in run.data.tags
    for rec in (driver, worker, callback):
        rec.close()


def test_concurrent_find_or_create_leaves_one_run(sqlite_uri):
    SweepRecorder(sqlite_uri, "unit", "sweep-c").start_sweep(SPEC)
    recorders = [SweepRecorder(sqlite_uri, "unit", "sweep-c") for _ in range(4)]
    ids: list[str] = []
    threads = [threading.Thread(target=lambda r=r: ids.append(r.trial_run("same", CONFIG)))
               for r in recorders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client = MlflowClient(sqlite_uri)
    assert len(_children(client, "unit", "sweep-c")) == 1


def test_outage_is_buffered_and_retried(sqlite_uri, monkeypatch):
    rec = SweepRecorder(sqlite_uri, "unit", "sweep-o", retry_initial_s=0.01, retry_max_s=0.05)
    rec.start_sweep(SPEC)
    run_id = rec.trial_run("t", CONFIG)
    real = rec.client.log_batch
    failures = {"left": 6}

    def flaky(*args, **kwargs):
        if failures["left"] > 0:
            failures["left"] -= 1
            raise MlflowException("API request to http://127.0.0.1:1/api/2.0/mlflow/runs/"
                                  "log-batch failed with exception ConnectionRefusedError")
        return real(*args, **kwargs)

    monkeypatch.setattr(rec.client, "log_batch", flaky)
    for epoch in range(1, 11):
        rec.log_epoch("t", {"epoch": epoch, "miou": epoch / 10}, step=epoch)  # never raises
    rec.finish_trial("t", schema.STATUS_COMPLETED)
    assert rec.flush(30)
    assert failures["left"] == 0 and rec.stats["retries"] >= 6 and rec.errors == []
    client = MlflowClient(sqlite_uri)
    assert _steps(client, run_id, "miou") == list(range(1, 11))
    assert client.get_run(run_id).info.status == "FINISHED"
    rec.close()


def test_permanent_error_is_reported_not_raised(sqlite_uri, monkeypatch):
    rec = SweepRecorder(sqlite_uri, "unit", "sweep-p")
    rec.start_sweep(SPEC)
    rec.trial_run("t", CONFIG)

    def rejected(*args, **kwargs):
        raise MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)

    monkeypatch.setattr(rec.client, "log_batch", rejected)
    rec.log_epoch("t", {"epoch": 1, "miou": 0.5}, step=1)
    assert rec.flush(10)
    assert len(rec.errors) == 1 and "bad value" in rec.errors[0]
    with pytest.raises(ValueError, match="status"):
        rec.finish_trial("t", "done")
    rec.close()
