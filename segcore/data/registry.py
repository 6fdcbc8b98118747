"""Name -> dataset builder map; ``build_dataset`` is the one way to open a dataset by name."""

from __future__ import annotations

from collections.abc import Callable

from .base import SegmentationDataset

__all__ = ["register_dataset", "build_dataset", "list_datasets"]

_BUILDERS: dict[str, Callable[..., SegmentationDataset]] = {}


def register_dataset(name: str):
    """Decorator registering ``builder(root, split, *, transform, labels_only, **kwargs)``."""

    def wrap(builder):
        if name in _BUILDERS:
            raise KeyError(f"dataset {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder

    return wrap


def list_datasets() -> list[str]:
    return sorted(_BUILDERS)


def build_dataset(
    name: str,
    root: str | None = None,
    split: str = "train",
    *,
    transform=None,
    labels_only: bool = False,
    **kwargs,
) -> SegmentationDataset:
    """Open dataset ``name`` (one of :func:`list_datasets`) at ``root`` for ``split``.

    ``labels_only=True`` skips the images (the spectral analysis's fast path). Extra keyword
    arguments go to the dataset (e.g. ``num_samples``/``cutoff`` for ``synthetic``).
    """
    if name not in _BUILDERS:
        raise KeyError(f"unknown dataset {name!r}; valid datasets: {', '.join(list_datasets())}")
    return _BUILDERS[name](root, split, transform=transform, labels_only=labels_only, **kwargs)
