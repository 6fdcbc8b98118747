"""`segcore demo`: the README's main command, end to end on a local Ray instance and SQLite MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segcore.cli.demo import DEMO_SPEC, demo_spec, spectrum_table

REPO = Path(__file__).resolve().parents[1]


def test_sweeps_demo_yaml_is_the_embedded_demo_spec():
    assert yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text()) == yaml.safe_load(DEMO_SPEC)


def test_demo_help_states_the_demo_yaml_defaults(capsys):
    from segcore.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    demo = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())
    assert f"number of trials (default {demo['num_samples']}," in help_text
    assert f"epochs per trial (default {demo['epochs']}," in help_text


def test_spectrum_table_known_rows():
    spectrum = {
        "strides": [1, 2], "band_energy": [1.0, 0.97], "band_energy_no_dc": [1.0, 0.95],
        "oracle_miou": {"soft": [1.0, 0.98], "majority": [1.0, 0.9]}, "ce_floor": [0.0, 0.08297],
        "efficient_grid": {"by_miou": 2, "by_energy": 1}, "tolerance": 0.05, "energy_threshold": 0.9,
    }
    lines = spectrum_table(spectrum).splitlines()
    assert lines[0].split() == ["stride", "band_energy", "band_energy_no_dc", "oracle_miou_soft",
                                "oracle_miou_majority", "ce_floor"]
    assert lines[2].split() == ["1", "1", "1", "1", "1", "0"]
    assert lines[3].split() == ["2", "0.97", "0.95", "0.98", "0.9", "0.08297"]
    assert lines[4].startswith("efficient grid, predicted from labels alone: stride 2 (oracle mIoU within 5%")


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
