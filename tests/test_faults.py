"""Faults injected for real into sweeps, then the MLflow record checked.

* a trial whose data has a corrupt image file raises (naming the file), one whose loss turns NaN
  raises FloatingPointError: both are retried as configured, fail alone, their runs end FAILED
  with the reason, the other trial completes;
* the driver is SIGKILLed mid-sweep, `segcore sweep FILE --resume` finishes it: one run per trial,
  none RUNNING, finished trials not re-run, interrupted ones continue from their checkpoints;
* a worker node of a three-node Ray cluster on this machine is killed mid-sweep: its trial is
  rescheduled on a remaining node and the sweep completes;
* the MLflow server (PostgreSQL-backed, on loopback) is killed mid-sweep and restarted on the same
  port: the sweep goes on and no metric step is missing.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("ray")
pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402
from PIL import Image  # noqa: E402

from segcore.tracking import schema  # noqa: E402

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
       "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}


def _spec(tmp_path: Path, name: str, **over) -> Path:
    """A tiny CPU sweep (unet_tiny on 32 x 32 synthetic scenes), written to ``tmp_path``."""
    spec = {
        "name": name,
        "dataset": {"name": "synthetic",
                    "options": {"num_samples": 8, "size": [32, 32], "num_classes": 3}},
        "networks": ["unet_tiny"],
        "space": {"grid_stride": [1, 2]},
        "train": {"batch_size": 4, "max_train_batches": 2, "max_val_batches": 1, "amp": False},
        "objectives": {"miou": "max"},
        "search": {"algorithm": "grid"},
        "num_samples": 1,
        "max_concurrent": 2,
        "max_failures": 1,
        "resources": {"cpu": 1, "gpu": 0},
        "epochs": 2,
        "storage_path": str(tmp_path / "ray_results"),
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "experiment": name,
        "spectral": {"enabled": False},
    }
    spec.update(over)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _sweep_cmd(spec: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "segcore", "sweep", str(spec), *extra]


def _runs(uri: str, experiment: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_SWEEP]
    children = [r for r in runs if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_TRIAL]
    return client, parents, children


def _one_run_per_trial(children) -> dict:
    by_trial: dict[str, list] = {}
    for run in children:
        by_trial.setdefault(run.data.tags[schema.TAG_TRIAL_ID], []).append(run)
    dupes = {t: len(r) for t, r in by_trial.items() if len(r) > 1}
    assert not dupes, f"duplicate runs per trial: {dupes}"
    return {t: runs[0] for t, runs in by_trial.items()}


def _steps(client, run_id: str, key: str = schema.METRIC_MIOU) -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def _folder_dataset(root: Path, corrupt: str) -> None:
    """A 3-class image/mask folder dataset, 32 x 32; one validation image is not an image."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 6)):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for i in range(count):
            label = np.zeros((32, 32), np.uint8)
            label[:, 16:] = 1
            label[int(rng.integers(0, 24)):, :8] = 2
            image = np.stack([label * 80, 255 - label * 60, label * 30], -1)
            image = (image + rng.integers(0, 40, image.shape)).astype(np.uint8)
            Image.fromarray(label).save(root / "masks" / split / f"{i:03d}.png")
            Image.fromarray(image).save(root / "images" / split / f"{i:03d}.png")
    (root / "images" / "val" / corrupt).write_bytes(b"\x89PNG\r\n\x1a\n truncated: not an image")


def test_failing_trials_fail_alone_with_reason(tmp_path):
    # Validation reads batches in file order (batch size 2): max_val_batches=1 never reaches the
    # corrupt 005.png, 3 does. lr=1e12 makes the loss NaN in epoch 2 (epoch 1 is still logged).
    _folder_dataset(tmp_path / "data", corrupt="005.png")
    spec = _spec(tmp_path, "faults",
                 dataset={"name": "folder", "root": str(tmp_path / "data"),
                          "options": {"num_classes": 3}},
                 space={"lr": [0.003, 1.0e12], "max_val_batches": [1, 3]},
                 train={"batch_size": 2, "max_train_batches": 2, "amp": False})
    proc = subprocess.run(_sweep_cmd(spec), cwd=tmp_path, env=ENV, capture_output=True,
                          text=True, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "4 trial(s)" in out and "1 completed" in out and "3 failed" in out, out[-3000:]

    client, parents, children = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "faults")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    runs = _one_run_per_trial(children)
    assert len(runs) == 4
    by_config = {(r.data.params["lr"], r.data.params["max_val_batches"]): r for r in runs.values()}
    good = by_config[("0.003", "1")]
    assert good.info.status == "FINISHED"
    assert good.data.tags[schema.TAG_STATUS] == schema.STATUS_COMPLETED
    assert _steps(client, good.info.run_id) == [1, 2]
    nan = by_config[("1000000000000.0", "1")]
    assert nan.info.status == "FAILED"
    assert "non-finite training loss at epoch 2" in nan.data.tags[schema.TAG_ERROR]
    assert _steps(client, nan.info.run_id) == [1]  # the epoch before the NaN is kept
    for key in (("0.003", "3"), ("1000000000000.0", "3")):
        run = by_config[key]
        assert run.info.status == "FAILED"
        assert str(tmp_path / "data" / "images" / "val" / "005.png") in run.data.tags[
            schema.TAG_ERROR]
    assert not [r for r in children if r.info.status == "RUNNING"]
    # Retried as configured (max_failures: 1): each failing trial started twice.
    for run in (nan, by_config[("0.003", "3")], by_config[("1000000000000.0", "3")]):
        trial = run.data.tags[schema.TAG_TRIAL_ID]
        assert len(re.findall(rf"retry trial .*{trial}", out)) == 1, trial
    good_trial = good.data.tags[schema.TAG_TRIAL_ID]
    assert not re.findall(rf"retry trial .*{good_trial}", out)


def _kill_session(sid: int) -> None:
    """SIGKILL every process of session ``sid`` (a driver started with start_new_session and
    everything it spawned: its local Ray, the trial workers)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid:  # fields after the name: state, ppid, pgrp, session
                os.kill(int(stat.parent.name), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def test_driver_sigkill_then_resume(tmp_path):
    # Two trials at once: "short" (2 batches an epoch) completes before the kill; "long" (150
    # batches of 64 x 64: >= 3 s an epoch even on an idle machine, more than the 1.8 s the kill
    # waits for Tune's state to be saved) is killed after an epoch was checkpointed.
    spec = _spec(tmp_path, "killed", space={"max_train_batches": [2, 150]}, epochs=3,
                 dataset={"name": "synthetic",
                          "options": {"num_samples": 600, "size": [64, 64], "num_classes": 3}},
                 train={"batch_size": 4, "max_val_batches": 1, "amp": False})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    driver = subprocess.Popen(_sweep_cmd(spec), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    seen: dict[str, float] = {}
    long_trial = ""

    def watch() -> None:
        nonlocal long_trial
        for line in driver.stdout:
            lines.append(line)
            if re.search(r"completed trial .*max_train_batches=2 ", line):
                seen["short"] = time.monotonic()
            if m := re.search(r"epoch trial .*? (\w+_\d{5}) .*max_train_batches=150 [12]/3 ", line):
                long_trial = m.group(1)
                seen["long"] = time.monotonic()
            if re.search(r"epoch trial .*max_train_batches=150 3/3 ", line):
                seen["too late"] = time.monotonic()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    try:
        # Tune saves its experiment state every TUNE_GLOBAL_CHECKPOINT_S: kill once both events
        # are older than that (and no newer epoch came), so the state on disk knows them.
        deadline = time.monotonic() + 300
        while not ("short" in seen and "long" in seen
                   and time.monotonic() - max(seen["short"], seen["long"]) > 1.8):
            assert time.monotonic() < deadline and driver.poll() is None, "".join(lines)[-3000:]
            time.sleep(0.05)
        assert "too late" not in seen, "the long trial finished before the kill"
    finally:
        # SIGKILL the driver, then what it started (its local Ray and trial workers would go
        # down with it, a little later: no trial may finish after the driver is gone).
        os.kill(driver.pid, signal.SIGKILL)
        _kill_session(driver.pid)
        driver.wait()
    client, parents, children = _runs(uri, "killed")
    before = {r.data.tags[schema.TAG_TRIAL_ID]: r for r in children}
    assert before[long_trial].info.status == "RUNNING"
    done_epochs = _steps(client, before[long_trial].info.run_id)
    assert done_epochs in ([1], [1, 2]), done_epochs
    short_trial, = [t for t in before if t != long_trial]
    assert before[short_trial].info.status == "FINISHED"

    proc = subprocess.run(_sweep_cmd(spec, "--resume"), cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "2 completed" in out, out[-3000:]
    client, parents, children = _runs(uri, "killed")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    runs = _one_run_per_trial(children)
    assert sorted(runs) == sorted(before)
    for trial, run in runs.items():
        assert run.info.status == "FINISHED", trial
        assert run.data.tags[schema.TAG_STATUS] == schema.STATUS_COMPLETED
        # Every epoch once: the long trial continued from its epoch-1 checkpoint.
        assert _steps(client, run.info.run_id) == [1, 2, 3], trial
    # The short trial was not run again: not started, its run untouched.
    assert runs[short_trial].info.end_time == before[short_trial].info.end_time
    assert not re.search(rf"start trial .*{short_trial}", out)
    first = re.search(rf"epoch trial .*{long_trial} .* (\d)/3 ", out)
    assert first and int(first.group(1)) == len(done_epochs) + 1, "not resumed from checkpoint"


def test_worker_node_killed_trial_rescheduled(tmp_path, monkeypatch):
    import ray._private.utils
    from ray.cluster_utils import Cluster

    from segcore.config.sweep import load_sweep_spec
    from segcore.tune import run_sweep

    from conftest import free_port

    # Epochs of 100 batches of 64 x 64 (seconds each, even on an idle machine): the killer, which
    # polls MLflow every 0.5 s, finds a trial between its first and last epoch.
    spec_path = _spec(tmp_path, "nodes", space={"grid_stride": [1, 2, 4]}, epochs=3,
                      max_failures=2,
                      dataset={"name": "synthetic",
                               "options": {"num_samples": 400, "size": [64, 64], "num_classes": 3}},
                      train={"batch_size": 4, "max_train_batches": 100, "max_val_batches": 1,
                             "amp": False})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = load_sweep_spec(spec_path)
    # A head without CPUs (it schedules, runs no trial) and two one-CPU worker nodes. Cluster
    # would record its address in /tmp/ray/ray_current_cluster for everyone: not here.
    monkeypatch.setattr(ray._private.utils, "write_ray_address", lambda *a, **k: None)
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "gcs_server_port": free_port(), "include_dashboard": False,
        "object_store_memory": 80 * 1024**2})
    workers = [cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2) for _ in range(2)]
    cluster.wait_for_nodes()
    killed: dict[str, str] = {}

    def kill_a_busy_node() -> None:
        # Find a trial that runs on a worker node and has logged an epoch; kill that node.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            time.sleep(0.5)
            try:
                _, _, children = _runs(uri, "nodes")
            except Exception:  # noqa: BLE001 - the store may not exist yet
                continue
            for run in children:
                node = run.data.tags.get(schema.TAG_NODE, "")
                if run.info.status != "RUNNING" or "epoch" not in run.data.metrics:
                    continue
                for worker in workers:
                    if node.endswith(worker.node_id[:8]):
                        killed.update(trial=run.data.tags[schema.TAG_TRIAL_ID], node=node)
                        cluster.remove_node(worker, allow_graceful=False)
                        return

    killer = threading.Thread(target=kill_a_busy_node, daemon=True)
    killer.start()
    try:
        outcome = run_sweep(spec, address=cluster.address, progress=True)
    finally:
        killer.join(timeout=5)
        cluster.shutdown()
    assert killed, "no trial was seen running on a worker node"
    frame = outcome.trials
    assert (frame["status"] == schema.STATUS_COMPLETED).all(), frame
    client, parents, children = _runs(uri, "nodes")
    runs = _one_run_per_trial(children)
    assert len(runs) == 3
    assert not [r for r in children if r.info.status != "FINISHED"]
    moved = runs[killed["trial"]]
    assert moved.data.tags[schema.TAG_NODE] != killed["node"], "not rescheduled elsewhere"
    assert sorted(set(_steps(client, moved.info.run_id))) == [1, 2, 3]


def test_tracking_server_outage_mid_sweep(tmp_path, mlflow_server):
    spec = _spec(tmp_path, "outage", space={"grid_stride": [1, 2, 4]}, epochs=4,
                 tracking_uri=mlflow_server.uri,
                 train={"batch_size": 4, "max_train_batches": 3, "max_val_batches": 1,
                        "amp": False})
    driver = subprocess.Popen(_sweep_cmd(spec), cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    restart = threading.Timer(4.0, mlflow_server.start)  # the server is back 4 s later
    try:
        for line in driver.stdout:
            lines.append(line)
            if not restart.is_alive() and not restart.finished.is_set() and re.search(
                    r"epoch trial .* 1/4 ", line):
                mlflow_server.stop()     # the tracking server dies mid-sweep
                restart.start()
        driver.wait(timeout=400)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        restart.join()
    out = "".join(lines)
    assert restart.finished.is_set(), "the server was never stopped:\n" + out[-3000:]
    assert driver.returncode == 0, out[-4000:]
    assert "3 completed" in out, out[-3000:]
    client, parents, children = _runs(mlflow_server.uri, "outage")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    runs = _one_run_per_trial(children)
    assert len(runs) == 3
    for trial, run in runs.items():
        assert run.info.status == "FINISHED", trial
        for key in (schema.METRIC_MIOU, schema.METRIC_TRAIN_LOSS, "gflops"):
            assert sorted(set(_steps(client, run.info.run_id, key))) == [1, 2, 3, 4], (trial, key)
