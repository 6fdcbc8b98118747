"""The function Ray Tune runs for each trial: :func:`segcore.train.fit` with a report callback.

Every epoch, ``fit`` hands over its metrics and a fresh checkpoint directory; the trial logs the
metrics to its MLflow child run (per-epoch steps) and passes both to ``ray.tune.report``, so the
scheduler sees the epoch and Tune persists the checkpoint. A restarted trial (retry after a
failure, or ``segcore sweep --resume``) continues from ``ray.tune.get_checkpoint()``.
When the scheduler granted a GPU but CUDA is not there (fake GPUs of a test cluster, a broken
driver), the trial runs on the CPU and says so in its results (``device``, ``gpu_fallback``).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune

from segcore.names import is_full_length
from segcore.tracking import schema

_FLUSH_TIMEOUT_S = 300.0
_EPOCH_FLUSH_TIMEOUT_S = 15.0

__all__ = ["TrialContext", "run_trial", "node_label", "trial_dirname"]


@dataclass(frozen=True)
class TrialContext:
    """Sweep-level settings every trial needs (passed with ``tune.with_parameters``)."""

    sweep_name: str
    epochs: int
    tracking_uri: str | None
    experiment: str | None
    cpus_per_trial: float = 1.0
    network_config: dict | None = None  # per-network fixed fields (the spec's network_config)


def node_label() -> str:
    """Where this process runs: ``host/ip/node-id-prefix`` (nodes of a one-machine test cluster
    share host and IP, so the Ray node id tells them apart)."""
    try:
        ip = ray.util.get_node_ip_address()
        node_id = ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # not inside Ray (a direct call in a test)
        return socket.gethostname()
    return f"{socket.gethostname()}/{ip}/{node_id}"


def _device(config: dict[str, Any]) -> tuple[str, bool]:
    """(device to use, whether a wanted GPU had to be given up for the CPU), decided by
    :func:`segcore.train.choose_device` with the GPUs Ray granted this trial."""
    from segcore.train import choose_device

    granted = bool(ray.get_gpu_ids()) if ray.is_initialized() else None
    choice = choose_device(config.get("device", "auto"), gpu_granted=granted)
    return choice.device.type, choice.gpu_fallback


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """One trial under Ray Tune (the trainable's body).

    The last epoch's report is held back until ``fit`` has returned and the child run is complete
    (final metrics, artifacts, ``completed``) and flushed: a scheduler may stop a trial at its last
    report (ASHA stops every trial at ``max_t``), after which nothing in this function runs.
    """
    import torch

    from segcore.train import fit

    trial_id = tune.get_context().get_trial_id()
    node = node_label()
    config = dict(config)
    config.update((context.network_config or {}).get(config.get("network"), {}))
    device, gpu_fallback = _device(config)
    config["device"] = device
    # Ray sets OMP_NUM_THREADS from the trial's CPUs; torch's intra-op pool must follow it, or
    # concurrent trials oversubscribe the cores.
    torch.set_num_threads(max(1, int(context.cpus_per_trial)))

    recorder = None
    if context.tracking_uri:
        from segcore.tracking import SweepRecorder, trial_artifacts

        recorder = SweepRecorder(context.tracking_uri, context.experiment, context.sweep_name)
        # Not waiting for the run id: training starts while the run is opened in the background
        # (the writer keeps the order of this trial's writes).
        recorder.trial_run(trial_id, config, node=node, wait=False)

    extra = {"node": node, "device": device, "gpu_fallback": gpu_fallback}
    held: dict[str, Any] = {}
    # fit keeps the checkpoints it writes under `checkpoint_dir` (a temporary one it would delete
    # when it returns), so the held-back last checkpoint outlives fit.
    ckpt_root = Path(tempfile.mkdtemp(prefix=f"segcore-{trial_id}-"))

    def report(metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        metrics = {k: float(v) for k, v in metrics.items()}
        if recorder is not None:
            recorder.log_epoch(trial_id, metrics, step=int(metrics[schema.METRIC_EPOCH]))
            # The scheduler may stop this trial on this very result, and Ray then ends the
            # process (or hands it to the next trial) without waiting for the writer's queue.
            recorder.flush(timeout=_EPOCH_FLUSH_TIMEOUT_S)
        if is_full_length(metrics[schema.METRIC_EPOCH], context.epochs):
            held.update(metrics=metrics, checkpoint_dir=checkpoint_dir)
            return
        checkpoint = tune.Checkpoint.from_directory(checkpoint_dir) if checkpoint_dir else None
        tune.report({**metrics, **extra}, checkpoint=checkpoint)
        if checkpoint_dir:  # persisted to the storage path by now
            shutil.rmtree(checkpoint_dir, ignore_errors=True)

    try:
        fit_config = dict(config, checkpoint_dir=str(ckpt_root))
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as resume_dir:
                result = fit(fit_config, report, resume_from=resume_dir)
        else:
            result = fit(fit_config, report)

        if recorder is not None and is_full_length(result.epochs_completed, context.epochs):
            final = {**result.metrics, **result.cost}
            recorder.finish_trial(trial_id, schema.STATUS_COMPLETED, metrics=final, artifacts=trial_artifacts(result))
        if recorder is not None:
            # The writer queues writes in a background thread: they must reach the store before
            # this trial counts as done (the driver reconciles runs after the last trial). A long
            # tracking outage holds the slot at most this long; the queue keeps retrying after.
            recorder.flush(timeout=_FLUSH_TIMEOUT_S)
        metrics = held.get("metrics") or {k: float(v) for k, v in result.metrics.items()}
        ckpt = held.get("checkpoint_dir")
        tune.report({**metrics, **extra}, checkpoint=tune.Checkpoint.from_directory(ckpt) if ckpt else None)
    finally:
        shutil.rmtree(ckpt_root, ignore_errors=True)


def trial_dirname(trial) -> str:
    """Short trial folder names (Ray's default embeds the whole config and hits path limits)."""
    return f"trial_{trial.trial_id}"

