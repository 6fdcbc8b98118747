"""Build small MLflow stores for the analysis tests, written by :class:`segcore.tracking.SweepRecorder`.

The layout (docs/design.md, Contracts; :mod:`segcore.tracking.schema`): a parent run tagged
``segcore.role=sweep`` (with ``spectrum/spectrum.json``), one child run per trial nested through
``mlflow.parentRunId``, tagged ``segcore.role=trial``, ``segcore.status``, ``segcore.network``,
``segcore.node``; every knob and config field as a string param; metrics per epoch (step =
epoch), final values under the same keys.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from segcore.tracking import SweepRecorder, schema

# No internet here: MLflow's usage telemetry (checked at each call) would only wait on connections.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

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
    "efficient_grid": {"by_miou": 2, "by_energy": 4}, "tolerance": 0.02, "energy_threshold": 0.95,
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
                sweep: str = "sweep-1", spectrum: dict | None = SPECTRUM,
                objectives: dict[str, str] | None = None) -> str:
    """Record one sweep through :class:`SweepRecorder`, so the reader is tested against what a
    real sweep writes. Returns the parent run id.
    """
    recorder = SweepRecorder(tracking_uri, experiment, sweep)
    spec = {"name": sweep, "experiment": experiment, "num_samples": len(trials),
            "objectives": objectives or {"miou": "max", "gflops": "min"}}
    recorder.start_sweep(spec, spectrum=spectrum)
    for t in trials:
        recorder.trial_run(t["trial_id"], t["config"], node=t["node"])
        final = t["metrics"]
        if final is not None:
            for epoch in range(1, t["epochs_run"] + 1):
                # Earlier epochs score lower, so a reader that took the first step would be wrong.
                scale = epoch / t["epochs_run"]
                metrics = {k: v * scale if k in ("miou", "pixel_accuracy") else v for k, v in final.items()}
                recorder.log_epoch(t["trial_id"], {**metrics, schema.METRIC_EPOCH: epoch}, step=epoch)
        error = ("FloatingPointError: non-finite training loss at epoch 1"
                 if t["status"] == schema.STATUS_FAILED else None)
        recorder.finish_trial(t["trial_id"], t["status"], metrics=final, error=error)
    recorder.end_sweep()
    if not recorder.close(timeout=120) or recorder.errors:
        raise RuntimeError(f"SweepRecorder did not write everything: {recorder.errors}")
    return recorder.parent_run_id


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
