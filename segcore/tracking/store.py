"""The MLflow store a sweep is recorded in: the tracking URI, paging, and find-or-create of runs.

One owner each for:

* **the tracking URI** (:func:`resolve_tracking_uri`): the argument, else
  ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``; relative SQLite paths made absolute;
  ``file://`` stores refused (MLflow 3.17 needs ``MLFLOW_ALLOW_FILE_STORE=true`` for them and
  they are not safe for concurrent writers);
* **filter strings and paging** (:func:`quote`, :func:`tag_filter`, :func:`search_all`): every
  value put in an MLflow filter string is quoted here, and every ``search_*`` call is read page
  by page here;
* **finding or creating** the experiment, the sweep's parent run and a trial's child run
  (:class:`RunStore`), identified by tags so that a restarted driver, a retried trial or a second
  process finds the runs that exist; duplicates a concurrent writer created are deleted, keeping
  the oldest.

Importing this module does not import MLflow.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from segcore.tracking import schema

__all__ = [
    "DEFAULT_TRACKING_URI",
    "RunStore",
    "error_kind",
    "new_sqlite_store",
    "quote",
    "resolve_tracking_uri",
    "search_all",
]

_log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_SQLITE_PREFIX = "sqlite:///"
_PAGE_SIZE = 1000

# MLflow limits per log_batch request (mlflow.utils.validation).
MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100
_MAX_TAGS_PER_BATCH = 100

# Error codes for which sending the same request again cannot succeed.
_PERMANENT_CODES = frozenset({
    "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
    "BAD_REQUEST", "INVALID_STATE", "PERMISSION_DENIED", "UNAUTHENTICATED",
    "MALFORMED_REQUEST", "ENDPOINT_NOT_FOUND", "CUSTOMER_UNAUTHORIZED",
})

# MLflow's own HTTP retries (7 with exponential backoff by default: minutes inside one call) are
# cut short so that the write queue sees an outage at once and retries it itself, without
# blocking a trial start or the order of writes. Set only when the user did not set them.
_MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def resolve_tracking_uri(uri: str | None = None, *, must_exist: bool = False) -> str:
    """The tracking URI to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else the SQLite default.

    A relative SQLite path is made absolute against the current directory, so a recorder that is
    pickled into a Ray worker (whose working directory is the trial's) writes the same database.

    Args:
        uri: the URI asked for (None: the environment or the default).
        must_exist: a SQLite store must already exist (a reader: MLflow would silently create an
            empty one).

    Raises:
        ValueError: for ``file://`` (or bare path) stores, naming the alternatives.
        FileNotFoundError: ``must_exist`` and the URI names a SQLite file that is not there.
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
    path = sqlite_path(uri)
    if path is not None and str(path) != ":memory:":
        if not path.is_absolute():
            path = path.resolve()
            uri = _SQLITE_PREFIX + str(path)
        if must_exist and not path.exists():
            raise FileNotFoundError(
                f"no MLflow store at {path} (tracking URI {uri!r}): run a sweep first, "
                "or pass --tracking-uri / tracking_uri= to point at the store that holds it"
            )
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, None for any other store."""
    if not uri.startswith(_SQLITE_PREFIX) or len(uri) == len(_SQLITE_PREFIX):
        return None
    return Path(uri[len(_SQLITE_PREFIX):])


def quote(value: Any) -> str:
    """``value`` as a string literal of an MLflow filter string.

    MLflow's filter parser takes the text between the quotes as it is (no escape sequences:
    ``'it\\'s'`` would match the text ``it\\'s``), so a value holding ``'`` is put in double
    quotes and any other in single quotes.

    Raises:
        ValueError: the value holds both ``'`` and ``"``, which no MLflow filter can match.
    """
    text = str(value)
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    raise ValueError(f"{text!r}: an MLflow filter cannot match a value holding both ' and \"")


def tag_filter(tags: dict[str, str]) -> str:
    """An MLflow filter string matching runs whose tags have these values (tag name -> value)."""
    return " and ".join(f"tags.`{name}` = {quote(value)}" for name, value in tags.items())


def search_all(search: Callable[..., Any], **kwargs: Any) -> list[Any]:
    """Every page of an MLflow ``search_runs`` / ``search_experiments`` call."""
    found: list[Any] = []
    token = None
    while True:
        page = search(max_results=_PAGE_SIZE, page_token=token, **kwargs)
        found.extend(page)
        token = page.token
        if not token:
            return found


def configure_http_retries() -> None:
    """Shorten MLflow's own HTTP retries (unless set in the environment): the queue retries."""
    for name, value in _MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)


def error_kind(exc: BaseException) -> str:
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


def new_sqlite_store(db: Path) -> None:
    """Create a missing SQLite store as a copy of an empty, migrated one, cached per MLflow version.

    MLflow builds a new store by running its whole chain of schema migrations: about 8 s of CPU
    on a 2-core machine, paid by every new sweep directory, demo and test before the first run
    opens. The copy takes milliseconds; only the Default experiment's artifact location and times
    are set (in MLflow's own ``experiments`` table) as MLflow would have set them. Any problem
    falls back to MLflow's own creation.
    """
    if db.exists() or str(db) == ":memory:":
        return
    try:
        template = _empty_store_template()
        _copy_template(template, db)
    except Exception as exc:  # noqa: BLE001 - MLflow creates the store itself then
        _log.info("segcore tracking: no cached empty store (%s); MLflow creates %s", exc, db)


def _empty_store_template() -> Path:
    """The cached empty, migrated store of this MLflow version (built on first use)."""
    import mlflow

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segcore"
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if not template.exists():
        cache.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache, suffix=".db")
        os.close(fd)
        os.unlink(tmp)
        mlflow.MlflowClient(f"{_SQLITE_PREFIX}{tmp}").search_experiments()
        os.replace(tmp, template)  # atomic; a concurrent builder's copy is identical
    return template


def _copy_template(template: Path, db: Path) -> None:
    import shutil
    import sqlite3

    db.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=db.parent, prefix=f".{db.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(template, tmp)
        now = int(time.time() * 1000)
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


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "experiment"


class RunStore:
    """One sweep's runs in one MLflow store: the experiment, the parent run, the trials' runs.

    Every MLflow call goes through :meth:`call` (counted in :attr:`calls`). Nothing here retries:
    errors reach the caller (the write queue classifies them with :func:`error_kind`).

    Args:
        tracking_uri: a resolved tracking URI (:func:`resolve_tracking_uri`).
        experiment: MLflow experiment name (created, or restored when deleted, on first use).
        sweep_name: the sweep's name, tagged on the parent and every child run.
    """

    def __init__(self, tracking_uri: str, experiment: str, sweep_name: str) -> None:
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.sweep_name = sweep_name
        self.calls = 0
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._client: Any = None

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return fn(*args, **kwargs)

    @property
    def client(self) -> Any:
        """The :class:`mlflow.MlflowClient` (created on first use)."""
        if self._client is None:
            from mlflow import MlflowClient

            db = sqlite_path(self.tracking_uri)
            if db is not None:
                new_sqlite_store(db)
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def experiment_of_sweep(self) -> str:
        """The experiment's id, found, restored or created."""
        if self.experiment_id is not None:
            return self.experiment_id
        from mlflow.exceptions import MlflowException

        client = self.client
        found = self.call(client.get_experiment_by_name, self.experiment)
        if found is None:
            location = None
            db = sqlite_path(self.tracking_uri)
            if db is not None:
                # Beside the database, not in whatever directory the first writer runs in.
                location = str(db.parent / "mlruns" / _safe_name(self.experiment))
            try:
                self.experiment_id = self.call(client.create_experiment, self.experiment,
                                               artifact_location=location)
                return self.experiment_id
            except MlflowException as exc:
                if str(exc.error_code) != "RESOURCE_ALREADY_EXISTS":
                    raise
                # Another writer created it first.
                found = self.call(client.get_experiment_by_name, self.experiment)
        if found.lifecycle_stage == "deleted":
            self.call(client.restore_experiment, found.experiment_id)
        self.experiment_id = found.experiment_id
        return self.experiment_id

    def search(self, tags: dict[str, str], status: str | None = None) -> list[Any]:
        """This sweep's runs with these tag values (oldest first), optionally in one run status."""
        filter_string = tag_filter({schema.TAG_SWEEP: self.sweep_name, **tags})
        if status is not None:
            filter_string += f" and attributes.status = {quote(status)}"
        return search_all(lambda **page: self.call(self.client.search_runs, **page),
                          experiment_ids=[self.experiment_of_sweep()],
                          filter_string=filter_string, order_by=["attributes.start_time ASC"])

    def find_or_create(self, tags: dict[str, str], create: Callable[[], Any]) -> tuple[Any, bool]:
        """The oldest active run of this sweep with these tag values, or a new one (``create``);
        duplicates that a concurrent writer (or a retried request) created are deleted, keeping
        the oldest. Returns the run and whether it was created here."""
        found = self.search(tags)
        if found:
            self.drop_duplicates(found)
            return found[0], False
        run = self.call(create)
        found = self.search(tags)
        if len(found) > 1:
            self.drop_duplicates(found)
            return found[0], found[0].info.run_id == run.info.run_id
        return run, True

    def drop_duplicates(self, runs: list[Any]) -> None:
        """Delete all but the oldest of ``runs`` (sorted in place, the kept one first)."""
        runs.sort(key=lambda r: (r.info.start_time or 0, r.info.run_id))
        for extra in runs[1:]:
            _log.warning("segcore tracking: deleting duplicate run %s of %s", extra.info.run_id,
                         runs[0].info.run_id)
            self.call(self.client.delete_run, extra.info.run_id)

    def parent(self) -> str:
        """The sweep's parent run id, found or created."""
        if self.parent_run_id is not None:
            return self.parent_run_id
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        tags = {schema.TAG_ROLE: schema.ROLE_SWEEP, schema.TAG_SWEEP: self.sweep_name,
                MLFLOW_RUN_NAME: self.sweep_name}
        run, _ = self.find_or_create(
            {schema.TAG_ROLE: schema.ROLE_SWEEP},
            lambda: self.client.create_run(self.experiment_of_sweep(), tags=tags,
                                           run_name=self.sweep_name))
        self.parent_run_id = run.info.run_id
        return self.parent_run_id

    def trial_runs_by_id(self) -> dict[str, Any]:
        """This sweep's trial runs by trial id (one each: duplicates are deleted)."""
        by_trial: dict[str, list[Any]] = {}
        for run in self.search({schema.TAG_ROLE: schema.ROLE_TRIAL}):
            by_trial.setdefault(run.data.tags.get(schema.TAG_TRIAL_ID, ""), []).append(run)
        for runs in by_trial.values():
            if len(runs) > 1:
                self.drop_duplicates(runs)
        return {trial_id: runs[0] for trial_id, runs in by_trial.items()}

    def trial_run(self, trial_id: str, run_name: str, *, known_new: bool) -> tuple[Any, bool]:
        """The child run of ``trial_id``, found or created. ``known_new``: the trial is not among
        the runs listed before (no search). Returns the run and whether it was created here."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

        tags = {schema.TAG_ROLE: schema.ROLE_TRIAL, schema.TAG_SWEEP: self.sweep_name,
                schema.TAG_TRIAL_ID: trial_id, MLFLOW_PARENT_RUN_ID: self.parent(),
                MLFLOW_RUN_NAME: run_name}

        def create() -> Any:
            return self.client.create_run(self.experiment_of_sweep(), tags=tags, run_name=run_name)

        if known_new:
            return self.call(create), True
        return self.find_or_create({schema.TAG_TRIAL_ID: trial_id}, create)

    def log_batch(self, run_id: str, metrics: Iterable[Any] = (), params: Iterable[Any] = (),
                  tags: Iterable[Any] = ()) -> None:
        """Log metrics, params and tags in as few ``log_batch`` requests as MLflow's limits allow."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        while metrics or params or tags:
            self.call(self.client.log_batch, run_id, metrics=metrics[:MAX_METRICS_PER_BATCH],
                      params=params[:_MAX_PARAMS_PER_BATCH], tags=tags[:_MAX_TAGS_PER_BATCH])
            metrics = metrics[MAX_METRICS_PER_BATCH:]
            params = params[_MAX_PARAMS_PER_BATCH:]
            tags = tags[_MAX_TAGS_PER_BATCH:]

    def upload(self, run_id: str, files: dict[str, bytes | str]) -> None:
        """Upload artifacts (path in the run -> bytes, or a local directory's path); each one is
        removed from ``files`` once uploaded, so a retry sends only the rest."""
        with tempfile.TemporaryDirectory(prefix="segcore-artifacts-") as tmp:
            for name, content in list(files.items()):
                if isinstance(content, str):  # a directory, uploaded as it is
                    self.call(self.client.log_artifacts, run_id, content, name)
                else:
                    path = Path(tmp) / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(content)
                    folder = str(Path(name).parent)
                    self.call(self.client.log_artifact, run_id, str(path),
                              None if folder == "." else folder)
                del files[name]

    def reopen(self, run_id: str, clear_tags: Iterable[str] = ()) -> Any:
        """Mark a run RUNNING again and delete ``clear_tags`` from it; returns the run as it was."""
        client = self.client
        run = self.call(client.get_run, run_id)
        for key in clear_tags:
            if key in run.data.tags:
                self.call(client.delete_tag, run_id, key)
        if run.info.status != "RUNNING":
            self.call(client.update_run, run_id, status="RUNNING")
        return run
