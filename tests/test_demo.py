"""`segcore demo`: the README's main command, end to end on a local Ray instance and SQLite MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segcore.cli.demo import DEMO_SPEC, demo_spec

REPO = Path(__file__).resolve().parents[1]


def test_sweeps_demo_yaml_is_the_embedded_demo_spec():
    assert yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text()) == yaml.safe_load(DEMO_SPEC)


def test_demo_spec_stores_everything_under_out(tmp_path):
    spec = demo_spec(tmp_path, trials=2, epochs=1)
    assert spec.name.startswith("demo-") and spec.experiment_name == "demo"
    assert spec.tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert spec.storage_path == str(tmp_path / "ray_results")
    assert spec.num_trials() == 2 and spec.epochs == 1
    assert spec.networks == ["deeplabv3plus_tiny", "dan_tiny", "unet_tiny"]


def test_demo_with_camvid_points_at_it(camvid_root, tmp_path):
    spec = demo_spec(tmp_path, camvid=str(camvid_root))
    assert spec.dataset.name == "camvid" and spec.dataset.root == str(Path(camvid_root).resolve())


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    pytest.importorskip("segcore.train", reason="segcore.train not in this checkout")
    pytest.importorskip("ray.tune", reason="the sweep extra is not installed")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "segcore", "demo", "--trials", "3", "--epochs", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"demo failed:\n{out}\n{proc.stderr[-3000:]}"
    for expected in (
        "efficient grid predicted from",
        "spectral analysis (training-free, labels only):",
        "all trials (3), best mIoU first:",
        "best trial per network:",
        "Pareto front (miou max, gflops min):",
        "\n  mlflow ui --backend-store-uri sqlite:///mlflow.db\n",  # exact, run from where the demo ran
    ):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    assert (tmp_path / "mlflow.db").is_file()

    import mlflow

    from segcore.tracking import schema

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("demo").experiment_id])
    children = [r for r in runs if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_TRIAL]
    assert len(children) == 3
    assert {r.data.tags[schema.TAG_STATUS] for r in children} == {schema.STATUS_COMPLETED}
