"""A sweep's ``spectrum.json`` flattened for its MLflow parent run: curves as metrics, scalars
as params.

A list as long as ``strides`` is a curve over strides (step = stride) unless its key names
blocks (step = block); a dict of such lists gives ``key.sub`` curves (e.g. ``oracle_miou.soft``).
Scalars (efficient grid, dataset, split, ...) become string params.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["is_number", "spectrum_points", "spectrum_scalars"]

# MLflow's limit on a param value (mlflow.utils.validation).
MAX_PARAM_VALUE = 6000


def is_number(value: Any) -> bool:
    """A Python or NumPy int or float (not a bool)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))


def spectrum_points(spectrum: Mapping[str, Any]) -> list[tuple[str, float, int]]:
    """The per-stride and per-block curves of ``spectrum`` as (name, value, step) points; a
    missing value (None) becomes NaN."""
    axes = {"strides": [int(s) for s in spectrum.get("strides", [])],
            "blocks": [int(b) for b in spectrum.get("blocks", [])]}
    points: list[tuple[str, float, int]] = []

    def add(name: str, values: Any) -> None:
        axis = axes["blocks"] if "block" in name else axes["strides"]
        if (isinstance(values, list) and axis and len(values) == len(axis)
                and all(is_number(v) or v is None for v in values)):
            points.extend((name, float("nan") if v is None else float(v), step)
                          for v, step in zip(values, axis))

    for key, value in spectrum.items():
        if key in axes:
            continue
        if isinstance(value, Mapping):
            for sub, values in value.items():
                add(f"{key}.{sub}", values)
        else:
            add(key, value)
    return points


def spectrum_scalars(spectrum: Mapping[str, Any]) -> dict[str, str]:
    """The scalars of ``spectrum`` (``key`` or ``key.sub``) as string params."""
    scalars: dict[str, str] = {}
    for key, value in spectrum.items():
        if isinstance(value, Mapping):
            for sub, item in value.items():
                if not isinstance(item, (list, Mapping)):
                    scalars[f"{key}.{sub}"] = str(item)[:MAX_PARAM_VALUE]
        elif not isinstance(value, list):
            scalars[key] = str(value)[:MAX_PARAM_VALUE]
    return scalars
