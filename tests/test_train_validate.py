"""segcore.train.validate: configuration errors raised before any data is opened."""

from __future__ import annotations

import pytest
from _train_configs import easy

from segcore.config import TrialConfig
from segcore.train import fit, resolve_config, validate_config


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
    ({"device": "tpu"}, r"config.device: Input should be 'auto', 'cpu' or 'cuda'"),
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


def test_resolve_config_names_the_backbone_used():
    resolved = resolve_config(validate_config(easy(network="dan_tiny")))
    assert resolved["backbone"] == "resnet_tiny" and resolved["network"] == "dan_tiny"


def test_camvid_block_checked_against_the_image_header(camvid_root):
    # 360 x 480 at scale 0.25 is 90 x 120: block 121 cannot fit; found from the header alone
    with pytest.raises(ValueError, match="config.block: block=121 is larger than the 90x120 label map"):
        validate_config(dict(network="dan_tiny", dataset="camvid", data_root=str(camvid_root), image_scale=0.25,
                             block=121))
