"""Build small MLflow stores in the layout of contract 3 (COMMON.md), for the analysis tests.

A parent run tagged ``segcore.role=sweep`` (with ``spectrum/spectrum.json``), one child run per
trial nested through ``mlflow.parentRunId``, tagged ``segcore.role=trial``, ``segcore.status``,
``segcore.network``, ``segcore.node``; every knob and config field as a string param; metrics per
epoch (step = epoch) and the final values under the same keys.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from segcore.tracking import schema

SPECTRUM = {
    "dataset": "synthetic", "split": "train", "num_labels": 8, "num_classes": 4, "ignore_index": 255,
    "strides": [1, 2, 4, 8, 16, 32],
    "band_energy": [1.0, 0.99, 0.97, 0.93, 0.85, 0.72],
    "band_energy_no_dc": [1.0, 0.97, 0.9, 0.8, 0.6, 0.4],
    "oracle_miou": {"soft": [1.0, 0.98, 0.95, 0.88, 0.74, 0.55],
                    "majority": [1.0, 0.97, 0.93, 0.85, 0.7, 0.5]},
    "ce_floor": [0.0, 0.02, 0.05, 0.11, 0.2, 0.35],
    "blocks": [1, 2, 4, 8, 16, 32],
    "block_oracle_miou": {"hard": [1.0, 0.97, 0.93, 0.85, 0.7, 0.5],
                          "soft": [1.0, 0.98, 0.95, 0.88, 0.74, 0.55]},
    "efficient_grid": {"by_miou": 2, "by_energy": 4},
    "efficient_block": 2,
}


def trial(trial_id: str, network: str, grid_stride: int, miou: float | None, gflops: float, *,
          keep: float = 1.0, block: int = 1, status: str = schema.STATUS_COMPLETED, epochs: int = 2,
          epochs_run: int | None = None, node: str = "node-a", **metrics: float) -> dict[str, Any]:
    """One trial's record: config, status, node and the final metrics (None: no metrics)."""
    final = None if miou is None else {"miou": miou, "gflops": gflops, **metrics}
    return {"trial_id": trial_id, "status": status, "node": node, "metrics": final,
            "epochs_run": epochs if epochs_run is None else epochs_run,
            "config": {"network": network, "backbone": None, "grid_stride": grid_stride,
                       "loss_at": "full", "keep": keep, "truncation": "fft", "block": block,
                       "block_mode": "hard", "dataset": "synthetic", "epochs": epochs,
                       "lr": 0.001, "batch_size": 4, "amp": False, "crop": (32, 32)}}


def write_sweep(tracking_uri: str, experiment: str, trials: list[dict[str, Any]], *,
                sweep: str = "sweep-1", spectrum: dict | None = SPECTRUM) -> str:
    """Write one sweep with MlflowClient; returns the parent run id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    parent = client.create_run(exp_id, run_name=sweep, tags={
        schema.TAG_ROLE: schema.ROLE_SWEEP, schema.TAG_SWEEP: sweep})
    pid = parent.info.run_id
    if spectrum is not None:
        client.log_text(pid, json.dumps(spectrum), schema.ARTIFACT_SPECTRUM_JSON)
    for t in trials:
        cfg = t["config"]
        run = client.create_run(exp_id, run_name=t["trial_id"], tags={
            "mlflow.parentRunId": pid, schema.TAG_ROLE: schema.ROLE_TRIAL, schema.TAG_SWEEP: sweep,
            schema.TAG_TRIAL_ID: t["trial_id"], schema.TAG_NETWORK: cfg["network"],
            schema.TAG_NODE: t["node"]})
        rid = run.info.run_id
        stamp = int(time.time() * 1000)
        params = [Param(key, str(value)) for key, value in cfg.items()]
        metrics = []
        final = t["metrics"]
        if final is not None:
            for epoch in range(1, t["epochs_run"] + 1):
                # Earlier epochs score lower, so a reader that took the first step would be wrong.
                scale = epoch / t["epochs_run"]
                for key, value in {**final, schema.METRIC_EPOCH: epoch}.items():
                    v = value * scale if key in ("miou", "pixel_accuracy") else value
                    metrics.append(Metric(key, float(v), stamp + epoch, epoch))
        client.log_batch(rid, metrics=metrics, params=params)
        client.set_tag(rid, schema.TAG_STATUS, t["status"])
        if t["status"] == schema.STATUS_FAILED:
            client.set_tag(rid, "segcore.error", "FloatingPointError: non-finite training loss at epoch 1")
        client.set_terminated(rid, "FAILED" if t["status"] == schema.STATUS_FAILED else (
            "KILLED" if t["status"] == schema.STATUS_EARLY_STOPPED else "FINISHED"))
    client.set_terminated(pid, "FINISHED")
    return pid


_TEMPLATE: Path | None = None


def sqlite_uri(directory: str | Path) -> str:
    """A fresh, empty SQLite store in ``directory``.

    Creating MLflow's schema takes seconds on a busy 2-core machine, so it is done once per test
    session and the empty database file is copied for every store.
    """
    global _TEMPLATE
    if _TEMPLATE is None:
        from mlflow import MlflowClient

        template = Path(tempfile.mkdtemp(prefix="segcore-mlflow-template-")) / "mlflow.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()  # creates the tables
        _TEMPLATE = template
    target = Path(directory) / "mlflow.db"
    shutil.copyfile(_TEMPLATE, target)
    return f"sqlite:///{target}"


def artifact_text(tracking_uri: str, run_id: str, path: str) -> str:
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        return Path(MlflowClient(tracking_uri).download_artifacts(run_id, path, tmp)).read_text()
