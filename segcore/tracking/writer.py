"""Record a sweep in MLflow: one parent run per sweep, one nested child run per trial.

:class:`SweepRecorder` is the only writer of the MLflow record (COMMON contract 3). It is built
for the failure modes of a long sweep (DESIGN.md §4, issue 7) that Ray's stock
``MLflowLoggerCallback`` gets wrong:

* **Idempotent by tags.** The parent run is found by ``segcore.sweep`` + ``segcore.role=sweep``,
  a trial's run by ``segcore.sweep`` + ``segcore.trial_id``. A restarted driver (``--resume``),
  a retried trial or a second process writing the same sweep finds the runs that exist instead of
  opening duplicates; :meth:`SweepRecorder.reconcile` ends every run left RUNNING.
* **Outage tolerant.** Every write goes into an ordered in-memory queue that one background
  thread drains. A write that fails because the tracking server (or its database) is unreachable
  stays at the head of the queue and is retried with exponential backoff, so nothing is lost and
  the order of writes is kept; the sweep itself never waits on, or dies of, the tracking server.
  Metrics carry the timestamp of the moment they were reported, so a write that reached the
  server but whose answer was lost is deduplicated by the store when it is sent again.
* **Few calls.** Consecutive per-epoch metrics are coalesced into one ``log_batch`` per run.
* **Process-agnostic.** Only :class:`mlflow.MlflowClient` is used (no fluent global "active
  run"), so recorders may live in the Tune driver and in trial workers at once; a recorder
  pickles to its settings and reconnects on the other side.

The default store is ``sqlite:///mlflow.db`` in the working directory; ``file://`` stores are
refused (MLflow 3.17 needs ``MLFLOW_ALLOW_FILE_STORE=true`` for them and they are not safe for
concurrent writers).
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import math
import os
import tempfile
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from segcore.tracking import schema

__all__ = [
    "DEFAULT_TRACKING_URI",
    "SweepRecorder",
    "flatten_config",
    "png_bytes",
    "resolve_tracking_uri",
    "trial_artifacts",
]

_log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"

# MLflow statuses a trial's run ends with, by segcore status. An early-stopped trial ended
# normally (the scheduler chose to stop it): FINISHED, told apart by the segcore.status tag.
_RUN_STATUS = {
    schema.STATUS_COMPLETED: "FINISHED",
    schema.STATUS_EARLY_STOPPED: "FINISHED",
    schema.STATUS_FAILED: "FAILED",
}
_SWEEP_STATUSES = ("FINISHED", "FAILED", "KILLED")

# MLflow limits per log_batch request (mlflow.utils.validation).
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100
_MAX_TAGS_PER_BATCH = 100
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 5000

# Keys of a Ray Tune result that are bookkeeping, not measurements.
_NOT_METRICS = frozenset({
    "pid", "timestamp", "date", "hostname", "node_ip", "trial_id", "experiment_id",
    "experiment_tag", "done", "should_checkpoint", "checkpoint_dir_name", "config",
})

# Error codes for which sending the same request again cannot succeed.
_PERMANENT_CODES = frozenset({
    "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
    "BAD_REQUEST", "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED",
    "MALFORMED_REQUEST", "ENDPOINT_NOT_FOUND", "CUSTOMER_UNAUTHORIZED",
})
# MLflow's own HTTP retries (7 with exponential backoff by default: minutes inside one call) are
# cut short so that this module's queue sees an outage at once and retries it itself, without
# blocking a trial start or the order of writes. Set only when the user did not set them.
_MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

# A writer thread with nothing to do for this long ends; the next write starts another.
_IDLE_EXIT_S = 30.0

# Errors that are not outages but may pass (e.g. an HTTP 500): retried a few times only, so a
# request the server can never accept does not block the queue forever.
_MAX_OTHER_ATTEMPTS = 5


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else the SQLite default.

    A relative SQLite path is made absolute against the current directory, so a recorder that is
    pickled into a Ray worker (whose working directory is the trial's) writes the same database.

    Raises:
        ValueError: for ``file://`` (or bare path) stores, naming the alternatives.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    scheme = uri.split(":", 1)[0].lower() if "://" in uri or uri.startswith("sqlite:") else ""
    if scheme in ("", "file"):
        raise ValueError(
            f"tracking_uri: {uri!r} is an MLflow file store, which segcore does not use (MLflow "
            "3.17 refuses it without MLFLOW_ALLOW_FILE_STORE=true, and it is unsafe with "
            f"concurrent trial writers). Use {DEFAULT_TRACKING_URI!r} (the default), another "
            "'sqlite:////abs/path.db', 'postgresql://...' or a tracking server 'http://host:5000'."
        )
    if scheme == "sqlite":
        prefix = "sqlite:///"
        path = uri[len(prefix):] if uri.startswith(prefix) else ""
        if path and path != ":memory:" and not path.startswith("/"):
            uri = prefix + str(Path(path).resolve())
    return uri


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
    return {k: v[:_MAX_PARAM_VALUE] for k, v in flat.items()}


def png_bytes(image: np.ndarray) -> bytes:
    """PNG-encode an (H, W, 3) or (H, W) uint8 array (e.g. ``TrialResult.samples``)."""
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"image: expected a uint8 (H, W) or (H, W, 3) array, got {array.dtype} "
                         f"{array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def trial_artifacts(result: Any) -> dict[str, bytes]:
    """The per-trial artifacts of a ``segcore.train.TrialResult``: per-class IoU JSON, sample PNG."""
    artifacts: dict[str, bytes] = {}
    per_class = getattr(result, "per_class_iou", None)
    if per_class:
        artifacts[schema.ARTIFACT_PER_CLASS_IOU] = json.dumps(per_class, indent=2).encode()
    samples = getattr(result, "samples", None)
    if samples is not None:
        artifacts[schema.ARTIFACT_SAMPLES] = png_bytes(samples)
    return artifacts


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def _error_kind(exc: BaseException) -> str:
    """``"outage"`` (retry until it passes), ``"transient"`` (retry a few times) or ``"permanent"``."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        code = str(exc.error_code)
        message = str(exc.message) if hasattr(exc, "message") else str(exc)
        if code in _PERMANENT_CODES:
            return "permanent"
        if code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"):
            return "outage"
        # The REST client wraps connection failures (refused, reset, too many 5xx) this way.
        if message.startswith("API request to") or "database is locked" in message:
            return "outage"
        return "transient"
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return "outage"
    text = f"{type(exc).__name__}: {exc}"
    if "OperationalError" in text or "database is locked" in text or "Connection" in text:
        return "outage"
    return "transient"


@dataclass
class _Op:
    """One queued write. ``key`` is the trial id, or None for the sweep's parent run."""

    kind: str
    key: str | None
    payload: dict[str, Any] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    result: str = ""
    attempts: int = 0


@dataclass
class _TrialState:
    run_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)    # params this recorder was given
    logged: dict[str, str] = field(default_factory=dict)    # params known to be on the run
    last: dict[str, tuple[int, float]] = field(default_factory=dict)  # metric -> (step, value)
    last_step: int = 0


class SweepRecorder:
    """The MLflow record of one sweep (COMMON contract 3). Thread-safe; never raises into the sweep.

    Args:
        tracking_uri: MLflow tracking URI (None: ``$MLFLOW_TRACKING_URI`` or
            ``sqlite:///mlflow.db``); ``file://`` stores are refused.
        experiment: MLflow experiment name (created when missing).
        sweep_name: the sweep's name; with ``experiment`` it identifies the parent run.
        retry_initial_s: first backoff after a failed write; doubles up to ``retry_max_s``.
        retry_max_s: the longest wait between two attempts during an outage.
            (MLflow's own HTTP retries are shortened through ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``
            etc. unless set in the environment: this queue does the retrying.)
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
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.experiment = experiment
        self.sweep_name = sweep_name
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.sync_timeout_s = sync_timeout_s
        self.flush_at_exit_s = flush_at_exit_s
        self._setup()

    # -- pickling: a recorder travels to Ray workers as its settings --------------------------
    def __getstate__(self) -> dict[str, Any]:
        keys = ("tracking_uri", "experiment", "sweep_name", "retry_initial_s", "retry_max_s",
                "sync_timeout_s", "flush_at_exit_s")
        state = {k: getattr(self, k) for k in keys}
        # Ids already resolved travel too: the copy skips those look-ups.
        state["ids"] = (self._experiment_id, self._parent_run_id)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        ids = state.pop("ids", (None, None))
        self.__dict__.update(state)
        self._setup()
        self._experiment_id, self._parent_run_id = ids

    def _setup(self) -> None:
        for name, value in _MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        self._lock = threading.Condition(threading.RLock())
        self._queue: deque[_Op] = deque()
        self._busy = False          # the worker holds ops taken from the queue
        self._healthy = True        # False while the store is unreachable
        self._closed = False
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._experiment_id: str | None = None
        self._parent_run_id: str | None = None
        self._parent_known = False  # children of the parent were listed once (prefetch)
        self._trials: dict[str, _TrialState] = {}
        self._tmpdir: str | None = None
        self.stats = {"calls": 0, "retries": 0, "dropped": 0, "queued": 0}
        self.errors: list[str] = []  # writes given up on (permanent errors), for the report
        ref = weakref.ref(self)
        atexit.register(lambda: (r := ref()) is not None and r._at_exit())

    # -- public API (contract 3) ----------------------------------------------------------------
    @property
    def parent_run_id(self) -> str | None:
        """The sweep's parent run id once known."""
        return self._parent_run_id

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
                payload["spectrum_png"] = _read_file(spectrum_png)
            except OSError as exc:  # a missing plot must not stop the sweep
                self._note_error(f"spectrum_png {spectrum_png!r}: {exc}")
        return self._submit_and_wait(_Op("sweep", None, payload))

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
        payload = {"params": params, "node": node,
                   "network": str(config.get("network", ""))}
        with self._lock:
            state = self._trials.setdefault(str(trial_id), _TrialState())
            state.params.update(params)
            known = state.run_id or ""
        op = _Op("trial", str(trial_id), payload)
        if not wait:
            self._submit(op)
            return known
        return self._submit_and_wait(op)

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
                files[name] = _artifact_bytes(value)
            except (OSError, ValueError) as exc:  # a bad artifact must not end the sweep
                self._note_error(f"artifact {name!r} of trial {trial_id}: {exc}")
        tags = {schema.TAG_STATUS: status}
        if error:
            tags[schema.TAG_ERROR] = str(error)[:_MAX_TAG_VALUE]
        if status == schema.STATUS_EARLY_STOPPED:
            tags[schema.TAG_EARLY_STOPPED] = "true"
        self._submit(_Op("finish", trial_id, {"tags": tags, "files": files,
                                              "run_status": _RUN_STATUS[status]}))

    def reconcile(self, live_trial_ids: set[str] | None = None) -> None:
        """End every child run of this sweep still RUNNING whose trial is not in
        ``live_trial_ids`` (all of them when None): run KILLED, ``segcore.status`` failed,
        ``segcore.error`` says it was interrupted. Runs after the writes queued before it."""
        live = None if live_trial_ids is None else {str(t) for t in live_trial_ids}
        self._submit(_Op("reconcile", None, {"live": live}))

    def end_sweep(self, status: str = "FINISHED") -> None:
        """End the parent run with ``status`` (FINISHED, FAILED or KILLED)."""
        if status not in _SWEEP_STATUSES:
            raise ValueError(f"status: {status!r} is not one of {list(_SWEEP_STATUSES)}")
        self._submit(_Op("end", None, {"status": status}))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued write reached the tracking store.

        Returns:
            True when the queue is empty, False when ``timeout`` (seconds) passed first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._queue or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(remaining if remaining is not None else 1.0)
        return True

    def pending(self) -> int:
        """Number of writes not yet in the tracking store."""
        with self._lock:
            return len(self._queue) + (1 if self._busy else 0)

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the background thread. Returns False if writes are still pending."""
        ok = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)
        return ok

    # -- queueing ---------------------------------------------------------------------------
    def _queue_metrics(self, trial_id: str, metrics: Mapping[str, Any], step: int | None,
                       final: bool) -> None:
        timestamp = _now_ms()
        with self._lock:
            state = self._trials.setdefault(trial_id, _TrialState())
            forbidden = set(state.params) | set(schema.KNOB_PARAMS) | _config_fields()
            if step is None:
                epoch = metrics.get(schema.METRIC_EPOCH)
                step = int(epoch) if _is_number(epoch) and math.isfinite(epoch) else state.last_step
            rows: list[tuple[str, float, int, int]] = []
            for key, value in metrics.items():
                key = str(key)
                if (not _is_number(value) or key in forbidden or key in _NOT_METRICS
                        or key.startswith("config/")):
                    continue
                value = float(value)
                previous = state.last.get(key)
                if final and previous is not None and previous[0] == step and (
                        previous[1] == value or (math.isnan(value) and math.isnan(previous[1]))):
                    continue  # the final value is the last epoch's: logged already
                state.last[key] = (step, value)
                rows.append((key, value, timestamp, step))
            state.last_step = max(state.last_step, step)
        if rows:
            self._submit(_Op("metrics", trial_id, {"rows": rows, "final": final}))

    def _submit(self, op: _Op) -> _Op:
        with self._lock:
            if self._closed:
                self._closed = False  # writes after close() reopen the recorder
            self._queue.append(op)
            self.stats["queued"] += 1
            self._ensure_thread()
            self._lock.notify_all()
        return op

    def _submit_and_wait(self, op: _Op) -> str:
        self._submit(op)
        deadline = time.monotonic() + self.sync_timeout_s
        while not op.done.is_set():
            with self._lock:
                healthy = self._healthy
            if not healthy or time.monotonic() >= deadline:
                break
            op.done.wait(0.05)
        return op.result

    def _ensure_thread(self) -> None:
        # Called with the lock held; the thread clears self._thread under the lock as it ends.
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._drain, name="segcore-mlflow-writer",
                                            daemon=True)
            self._thread.start()

    def _at_exit(self) -> None:
        if self.pending() and not self.flush(self.flush_at_exit_s):
            _log.warning("segcore tracking: %d MLflow writes to %s could not be sent before exit",
                         self.pending(), self.tracking_uri)

    def _note_error(self, message: str) -> None:
        self.errors.append(message)
        self.stats["dropped"] += 1
        _log.warning("segcore tracking: %s", message)

    # -- the background writer ----------------------------------------------------------------
    def _drain(self) -> None:
        delay = self.retry_initial_s
        while True:
            with self._lock:
                idle_since = time.monotonic()
                while not self._queue and not self._closed:
                    if time.monotonic() - idle_since > _IDLE_EXIT_S:
                        break
                    self._lock.wait(_IDLE_EXIT_S)
                if not self._queue:
                    # Closed, or idle: the thread ends (a reused Ray worker runs many trials,
                    # each with a recorder) and the next write starts a new one.
                    self._thread = None
                    return
                batch = self._take_batch()
                self._busy = True
            try:
                self._apply(batch)
            except Exception as exc:  # noqa: BLE001 - classify, never let it escape
                kind = _error_kind(exc)
                head = batch[0]
                head.attempts += 1
                give_up = kind == "permanent" or (
                    kind == "transient" and head.attempts >= _MAX_OTHER_ATTEMPTS)
                with self._lock:
                    self._busy = False
                    if give_up:
                        for op in batch:
                            op.done.set()
                        self._note_error(f"{head.kind} write for {head.key or 'sweep'} dropped "
                                         f"after {head.attempts} attempt(s): {exc}")
                    else:
                        self._healthy = False
                        self.stats["retries"] += 1
                        self._queue.extendleft(reversed(batch))  # back to the head, in order
                        if head.attempts in (1, 10) or head.attempts % 50 == 0:
                            _log.warning("segcore tracking: %s unreachable (%s); retrying in "
                                         "%.1fs, %d writes queued", self.tracking_uri,
                                         str(exc).splitlines()[0][:200], delay,
                                         len(self._queue))
                        self._lock.wait(delay)
                        delay = min(delay * 2, self.retry_max_s)
                    self._lock.notify_all()
                continue
            delay = self.retry_initial_s
            with self._lock:
                self._busy = False
                self._healthy = True
                for op in batch:
                    op.done.set()
                self._lock.notify_all()

    def _take_batch(self) -> list[_Op]:
        """The head op, or the run of consecutive metric ops at the head (one log_batch per run)."""
        first = self._queue.popleft()
        batch = [first]
        if first.kind == "metrics":
            count = len(first.payload["rows"])
            while (self._queue and self._queue[0].kind == "metrics"
                   and count + len(self._queue[0].payload["rows"]) <= _MAX_METRICS_PER_BATCH):
                op = self._queue.popleft()
                count += len(op.payload["rows"])
                batch.append(op)
        return batch

    def _apply(self, batch: list[_Op]) -> None:
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
            self._write_end(head.payload["status"])
        else:  # pragma: no cover - programming error
            raise RuntimeError(f"unknown op {head.kind}")

    # -- MLflow calls (background thread only) --------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.stats["calls"] += 1
        return fn(*args, **kwargs)

    @property
    def client(self) -> Any:
        """The :class:`mlflow.MlflowClient` (created on first use)."""
        if self._client is None:
            from mlflow import MlflowClient

            if self.tracking_uri.startswith("sqlite:///"):
                _new_sqlite_store(Path(self.tracking_uri[len("sqlite:///"):]))
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _experiment(self) -> str:
        if self._experiment_id is not None:
            return self._experiment_id
        from mlflow.exceptions import MlflowException

        client = self.client
        exp = self._call(client.get_experiment_by_name, self.experiment)
        if exp is None:
            location = None
            if self.tracking_uri.startswith("sqlite:///"):
                # Beside the database, not in whatever directory the first writer runs in.
                db = Path(self.tracking_uri[len("sqlite:///"):])
                location = str(db.parent / "mlruns" / _safe_name(self.experiment))
            try:
                self._experiment_id = self._call(client.create_experiment, self.experiment,
                                                 artifact_location=location)
                return self._experiment_id
            except MlflowException as exc:
                if str(exc.error_code) != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = self._call(client.get_experiment_by_name, self.experiment)  # another writer won
        if exp.lifecycle_stage == "deleted":
            self._call(client.restore_experiment, exp.experiment_id)
        self._experiment_id = exp.experiment_id
        return self._experiment_id

    def _search(self, filter_string: str) -> list[Any]:
        runs: list[Any] = []
        token = None
        while True:
            page = self._call(self.client.search_runs, [self._experiment()], filter_string,
                              max_results=1000, order_by=["attributes.start_time ASC"],
                              page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _sweep_filter(self) -> str:
        return f"tags.`{schema.TAG_SWEEP}` = {_quote(self.sweep_name)}"

    def _find_or_create(self, filter_string: str, create: Callable[[], Any]) -> tuple[Any, bool]:
        """The oldest active run matching ``filter_string``, or a new one; duplicates that a
        concurrent writer (or a retried request) created are deleted, keeping the oldest."""
        found = self._search(filter_string)
        if found:
            self._drop_duplicates(found)
            return found[0], False
        run = self._call(create)
        found = self._search(filter_string)
        if len(found) > 1:
            self._drop_duplicates(found)
            return found[0], found[0].info.run_id == run.info.run_id
        return run, True

    def _drop_duplicates(self, runs: list[Any]) -> None:
        runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        for extra in runs[1:]:
            _log.warning("segcore tracking: deleting duplicate run %s of %s", extra.info.run_id,
                         runs[0].info.run_id)
            self._call(self.client.delete_run, extra.info.run_id)

    def _parent(self) -> str:
        if self._parent_run_id is not None:
            return self._parent_run_id
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        tags = {schema.TAG_ROLE: schema.ROLE_SWEEP, schema.TAG_SWEEP: self.sweep_name,
                MLFLOW_RUN_NAME: self.sweep_name}
        run, _ = self._find_or_create(
            f"{self._sweep_filter()} and tags.`{schema.TAG_ROLE}` = '{schema.ROLE_SWEEP}'",
            lambda: self.client.create_run(self._experiment(), tags=tags,
                                           run_name=self.sweep_name))
        self._parent_run_id = run.info.run_id
        return self._parent_run_id

    def _prefetch_children(self) -> None:
        """List this sweep's trial runs once (a resumed driver finds them all in one call)."""
        children = self._search(f"{self._sweep_filter()} and "
                                f"tags.`{schema.TAG_ROLE}` = '{schema.ROLE_TRIAL}'")
        by_trial: dict[str, list[Any]] = {}
        for run in children:
            by_trial.setdefault(run.data.tags.get(schema.TAG_TRIAL_ID, ""), []).append(run)
        for trial_id, runs in by_trial.items():
            if len(runs) > 1:
                self._drop_duplicates(runs)
            state = self._trial_state(trial_id)
            state.run_id = runs[0].info.run_id
            state.logged = dict(runs[0].data.params)
        self._parent_known = True

    def _write_sweep(self, payload: dict[str, Any]) -> str:
        from mlflow.entities import Metric, Param, RunStatus, RunTag

        import yaml

        client = self.client
        run_id = self._parent()
        run = self._call(client.get_run, run_id)
        if run.info.status != "RUNNING":
            self._call(client.update_run, run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        self._prefetch_children()
        spec = payload["spec"]
        existing = dict(run.data.params)
        params = [Param(k, v) for k, v in flatten_config(spec).items() if k not in existing]
        tags = [RunTag(schema.TAG_ROLE, schema.ROLE_SWEEP), RunTag(schema.TAG_SWEEP, self.sweep_name)]
        metrics: list[Any] = []
        timestamp = _now_ms()
        spectrum = payload.get("spectrum")
        if spectrum is not None:
            for key, value, step in _spectrum_points(spectrum):
                metrics.append(Metric(f"spectrum.{key}", value, timestamp, step))
            for key, value in _spectrum_scalars(spectrum).items():
                if f"spectrum.{key}" not in existing:
                    params.append(Param(f"spectrum.{key}", value))
        self._log_batch(run_id, metrics=metrics, params=params, tags=tags)
        files: dict[str, bytes] = {schema.ARTIFACT_SPEC: yaml.safe_dump(spec, sort_keys=False)
                                   .encode()}
        if spectrum is not None:
            files[schema.ARTIFACT_SPECTRUM_JSON] = json.dumps(spectrum, indent=2).encode()
        if payload.get("spectrum_png") is not None:
            files[schema.ARTIFACT_SPECTRUM_PLOT] = payload["spectrum_png"]
        self._upload(run_id, files)
        return run_id

    def _trial_state(self, trial_id: str) -> _TrialState:
        with self._lock:
            return self._trials.setdefault(trial_id, _TrialState())

    def _run_of(self, trial_id: str) -> str:
        """The trial's run id, finding or creating a bare run when trial_run was not called here."""
        state = self._trial_state(trial_id)
        if state.run_id is None:
            self._write_trial(trial_id, {"params": {}, "node": None, "network": ""}, reopen=False)
        return state.run_id  # type: ignore[return-value]

    def _write_trial(self, trial_id: str, payload: dict[str, Any], reopen: bool = True) -> str:
        """Find or create the trial's run; ``reopen``: a (re)started trial, RUNNING again."""
        from mlflow.entities import Param, RunTag
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        client = self.client
        parent = self._parent()
        state = self._trial_state(trial_id)
        network = payload.get("network") or ""
        name = f"{network}-{trial_id}" if network else str(trial_id)
        restarted = False
        if state.run_id is None:
            tags = {schema.TAG_ROLE: schema.ROLE_TRIAL, schema.TAG_SWEEP: self.sweep_name,
                    schema.TAG_TRIAL_ID: trial_id, MLFLOW_PARENT_RUN_ID: parent,
                    MLFLOW_RUN_NAME: name}
            create = lambda: client.create_run(self._experiment(), tags=tags, run_name=name)  # noqa: E731
            filt = f"{self._sweep_filter()} and tags.`{schema.TAG_TRIAL_ID}` = {_quote(trial_id)}"
            if self._parent_known:
                # Children were listed at start_sweep: a trial not among them is new.
                run, created = self._call(create), True
            else:
                run, created = self._find_or_create(filt, create)
            state.run_id = run.info.run_id
            state.logged = {} if created else dict(run.data.params)
            restarted = reopen and not created
        else:
            restarted = reopen
        run_id = state.run_id
        if restarted:
            # A retried or resumed trial: RUNNING again, last outcome cleared.
            run = self._call(client.get_run, run_id)
            for key in (schema.TAG_STATUS, schema.TAG_ERROR, schema.TAG_EARLY_STOPPED):
                if key in run.data.tags:
                    self._call(client.delete_tag, run_id, key)
            if run.info.status != "RUNNING":
                self._call(client.update_run, run_id, status="RUNNING")
            state.logged = dict(run.data.params)
        logged = state.logged
        params = []
        for key, value in payload["params"].items():
            if key in logged:
                if logged[key] != value:
                    # e.g. the driver's config says device "auto" where the worker logged "cpu".
                    _log.info("segcore tracking: trial %s param %s is %r in MLflow, not %r; kept "
                              "the first value", trial_id, key, logged[key], value)
                continue
            params.append(Param(key, value))
        tags = [RunTag(schema.TAG_ROLE, schema.ROLE_TRIAL)]
        if payload.get("node"):
            tags.append(RunTag(schema.TAG_NODE, str(payload["node"])))
        if network:
            tags.append(RunTag(schema.TAG_NETWORK, network))
        self._log_batch(run_id, params=params, tags=tags)
        logged.update({p.key: p.value for p in params})
        return run_id

    def _write_metrics(self, batch: list[_Op]) -> None:
        from mlflow.entities import Metric

        by_run: dict[str, list[Any]] = {}
        for op in batch:
            run_id = self._run_of(op.key)
            rows = op.payload["rows"]
            if op.payload.get("final") and rows:
                # Final values that equal the run's latest ones (logged per epoch, perhaps by
                # another process) add nothing: not logged twice.
                latest = self._call(self.client.get_run, run_id).data.metrics
                rows = [r for r in rows if not _same(latest.get(r[0]), r[1])]
            by_run.setdefault(run_id, []).extend(
                Metric(key, value, timestamp, step) for key, value, timestamp, step in rows)
        for run_id, metrics in by_run.items():
            self._log_batch(run_id, metrics=metrics)
            # Sent: a retry of this batch must not send them again.
            for op in batch:
                if self._trial_state(op.key).run_id == run_id:
                    op.payload["rows"] = []

    def _write_finish(self, trial_id: str, payload: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        run_id = self._run_of(trial_id)
        self._log_batch(run_id, tags=[RunTag(k, v) for k, v in payload["tags"].items()])
        if payload["files"]:
            self._upload(run_id, payload["files"])
            payload["files"] = {}
        self._call(self.client.set_terminated, run_id, status=payload["run_status"])

    def _write_reconcile(self, live: set[str] | None) -> None:
        from mlflow.entities import RunTag

        running = self._search(f"{self._sweep_filter()} and tags.`{schema.TAG_ROLE}` = "
                               f"'{schema.ROLE_TRIAL}' and attributes.status = 'RUNNING'")
        for run in running:
            trial_id = run.data.tags.get(schema.TAG_TRIAL_ID, "")
            if live is not None and trial_id in live:
                continue
            reason = ("interrupted: the run was still RUNNING when the sweep's driver reconciled "
                      "the record (driver killed, or the trial never reported its end)")
            self._log_batch(run.info.run_id, tags=[RunTag(schema.TAG_STATUS, schema.STATUS_FAILED),
                                                   RunTag(schema.TAG_ERROR, reason)])
            self._call(self.client.set_terminated, run.info.run_id, status="KILLED")

    def _write_end(self, status: str) -> None:
        self._call(self.client.set_terminated, self._parent(), status=status)

    def _log_batch(self, run_id: str, metrics: Iterable[Any] = (), params: Iterable[Any] = (),
                   tags: Iterable[Any] = ()) -> None:
        metrics, params, tags = list(metrics), list(params), list(tags)
        while metrics or params or tags:
            self._call(self.client.log_batch, run_id, metrics=metrics[:_MAX_METRICS_PER_BATCH],
                       params=params[:_MAX_PARAMS_PER_BATCH], tags=tags[:_MAX_TAGS_PER_BATCH])
            metrics = metrics[_MAX_METRICS_PER_BATCH:]
            params = params[_MAX_PARAMS_PER_BATCH:]
            tags = tags[_MAX_TAGS_PER_BATCH:]

    def _upload(self, run_id: str, files: dict[str, bytes | str]) -> None:
        with tempfile.TemporaryDirectory(prefix="segcore-artifacts-") as tmp:
            for name, content in list(files.items()):
                if isinstance(content, str):  # a directory, uploaded as it is
                    self._call(self.client.log_artifacts, run_id, content, name)
                else:
                    path = Path(tmp) / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(content)
                    folder = str(Path(name).parent)
                    self._call(self.client.log_artifact, run_id, str(path),
                               None if folder == "." else folder)
                del files[name]  # uploaded: not again on a retry


# -- helpers ---------------------------------------------------------------------------------

def _new_sqlite_store(db: Path) -> None:
    """Create a missing SQLite store as a copy of an empty, migrated one, cached per MLflow version.

    MLflow builds a new store by running its whole chain of schema migrations: about 8 s of CPU
    on a 2-core machine, paid by every new sweep directory, demo and test before the first run
    opens. The copy takes milliseconds; only the Default experiment's artifact location and times
    are set as MLflow would have set them. Any problem falls back to MLflow's own creation.
    """
    if db.exists() or str(db) == ":memory:":
        return
    import shutil
    import sqlite3

    import mlflow

    try:
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segcore"
        template = cache / f"mlflow-{mlflow.__version__}-empty.db"
        if not template.exists():
            from mlflow import MlflowClient

            cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache, suffix=".db")
            os.close(fd)
            os.unlink(tmp)
            MlflowClient(f"sqlite:///{tmp}").search_experiments()
            os.replace(tmp, template)  # atomic; a concurrent builder's copy is identical
        db.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=db.parent, prefix=f".{db.name}.", suffix=".tmp")
        os.close(fd)
        shutil.copyfile(template, tmp)
        now = _now_ms()
        with sqlite3.connect(tmp) as conn:
            conn.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, "
                         "last_update_time = ? WHERE experiment_id = 0",
                         (str(Path.cwd() / "mlruns" / "0"), now, now))
        conn.close()
        try:
            os.link(tmp, db)  # fails if another writer created the store meanwhile: keep theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    except Exception as exc:  # noqa: BLE001 - MLflow creates the store itself then
        _log.info("segcore tracking: no cached empty store (%s); MLflow creates %s", exc, db)


def _same(a: float | None, b: float) -> bool:
    return a is not None and (a == b or (math.isnan(a) and math.isnan(b)))


def _quote(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"


def _read_file(path: str | os.PathLike[str]) -> bytes:
    return Path(path).read_bytes()


def _artifact_bytes(value: str | bytes | os.PathLike[str] | np.ndarray) -> bytes | str:
    """Artifact content, read at call time so a temporary file may be deleted right after."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, np.ndarray):
        return png_bytes(value)
    path = Path(value)
    if path.is_dir():
        return str(path.resolve())
    return path.read_bytes()


def _plain(value: Any) -> Any:
    """JSON/YAML-safe copy (numpy scalars and arrays, tuples, paths become plain values)."""
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


def _spectrum_points(spectrum: Mapping[str, Any]) -> list[tuple[str, float, int]]:
    """Per-stride (and per-block) curves of ``spectrum.json`` as (name, value, step) points.

    A list as long as ``strides`` is a curve over strides (step = stride) unless its key names
    blocks; a dict of such lists gives ``key.sub`` curves (e.g. ``oracle_miou.soft``).
    """
    axes = {"strides": [int(s) for s in spectrum.get("strides", [])],
            "blocks": [int(b) for b in spectrum.get("blocks", [])]}
    points: list[tuple[str, float, int]] = []

    def add(name: str, values: Any) -> None:
        axis = axes["blocks"] if "block" in name else axes["strides"]
        if (isinstance(values, list) and axis and len(values) == len(axis)
                and all(_is_number(v) or v is None for v in values)):
            points.extend((name, float("nan") if v is None else float(v), step)
                          for v, step in zip(values, axis))

    for key, value in spectrum.items():
        if key in axes:
            continue
        if isinstance(value, Mapping):
            for sub, values in value.items():
                add(f"{key}.{sub}", values)
        else:
            add(key, value)
    return points


def _spectrum_scalars(spectrum: Mapping[str, Any]) -> dict[str, str]:
    """Scalars of ``spectrum.json`` (efficient grid, dataset, split, ...) as parent-run params."""
    out: dict[str, str] = {}
    for key, value in spectrum.items():
        if isinstance(value, Mapping):
            for sub, item in value.items():
                if not isinstance(item, (list, Mapping)):
                    out[f"{key}.{sub}"] = str(item)[:_MAX_PARAM_VALUE]
        elif not isinstance(value, list):
            out[key] = str(value)[:_MAX_PARAM_VALUE]
    return out


_CONFIG_FIELDS: frozenset[str] | None = None


def _config_fields() -> frozenset[str]:
    """TrialConfig's field names: never metric names, even in a recorder that saw no config."""
    global _CONFIG_FIELDS
    if _CONFIG_FIELDS is None:
        try:
            from segcore.config.trial import TrialConfig

            _CONFIG_FIELDS = frozenset(TrialConfig.model_fields)
        except Exception:  # noqa: BLE001 - the writer must work without the trial config
            _CONFIG_FIELDS = frozenset()
    return _CONFIG_FIELDS
