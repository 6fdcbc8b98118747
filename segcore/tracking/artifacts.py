"""A trial's artifacts as bytes: the sample panel as PNG, per-class IoU as strict JSON."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from segcore.formatting import jsonable
from segcore.tracking import schema

__all__ = ["artifact_content", "png_bytes", "trial_artifacts"]


def png_bytes(image: np.ndarray) -> bytes:
    """PNG-encode an (H, W, 3) or (H, W) uint8 array (e.g. ``TrialResult.samples``)."""
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"image: expected a uint8 (H, W) or (H, W, 3) array, got {array.dtype} "
                         f"{array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def trial_artifacts(result: Any) -> dict[str, bytes]:
    """The per-trial artifacts of a ``segcore.train.TrialResult``: per-class IoU JSON, sample PNG."""
    artifacts: dict[str, bytes] = {}
    per_class = getattr(result, "per_class_iou", None)
    if per_class:
        artifacts[schema.ARTIFACT_PER_CLASS_IOU] = json.dumps(jsonable(per_class), indent=2,
                                                              allow_nan=False).encode()
    samples = getattr(result, "samples", None)
    if samples is not None:
        artifacts[schema.ARTIFACT_SAMPLES] = png_bytes(samples)
    return artifacts


def artifact_content(value: str | bytes | Path | np.ndarray) -> bytes | str:
    """Artifact content, read at call time so a temporary file may be deleted right after; a
    directory stays its (absolute) path, uploaded as it is."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, np.ndarray):
        return png_bytes(value)
    path = Path(value)
    if path.is_dir():
        return str(path.resolve())
    return path.read_bytes()
