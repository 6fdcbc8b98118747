"""The MLflow store (segcore.tracking.store): tracking URIs, filter quoting, paging, new stores."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import pytest
from mlflow import MlflowClient

import _sweep_store
from segcore.tracking import SweepRecorder
from segcore.tracking.store import quote, resolve_tracking_uri, search_all, tag_filter

SPEC = {"name": "unit", "networks": ["unet_tiny"]}


def test_light_modules_do_not_import_mlflow():
    code = ("import sys, segcore.tracking, segcore.tracking.schema, segcore.tracking.store, "
            "segcore.tracking.queue, segcore.tracking.spectrum, segcore.tracking.links; "
            "assert 'mlflow' not in sys.modules, 'mlflow imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tracking_uri_default_and_file_store_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert resolve_tracking_uri("sqlite:///sub/x.db") == f"sqlite:///{tmp_path / 'sub' / 'x.db'}"
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://h/db")
    assert resolve_tracking_uri() == "postgresql://h/db"
    for bad in ("file:///tmp/mlruns", "mlruns", "/tmp/mlruns"):
        with pytest.raises(ValueError, match="file store.*sqlite:///mlflow.db"):
            resolve_tracking_uri(bad)
        with pytest.raises(ValueError, match="file store"):
            SweepRecorder(bad, "e", "s")


def test_tracking_uri_of_a_reader_must_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no MLflow store at .*none.db"):
        resolve_tracking_uri("sqlite:///none.db", must_exist=True)
    (tmp_path / "there.db").touch()
    assert resolve_tracking_uri("sqlite:///there.db", must_exist=True) == f"sqlite:///{tmp_path / 'there.db'}"
    assert resolve_tracking_uri("http://head:5000", must_exist=True) == "http://head:5000"


def test_quote_known_answers():
    # MLflow's filter parser keeps the text between the quotes as it is: no escapes.
    assert quote("plain") == "'plain'"
    assert quote("it's") == '"it\'s"'
    assert quote('say "hi"') == "'say \"hi\"'"
    assert quote("a\\b") == "'a\\b'"
    assert quote(7) == "'7'"
    with pytest.raises(ValueError, match="both"):
        quote("it's \"both\"")
    with pytest.raises(ValueError, match="sweep_name: .*both"):
        SweepRecorder("sqlite:///x.db", "e", "it's \"both\"")
    assert tag_filter({"segcore.sweep": "o'neil", "segcore.role": "trial"}) == (
        'tags.`segcore.sweep` = "o\'neil" and tags.`segcore.role` = \'trial\'')


def test_quoted_values_match_exactly_in_mlflow(tmp_path):
    uri = _sweep_store.sqlite_uri(tmp_path)
    client = MlflowClient(uri)
    experiment = client.create_experiment("q", artifact_location=str(tmp_path / "a"))
    values = ["it's", 'say "hi"', "ends\\", "mid\\'q", "%_"]
    for value in values:
        client.create_run(experiment, tags={"t": value})
    for value in values:
        runs = client.search_runs([experiment], tag_filter({"t": value}))
        assert [r.data.tags["t"] for r in runs] == [value]


class _Page(list):
    def __init__(self, items, token):
        super().__init__(items)
        self.token = token


def test_search_all_reads_every_page():
    pages = {None: _Page([1, 2], "p2"), "p2": _Page([3], "p3"), "p3": _Page([], None)}
    calls = []

    def search(max_results, page_token, **kwargs):
        calls.append((max_results, page_token, kwargs))
        return pages[page_token]

    assert search_all(search, filter_string="x") == [1, 2, 3]
    assert [c[1] for c in calls] == [None, "p2", "p3"]
    assert all(c[0] == 1000 and c[2] == {"filter_string": "x"} for c in calls)


def test_new_sqlite_store_copied_from_cached_empty_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):  # the first builds the cached empty store, the second copies it
        rec = SweepRecorder(f"sqlite:///{name}/mlflow.db", "unit", "sweep-n")
        assert rec.start_sweep(SPEC) and rec.flush(30) and rec.errors == []
        client = MlflowClient(f"sqlite:///{tmp_path / name / 'mlflow.db'}")
        assert client.get_experiment("0").artifact_location == str(tmp_path / "mlruns" / "0")
        assert len(client.search_runs([client.get_experiment_by_name("unit").experiment_id])) == 1
        rec.close()
    assert (tmp_path / "cache" / "segcore" / f"mlflow-{mlflow.__version__}-empty.db").is_file()
    assert not list((tmp_path / "b").glob(".*tmp"))
