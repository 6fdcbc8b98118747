"""Where a person browses a sweep: the MLflow UI command and the link to an experiment's runs.

MLflow 3 opens an experiment on its GenAI overview page, which is empty for a sweep; the runs
list (``#/experiments/<id>/runs``) is where the parent run and its trials are. Every link segcore
prints is built here.
"""

from __future__ import annotations

from segcore.tracking.store import configure_http_retries, resolve_tracking_uri

__all__ = ["DEFAULT_UI_URL", "browse_command", "experiment_runs_url", "runs_url"]

#: Where ``mlflow ui`` serves by default.
DEFAULT_UI_URL = "http://127.0.0.1:5000"


def runs_url(ui_url: str, experiment_id: str | None) -> str:
    """The runs list of an experiment in the MLflow UI at ``ui_url`` (the UI's start page when
    the experiment id is not known)."""
    base = ui_url.rstrip("/")
    return f"{base}/#/experiments/{experiment_id}/runs" if experiment_id else base


def ui_url(tracking_uri: str) -> str:
    """The MLflow UI of a store: a tracking server serves its own, any other store is browsed
    through ``mlflow ui`` at :data:`DEFAULT_UI_URL`."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return DEFAULT_UI_URL


def browse_command(tracking_uri: str) -> str | None:
    """The command that serves the UI of a store (None for a tracking server, which serves it)."""
    if tracking_uri.startswith(("http://", "https://")):
        return None
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def experiment_runs_url(tracking_uri: str | None, experiment: str) -> str:
    """The link to the runs list of the experiment named ``experiment`` in the store's UI.

    The experiment's id is looked up in the store; when it cannot be (no such experiment, store
    unreachable) the link is the UI's start page.
    """
    uri = resolve_tracking_uri(tracking_uri)
    return runs_url(ui_url(uri), _experiment_id(uri, experiment))


def _experiment_id(tracking_uri: str, experiment: str) -> str | None:
    configure_http_retries()  # an unreachable server answers in seconds, not minutes
    try:
        uri = resolve_tracking_uri(tracking_uri, must_exist=True)
        from mlflow import MlflowClient

        found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    except Exception:  # noqa: BLE001 - a link without the id is still a link
        return None
    return None if found is None else str(found.experiment_id)
