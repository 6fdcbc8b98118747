"""The sweep checks that need models and data (segcore.tune.validate): they join the spec's own
problems in one error, before Ray or any trial starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segcore.config.sweep import SweepSpecError, load_sweep_spec
from segcore.models import list_models
from segcore.tune.validate import load_sweep, validate_sweep

from _sweep_specs import good, with_

REPO = Path(__file__).resolve().parents[1]

# (case id, spec, field named in the message, a fragment of the message)
CATALOGUE = [
    ("unknown dataset", with_("dataset.name", "kitti"), "dataset.name", "valid datasets: "),
    ("missing dataset root", with_("dataset", {"name": "camvid", "root": "/nonexistent/camvid"}), "dataset.root", "does not exist"),
    ("dataset without root", with_("dataset", {"name": "camvid"}), "dataset.root", "needs a root folder"),
    ("bad dataset option", with_("dataset.options", {"cutoff": 2.0}), "dataset.options", "cutoff"),
    ("grid stride a network cannot produce", with_("space.grid_stride", [2, 64]), "space.grid_stride",
     "grid_stride=64 with network 'unet_tiny'"),
]


@pytest.mark.parametrize("case,spec,field,fragment", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_spec_is_rejected_naming_the_field(case, spec, field, fragment):
    with pytest.raises(SweepSpecError) as info:
        load_sweep(spec)
    fields = [f for f, _ in info.value.errors]
    assert field in fields, f"{case}: expected {field!r} among {fields}\n{info.value}"
    assert fragment in dict(info.value.errors)[field], f"{case}: {fragment!r} not in {info.value}"


def test_unknown_network_lists_the_registered_ones():
    with pytest.raises(SweepSpecError) as info:
        load_sweep(with_("networks", ["unet_tiny", "resnet"]))
    message = dict(info.value.errors)["networks[1]"]
    assert "unknown network 'resnet'" in message
    for name in list_models():
        assert name in message


def test_spec_and_registry_problems_are_reported_at_once():
    spec = with_("networks", ["unet_tiny", "resnet"], with_("objectives", {"iou": "max"}, with_("dataset.name", "kitti")))
    with pytest.raises(SweepSpecError) as info:
        load_sweep(spec)
    assert {"objectives.iou", "networks[1]", "dataset.name"} <= {f for f, _ in info.value.errors}


def test_a_spec_loaded_without_the_checks_is_checked_before_a_sweep_starts():
    spec = load_sweep_spec(with_("space.grid_stride", [2, 64]))  # config alone: fine
    with pytest.raises(SweepSpecError, match="grid_stride=64 with network 'unet_tiny'"):
        validate_sweep(spec)
    validate_sweep(load_sweep_spec(good()))  # a good spec passes


def test_cluster_specs_are_checked_without_their_data(tmp_path):
    spec = load_sweep(with_("dataset", {"name": "camvid", "root": "/cluster/shared/camvid", "crop": [64, 64]}), check_paths=False)
    assert spec.dataset.root == "/cluster/shared/camvid"


@pytest.mark.parametrize("name", ["demo", "camvid", "cityscapes"])
def test_shipped_sweeps_load(name, monkeypatch):
    monkeypatch.chdir(REPO)
    spec = load_sweep(REPO / "sweeps" / f"{name}.yaml", check_paths=name == "demo")
    assert len(spec.networks) == 3 and spec.num_trials() >= 1
    if name == "cityscapes":
        assert 0 < spec.resources.gpu <= 1


def test_checking_a_spec_imports_neither_ray_nor_mlflow():
    code = (
        "import sys; from segcore.tune.validate import load_sweep; "
        f"load_sweep({good()!r}); print(sorted(m for m in ('ray', 'mlflow', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
