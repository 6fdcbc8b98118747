"""segcore.train.fit: config errors first, knob-aware losses, learning, checkpoints, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from segcore.config import TrialConfig
from segcore.labels import grid_proportions
from segcore.models import create_model, list_models
from segcore.tracking.schema import COST_METRICS
from segcore.train import fit, resolve_device, training_loss, training_targets, validate_config

# An easy synthetic set: 3 classes with large regions, 32 px, distinct colours.
EASY = dict(num_samples=32, size=[32, 32], num_classes=3, cutoff=1 / 16, noise=0.03)


def easy(**overrides) -> dict:
    config = dict(network="unet_tiny", grid_stride=2, dataset="synthetic", dataset_options=dict(EASY),
                  epochs=2, batch_size=4, lr=1e-2, latency_repeats=1, seed=0)
    config.update(overrides)
    return config


# --- configuration errors, raised before any data is opened ----------------------------------


@pytest.mark.parametrize("overrides,match", [
    ({"network": "segformer"}, r"config.network: unknown network 'segformer'; valid networks: dan, dan_tiny"),
    ({"network": "deeplabv3plus", "backbone": "vgg"}, r"config.backbone: .*valid backbones: resnet18, resnet50, resnet101, mobilenet_v3_large"),
    ({"network": "unet_tiny", "grid_stride": 16}, r"config.grid_stride: .*valid grid strides: 1, 2, 4, 8"),
    ({"keep": 0.0}, r"config.keep: Input should be greater than 0"),
    ({"keep": 1.5}, r"config.keep: Input should be less than or equal to 1"),
    ({"block": 0}, r"config.block: Input should be greater than or equal to 1"),
    ({"block": 64, "crop": [32, 40]}, r"config.block: block=64 is larger than the 32x40 label map; valid values are 1..40"),
    ({"block": 33}, r"config.block: block=33 is larger than the 32x32"),
    ({"grid_stride": 8, "crop": [4, 4], "network": "dan_tiny"}, r"config.grid_stride: grid_stride=8 is larger"),
    ({"dataset": "imagenet"}, r"config.dataset: unknown dataset 'imagenet'; valid datasets: .*camvid"),
    ({"dataset": "camvid", "data_root": "/nonexistent/camvid"}, r"config.data_root: /nonexistent/camvid is not a folder"),
    ({"dataset": "camvid"}, r"config.data_root: dataset 'camvid' needs a root"),
    ({"model_options": {"depth": 9}}, r"config.model_options: network .unet_tiny.: UNet depth must be an integer in 1..6"),
    ({"truncation": "dct"}, r"config.truncation: Input should be 'fft' or 'resize'"),
    ({"lr": -1}, r"config.lr: Input should be greater than 0"),
])
def test_validate_config_errors(overrides, match, monkeypatch):
    # no dataset may be opened while validating
    for module in ("segcore.data", "segcore.train.validate", "segcore.train.data"):
        monkeypatch.setattr(f"{module}.build_dataset", lambda *a, **k: pytest.fail("data opened"))
    with pytest.raises(ValueError, match=match):
        validate_config(easy(**overrides))
    with pytest.raises(ValueError, match=match):
        fit(easy(**overrides))


def test_validate_config_returns_typed_config():
    cfg = validate_config(easy(keep=0.5, block=4))
    assert isinstance(cfg, TrialConfig) and cfg.keep == 0.5 and cfg.block == 4


# --- losses under the knobs ------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models(tiny=True))
@pytest.mark.parametrize("loss_at", ["grid", "full"])
@pytest.mark.parametrize("block_mode", ["hard", "soft"])
def test_block_labels_give_finite_loss(name, loss_at, block_mode):
    torch.manual_seed(0)
    cfg = validate_config(easy(network=name, grid_stride=4, loss_at=loss_at, block=8, block_mode=block_mode))
    labels = torch.randint(0, 3, (2, 40, 48))
    labels[:, :4, :4] = 255  # an ignored corner
    model = create_model(name, 3, grid_stride=4, keep=0.5)
    loss = training_loss(model(torch.randn(2, 3, 40, 48)), labels, cfg, 3, 255)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()


def test_grid_targets_are_cell_proportions():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :, 6:] = 1
    cfg = validate_config(easy(grid_stride=4, loss_at="grid"))
    target = training_targets(labels, cfg, 2, 255)
    assert target.shape == (1, 2, 2, 2)
    assert torch.allclose(target[0, :, 0, 1], torch.tensor([0.5, 0.5]))
    assert torch.allclose(target, grid_proportions(labels, 4, 2, 255))
    # soft blocks of 2 then a grid of 4 give the same proportions as the dense labels here
    soft = training_targets(labels, validate_config(easy(grid_stride=4, loss_at="grid", block=2, block_mode="soft")), 2, 255)
    assert torch.allclose(soft, target)
    # hard blocks of 4: the mixed column becomes its majority (tie -> class 0)
    hard = training_targets(labels, validate_config(easy(grid_stride=2, block=4)), 2, 255)
    assert hard.shape == (1, 8, 8) and int(hard[0, 0, 7]) == 0


# --- training ------------------------------------------------------------------------------


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
    assert result.epochs_completed == 4 and result.device == "cpu"
    assert result.samples.shape == (32, 96, 3) and result.samples.dtype == np.uint8
    assert set(result.per_class_iou) == {"class_0", "class_1", "class_2"}
    assert result.config["network"] == name and result.cost == {k: result.metrics[k] for k in COST_METRICS}


@pytest.mark.slow
def test_checkpoint_round_trip_resumes_to_identical_weights(tmp_path):
    config = easy(network="deeplabv3plus_tiny", grid_stride=4, keep=0.5, block=4, epochs=3, crop=[24, 24])
    full = fit(dict(config, checkpoint_dir=str(tmp_path / "a")))
    first = tmp_path / "a" / "epoch_1"
    assert (first / "checkpoint.pt").is_file()
    resumed_reports = []
    resumed = fit(dict(config, checkpoint_dir=str(tmp_path / "b")), lambda m, d: resumed_reports.append(m),
                  resume_from=str(first))
    assert [int(m["epoch"]) for m in resumed_reports] == [2, 3]
    a = torch.load(tmp_path / "a" / "epoch_3" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "epoch_3" / "checkpoint.pt", weights_only=False)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.metrics["miou"] == full.metrics["miou"]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]


def test_temporary_checkpoints_are_fresh_and_hold_the_state():
    seen = []

    def report(metrics, checkpoint_dir):
        state = torch.load(f"{checkpoint_dir}/checkpoint.pt", weights_only=False)
        assert set(state) >= {"model", "optimizer", "scheduler", "scaler", "epoch", "rng"}
        seen.append((checkpoint_dir, state["epoch"]))

    fit(easy(network="dan_tiny", epochs=2, max_train_batches=1, max_val_batches=1), report)
    assert [e for _, e in seen] == [1, 2] and seen[0][0] != seen[1][0]


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


def test_gpu_granted_but_absent_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.warns(RuntimeWarning, match="falls back|training on the CPU"):
        assert resolve_device("auto") == torch.device("cpu")
    with pytest.warns(RuntimeWarning):
        result = fit(easy(epochs=1, max_train_batches=1, max_val_batches=1, device="cuda"))
    assert result.device == "cpu"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with pytest.raises(ValueError, match="'cuda' requested but no CUDA device"):
        resolve_device("cuda")


def test_cli_writes_result_json(tmp_path, capsys):
    from segcore.cli import main

    out = tmp_path / "r.json"
    code = main([
        "train", "--network", "dan_tiny", "--grid-stride", "4", "--keep", "0.5", "--block", "4",
        "--epochs", "1", "--batch-size", "4", "--dataset-option", "num_samples=8",
        "--dataset-option", "size=[32, 32]", "--max-val-batches", "1", "--out", str(out),
        "--samples", str(tmp_path / "s.png"),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1" in printed and "mIoU" in printed
    payload = json.loads(out.read_text())
    assert payload["config"]["network"] == "dan_tiny" and payload["config"]["backbone"] == "resnet_tiny"
    assert payload["config"]["keep"] == 0.5 and payload["config"]["block"] == 4
    assert set(COST_METRICS) <= set(payload["metrics"]) and set(payload["cost"]) == set(COST_METRICS)
    assert payload["cost"]["annotation_units"] == 64
    assert (tmp_path / "s.png").is_file()
    assert main(["train", "--network", "unet_tiny", "--grid-stride", "32"]) == 2
    assert "valid grid strides: 1, 2, 4, 8" in capsys.readouterr().err


@pytest.mark.slow
def test_camvid_short_run(camvid_root):
    result = fit(dict(network="dan_tiny", dataset="camvid", data_root=str(camvid_root), image_scale=0.125,
                      grid_stride=4, block=8, epochs=1, batch_size=4, max_train_batches=2, max_val_batches=1,
                      latency_repeats=1))
    assert math.isfinite(result.metrics["train_loss"]) and 0 <= result.metrics["miou"] <= 1
    assert len(result.per_class_iou) == 11 and result.samples.shape == (45, 180, 3)


def test_cached_samples_train_identically():
    config = easy(network="dan_tiny", epochs=1, max_train_batches=2, max_val_batches=2, crop=[24, 24])
    plain = fit(config)
    cached = fit(dict(config, cache_data=True))
    assert cached.history[0]["train_loss"] == plain.history[0]["train_loss"]
    assert cached.metrics["miou"] == plain.metrics["miou"]


def test_resume_refuses_a_different_configuration(tmp_path):
    config = easy(network="dan_tiny", epochs=1, max_train_batches=1, max_val_batches=1,
                  checkpoint_dir=str(tmp_path))
    fit(config)
    with pytest.raises(ValueError, match="different configuration: keep=1.0 there, 0.5 here"):
        fit(dict(config, keep=0.5, epochs=2), resume_from=str(tmp_path / "epoch_1"))
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        fit(config, resume_from=str(tmp_path / "nowhere"))


def test_camvid_block_checked_against_the_image_header(camvid_root):
    # 360 x 480 at scale 0.25 is 90 x 120: block 121 cannot fit; found from the header alone
    with pytest.raises(ValueError, match="config.block: block=121 is larger than the 90x120 label map"):
        validate_config(dict(network="dan_tiny", dataset="camvid", data_root=str(camvid_root), image_scale=0.25,
                             block=121))


def test_cli_config_file_overridden_by_flags(tmp_path):
    from segcore.cli import build_parser
    from segcore.cli.train import build_config

    path = tmp_path / "trial.yaml"
    path.write_text("network: dan_tiny\nkeep: 0.5\nmodel_options: {level_channels: 8}\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--keep", "0.25", "--crop", "16", "24",
                                      "--option", "decoder_channels=16", "--no-amp"])
    config = build_config(args)
    assert config["network"] == "dan_tiny" and config["keep"] == 0.25 and config["crop"] == [16, 24]
    assert config["model_options"] == {"level_channels": 8, "decoder_channels": 16} and config["amp"] is False
    assert validate_config(config).crop == (16, 24)


@pytest.mark.parametrize("knobs", [
    {"loss_at": "grid", "block": 4, "block_mode": "soft", "keep": 0.5, "truncation": "resize"},
    {"loss_at": "full", "block": 8, "block_mode": "soft", "keep": 0.5, "optimizer": "sgd"},
])
def test_fit_end_to_end_with_weak_labels_and_truncation(knobs):
    result = fit(easy(network="deeplabv3plus_tiny", grid_stride=4, epochs=1, max_train_batches=2,
                      max_val_batches=1, **knobs))
    assert math.isfinite(result.metrics["train_loss"]) and result.metrics["train_loss"] > 0
    assert result.cost["relative_annotation_units"] == pytest.approx(1 / knobs["block"] ** 2)
