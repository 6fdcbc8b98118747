"""Reading a sweep back from MLflow (segcore.tracking.query) out of stores SweepRecorder wrote."""

from __future__ import annotations

import pandas as pd
import pytest

from _sweep_store import SPECTRUM, artifact_text, sqlite_uri, trial, write_sweep
from segcore.analysis import load_spectrum, load_trials
from segcore.tracking import query, schema

TRIALS = [
    trial("t1", "deeplabv3plus", 2, 0.60, 10.0, node="10.0.0.1"),
    trial("t2", "deeplabv3plus", 8, 0.50, 9.0, keep=0.5, node="10.0.0.2"),
    trial("t3", "dan", 4, 0.55, 6.0, block=4),
    trial("t4", "dan", 8, 0.30, 5.0, status=schema.STATUS_EARLY_STOPPED, epochs_run=1),
    trial("t5", "unet", 4, None, 3.0, status=schema.STATUS_FAILED),
    # Tagged completed but stopped after 1 of 2 epochs (ASHA with multi-objective Optuna does this)
    trial("t6", "unet", 16, 0.20, 2.0, epochs_run=1),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = sqlite_uri(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # artifacts go under this test's directory
        parent = write_sweep(uri, "camvid", TRIALS)
        write_sweep(uri, "no-spectrum", [trial("n1", "dan", 4, 0.4, 1.0)], sweep="s2", spectrum=None)
        from mlflow import MlflowClient

        MlflowClient(uri).create_experiment("empty")
        yield {"uri": uri, "parent": parent, "root": root}


def test_typed_table_of_completed_trials(store):
    df = load_trials("camvid", store["uri"])
    assert df["trial_id"].tolist() == ["t3", "t1", "t2"]  # ordered by network, stride
    assert df["grid_stride"].dtype == "int64" and df["block"].dtype == "int64"
    assert df["keep"].dtype == "float64" and df["lr"].dtype == "float64"
    for col in ("network", "backbone", "loss_at", "truncation", "block_mode"):
        assert pd.api.types.is_string_dtype(df[col]), col
    assert df["epochs"].dtype == "int64" and df["amp"].dtype == "boolean"
    assert df["backbone"].isna().all()  # logged as "None"
    row = df.set_index("trial_id").loc["t2"]
    assert (row["network"], row["grid_stride"], row["keep"], row["block"]) == ("deeplabv3plus", 8, 0.5, 1)
    assert row["miou"] == pytest.approx(0.50)  # the final value, not the first epoch's
    assert row["epoch"] == 2 and row["node"] == "10.0.0.2" and row["status"] == "completed"
    assert df.set_index("trial_id").loc["t3", "block"] == 4
    assert (df["sweep"] == "sweep-1").all() and (df["parent_run_id"] == store["parent"]).all()


def test_partial_trials_on_request(store):
    df = load_trials("camvid", store["uri"], include_partial=True).set_index("trial_id")
    assert set(df.index) == {f"t{i}" for i in range(1, 7)}
    assert df.loc["t4", "status"] == schema.STATUS_EARLY_STOPPED and not df.loc["t4", "full_length"]
    assert df.loc["t5", "status"] == schema.STATUS_FAILED and pd.isna(df.loc["t5", "miou"])
    assert df.loc["t5", "error"].startswith("FloatingPointError") and pd.isna(df.loc["t1", "error"])
    assert df.loc["t6", "status"] == schema.STATUS_COMPLETED and not df.loc["t6", "full_length"]
    assert df["full_length"].sum() == 3


def test_spectrum_and_spec(store):
    assert load_spectrum("camvid", store["uri"]) == SPECTRUM
    assert load_spectrum("no-spectrum", store["uri"]) is None
    spec = query.load_sweep_spec("camvid", store["uri"])
    assert spec["name"] == "sweep-1" and list(spec["objectives"]) == ["miou", "gflops"]


def test_sweep_filter(store):
    assert len(load_trials("camvid", store["uri"], sweep="sweep-1")) == 3
    with pytest.raises(ValueError, match="no trial runs for sweep 'other'"):
        load_trials("camvid", store["uri"], sweep="other")


def test_unknown_and_empty_experiment(store, tmp_path):
    with pytest.raises(ValueError, match="unknown experiment 'camvd'.*existing experiments: "
                                         "Default, camvid, empty, no-spectrum"):
        load_trials("camvd", store["uri"])
    with pytest.raises(ValueError, match="experiment 'empty' holds no trial runs"):
        load_trials("empty", store["uri"])
    with pytest.raises(ValueError, match="holds no sweep run"):
        load_spectrum("empty", store["uri"])
    with pytest.raises(FileNotFoundError, match="no MLflow store at .*nothing.db"):
        load_trials("camvid", f"sqlite:///{tmp_path / 'nothing.db'}")
    assert not (tmp_path / "nothing.db").exists()  # and none was created


def test_log_report_artifacts(store, tmp_path):
    (tmp_path / "report.html").write_text("<html>ok</html>")
    run_id = query.log_report_artifacts("camvid", tmp_path, store["uri"])
    assert run_id == store["parent"]
    assert artifact_text(store["uri"], run_id, "report/report.html") == "<html>ok</html>"


def test_names_with_quotes_are_escaped_in_filters(tmp_path, monkeypatch):
    # A quote in a sweep or experiment name must neither break MLflow's filter parser nor match
    # another sweep: the one quoting rule (segcore.tracking.store.quote) escapes it.
    monkeypatch.chdir(tmp_path)
    uri = sqlite_uri(tmp_path)
    experiment, sweep = "o'neil's lab", "it's a 'sweep'"
    parent = write_sweep(uri, experiment, [trial("q1", "dan", 4, 0.4, 1.0)], sweep=sweep)
    write_sweep(uri, experiment, [trial("q2", "unet", 2, 0.3, 2.0)], sweep="its a sweep")
    df = load_trials(experiment, uri, sweep=sweep)
    assert df["trial_id"].tolist() == ["q1"] and df["sweep"].tolist() == [sweep]
    assert df["parent_run_id"].tolist() == [parent]
    assert load_spectrum(experiment, uri, sweep=sweep) == SPECTRUM
    assert query.load_sweep_spec(experiment, uri, sweep=sweep)["name"] == sweep
    assert sorted(load_trials(experiment, uri)["trial_id"]) == ["q1", "q2"]
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment_id = query.find_experiment(client, experiment).experiment_id
    assert [r.info.run_id for r in query.find_sweep_runs(client, experiment_id, sweep)] == [parent]
    assert len(query.trial_runs(client, experiment_id, sweep)) == 1


def _seeded(record: dict, seed: int) -> dict:
    record["config"]["seed"] = seed
    return record


CURVE_TRIALS = [
    _seeded(trial("c1", "dan", 4, 0.50, 6.0, epochs=3, train_loss=0.8, annotation_units=100.0), 7),
    _seeded(trial("c2", "dan", 8, 0.40, 3.0, epochs=3, epochs_run=1, train_loss=0.9,
                  status=schema.STATUS_EARLY_STOPPED), 7),
    _seeded(trial("c3", "unet", 4, None, 2.0, status=schema.STATUS_FAILED), 0),
]


def test_load_curves_one_row_per_trial_and_epoch(tmp_path, monkeypatch):
    uri = sqlite_uri(tmp_path)
    monkeypatch.chdir(tmp_path)
    write_sweep(uri, "curves", CURVE_TRIALS, spectrum=None)
    curves = query.load_curves("curves", uri)
    # c1 ran 3 epochs, c2 was stopped after 1, c3 failed before logging any epoch.
    assert list(zip(curves["trial_id"], curves["epoch"])) == [("c1", 1), ("c1", 2), ("c1", 3), ("c2", 1)]
    c1 = curves[curves["trial_id"] == "c1"]
    # The recorder's test sweeps scale mIoU by epoch / epochs run: 0.5 * (1/3, 2/3, 1).
    assert c1["miou"].tolist() == pytest.approx([0.5 / 3, 1.0 / 3, 0.5])
    assert c1["train_loss"].tolist() == pytest.approx([0.8, 0.8, 0.8])
    assert (c1["gflops"] == 6.0).all() and (c1["annotation_units"] == 100.0).all()
    assert curves["epoch"].dtype == "int64" and curves["grid_stride"].dtype == "int64"
    assert curves["seed"].tolist() == [7, 7, 7, 7]
    assert curves.set_index("trial_id").loc["c2", "status"] == schema.STATUS_EARLY_STOPPED
    assert curves["full_length"].tolist() == [True, True, True, False]
    assert (curves["epochs"] == 3).all() and curves["timestamp"].notna().all()
    assert list(curves.columns[:6]) == ["trial_id", "run_id", "sweep", "status", "full_length", "epochs"]
    with pytest.raises(ValueError, match="no trial of sweep 'other' that logged an epoch"):
        query.load_curves("curves", uri, sweep="other")
