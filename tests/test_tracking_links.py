"""Links to the MLflow UI (segcore.tracking.links): the runs list, not MLflow 3's overview page."""

from __future__ import annotations

from mlflow import MlflowClient

import _sweep_store
from segcore.tracking.links import browse_command, experiment_runs_url, runs_url, ui_url


def test_runs_url_known_answers():
    assert runs_url("http://127.0.0.1:5000", "3") == "http://127.0.0.1:5000/#/experiments/3/runs"
    assert runs_url("http://head:5000/", "12") == "http://head:5000/#/experiments/12/runs"
    assert runs_url("http://127.0.0.1:5000", None) == "http://127.0.0.1:5000"
    assert ui_url("sqlite:////x/mlflow.db") == "http://127.0.0.1:5000"
    assert ui_url("http://head:5000/") == "http://head:5000"
    assert browse_command("sqlite:///mlflow.db") == "mlflow ui --backend-store-uri sqlite:///mlflow.db"
    assert browse_command("http://head:5000") is None


def test_experiment_runs_url_looks_the_id_up(tmp_path):
    uri = _sweep_store.sqlite_uri(tmp_path)
    MlflowClient(uri).create_experiment("first", artifact_location=str(tmp_path / "a"))
    second = MlflowClient(uri).create_experiment("second", artifact_location=str(tmp_path / "b"))
    assert experiment_runs_url(uri, "second") == f"http://127.0.0.1:5000/#/experiments/{second}/runs"
    assert experiment_runs_url(uri, "missing") == "http://127.0.0.1:5000"
    assert experiment_runs_url(f"sqlite:///{tmp_path / 'none.db'}", "x") == "http://127.0.0.1:5000"
    assert not (tmp_path / "none.db").exists()
