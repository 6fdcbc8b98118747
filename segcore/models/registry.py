"""Name -> model builder map; :func:`create_model` is the one way to build a network by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .base import SegmentationModel

__all__ = ["register_model", "create_model", "list_models", "model_entry", "ModelEntry"]


class ModelEntry:
    """A registered builder with what it accepts (so bad input is caught before it is called)."""

    def __init__(self, name: str, builder: Callable[..., SegmentationModel], cls: type[SegmentationModel],
                 default_backbone: str | None, backbones: tuple[str, ...], tiny: bool):
        self.name, self.builder, self.cls = name, builder, cls
        self.default_backbone, self.backbones, self.tiny = default_backbone, backbones, tiny


_MODELS: dict[str, ModelEntry] = {}


def register_model(
    name: str,
    *,
    cls: type[SegmentationModel],
    default_backbone: str | None = None,
    backbones: tuple[str, ...] = (),
    tiny: bool = False,
):
    """Decorator registering ``builder(num_classes, *, grid_stride, keep, truncation, backbone,
    weights_backbone, **model_options) -> SegmentationModel`` under ``name``.

    ``cls`` is the model class (it declares the valid grid strides); ``backbones`` the valid
    backbone names (empty: the network takes no backbone); ``tiny`` marks test-sized variants.
    """

    def wrap(builder):
        if name in _MODELS:
            raise KeyError(f"model {name!r} is already registered")
        _MODELS[name] = ModelEntry(name, builder, cls, default_backbone, tuple(backbones), tiny)
        return builder

    return wrap


def list_models(*, tiny: bool | None = None) -> list[str]:
    """Registered model names (``tiny=True``: only the test-sized variants, ``False``: only full)."""
    return sorted(n for n, e in _MODELS.items() if tiny is None or e.tiny == tiny)


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; ``KeyError`` listing the valid names otherwise."""
    if name not in _MODELS:
        raise KeyError(f"unknown network {name!r}; valid networks: {', '.join(list_models())}")
    return _MODELS[name]


def resolve_backbone(name: str, backbone: str | None) -> str | None:
    """The backbone ``name`` will use; ``ValueError`` listing the valid backbones otherwise."""
    entry = model_entry(name)
    if not entry.backbones:
        if backbone is not None:
            raise ValueError(f"network {name!r} takes no backbone, got backbone={backbone!r}")
        return None
    if backbone is None:
        return entry.default_backbone
    if backbone not in entry.backbones:
        raise ValueError(
            f"unknown backbone {backbone!r} for network {name!r}; valid backbones: {', '.join(entry.backbones)}"
        )
    return backbone


def create_model(
    name: str,
    num_classes: int,
    *,
    grid_stride: int = 4,
    keep: float = 1.0,
    truncation: str = "fft",
    backbone: str | None = None,
    weights: str | None = None,
    weights_backbone: str | None = None,
    **model_options: Any,
) -> SegmentationModel:
    """Build network ``name`` (one of :func:`list_models`) with the knobs set.

    Args:
        name: registered network name.
        num_classes: number of output classes ``C``.
        grid_stride: stride of the grid the logits are predicted on; the model declares the valid
            strides (``cls.valid_strides``) and an invalid one raises ``ValueError`` listing them.
        keep: share of decoder-feature frequencies kept per axis, in (0, 1].
        truncation: ``fft`` or ``resize``.
        backbone: backbone name (``None``: the network's default); invalid ones are listed.
        weights: path of a local state dict (or a ``segcore`` ``checkpoint.pt``) loaded into the
            whole network; ``None`` leaves it randomly initialised.
        weights_backbone: torchvision weights name for the backbone (e.g. ``IMAGENET1K_V1``),
            passed through to torchvision; ``None`` (default) downloads nothing.
        **model_options: architecture options of the network (e.g. ``output_stride``, ``width``).

    Returns:
        A :class:`SegmentationModel`; ``model(x)`` maps ``(N, 3, H, W)`` to logits
        ``(N, C, ceil(H/s), ceil(W/s))``.
    """
    entry = model_entry(name)
    backbone = resolve_backbone(name, backbone)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    kwargs: dict[str, Any] = dict(grid_stride=grid_stride, keep=keep, truncation=truncation, **model_options)
    if entry.backbones:
        kwargs.update(backbone=backbone, weights_backbone=weights_backbone)
    elif weights_backbone is not None:
        raise ValueError(f"network {name!r} takes no backbone, got weights_backbone={weights_backbone!r}")
    try:
        model = entry.builder(num_classes, **kwargs)
    except (TypeError, ValueError) as exc:  # a bad knob or an unknown option: say which network
        raise ValueError(f"network {name!r}: {exc}") from exc
    model.network = name
    if weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a state dict (or the ``model`` entry of a ``checkpoint.pt``) from ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is a bad file for the user
        raise ValueError(f"cannot read weights file {path}: {exc}") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"weights file {path} does not match the network: {exc}") from exc
