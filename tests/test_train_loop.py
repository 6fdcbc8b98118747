"""segcore.train.fit: learning, reports, batch progress, errors and the knobs end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _train_configs import easy
from PIL import Image

from segcore.models import list_models
from segcore.names import COST_METRICS
from segcore.train import fit


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models(tiny=True))
def test_short_cpu_run_learns_far_above_chance(name):
    reports = []
    result = fit(easy(network=name, grid_stride=2, epochs=4), lambda m, d: reports.append((m, d)))
    assert [int(m["epoch"]) for m, _ in reports] == [1, 2, 3, 4]
    for m, d in reports:
        assert {"epoch", "miou", "pixel_accuracy", "train_loss", *COST_METRICS} <= set(m)
        assert d is not None
    # chance: mIoU ~ 1/(2C-1) = 0.2 for 3 balanced classes
    assert result.metrics["miou"] > 0.5, result.history
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.epochs_completed == 4 and result.device == "cpu" and result.gpu_fallback is False
    assert result.samples.ndim == 3 and result.samples.shape[2] == 3 and result.samples.dtype == np.uint8
    assert result.samples.shape[1] >= 3 * 32  # three columns of the 32-px sample
    assert set(result.per_class_iou) == {"class_0", "class_1", "class_2"}
    assert result.config["network"] == name and result.cost == {k: result.metrics[k] for k in COST_METRICS}


def test_on_batch_sees_every_step_with_the_running_mean_loss():
    calls = []
    result = fit(easy(network="dan_tiny", epochs=2, max_train_batches=3, max_val_batches=1),
                 on_batch=lambda *args: calls.append(args))
    assert [(epoch, batch, batches) for epoch, batch, batches, _ in calls] == [
        (1, 1, 3), (1, 2, 3), (1, 3, 3), (2, 1, 3), (2, 2, 3), (2, 3, 3),
    ]
    # the last call of an epoch carries that epoch's mean loss, as reported
    assert calls[2][3] == pytest.approx(result.history[0]["train_loss"])
    assert calls[5][3] == pytest.approx(result.history[1]["train_loss"])


def test_non_finite_loss_raises(monkeypatch):
    monkeypatch.setattr("segcore.train.loop.training_loss", lambda logits, *a: logits.sum() * float("nan"))
    with pytest.raises(FloatingPointError, match=r"non-finite training loss at epoch 1 \(batch 1\)"):
        fit(easy(epochs=1, max_train_batches=1))


def test_corrupt_image_names_the_file(tmp_path):
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "masks" / split).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "images" / split / f"{i}.png")
            Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "masks" / split / f"{i}.png")
    bad = tmp_path / "images" / "train" / "1.png"
    bad.write_bytes(b"not a png")
    config = easy(dataset="folder", data_root=str(tmp_path), dataset_options={"num_classes": 2}, epochs=1,
                  batch_size=2)
    with pytest.raises(ValueError, match=f"cannot read image file {bad}"):
        fit(config)


@pytest.mark.slow
def test_camvid_short_run(camvid_root):
    result = fit(dict(network="dan_tiny", dataset="camvid", data_root=str(camvid_root), image_scale=0.125,
                      grid_stride=4, block=8, epochs=1, batch_size=4, max_train_batches=2, max_val_batches=1,
                      latency_repeats=1))
    assert math.isfinite(result.metrics["train_loss"]) and 0 <= result.metrics["miou"] <= 1
    assert len(result.per_class_iou) == 11 and result.samples.shape[1] >= 3 * 60


@pytest.mark.parametrize("knobs", [
    {"loss_at": "grid", "block": 4, "block_mode": "soft", "keep": 0.5, "truncation": "resize"},
    {"loss_at": "full", "block": 8, "block_mode": "soft", "keep": 0.5, "optimizer": "sgd"},
])
def test_fit_end_to_end_with_weak_labels_and_truncation(knobs):
    result = fit(easy(network="deeplabv3plus_tiny", grid_stride=4, epochs=1, max_train_batches=2,
                      max_val_batches=1, **knobs))
    assert math.isfinite(result.metrics["train_loss"]) and result.metrics["train_loss"] > 0
    assert result.cost["relative_annotation_units"] == pytest.approx(1 / knobs["block"] ** 2)
