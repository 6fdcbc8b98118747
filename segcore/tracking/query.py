"""Reading a sweep back out of MLflow: one typed pandas row per trial, the spectrum, report artifacts.

It reads exactly what :class:`segcore.tracking.recorder.SweepRecorder` writes (docs/design.md,
Contracts) — a parent run tagged ``segcore.role=sweep`` and one child run per trial tagged
``segcore.role=trial`` with ``segcore.status``, ``segcore.network`` and ``segcore.node``; every
:data:`~segcore.tracking.schema.KNOB_PARAMS` and the flattened trial config as params; metrics
logged per epoch (step = epoch) with the final values under the same keys.

MLflow stores params as strings (and under pandas 3 ``mlflow.search_runs`` keeps them as strings),
so the types are restored here from :class:`segcore.config.trial.TrialConfig`'s field types: the
knobs ``grid_stride`` and ``block`` come back as integers, ``keep`` and ``lr`` as floats.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from segcore.names import is_full_length
from segcore.tracking import schema
from segcore.tracking.store import resolve_tracking_uri, search_all, tag_filter

if TYPE_CHECKING:  # MLflow is imported lazily: reading the schema or the docs stays light
    from mlflow import MlflowClient
    from mlflow.entities import Experiment, Run

__all__ = [
    "find_experiment",
    "find_sweep_runs",
    "load_curves",
    "load_spectrum",
    "load_sweep_spec",
    "load_trials",
    "log_report_artifacts",
    "runs_frame",
    "trial_runs",
]


# Columns that lead the table, in this order; everything else follows.
_ID_COLUMNS = ("run_id", "trial_id", "sweep", "network", "status", "full_length", "node")
_METRIC_COLUMNS = (
    schema.METRIC_MIOU, schema.METRIC_PIXEL_ACCURACY, schema.METRIC_TRAIN_LOSS, schema.METRIC_EPOCH,
    *schema.COST_METRICS,
)
# Run lifecycle -> our status, for runs the writer has not (yet) tagged with segcore.status.
_RUN_STATUS = {"RUNNING": "running", "SCHEDULED": "running", "FAILED": schema.STATUS_FAILED,
               "KILLED": "killed", "FINISHED": "untagged"}


def _client(tracking_uri: str | None) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri, must_exist=True))


def find_experiment(client: MlflowClient, experiment: str) -> Experiment:
    """The active experiment named ``experiment`` (or with that id).

    Raises:
        ValueError: no such experiment; the message lists the experiments that exist.
    """
    found = client.get_experiment_by_name(experiment)
    if found is None and experiment.isdigit():
        try:
            found = client.get_experiment(experiment)
        except Exception:  # MLflow raises its own exception type for an unknown id
            found = None
    if found is None or found.lifecycle_stage != "active":
        names = sorted(e.name for e in search_all(client.search_experiments))
        raise ValueError(
            f"unknown experiment {experiment!r} in {client.tracking_uri}; "
            f"existing experiments: {', '.join(names) or '(none)'}"
        )
    return found


def find_sweep_runs(client: MlflowClient, experiment_id: str, sweep: str | None = None) -> list[Run]:
    """Parent runs (``segcore.role=sweep``) of an experiment, newest first, optionally one sweep."""
    return search_all(client.search_runs, experiment_ids=[experiment_id],
                      filter_string=_role_filter(schema.ROLE_SWEEP, sweep),
                      order_by=["attributes.start_time DESC"])


def trial_runs(client: MlflowClient, experiment_id: str, sweep: str | None = None) -> list[Run]:
    """Child runs (``segcore.role=trial``) of an experiment, optionally of one sweep."""
    return search_all(client.search_runs, experiment_ids=[experiment_id],
                      filter_string=_role_filter(schema.ROLE_TRIAL, sweep))


def _role_filter(role: str, sweep: str | None) -> str:
    tags = {schema.TAG_ROLE: role}
    if sweep is not None:
        tags[schema.TAG_SWEEP] = sweep
    return tag_filter(tags)


def _param_kinds() -> dict[str, type]:
    """Python type of each flat TrialConfig field that MLflow turns into a string param."""
    from segcore.config.trial import TrialConfig

    kinds: dict[str, type] = {}
    for name, field in TrialConfig.model_fields.items():
        args = [a for a in typing.get_args(field.annotation) if a is not type(None)]
        base = field.annotation if not args else (args[0] if len(args) == 1 else None)
        if typing.get_origin(base) is typing.Literal:
            base = type(typing.get_args(base)[0])
        if base in (int, float, bool, str):
            kinds[name] = base
    # The knobs keep these types even if TrialConfig ever loosens them.
    kinds.update(network=str, backbone=str, loss_at=str, truncation=str, block_mode=str,
                 grid_stride=int, block=int, keep=float, lr=float)
    return kinds


def _none(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value in ("None", "")


def _cast_param(values: pd.Series, kind: type | None) -> pd.Series:
    """One params column (strings) to its type; ``"None"`` and missing become NA."""
    raw = values.where(~values.map(_none), None)
    if kind is str:
        return raw.astype("str").where(raw.notna(), None).astype("string")
    if kind is bool:
        return raw.map(lambda v: None if v is None else str(v).lower() in ("true", "1")).astype("boolean")
    if kind in (int, float):
        num = pd.to_numeric(raw, errors="coerce")
        if kind is int:
            return num.astype("int64") if num.notna().all() else num.astype("Int64")
        return num.astype("float64")
    # Unknown (nested options, tuples): numeric when every value is, else text.
    num = pd.to_numeric(raw, errors="coerce")
    if num.notna().sum() == raw.notna().sum() and raw.notna().any():
        return num.astype("float64")
    return raw.astype("string")


def _status(run: Run) -> str:
    tag = run.data.tags.get(schema.TAG_STATUS)
    return tag if tag else _RUN_STATUS.get(run.info.status, run.info.status.lower())


def runs_frame(runs: Iterable[Run]) -> pd.DataFrame:
    """Trial runs -> one typed row per run (see :func:`load_trials` for the columns)."""
    rows, params = [], []
    for run in runs:
        tags, data = run.data.tags, run.data
        row: dict[str, Any] = {
            "run_id": run.info.run_id,
            "trial_id": tags.get(schema.TAG_TRIAL_ID),
            "sweep": tags.get(schema.TAG_SWEEP),
            "network": tags.get(schema.TAG_NETWORK) or data.params.get("network"),
            "status": _status(run),
            "node": tags.get(schema.TAG_NODE),
            "error": tags.get(schema.TAG_ERROR),
            "run_status": run.info.status,
            "parent_run_id": tags.get("mlflow.parentRunId"),
            "start_time": run.info.start_time,
            "end_time": run.info.end_time,
        }
        row.update(data.metrics)
        rows.append(row)
        params.append(dict(data.params))
    frame = pd.DataFrame(rows)
    pframe = pd.DataFrame(params, index=frame.index)
    kinds = _param_kinds()
    if "network" in pframe.columns:
        frame["network"] = frame["network"].fillna(pframe.pop("network"))
    for name in pframe.columns:
        # A metric never shares a param's name (the recorder keeps them apart); should one, the
        # metric keeps it.
        column = f"param.{name}" if name in frame.columns else name
        frame[column] = _cast_param(pframe[name].astype(object), kinds.get(name))
    return _finish_frame(frame)


def _finish_frame(frame: pd.DataFrame) -> pd.DataFrame:
    for col in ("run_id", "trial_id", "sweep", "status", "node", "error", "run_status", "parent_run_id"):
        if col not in frame.columns:
            frame[col] = pd.Series(dtype="string")
        frame[col] = frame[col].astype("string")
    frame["network"] = frame.get("network", pd.Series(dtype="string", index=frame.index)).astype("string")
    for col in _METRIC_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame else np.nan
        frame[col] = frame[col].astype("float64")
    for knob in schema.KNOB_PARAMS:
        if knob not in frame.columns:
            frame[knob] = pd.Series(pd.NA, index=frame.index, dtype=_KNOB_DTYPES.get(knob, "string"))
    # Full length: completed and ran every configured epoch (segcore.names.is_full_length), for
    # schedulers that report an early-stopped trial as complete. A trial that logged no epoch, or
    # whose schedule is not recorded, counts as its status says.
    planned = pd.to_numeric(frame["epochs"], errors="coerce") if "epochs" in frame.columns else None
    frame["full_length"] = [
        status == schema.STATUS_COMPLETED and _ran_every_epoch(epoch, None if planned is None else planned.iloc[i])
        for i, (status, epoch) in enumerate(zip(frame["status"], frame[schema.METRIC_EPOCH]))
    ]
    frame["full_length"] = frame["full_length"].astype(bool)
    for col in ("start_time", "end_time"):
        frame[col] = pd.to_datetime(pd.to_numeric(frame.get(col), errors="coerce"), unit="ms", utc=True)
    frame["duration_s"] = (frame["end_time"] - frame["start_time"]).dt.total_seconds()
    lead = list(dict.fromkeys([*_ID_COLUMNS, *schema.KNOB_PARAMS, *_METRIC_COLUMNS]))
    rest = sorted(c for c in frame.columns if c not in lead)
    return frame[lead + rest].reset_index(drop=True)


_KNOB_DTYPES = {"grid_stride": "Int64", "block": "Int64", "keep": "float64"}


def _ran_every_epoch(epoch: Any, planned: Any) -> bool:
    """False only when both the last epoch and the planned epochs are known and fall short."""
    if pd.isna(epoch) or planned is None or pd.isna(planned):
        return True
    return is_full_length(float(epoch), int(planned))


def load_trials(
    experiment: str,
    tracking_uri: str | None = None,
    include_partial: bool = False,
    *,
    sweep: str | None = None,
) -> pd.DataFrame:
    """One typed row per trial of an experiment (docs/design.md, Contracts).

    Args:
        experiment: MLflow experiment name (or id).
        tracking_uri: MLflow tracking URI; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
        include_partial: also return trials that did not run every epoch — early stopped, failed,
            killed or still running (their ``status`` and ``full_length`` columns say which).
        sweep: only the trials of this sweep name (an experiment may hold several sweeps).

    Returns:
        Columns ``run_id, trial_id, sweep, network, status, full_length, node``, the knobs
        (``network, backbone, grid_stride, loss_at, keep, truncation, block, block_mode``),
        the metrics (``miou, pixel_accuracy, train_loss, epoch`` and every cost metric), then the
        other params and metrics, ``run_status``, ``parent_run_id``, ``start_time``, ``end_time``,
        ``duration_s``. Knob params are typed (``grid_stride``/``block`` int, ``keep``/``lr`` float,
        names as strings). Rows are ordered by network, grid stride, keep, block.

    Raises:
        FileNotFoundError: the default SQLite store does not exist.
        ValueError: unknown experiment (listing those that exist) or an experiment without trials.
    """
    client = _client(tracking_uri)
    exp = find_experiment(client, experiment)
    runs = trial_runs(client, exp.experiment_id, sweep)
    if not runs:
        where = f" for sweep {sweep!r}" if sweep else ""
        raise ValueError(
            f"experiment {exp.name!r} holds no trial runs{where} (runs tagged "
            f"{schema.TAG_ROLE}={schema.ROLE_TRIAL}): has its sweep started any trial yet?"
        )
    frame = runs_frame(runs)
    if not include_partial:
        frame = frame[frame["full_length"]]
    order = ["network", "grid_stride", "keep", "block", "trial_id"]
    return frame.sort_values(order, na_position="last", kind="stable").reset_index(drop=True)


# The per-epoch metrics of a learning curve, read with their whole history (step = epoch).
_CURVE_METRICS = (schema.METRIC_MIOU, schema.METRIC_TRAIN_LOSS, schema.METRIC_PIXEL_ACCURACY)
# Columns that lead the curves table, in this order (cost metrics follow).
_CURVE_ID_COLUMNS = ("trial_id", "run_id", "sweep", "status", "full_length", "epochs")


def load_curves(
    experiment: str, tracking_uri: str | None = None, *, sweep: str | None = None
) -> pd.DataFrame:
    """One row per trial and epoch: the learning curves of a sweep's trials.

    Every trial that logged at least one epoch is included, whatever its status (``status`` and
    ``full_length`` say how it ended), so a recorded sweep can be replayed epoch by epoch. The
    histories are read with ``MlflowClient.get_metric_history`` (which pages through the store
    itself); the runs are listed page by page through :func:`segcore.tracking.store.search_all`.

    Args:
        experiment: MLflow experiment name (or id).
        tracking_uri: MLflow tracking URI; default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``.
        sweep: only the trials of this sweep name.

    Returns:
        Columns ``trial_id, run_id, sweep, status, full_length, epochs`` (planned), the knobs
        (:data:`segcore.names.KNOB_PARAMS`, typed as in :func:`load_trials`), ``seed``, ``epoch``
        (int, 1-based), ``miou``, ``train_loss``, ``pixel_accuracy`` (NaN where an epoch did not
        log one), ``timestamp`` (when the epoch's mIoU was logged, UTC), then every cost metric
        (constant per trial). Ordered by network, grid stride, keep, block, seed, trial, epoch.

    Raises:
        FileNotFoundError: the default SQLite store does not exist.
        ValueError: unknown experiment, or no trial in it (or in ``sweep``) logged an epoch.
    """
    client = _client(tracking_uri)
    exp = find_experiment(client, experiment)
    runs = trial_runs(client, exp.experiment_id, sweep)
    trials = runs_frame(runs) if runs else pd.DataFrame()
    rows: list[dict[str, Any]] = []
    for run, trial in zip(runs, trials.to_dict("records")):
        rows.extend(_epoch_rows(client, run.info.run_id, trial))
    if not rows:
        where = f" of sweep {sweep!r}" if sweep else ""
        raise ValueError(f"experiment {exp.name!r} holds no trial{where} that logged an epoch "
                         f"({schema.METRIC_MIOU} with step = epoch): has its sweep run any epoch yet?")
    frame = pd.DataFrame(rows)
    frame["epoch"] = frame["epoch"].astype("int64")
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").astype("Int64")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    for column in (*_CURVE_METRICS, *schema.COST_METRICS):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    lead = [*_CURVE_ID_COLUMNS, *schema.KNOB_PARAMS, "seed", "epoch", *_CURVE_METRICS, "timestamp",
            *schema.COST_METRICS]
    order = ["network", "grid_stride", "keep", "block", "seed", "trial_id", "epoch"]
    frame = frame[lead].sort_values(order, na_position="last", kind="stable")
    return frame.reset_index(drop=True)


def _epoch_rows(client: MlflowClient, run_id: str, trial: dict[str, Any]) -> list[dict[str, Any]]:
    """One trial's epochs: its per-epoch histories joined on the step, its cost on every row."""
    fixed = {key: trial.get(key) for key in (*_CURVE_ID_COLUMNS, *schema.KNOB_PARAMS, "seed")}
    fixed["run_id"] = run_id
    fixed.update({key: trial.get(key) for key in schema.COST_METRICS})
    by_epoch: dict[int, dict[str, Any]] = {}
    for key in _CURVE_METRICS:
        # A value logged twice at one step (the final metrics after the last epoch's): the later wins.
        for point in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
            epoch = by_epoch.setdefault(int(point.step), {})
            epoch[key] = point.value
            if key == schema.METRIC_MIOU:
                epoch["timestamp"] = point.timestamp
    return [{**fixed, **{key: None for key in _CURVE_METRICS}, "timestamp": None, **values, "epoch": step}
            for step, values in sorted(by_epoch.items()) if schema.METRIC_MIOU in values and step >= 1]


def _parent_run(client: MlflowClient, experiment: str, sweep: str | None) -> Run:
    exp = find_experiment(client, experiment)
    parents = find_sweep_runs(client, exp.experiment_id, sweep)
    if not parents:
        where = f" named {sweep!r}" if sweep else ""
        raise ValueError(f"experiment {exp.name!r} holds no sweep run{where} "
                         f"(a run tagged {schema.TAG_ROLE}={schema.ROLE_SWEEP})")
    return parents[0]


def _parent_artifact(experiment: str, tracking_uri: str | None, sweep: str | None, path: str) -> str | None:
    """The text of one artifact of the sweep's parent run, or None when it was not logged."""
    client = _client(tracking_uri)
    parent = _parent_run(client, experiment, sweep)
    folder, name = os.path.split(path)
    if name not in {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, folder or None)}:
        return None
    with tempfile.TemporaryDirectory() as tmp, _quiet_downloads():
        return Path(client.download_artifacts(parent.info.run_id, path, tmp)).read_text()


def load_spectrum(
    experiment: str, tracking_uri: str | None = None, *, sweep: str | None = None
) -> dict | None:
    """The ``spectrum.json`` logged on the sweep's parent run (the newest sweep unless named).

    Returns:
        The spectral analysis (the keys of ``segcore spectrum``'s ``spectrum.json``), or ``None`` when the sweep ran
        without one.
    """
    text = _parent_artifact(experiment, tracking_uri, sweep, schema.ARTIFACT_SPECTRUM_JSON)
    return None if text is None else json.loads(text)


def load_sweep_spec(
    experiment: str, tracking_uri: str | None = None, *, sweep: str | None = None
) -> dict | None:
    """The resolved sweep specification (``sweep.yaml``) logged on the sweep's parent run, or None."""
    import yaml

    text = _parent_artifact(experiment, tracking_uri, sweep, schema.ARTIFACT_SPEC)
    return None if text is None else yaml.safe_load(text)


@contextlib.contextmanager
def _quiet_downloads():
    """No progress bar for a one-file download (MLflow reads this variable on every call)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def log_report_artifacts(
    experiment: str,
    directory: str | os.PathLike,
    tracking_uri: str | None = None,
    *,
    sweep: str | None = None,
    artifact_path: str = "report",
) -> str:
    """Log every file of ``directory`` under ``artifact_path`` of the sweep's parent run.

    Returns:
        The parent run's id (the newest sweep of the experiment unless ``sweep`` names one).
    """
    client = _client(tracking_uri)
    parent = _parent_run(client, experiment, sweep)
    client.log_artifacts(parent.info.run_id, str(directory), artifact_path=artifact_path)
    return parent.info.run_id
