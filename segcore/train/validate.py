"""Checking a trial configuration before any data is opened, and the configuration as run."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from pydantic import ValidationError

from segcore.config.trial import TrialConfig, format_validation_error
from segcore.data import build_dataset, list_datasets
from segcore.data.synthetic import SyntheticScenes
from segcore.labels import check_stride
from segcore.models import create_model, list_models, model_entry, resolve_backbone

__all__ = ["validate_config", "resolve_config", "check_size", "training_size"]

# A model-construction error names one of these fields in its message; anything else is an option.
_MODEL_FIELDS = ("grid_stride", "backbone", "keep", "truncation")


def training_size(cfg: TrialConfig) -> tuple[int, int]:
    """Training image size without decoding any image: the crop, the synthetic size, or the
    header of the first training label file, scaled by ``image_scale``."""
    if cfg.crop is not None:
        return int(cfg.crop[0]), int(cfg.crop[1])
    if cfg.dataset == "synthetic":
        default_size = inspect.signature(SyntheticScenes).parameters["size"].default
        height, width = cfg.dataset_options.get("size", default_size)
    else:
        try:
            labels = build_dataset(cfg.dataset, cfg.data_root, cfg.train_split, labels_only=True, **cfg.dataset_options)
            if len(labels) == 0:
                raise ValueError(f"no samples in split {cfg.train_split!r}")
            height, width = labels.label_size(0)
        except (FileNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(f"config.data_root: cannot open {cfg.dataset!r} at {cfg.data_root}: {exc}") from None
    scale = cfg.image_scale or 1.0
    return max(1, round(height * scale)), max(1, round(width * scale))


def check_size(cfg: TrialConfig, height: int, width: int, where: str) -> None:
    """grid_stride and block must fit the training image (``check_stride`` names the range)."""
    for name in ("grid_stride", "block"):
        try:
            check_stride(getattr(cfg, name), height, width, name=name)
        except ValueError as exc:
            raise ValueError(f"config.{name}: {exc} ({where})") from None


def _typed(config: TrialConfig | dict) -> TrialConfig:
    if isinstance(config, TrialConfig):
        return config
    if isinstance(config, dict):
        try:
            return TrialConfig(**config)
        except ValidationError as exc:
            raise ValueError(format_validation_error(exc)) from None
    raise ValueError(f"config must be a TrialConfig or a dict, got {type(config).__name__}")


def _check_names_and_paths(cfg: TrialConfig) -> None:
    if cfg.network not in list_models():
        raise ValueError(f"config.network: unknown network {cfg.network!r}; valid networks: {', '.join(list_models())}")
    if cfg.dataset not in list_datasets():
        raise ValueError(f"config.dataset: unknown dataset {cfg.dataset!r}; valid datasets: {', '.join(list_datasets())}")
    if cfg.dataset != "synthetic":
        if cfg.data_root is None:
            raise ValueError(f"config.data_root: dataset {cfg.dataset!r} needs a root folder (--root)")
        if not Path(cfg.data_root).is_dir():
            raise ValueError(f"config.data_root: {cfg.data_root} is not a folder")
    if cfg.crop is not None and min(cfg.crop) < 1:
        raise ValueError(f"config.crop: both sides must be >= 1, got {cfg.crop}")


def _check_model(cfg: TrialConfig) -> None:
    # Building on the meta device checks backbone, grid stride, keep and options in microseconds.
    try:
        with torch.device("meta"):
            create_model(
                cfg.network, 2, grid_stride=cfg.grid_stride, keep=cfg.keep, truncation=cfg.truncation,
                backbone=cfg.backbone, **cfg.model_options,
            )
    except ValueError as exc:
        message = str(exc)
        field_name = next((name for name in _MODEL_FIELDS if name in message), "model_options")
        raise ValueError(f"config.{field_name}: {message}") from None
    if cfg.weights is not None and not Path(cfg.weights).is_file():
        raise ValueError(f"config.weights: file {cfg.weights} does not exist")
    if cfg.weights_backbone is not None and not model_entry(cfg.network).backbones:
        raise ValueError(f"config.weights_backbone: network {cfg.network!r} takes no backbone")


def validate_config(config: TrialConfig | dict) -> TrialConfig:
    """Check a trial configuration without loading data or training; return it typed.

    Raises:
        ValueError: naming the field, the bad value and the valid choices — unknown network,
            backbone, dataset or model option; a grid stride the network cannot produce; keep
            outside (0, 1]; block < 1 or larger than the crop; a missing dataset root.
    """
    cfg = _typed(config)
    _check_names_and_paths(cfg)
    _check_model(cfg)
    height, width = training_size(cfg)
    check_size(cfg, height, width, where=f"training images are {height}x{width}")
    return cfg


def resolve_config(cfg: TrialConfig) -> dict:
    """The configuration as run: every field, with the backbone resolved to the one used."""
    resolved = cfg.model_dump(mode="json")
    resolved["backbone"] = resolve_backbone(cfg.network, cfg.backbone)
    return resolved
