"""Run a sweep: connect to Ray, record the parent run, build (or restore) the Tuner, fit, summarise.

Local runs start their own Ray instance explicitly (``ray.init(address="local")``: a bare
``ray.init()`` would try to join whatever ``/tmp/ray/ray_current_cluster`` names, possibly a dead
cluster); ``address="auto"`` (or ``HOST:PORT``) joins a running cluster.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import ray
from ray import tune

from segcore.config.sweep import SweepSpec
from segcore import names

from .callbacks import ProgressCallback, TrackingCallback, trial_status
from .search import WarmStart, build_scheduler, build_search, load_warm_start, param_space, tune_num_samples
from .trainable import TrialContext, run_trial, trial_dirname
from .validate import validate_sweep

__all__ = ["SweepOutcome", "connect", "build_tuner", "run_sweep", "compute_spectrum", "results_frame", "start_parent_run"]

logger = logging.getLogger(__name__)

# A local Ray instance on a shared laptop: a small object store (trials pass only metrics and
# checkpoint paths through it) instead of Ray's default of 30% of RAM.
_LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2


@dataclass
class SweepOutcome:
    """What a finished sweep returns: one row per trial, the parent run, where Tune kept its state."""

    spec: SweepSpec
    trials: pd.DataFrame
    parent_run_id: str | None
    experiment_path: str
    elapsed_s: float
    spectrum: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def connect(address: str = "local", *, num_cpus: int | None = None, num_gpus: int | None = None) -> bool:
    """Connect this process to Ray; return True when this call started/joined it (so shut it down).

    Args:
        address: ``local`` starts a private instance on this machine; ``auto`` or ``HOST:PORT``
            joins a running cluster. Ignored when Ray is already initialised in this process.
        num_cpus: CPUs of the local instance (default: all of this machine's).
        num_gpus: GPUs of the local instance (default: what Ray detects).
    """
    if ray.is_initialized():
        return False
    common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
    if address == "local":
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            num_gpus=num_gpus,
            object_store_memory=_LOCAL_OBJECT_STORE_BYTES,
            **common,
        )
    else:
        common.pop("include_dashboard")
        try:
            ray.init(address=address, **common)
        except ConnectionError as exc:
            raise ValueError(
                f"--address {address}: no running Ray cluster to join ({exc}); start one with "
                "`ray start --head` (or `ray up cluster.yaml`), or run locally with --address local"
            ) from None
    return True


def _check_capacity(spec: SweepSpec, address: str) -> list[str]:
    """A trial that asks for more than the cluster has would wait forever: say so before starting."""
    total = ray.cluster_resources()
    notes = []
    for key, need in (("cpu", spec.resources.cpu), ("gpu", spec.resources.gpu)):
        have = float(total.get(key.upper(), 0.0))
        if need > have:
            msg = f"resources.{key}: each trial asks for {need:g} {key.upper()}, but the Ray cluster has {have:g}"
            if address == "local":
                hint = " (set resources.gpu: 0 on a machine without GPUs)" if key == "gpu" else ""
                raise ValueError(msg + hint)
            notes.append(msg + "; waiting for the autoscaler to add nodes")
    return notes


def compute_spectrum(spec: SweepSpec, out_dir: str | Path, progress: bool = True) -> tuple[dict[str, Any], str] | None:
    """The training-free spectral analysis of the sweep's dataset: ``(dict, png)``, or None when off."""
    if not spec.spectral.enabled:
        return None
    from segcore.data import build_dataset
    from segcore.spectral import analyze, plot_spectrum

    ds = spec.dataset
    dataset = build_dataset(ds.name, ds.root, spec.spectral.split, labels_only=True, **ds.options)
    result = analyze(
        dataset,
        strides=tuple(spec.spectral.strides),
        blocks=tuple(spec.spectral.blocks),
        limit=spec.spectral.limit,
        tolerance=spec.spectral.tolerance,
        energy_threshold=spec.spectral.energy_threshold,
        progress=progress,
    )
    png = str(Path(out_dir) / "spectrum.png")
    plot_spectrum(result, png)
    return result.to_dict(), png


def build_tuner(spec: SweepSpec, *, resume: bool = False, progress: bool = True,
                spectrum: dict[str, Any] | None = None, warm_start: WarmStart | None = None) -> tuple[tune.Tuner, bool]:
    """The Tuner for ``spec``, or the restored one when ``resume`` and Tune saved state exists.

    ``spectrum`` (the sweep's ``spectrum.json``) feeds the ``spectral`` search algorithm and
    ``warm_start`` (:func:`~segcore.tune.search.load_warm_start`) seeds the searcher.

    Returns ``(tuner, restored)``. Raises ``ValueError`` when the sweep already has state and
    ``resume`` is off (a second run under the same name would mix two sweeps in one record).
    """
    context = TrialContext(
        sweep_name=spec.name,
        epochs=spec.epochs,
        tracking_uri=spec.tracking_uri,
        experiment=spec.experiment_name,
        cpus_per_trial=spec.resources.cpu,
        network_config=spec.network_config,
    )
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    path = Path(spec.storage_path) / spec.name
    if tune.Tuner.can_restore(path):
        if not resume:
            raise ValueError(
                f"sweep {spec.name!r} already has results in {path}: pass --resume to continue it, "
                f"or give the sweep a new `name`"
            )
        return tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=False), True
    callbacks: list[tune.Callback] = [
        TrackingCallback(spec.tracking_uri, spec.experiment_name, spec.name, spec.epochs)
    ]
    if progress:
        callbacks.insert(0, ProgressCallback(tune_num_samples(spec), spec.epochs, spec.objectives, list(spec.searched_knobs())))
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(spec),
        tune_config=tune.TuneConfig(
            search_alg=build_search(spec, spectrum=spectrum, warm_start=warm_start),
            scheduler=build_scheduler(spec),
            num_samples=tune_num_samples(spec),
            trial_dirname_creator=trial_dirname,
            # A trial's process (torch imported, data code warm) serves the next trial: worker
            # start-up is most of the per-trial overhead on a small machine.
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=spec.storage_path,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=callbacks,
            verbose=0,
        ),
    )
    return tuner, False


def results_frame(spec: SweepSpec, result_grid) -> pd.DataFrame:
    """One row per trial: id, network, searched knobs, objectives and cost, status, node, error."""
    knobs = [k for k in spec.searched_knobs() if k != "network"]
    metrics = list(dict.fromkeys([*spec.objectives, names.METRIC_MIOU, "gflops", "decoder_gflops", "annotation_units"]))
    rows = []
    for res in result_grid:
        last = res.metrics or {}
        cfg = res.config or {}
        trial_id = last.get("trial_id") or Path(res.path).name.removeprefix("trial_")
        row = {"trial_id": trial_id, "network": cfg.get("network")}
        row.update({k: cfg.get(k) for k in knobs})
        row.update({m: last.get(m) for m in metrics})
        row.update(
            epochs=last.get(names.METRIC_EPOCH),
            status=trial_status(last, spec.epochs, errored=res.error is not None),
            node=last.get("node"),
            device=last.get("device"),
            error=(str(res.error).strip().splitlines() or [""])[-1] if res.error is not None else None,
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _logged_spectrum(spec: SweepSpec, log: Callable[[str], None]) -> tuple[dict[str, Any] | None, bool]:
    """The spectrum on the sweep's parent run: ``(spectrum, known)``; ``known`` is False when the
    record could not be read (then nothing is computed again, so no curve is logged twice)."""
    from segcore.tracking import query

    try:
        return query.load_spectrum(spec.experiment_name, spec.tracking_uri, sweep=spec.name), True
    except (ValueError, FileNotFoundError):  # no store or parent run yet: the first start failed early
        return None, True
    except Exception as exc:  # an unreachable store: the trials' writes are queued, this read is not
        log(f"could not read the parent run's spectrum ({type(exc).__name__}: {exc}); not computing it again")
        return None, False


def start_parent_run(
    spec: SweepSpec, recorder, *, resuming: bool, progress: bool, log: Callable[[str], None]
) -> tuple[str, dict[str, Any] | None]:
    """Open (or find) the sweep's parent run, with the spectral analysis when it is on:
    ``(run id, spectrum)``.

    A resumed sweep keeps the spectrum its parent run has; when the run has none (its first start
    failed before the analysis was logged), the analysis is computed and logged now, so the report
    is not left without it.
    """
    spectrum, with_spectrum = None, True
    if resuming and spec.spectral.enabled:
        spectrum, known = _logged_spectrum(spec, log)
        with_spectrum = known and spectrum is None
        if with_spectrum:
            log(f"sweep {spec.name!r} has no spectrum on its parent run: computing it again")
    with tempfile.TemporaryDirectory(prefix="segcore-spectrum-") as tmp:
        if spec.spectral.enabled and with_spectrum:
            log(f"spectral analysis of {spec.dataset.name}/{spec.spectral.split} (labels only) ...")
            spectrum, png = compute_spectrum(spec, tmp, progress=progress)
            grid = spectrum["efficient_grid"]
            log(
                f"efficient grid predicted from {spectrum['num_labels']} label map(s): stride {grid['by_miou']} "
                f"by oracle mIoU, stride {grid['by_energy']} by band energy"
            )
            parent = recorder.start_sweep(spec.to_dict(), spectrum=spectrum, spectrum_png=png)
        else:
            parent = recorder.start_sweep(spec.to_dict())
    log(f"MLflow: experiment {spec.experiment_name!r} at {spec.tracking_uri}, parent run {parent or '(queued)'}")
    return parent, spectrum


def run_sweep(
    spec: SweepSpec,
    *,
    address: str = "local",
    resume: bool = False,
    progress: bool = True,
    num_cpus: int | None = None,
    log: Callable[[str], None] = print,
) -> SweepOutcome:
    """Run ``spec`` end to end: spectrum, parent run, Tune trials, reconciliation.

    Args:
        spec: a sweep spec (:func:`segcore.tune.validate.load_sweep`); checked again here against
            the models and data before anything starts.
        address: ``local`` (start a private Ray), ``auto`` or ``HOST:PORT`` (join a cluster).
        resume: continue the sweep of the same name from its Tune state (no duplicate runs).
        progress: print one line per trial event.
        num_cpus: CPUs of a local Ray instance (default: all).
        log: where the driver's messages go.

    Raises:
        SweepSpecError: the spec names an unknown network or dataset, a knob value a network
            cannot take, or a warm start whose experiment or sweep does not exist (nothing has
            started).
    """
    from segcore.tracking import SweepRecorder

    t0 = time.monotonic()
    # A joined cluster's data lives on its nodes' shared storage, not necessarily on this machine.
    validate_sweep(spec, check_paths=address == "local")
    path = Path(spec.storage_path) / spec.name
    restoring = resume and tune.Tuner.can_restore(path)
    if tune.Tuner.can_restore(path) and not resume:
        # Checked before anything is recorded: a second sweep under the same name would mix two
        # sweeps in one MLflow parent run and one Tune experiment.
        raise ValueError(
            f"name: sweep {spec.name!r} already has results in {path}: pass --resume to continue it, "
            f"or give the sweep a new `name`"
        )
    # The earlier sweep is read before anything starts; a resumed searcher holds its seeds already.
    warm_start = None if restoring else load_warm_start(spec)
    if warm_start is not None:
        log(warm_start.describe())
    # Tune warns about frequent experiment snapshots, which short trials with per-epoch checkpoints
    # trigger by design; the snapshots are what --resume needs, so keep them and drop the warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if progress:
        # Our ProgressCallback prints one line per trial event; Ray's own reporter (its config box
        # and status tables) would interleave with it. The legacy reporter at verbose=0 is silent.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    started = connect(address, num_cpus=num_cpus)
    try:
        notes = _check_capacity(spec, address)
        for note in notes:
            log(note)
        resources = ray.cluster_resources()
        log(
            f"Ray: {len(ray.nodes())} node(s), {resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU; "
            f"{spec.num_trials()} trial(s) of {spec.resources.cpu:g} CPU + {spec.resources.gpu:g} GPU, "
            f"{spec.max_concurrent} at a time"
        )
        recorder = SweepRecorder(spec.tracking_uri, spec.experiment_name, spec.name)
        parent, spectrum = start_parent_run(spec, recorder, resuming=restoring, progress=progress, log=log)

        status = "FAILED"
        try:
            tuner, restored = build_tuner(spec, resume=resume, progress=progress, spectrum=spectrum,
                                          warm_start=warm_start)
            if restored:
                log(f"resuming sweep {spec.name!r} from {path}")
            result_grid = tuner.fit()
            frame = results_frame(spec, result_grid)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            # Every trial has ended (or the driver is going down): no child run may stay RUNNING.
            # An interrupted trial's run is reopened by `--resume` (the writer finds it by tags).
            recorder.reconcile(live_trial_ids=None)
            recorder.end_sweep(status=status)
            recorder.flush()
            # On a slow store start_sweep may have returned before the run existed ("").
            parent = parent or recorder.parent_run_id or ""
    finally:
        if started:
            ray.shutdown()
    return SweepOutcome(
        spec=spec,
        trials=frame,
        parent_run_id=parent,
        experiment_path=str(path),
        elapsed_s=time.monotonic() - t0,
        spectrum=spectrum,
        notes=notes,
    )
