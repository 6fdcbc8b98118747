"""The GPU study (sweeps/camvid-gpu.yaml, benchmarks/gpu_study.sh): the spec keeps the CPU study's
design with the full networks on a shared GPU, and the same script runs end to end on a CPU with a
tiny spec and a 4-image CamVid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segcore.config.sweep import load_sweep_spec

REPO = Path(__file__).resolve().parents[1]
GPU_SPEC = REPO / "sweeps" / "camvid-gpu.yaml"
CAMVID = REPO.parent / "shared" / "data" / "camvid"


def test_gpu_spec_is_the_cpu_study_on_a_shared_gpu():
    gpu = yaml.safe_load(GPU_SPEC.read_text())
    cpu = yaml.safe_load((REPO / "sweeps" / "camvid-study.yaml").read_text())
    assert gpu["search"] == cpu["search"] and gpu["space"] == cpu["space"]  # the same axes and seeds
    assert gpu["epochs"] < cpu["epochs"] and gpu["dataset"]["image_scale"] in (0.5, 1.0)
    spec = load_sweep_spec(GPU_SPEC)  # the spec alone: networks and knobs are checked by the dry run
    assert spec.networks == ["deeplabv3plus", "dan", "unet"]
    assert spec.network_config == {"deeplabv3plus": {"backbone": "resnet18"}, "dan": {"backbone": "resnet18"}}
    assert (spec.resources.cpu, spec.resources.gpu, spec.max_concurrent) == (2, 0.25, 4)
    assert spec.resources.gpu * spec.max_concurrent <= 1 and spec.resources.cpu * spec.max_concurrent < 16
    assert spec.train["amp"] is True and spec.train["cache_data"] is True
    assert spec.num_trials() == 3 * 14 * 2  # 3 networks x 14 design points x 2 seeds


def _camvid_subset(root: Path, n: int = 4) -> Path:
    """The first ``n`` images of each CamVid split, linked (not copied) into ``root``."""
    for split in ("train", "val"):
        for folder in (split, f"{split}annot"):
            (root / folder).mkdir(parents=True)
            for path in sorted((CAMVID / folder).glob("*.png"))[:n]:
                (root / folder / path.name).symlink_to(path)
    return root


@pytest.mark.slow
def test_gpu_study_script_runs_tiny_on_a_cpu(tmp_path):
    if not CAMVID.is_dir():
        pytest.skip(f"no CamVid at {CAMVID} (the script reads ../shared/data/camvid)")
    spec = yaml.safe_load(GPU_SPEC.read_text())
    spec.update(networks=["unet_tiny", "dan_tiny"], network_config={})
    spec["search"]["axes"] = [{"grid_stride": [1, 2]}]
    tiny_spec = tmp_path / "tiny.yaml"
    tiny_spec.write_text(yaml.safe_dump(spec))
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO), "SEGCORE_GPU_STUDY_SPEC": str(tiny_spec),
           "CAMVID_ROOT": str(_camvid_subset(tmp_path / "camvid")), "STUDY_OUT": str(out), "WORKDIR": str(work),
           "EPOCHS": "1", "LIMIT": "1", "IMAGE_SCALE": "0.25", "RESOURCES": "1,0", "MAX_CONCURRENT": "2",
           "DEVICE": "cpu"}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_study.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = json.loads((out / "gpu_run.json").read_text())
    assert run["overrides"]["LIMIT"] == "1" and run["steps"] == ["sweep", "study"]
    assert (run["networks"], run["epochs"], run["image_scale"]) == (["unet_tiny", "dan_tiny"], 1, 0.25)
    assert run["cuda"] is False and run["wall_s"]["total"] >= run["wall_s"]["sweep"] > 0
    ran = yaml.safe_load((work / "spec.yaml").read_text())
    assert ran["spectral"]["limit"] == 1 and ran["train"]["max_train_batches"] == 1
    assert "8 trial(s)" in (out / "sweep.log").read_text()  # 2 networks x 2 strides x 2 seeds

    from segcore.analysis import load_trials

    trials = load_trials("camvid-gpu", f"sqlite:///{work / 'mlflow.db'}")
    assert len(trials) == 8 and set(trials["seed"]) == {0, 1} and set(trials["grid_stride"]) == {1, 2}
    # The study's files, as benchmarks/camvid_study.py writes them for the CPU study.
    for name in ("trials.csv", "curves.csv", "spectrum.json", "study.json", "study.png", "report/report.html"):
        assert (out / name).is_file(), name
    study = json.loads((out / "study.json").read_text())
    assert set(study["networks"]) == {"unet_tiny", "dan_tiny"}
    assert all(net["seeds"] == 2 for net in study["networks"].values())
    assert len((out / "curves.csv").read_text().splitlines()) == 1 + 8  # a header, 8 trials x 1 epoch
