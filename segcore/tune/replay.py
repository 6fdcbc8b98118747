"""Replay a recorded sweep through the real Ray Tune searchers and schedulers, without training.

A recorded exhaustive sweep (one row per trial and epoch: :func:`segcore.tracking.query.load_curves`
or a ``curves.csv`` of the same columns) answers every configuration a search may ask for. The
replay builds the searcher and the scheduler from a sweep spec exactly as :mod:`segcore.tune.runner`
does (:func:`~segcore.tune.search.build_search`, :func:`~segcore.tune.search.build_scheduler`), and
runs a trainable that looks the trial's configuration up in the table and reports the recorded
epochs one by one (``tune.report``: metrics and cost as recorded) instead of training. Nothing is
written to MLflow. A driver-side callback logs every result in the order Tune saw it, so a caller
can measure what a strategy had found after each trial-epoch it spent.

Rules of the replay (docs/design.md, Contracts):

* a configuration is identified by the knobs (:data:`segcore.names.KNOB_PARAMS`) the table holds;
  several recorded trials of one configuration (seeds) are replayed as their mean curve, epoch by
  epoch;
* a configuration the table does not hold is either an error naming it (``missing="error"``,
  checked before anything runs for a finite space) or skipped (``missing="skip"``): it never runs,
  costs no trial-epoch, and the searcher is told it as a trial without a result (pruned);
* trials report instantly, so concurrent trials interleave by Ray's scheduling rather than by the
  recorded epoch times: the replay measures trial-epochs spent, not wall time.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray import tune
from ray.tune.search import SearchAlgorithm, SearchGenerator, Searcher

from segcore import names
from segcore.config.sweep import SweepSpec

from .search import build_scheduler, build_search, param_space
from .runner import connect

__all__ = ["ReplayOutcome", "ReplayTable", "read_curves", "replay_sweep", "start_local_ray"]

#: Per-epoch metrics replayed from the table (averaged over a configuration's recorded seeds).
EPOCH_METRICS = (names.METRIC_MIOU, names.METRIC_PIXEL_ACCURACY, names.METRIC_TRAIN_LOSS)
_INT_KNOBS = ("grid_stride", "block")
_FLOAT_KNOBS = ("keep",)


def read_curves(path: str | os.PathLike) -> pd.DataFrame:
    """A ``curves.csv`` (one row per trial and epoch) with the knobs typed as the record types them."""
    frame = pd.read_csv(path)
    for knob in _INT_KNOBS:
        if knob in frame.columns:
            frame[knob] = pd.to_numeric(frame[knob]).astype("Int64")
    for knob in _FLOAT_KNOBS:
        if knob in frame.columns:
            frame[knob] = pd.to_numeric(frame[knob]).astype("float64")
    return frame


def _knob_defaults() -> dict[str, Any]:
    """A knob a configuration leaves out takes the trial's default (TrialConfig's)."""
    from segcore.config.trial import TrialConfig

    return {k: TrialConfig.model_fields[k].default for k in names.KNOB_PARAMS if k in TrialConfig.model_fields}


_KNOB_DEFAULTS = _knob_defaults()


def config_key(config: dict[str, Any], knobs: tuple[str, ...]) -> tuple:
    """The table key of a trial configuration: its values of ``knobs``, defaults filled in."""
    return tuple(_normal(config.get(k, _KNOB_DEFAULTS.get(k))) for k in knobs)


def _normal(value: Any) -> Any:
    """One knob value as a key part: missing -> None, numbers -> float, anything else -> str."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    return str(value)


class ReplayTable:
    """The recorded curves by configuration: knob values -> the mean curve of its recorded trials.

    Args:
        curves: one row per trial and epoch with ``trial_id``, ``epoch``, ``miou`` and the knob
            columns it has (:data:`segcore.names.KNOB_PARAMS`; at least ``network``); the cost
            metrics (constant per trial) and ``train_loss`` / ``pixel_accuracy`` when recorded.

    Raises:
        ValueError: a required column is missing (the message lists them).
    """

    def __init__(self, curves: pd.DataFrame) -> None:
        required = ["trial_id", names.METRIC_EPOCH, names.METRIC_MIOU, "network"]
        missing = [c for c in required if c not in curves.columns]
        if missing:
            raise ValueError(f"curves table: missing column(s) {', '.join(missing)}; it needs one row per "
                             f"trial and epoch with {', '.join(required)} and the knob columns")
        self.knobs = tuple(k for k in names.KNOB_PARAMS if k in curves.columns)
        self.metrics = tuple(m for m in (*EPOCH_METRICS, *names.COST_METRICS) if m in curves.columns)
        self.curves: dict[tuple, list[dict[str, float]]] = {}
        self.configs: dict[tuple, dict[str, Any]] = {}
        # Keys built by hand: pandas' groupby would turn a missing knob (None) into NaN.
        keys = pd.Series(list(zip(*(curves[k].map(_normal) for k in self.knobs))), index=curves.index)
        for key in dict.fromkeys(keys):
            rows = curves[keys == key]
            self.curves[key] = self._mean_curve(rows)
            self.configs[key] = {k: rows[k].iloc[0] for k in self.knobs}

    def _mean_curve(self, rows: pd.DataFrame) -> list[dict[str, float]]:
        by_epoch = rows.groupby(names.METRIC_EPOCH, sort=True)[list(self.metrics)].mean(numeric_only=True)
        return [{names.METRIC_EPOCH: float(epoch),
                 **{m: float(v) for m, v in values.items() if not pd.isna(v)}}
                for epoch, values in by_epoch.iterrows()]

    def key(self, config: dict[str, Any]) -> tuple:
        """The table key of a trial configuration (its values of the table's knobs)."""
        return config_key(config, self.knobs)

    def __contains__(self, config: dict[str, Any]) -> bool:
        return self.key(config) in self.curves

    def __len__(self) -> int:
        return len(self.curves)

    def trial_epochs(self) -> int:
        """Trial-epochs an exhaustive replay spends: every configuration's curve, once."""
        return sum(len(curve) for curve in self.curves.values())

    def final_frame(self) -> pd.DataFrame:
        """One row per configuration: its knobs and its last epoch's metrics (``epoch`` included)."""
        return pd.DataFrame([{**self.configs[key], **curve[-1]} for key, curve in self.curves.items()])

    def measure(self, spec: SweepSpec, configs: list[dict[str, Any]], metrics: list[str]) -> list[dict[str, float]]:
        """The recorded cost of each configuration (sampled knobs), for the spectral prior in place
        of its forward passes (the same numbers: the record's cost is measured the same way).
        A configuration the table lacks cannot run in a replay: it costs infinitely much, so the
        prior ranks it last."""
        costs = [m for m in metrics if m in names.COST_METRICS]
        out = []
        for sampled in configs:
            curve = self.curves.get(self.key(_trial_config(spec, spec.trial_config(dict(sampled)))))
            out.append({m: float(curve[-1].get(m, math.nan)) if curve else math.inf for m in costs})
        return out

    def describe(self, config: dict[str, Any]) -> str:
        return " ".join(f"{k}={config.get(k, _KNOB_DEFAULTS.get(k))}" for k in self.knobs)


def _trial_config(spec: SweepSpec, config: dict[str, Any]) -> dict[str, Any]:
    """The config as the trial would run it: the network's fixed fields applied."""
    return {**config, **spec.network_config.get(config.get("network"), {})}


def spec_configurations(spec: SweepSpec) -> list[dict[str, Any]] | None:
    """Every configuration a finite spec may run (None for a continuous space)."""
    if spec.space_size() is None:
        return None
    return [_trial_config(spec, spec.trial_config(point)) for point in spec.grid()]


def _check_table_covers(spec: SweepSpec, table: ReplayTable) -> None:
    configs = spec_configurations(spec)
    if configs is None:
        return
    missing = [table.describe(c) for c in configs if c not in table]
    if missing:
        shown = "; ".join(dict.fromkeys(missing[:10]))
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise ValueError(f"{len(missing)} configuration(s) of sweep {spec.name!r} are not in the recorded "
                         f"table: {shown}{more} (replay with missing='skip' to leave them out)")


def replay_trial(config: dict[str, Any], curves: dict[tuple, list[dict[str, float]]],
                 knobs: tuple[str, ...], network_config: dict[str, dict[str, Any]]) -> None:
    """The replay trainable: report the recorded epochs of this configuration, one per epoch."""
    config = {**config, **network_config.get(config.get("network"), {})}
    key = config_key(config, knobs)
    if key not in curves:
        raise KeyError("configuration not in the recorded table: "
                       + " ".join(f"{k}={config.get(k, _KNOB_DEFAULTS.get(k))}" for k in knobs))
    for metrics in curves[key]:
        tune.report(dict(metrics))


class TableOnlySearch(SearchAlgorithm):
    """A search algorithm that never starts a trial the table cannot answer.

    Each such proposal of ``inner`` is told back to it at once as a trial without a result (a
    pruned trial for Optuna, a finished one for the grid and random generators) and the next is
    asked for; :attr:`skipped` counts them.
    """

    def __init__(self, inner: SearchAlgorithm, spec: SweepSpec, table: ReplayTable) -> None:
        self.inner, self.spec, self.table = inner, spec, table
        self.skipped: list[str] = []

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    @property
    def total_samples(self) -> int:
        return self.inner.total_samples

    def add_configurations(self, experiments) -> None:
        self.inner.add_configurations(experiments)

    def next_trial(self):
        while True:
            trial = self.inner.next_trial()
            if trial is None:
                return None
            config = _trial_config(self.spec, trial.config)
            if config in self.table:
                return trial
            self.skipped.append(self.table.describe(config))
            self.inner.on_trial_complete(trial.trial_id, result=None, error=False)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        return self.inner.is_finished()

    def set_finished(self) -> None:
        self.inner.set_finished()

    def has_checkpoint(self, dirpath: str) -> bool:
        return False

    def save_to_dir(self, dirpath: str, **kwargs) -> None:
        """Nothing to save: a replay is never resumed."""

    def restore_from_dir(self, dirpath: str) -> None:
        raise NotImplementedError("a replay is not resumed")


class _EventLog(tune.Callback):
    """Driver side: every result and every trial end, in the order Tune handled them."""

    def __init__(self, epochs: int, budget: float | None) -> None:
        self.epochs = epochs
        self.budget = budget
        self.rows: list[dict[str, Any]] = []
        self.trial_epochs = 0
        self.ended: set[str] = set()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.trial_epochs += 1
        self.rows.append(self._row("epoch", trial, result))
        if names.is_full_length(result.get(names.METRIC_EPOCH), self.epochs):
            # Its last epoch: it ends here, even if the budget stops the replay on this result.
            self._end(trial, result)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, trial.last_result or {})

    def _end(self, trial, result: dict) -> None:
        if trial.trial_id not in self.ended:
            self.ended.add(trial.trial_id)
            self.rows.append(self._row("end", trial, result))

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.rows.append(self._row("error", trial, trial.last_result or {}))

    def _row(self, kind: str, trial, result: dict) -> dict[str, Any]:
        epoch = result.get(names.METRIC_EPOCH)
        row = {"event": kind, "trial_id": trial.trial_id, "trial_epochs": self.trial_epochs,
               names.METRIC_EPOCH: epoch,
               "full_length": kind == "end" and names.is_full_length(epoch, self.epochs)}
        row.update({k: trial.config.get(k) for k in names.KNOB_PARAMS if k in trial.config})
        row.update({k: v for k, v in result.items() if k in names.TRIAL_METRICS})
        return row


class _BudgetStopper(tune.Stopper):
    """Ends the whole replay once the trial-epochs spent reach the budget."""

    def __init__(self, log: _EventLog) -> None:
        self.log = log

    def __call__(self, trial_id: str, result: dict) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.log.budget is not None and self.log.trial_epochs >= self.log.budget


@dataclass
class ReplayOutcome:
    """What a replay returns.

    ``events`` holds one row per result (``event == "epoch"``) and per trial end (``"end"``,
    ``"error"``) in the order the driver saw them: ``trial_id``, ``trial_epochs`` (spent so far,
    over all trials), ``epoch``, ``full_length`` (on ``end`` rows), the trial's knobs and the
    metrics reported. ``skipped`` lists the proposals the table could not answer.
    """

    spec: SweepSpec
    events: pd.DataFrame
    skipped: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    trial_epochs: int = 0
    errors: list[str] = field(default_factory=list)

    def finished_trials(self) -> pd.DataFrame:
        """One row per trial end, in order; only full-length ones may enter a front."""
        if self.events.empty:
            return self.events
        return self.events[self.events["event"] == "end"].reset_index(drop=True)


def start_local_ray(num_cpus: int | None = None) -> bool:
    """A private local Ray for replays (many CPUs declared: trials only read a table)."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ctrl-C must end a replay, not hand back the part Tune had run as if it were the whole.
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    return connect("local", num_cpus=num_cpus or max(32, os.cpu_count() or 1), num_gpus=0)


def _searcher(spec: SweepSpec, table: ReplayTable, missing: str, spectrum: dict | None) -> SearchAlgorithm:
    search = build_search(spec, spectrum=spectrum, measure=table.measure)
    if isinstance(search, Searcher):
        search = SearchGenerator(search)
    return TableOnlySearch(search, spec, table) if missing == "skip" else search


def replay_sweep(
    spec: SweepSpec,
    curves: pd.DataFrame | ReplayTable,
    *,
    missing: str = "error",
    budget_trial_epochs: float | None = None,
    num_samples: int | None = None,
    spectrum: dict | None = None,
) -> ReplayOutcome:
    """Replay ``spec``'s search and scheduler over a recorded table (no training, no MLflow).

    Args:
        spec: the sweep spec whose searcher and scheduler are built (``seed`` seeds them); its
            resources are ignored: ``max_concurrent`` trials run at once, each taking an equal
            share of the local Ray's CPUs.
        curves: the recorded table (:func:`segcore.tracking.query.load_curves` or :func:`read_curves`).
        missing: ``"error"`` or ``"skip"`` configurations that are not in the table (module docstring).
        budget_trial_epochs: stop the whole replay once this many trial-epochs were spent.
        num_samples: trials to ask for (default: as :func:`segcore.tune.runner.build_tuner` does).
        spectrum: the recorded sweep's ``spectrum.json``, for ``search: {algorithm: spectral}``
            (whose costs then come from the table rather than forward passes).

    Raises:
        ValueError: ``missing="error"`` and the spec may run a configuration the table lacks, or a
            replayed trial failed (the message names it).
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing: {missing!r}; valid: error, skip")
    table = curves if isinstance(curves, ReplayTable) else ReplayTable(curves)
    absent = [m for m in spec.objectives if m not in table.metrics]
    if absent:
        raise ValueError(f"objectives {', '.join(absent)} are not columns of the recorded table "
                         f"(it has {', '.join(table.metrics)})")
    if missing == "error":
        _check_table_covers(spec, table)
    started = start_local_ray()
    try:
        return _run_replay(spec, table, missing, budget_trial_epochs, num_samples, spectrum)
    finally:
        if started:
            import ray

            ray.shutdown()


def _default_samples(spec: SweepSpec) -> int:
    if spec.search.algorithm == "grid" and not spec.search.explicit_points:
        return spec.num_samples
    return spec.num_trials()


def _run_replay(spec: SweepSpec, table: ReplayTable, missing: str, budget: float | None,
                num_samples: int | None, spectrum: dict | None) -> ReplayOutcome:
    import ray

    log = _EventLog(spec.epochs, budget)
    search = _searcher(spec, table, missing, spectrum)
    # Each trial takes an equal share of the declared CPUs, so no more than max_concurrent trial
    # processes ever exist and finished ones are reused (starting a process costs more than a trial).
    share = float(ray.cluster_resources().get("CPU", 1.0)) / spec.max_concurrent
    trainable = tune.with_resources(
        tune.with_parameters(replay_trial, curves=table.curves, knobs=table.knobs,
                             network_config=spec.network_config),
        {"cpu": share})
    storage = tempfile.mkdtemp(prefix="segcore-replay-")
    t0 = time.monotonic()
    try:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space(spec),
            tune_config=tune.TuneConfig(search_alg=search, scheduler=build_scheduler(spec),
                                        num_samples=num_samples or _default_samples(spec),
                                        reuse_actors=True, trial_dirname_creator=lambda t: t.trial_id),
            run_config=tune.RunConfig(name="replay", storage_path=storage, callbacks=[log],
                                      stop=_BudgetStopper(log), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)),
        )
        # The results live in the driver's event log; Tune's own (per-trial files) are not written.
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
        grid = tuner.fit()
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    errors = [str(r.error).strip().splitlines()[-1] for r in grid if r.error is not None]
    if errors:
        raise ValueError(f"{len(errors)} replayed trial(s) failed: {'; '.join(dict.fromkeys(errors))}")
    return ReplayOutcome(spec=spec, events=pd.DataFrame(log.rows),
                         skipped=getattr(search, "skipped", []), elapsed_s=time.monotonic() - t0,
                         trial_epochs=log.trial_epochs)


def exhaustive_front_input(table: ReplayTable, epochs: int) -> pd.DataFrame:
    """The table's full-length configurations, one row each (what an exhaustive sweep finds)."""
    final = table.final_frame()
    return final[[names.is_full_length(e, epochs) for e in final[names.METRIC_EPOCH]]].reset_index(drop=True)

