"""Record a sweep in MLflow: one parent run per sweep, one nested child run per trial.

:class:`SweepRecorder` is the only writer of the MLflow record (the layout is in
:mod:`segcore.tracking.schema`; docs/design.md, Contracts). It is built for the failure modes of
a long sweep that Ray's stock ``MLflowLoggerCallback`` gets wrong:

* **Idempotent by tags.** The parent run is found by ``segcore.sweep`` + ``segcore.role=sweep``,
  a trial's run by ``segcore.sweep`` + ``segcore.trial_id`` (:class:`~segcore.tracking.store.RunStore`).
  A restarted driver (``--resume``), a retried trial or a second process writing the same sweep
  finds the runs that exist instead of opening duplicates; :meth:`SweepRecorder.reconcile` ends
  every run left RUNNING.
* **Outage tolerant.** Every write goes through a :class:`~segcore.tracking.queue.WriteQueue`:
  ordered, retried through outages, never raising into the sweep. Metrics carry the timestamp of
  the moment they were reported, so a write that reached the server but whose answer was lost is
  deduplicated by the store when it is sent again.
* **Few calls.** Consecutive per-epoch metrics are coalesced into one ``log_batch`` per run.
* **Process-agnostic.** Only :class:`mlflow.MlflowClient` is used (no fluent global "active
  run"), so recorders may live in the Tune driver and in trial workers at once; a recorder
  pickles to its settings and reconnects on the other side.

The default store is ``sqlite:///mlflow.db`` in the working directory; ``file://`` stores are
refused (:func:`segcore.tracking.store.resolve_tracking_uri`).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from segcore.formatting import jsonable
from segcore.tracking import schema
from segcore.tracking.artifacts import artifact_content
from segcore.tracking.queue import Write, WriteQueue
from segcore.tracking.spectrum import MAX_PARAM_VALUE, is_number, spectrum_points, spectrum_scalars
from segcore.tracking.store import (
    MAX_METRICS_PER_BATCH,
    RunStore,
    configure_http_retries,
    error_kind,
    quote,
    resolve_tracking_uri,
)

__all__ = ["SweepRecorder", "flatten_config"]

_log = logging.getLogger(__name__)

# MLflow statuses a trial's run ends with, by segcore status. An early-stopped trial ended
# normally (the scheduler chose to stop it): FINISHED, told apart by the segcore.status tag.
_RUN_STATUS = {
    schema.STATUS_COMPLETED: "FINISHED",
    schema.STATUS_EARLY_STOPPED: "FINISHED",
    schema.STATUS_FAILED: "FAILED",
}
_SWEEP_STATUSES = ("FINISHED", "FAILED", "KILLED")
_MAX_TAG_VALUE = 5000  # MLflow's limit on a tag value

# Keys of a Ray Tune result that are bookkeeping, not measurements.
_NOT_METRICS = frozenset({
    "pid", "timestamp", "date", "hostname", "node_ip", "trial_id", "experiment_id",
    "experiment_tag", "done", "should_checkpoint", "checkpoint_dir_name", "config",
})

# Tags that say how a trial ended: cleared when the trial starts again.
_OUTCOME_TAGS = (schema.TAG_STATUS, schema.TAG_ERROR, schema.TAG_EARLY_STOPPED)


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts flattened to ``{"a.b": "value"}`` MLflow params (every value a string).

    ``None`` becomes ``"None"``, lists and tuples JSON, so the MLflow compare view and
    ``mlflow.search_runs`` (whose ``params.*`` columns are strings under pandas 3) read them back.
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            nested = flatten_config(value, prefix=f"{name}.")
            flat.update(nested if nested else {name: "{}"})
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(list(value), default=str)
        else:
            flat[name] = str(value)
    return {name: value[:MAX_PARAM_VALUE] for name, value in flat.items()}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _same_value(previous: float | None, value: float) -> bool:
    """Equal, NaN equal to NaN; never equal to a missing value."""
    return previous is not None and (
        previous == value or (math.isnan(previous) and math.isnan(value)))


def _plain(value: Any) -> Any:
    """YAML-safe copy: NumPy scalars and arrays, tuples, sets and paths become plain values."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


_CONFIG_FIELDS: frozenset[str] | None = None


def _config_fields() -> frozenset[str]:
    """TrialConfig's field names: never metric names, even in a recorder that saw no config."""
    global _CONFIG_FIELDS
    if _CONFIG_FIELDS is None:
        from segcore.config.trial import TrialConfig

        _CONFIG_FIELDS = frozenset(TrialConfig.model_fields)
    return _CONFIG_FIELDS


@dataclass
class _TrialState:
    run_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)    # params this recorder was given
    logged: dict[str, str] = field(default_factory=dict)    # params known to be on the run
    last: dict[str, tuple[int, float]] = field(default_factory=dict)  # metric -> (step, value)
    last_step: int = 0


class SweepRecorder:
    """The MLflow record of one sweep. Thread-safe; never raises into the sweep.

    Args:
        tracking_uri: MLflow tracking URI (None: ``$MLFLOW_TRACKING_URI`` or
            ``sqlite:///mlflow.db``); ``file://`` stores are refused.
        experiment: MLflow experiment name (created when missing).
        sweep_name: the sweep's name; with ``experiment`` it identifies the parent run.
        retry_initial_s: first backoff after a failed write; doubles up to ``retry_max_s``.
        retry_max_s: the longest wait between two attempts during an outage.
            (MLflow's own HTTP retries are shortened through ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
            etc. unless set in the environment: the write queue does the retrying.)
        sync_timeout_s: how long :meth:`start_sweep` / :meth:`trial_run` wait for their run id
            while the tracking store answers (they return at once during an outage).
        flush_at_exit_s: how long the interpreter waits at exit for queued writes.

    Example:
        >>> rec = SweepRecorder("sqlite:///mlflow.db", "demo", "demo-sweep")   # doctest: +SKIP
        >>> rec.start_sweep(spec); rec.trial_run("t1", config, node="10.0.0.2")
        >>> rec.log_epoch("t1", {"miou": 0.41, "train_loss": 0.9}, step=1)
        >>> rec.finish_trial("t1", schema.STATUS_COMPLETED, {"miou": 0.41})
        >>> rec.end_sweep(); rec.flush()
    """

    _SETTINGS = ("tracking_uri", "experiment", "sweep_name", "retry_initial_s", "retry_max_s",
                 "sync_timeout_s", "flush_at_exit_s")

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment: str = "segcore",
        sweep_name: str = "sweep",
        *,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
        sync_timeout_s: float = 15.0,
        flush_at_exit_s: float = 60.0,
    ) -> None:
        if not experiment:
            raise ValueError("experiment: must be a non-empty MLflow experiment name")
        if not sweep_name:
            raise ValueError("sweep_name: must be a non-empty name")
        try:
            quote(sweep_name)
        except ValueError as exc:
            raise ValueError(f"sweep_name: {exc}") from None
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment
        self.sweep_name = sweep_name
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.sync_timeout_s = sync_timeout_s
        self.flush_at_exit_s = flush_at_exit_s
        self._setup()

    # -- pickling: a recorder travels to Ray workers as its settings ---------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = {name: getattr(self, name) for name in self._SETTINGS}
        # Ids already resolved travel too: the copy skips those look-ups.
        state["ids"] = (self._store.experiment_id, self._store.parent_run_id)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        ids = state.pop("ids", (None, None))
        self.__dict__.update(state)
        self._setup()
        self._store.experiment_id, self._store.parent_run_id = ids

    def _setup(self) -> None:
        configure_http_retries()
        self._store = RunStore(self.tracking_uri, self.experiment, self.sweep_name)
        self._queue = WriteQueue(
            self._apply, error_kind, target=self.tracking_uri, coalesce_kind="metrics",
            max_weight=MAX_METRICS_PER_BATCH, retry_initial_s=self.retry_initial_s,
            retry_max_s=self.retry_max_s, flush_at_exit_s=self.flush_at_exit_s)
        self._lock = threading.RLock()
        self._trials: dict[str, _TrialState] = {}
        self._children_listed = False  # the parent's children were listed once (start_sweep)

    # -- public API -----------------------------------------------------------------------------
    @property
    def parent_run_id(self) -> str | None:
        """The sweep's parent run id once known."""
        return self._store.parent_run_id

    @property
    def client(self) -> Any:
        """The :class:`mlflow.MlflowClient` (created on first use)."""
        return self._store.client

    @property
    def stats(self) -> dict[str, int]:
        """Counts of MLflow ``calls``, ``retries``, ``dropped`` and ``queued`` writes."""
        return {**self._queue.stats, "calls": self._store.calls}

    @property
    def errors(self) -> list[str]:
        """Writes given up on (permanent errors, unreadable artifacts), for the report."""
        return self._queue.errors

    def start_sweep(self, spec: Mapping[str, Any], spectrum: Mapping[str, Any] | None = None,
                    spectrum_png: str | None = None) -> str:
        """Find or create the sweep's parent run and record the spec and spectral curves.

        Args:
            spec: the resolved sweep specification (logged as ``sweep.yaml`` and flattened params).
            spectrum: ``SpectrumResult.to_dict()`` of the dataset: ``spectrum.json`` artifact, and
                its per-stride curves as metrics with ``step = stride`` (``spectrum.band_energy``,
                ...), per-block curves with ``step = block``.
            spectrum_png: path of the spectral-curve plot (logged as ``spectrum/spectrum.png``).

        Returns:
            The parent run id ("" if the tracking store is unreachable right now; the writes are
            queued and happen when it is back).
        """
        payload: dict[str, Any] = {"spec": _plain(dict(spec))}
        if spectrum is not None:
            payload["spectrum"] = _plain(dict(spectrum))
        if spectrum_png is not None:
            try:
                payload["spectrum_png"] = Path(spectrum_png).read_bytes()
            except OSError as exc:  # a missing plot must not stop the sweep
                self._queue.note_error(f"spectrum_png {spectrum_png!r}: {exc}")
        return self._queue.submit_and_wait(Write("sweep", None, payload), self.sync_timeout_s)

    def trial_run(self, trial_id: str, config: Mapping[str, Any], node: str | None = None, *,
                  wait: bool = True) -> str:
        """Find or create the child run of ``trial_id`` and mark it RUNNING.

        Logs every ``schema.KNOB_PARAMS`` ("None" when absent) and the flattened config as params,
        ``node`` as ``segcore.node`` (None: the tag is left as it is). Calling it again for the
        same trial (a retry, a resumed driver) reuses the run, RUNNING again, its last outcome
        tags cleared. Params already on the run keep their first value.

        Args:
            wait: wait (up to ``sync_timeout_s``) for the run id. ``False`` returns at once (the
                run id if already known, else ""), so a trial worker's training starts while
                MLflow is imported and the run opened in the background.

        Returns:
            The run id ("" while the tracking store is unreachable; writes stay queued).
        """
        params = flatten_config(dict(config))
        for knob in schema.KNOB_PARAMS:
            params.setdefault(knob, "None")
        payload = {"params": params, "node": node, "network": str(config.get("network", ""))}
        with self._lock:
            state = self._trials.setdefault(str(trial_id), _TrialState())
            state.params.update(params)
            known = state.run_id or ""
        write = Write("trial", str(trial_id), payload)
        if not wait:
            self._queue.submit(write)
            return known
        return self._queue.submit_and_wait(write, self.sync_timeout_s)

    def log_epoch(self, trial_id: str, metrics: Mapping[str, Any], step: int) -> None:
        """Queue one epoch's metrics with ``step`` (the epoch). Non-numeric values, Tune
        bookkeeping and keys named like a param (e.g. ``lr``) are left out."""
        self._queue_metrics(str(trial_id), metrics, int(step), final=False)

    def finish_trial(self, trial_id: str, status: str, metrics: Mapping[str, Any] | None = None,
                     error: str | None = None,
                     artifacts: Mapping[str, str | bytes | np.ndarray] | None = None) -> None:
        """End a trial's run: final metrics, ``segcore.status`` tag, artifacts, run status.

        Args:
            trial_id: the trial.
            status: ``schema.STATUS_COMPLETED``/``STATUS_EARLY_STOPPED`` (run FINISHED) or
                ``STATUS_FAILED`` (run FAILED, ``error`` in the ``segcore.error`` tag).
            metrics: final metrics, logged at the trial's last epoch unless already logged there.
            error: why the trial failed.
            artifacts: artifact path -> local file path, bytes, or a uint8 image array (PNG).
        """
        if status not in _RUN_STATUS:
            raise ValueError(f"status: {status!r} is not one of {sorted(_RUN_STATUS)}")
        trial_id = str(trial_id)
        if metrics:
            self._queue_metrics(trial_id, metrics, None, final=True)
        files: dict[str, bytes | str] = {}
        for name, value in (artifacts or {}).items():
            try:
                files[name] = artifact_content(value)
            except (OSError, ValueError) as exc:  # a bad artifact must not end the sweep
                self._queue.note_error(f"artifact {name!r} of trial {trial_id}: {exc}")
        tags = {schema.TAG_STATUS: status}
        if error:
            tags[schema.TAG_ERROR] = str(error)[:_MAX_TAG_VALUE]
        if status == schema.STATUS_EARLY_STOPPED:
            tags[schema.TAG_EARLY_STOPPED] = "true"
        self._queue.submit(Write("finish", trial_id, {"tags": tags, "files": files,
                                                      "run_status": _RUN_STATUS[status]}))

    def reconcile(self, live_trial_ids: set[str] | None = None) -> None:
        """End every child run of this sweep still RUNNING whose trial is not in
        ``live_trial_ids`` (all of them when None): run KILLED, ``segcore.status`` failed,
        ``segcore.error`` says it was interrupted. Runs after the writes queued before it."""
        live = None if live_trial_ids is None else {str(t) for t in live_trial_ids}
        self._queue.submit(Write("reconcile", None, {"live": live}))

    def end_sweep(self, status: str = "FINISHED") -> None:
        """End the parent run with ``status`` (FINISHED, FAILED or KILLED)."""
        if status not in _SWEEP_STATUSES:
            raise ValueError(f"status: {status!r} is not one of {list(_SWEEP_STATUSES)}")
        self._queue.submit(Write("end", None, {"status": status}))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued write reached the tracking store.

        Returns:
            True when the queue is empty, False when ``timeout`` (seconds) passed first.
        """
        return self._queue.flush(timeout)

    def pending(self) -> int:
        """Number of writes not yet in the tracking store."""
        return self._queue.pending()

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the background thread. Returns False if writes are still pending."""
        return self._queue.close(timeout)

    # -- queueing -------------------------------------------------------------------------------
    def _queue_metrics(self, trial_id: str, metrics: Mapping[str, Any], step: int | None,
                       final: bool) -> None:
        timestamp = _now_ms()
        with self._lock:
            state = self._trials.setdefault(trial_id, _TrialState())
            forbidden = set(state.params) | set(schema.KNOB_PARAMS) | _config_fields()
            if step is None:
                epoch = metrics.get(schema.METRIC_EPOCH)
                step = int(epoch) if is_number(epoch) and math.isfinite(epoch) else state.last_step
            rows: list[tuple[str, float, int, int]] = []
            for key, value in metrics.items():
                key = str(key)
                if (not is_number(value) or key in forbidden or key in _NOT_METRICS
                        or key.startswith("config/")):
                    continue
                value = float(value)
                previous = state.last.get(key)
                if final and previous is not None and previous[0] == step and _same_value(
                        previous[1], value):
                    continue  # the final value is the last epoch's: logged already
                state.last[key] = (step, value)
                rows.append((key, value, timestamp, step))
            state.last_step = max(state.last_step, step)
        if rows:
            self._queue.submit(Write("metrics", trial_id, {"rows": rows, "final": final},
                                     weight=len(rows)))

    # -- applying writes (the queue's thread only) ----------------------------------------------
    def _apply(self, batch: list[Write]) -> None:
        head = batch[0]
        if head.kind == "metrics":
            self._write_metrics(batch)
        elif head.kind == "sweep":
            head.result = self._write_sweep(head.payload)
        elif head.kind == "trial":
            head.result = self._write_trial(head.key, head.payload)
        elif head.kind == "finish":
            self._write_finish(head.key, head.payload)
        elif head.kind == "reconcile":
            self._write_reconcile(head.payload["live"])
        elif head.kind == "end":
            self._store.call(self._store.client.set_terminated, self._store.parent(),
                             status=head.payload["status"])
        else:  # pragma: no cover - programming error
            raise RuntimeError(f"unknown write {head.kind}")

    def _trial_state(self, trial_id: str) -> _TrialState:
        with self._lock:
            return self._trials.setdefault(trial_id, _TrialState())

    def _list_children(self) -> None:
        """List this sweep's trial runs once (a resumed driver finds them all in one call)."""
        for trial_id, run in self._store.trial_runs_by_id().items():
            state = self._trial_state(trial_id)
            state.run_id = run.info.run_id
            state.logged = dict(run.data.params)
        self._children_listed = True

    def _write_sweep(self, payload: dict[str, Any]) -> str:
        from mlflow.entities import Metric, Param, RunTag

        import yaml

        store = self._store
        run_id = store.parent()
        run = store.reopen(run_id)
        self._list_children()
        spec = payload["spec"]
        existing = dict(run.data.params)
        params = [Param(k, v) for k, v in flatten_config(spec).items() if k not in existing]
        tags = [RunTag(schema.TAG_ROLE, schema.ROLE_SWEEP),
                RunTag(schema.TAG_SWEEP, self.sweep_name)]
        metrics: list[Any] = []
        timestamp = _now_ms()
        spectrum = payload.get("spectrum")
        if spectrum is not None:
            for key, value, step in spectrum_points(spectrum):
                metrics.append(Metric(f"spectrum.{key}", value, timestamp, step))
            for key, value in spectrum_scalars(spectrum).items():
                if f"spectrum.{key}" not in existing:
                    params.append(Param(f"spectrum.{key}", value))
        store.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        files: dict[str, bytes | str] = {
            schema.ARTIFACT_SPEC: yaml.safe_dump(spec, sort_keys=False).encode()}
        if spectrum is not None:
            files[schema.ARTIFACT_SPECTRUM_JSON] = json.dumps(jsonable(spectrum), indent=2,
                                                                allow_nan=False).encode()
        if payload.get("spectrum_png") is not None:
            files[schema.ARTIFACT_SPECTRUM_PLOT] = payload["spectrum_png"]
        store.upload(run_id, files)
        return run_id

    def _run_of(self, trial_id: str) -> str:
        """The trial's run id, finding or creating a bare run when trial_run was not called here."""
        state = self._trial_state(trial_id)
        if state.run_id is None:
            self._write_trial(trial_id, {"params": {}, "node": None, "network": ""}, reopen=False)
        return state.run_id  # type: ignore[return-value]

    def _write_trial(self, trial_id: str, payload: dict[str, Any], reopen: bool = True) -> str:
        """Find or create the trial's run; ``reopen``: a (re)started trial, RUNNING again."""
        from mlflow.entities import Param, RunTag

        state = self._trial_state(trial_id)
        network = payload.get("network") or ""
        restarted = reopen
        if state.run_id is None:
            name = f"{network}-{trial_id}" if network else str(trial_id)
            # Children listed at start_sweep: a trial not among them is new.
            run, created = self._store.trial_run(trial_id, name, known_new=self._children_listed)
            state.run_id = run.info.run_id
            state.logged = {} if created else dict(run.data.params)
            restarted = reopen and not created
        run_id = state.run_id
        if restarted:
            # A retried or resumed trial: RUNNING again, last outcome cleared.
            state.logged = dict(self._store.reopen(run_id, _OUTCOME_TAGS).data.params)
        params = []
        for key, value in payload["params"].items():
            if key in state.logged:
                if state.logged[key] != value:
                    # e.g. the driver's config says device "auto" where the worker logged "cpu".
                    _log.info("segcore tracking: trial %s param %s is %r in MLflow, not %r; kept "
                              "the first value", trial_id, key, state.logged[key], value)
                continue
            params.append(Param(key, value))
        tags = [RunTag(schema.TAG_ROLE, schema.ROLE_TRIAL)]
        if payload.get("node"):
            tags.append(RunTag(schema.TAG_NODE, str(payload["node"])))
        if network:
            tags.append(RunTag(schema.TAG_NETWORK, network))
        self._store.log_batch(run_id, params=params, tags=tags)
        state.logged.update({p.key: p.value for p in params})
        return run_id

    def _write_metrics(self, batch: list[Write]) -> None:
        from mlflow.entities import Metric

        by_run: dict[str, list[Any]] = {}
        for write in batch:
            run_id = self._run_of(write.key)
            rows = write.payload["rows"]
            if write.payload.get("final") and rows:
                # Final values that equal the run's latest ones (logged per epoch, perhaps by
                # another process) add nothing: not logged twice.
                latest = self._store.call(self._store.client.get_run, run_id).data.metrics
                rows = [row for row in rows if not _same_value(latest.get(row[0]), row[1])]
            by_run.setdefault(run_id, []).extend(
                Metric(key, value, timestamp, step) for key, value, timestamp, step in rows)
        for run_id, metrics in by_run.items():
            self._store.log_batch(run_id, metrics=metrics)
            # Sent: a retry of this batch must not send them again.
            for write in batch:
                if self._trial_state(write.key).run_id == run_id:
                    write.payload["rows"] = []

    def _write_finish(self, trial_id: str, payload: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        run_id = self._run_of(trial_id)
        self._store.log_batch(run_id, tags=[RunTag(k, v) for k, v in payload["tags"].items()])
        if payload["files"]:
            self._store.upload(run_id, payload["files"])
        self._store.call(self._store.client.set_terminated, run_id, status=payload["run_status"])

    def _write_reconcile(self, live: set[str] | None) -> None:
        from mlflow.entities import RunTag

        store = self._store
        running = store.search({schema.TAG_ROLE: schema.ROLE_TRIAL}, status="RUNNING")
        reason = ("interrupted: the run was still RUNNING when the sweep's driver reconciled "
                  "the record (driver killed, or the trial never reported its end)")
        for run in running:
            trial_id = run.data.tags.get(schema.TAG_TRIAL_ID, "")
            if live is not None and trial_id in live:
                continue
            store.log_batch(run.info.run_id, tags=[RunTag(schema.TAG_STATUS, schema.STATUS_FAILED),
                                                   RunTag(schema.TAG_ERROR, reason)])
            store.call(store.client.set_terminated, run.info.run_id, status="KILLED")
