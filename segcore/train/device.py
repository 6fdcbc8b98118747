"""Which device a trial trains on."""

from __future__ import annotations

import os
import warnings

import torch

__all__ = ["resolve_device"]


def resolve_device(requested: str = "auto") -> torch.device:
    """``cuda`` when present; the CPU otherwise.

    A scheduler that granted a GPU sets ``CUDA_VISIBLE_DEVICES``; if CUDA is nevertheless not
    usable (driver missing, GPU lost), the trial warns and falls back to the CPU instead of dying.
    ``device="cuda"`` without any GPU granted or present is a configuration error.
    """
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    granted = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if granted.strip() not in ("", "-1"):
        warnings.warn(
            f"a GPU was granted (CUDA_VISIBLE_DEVICES={granted}) but torch.cuda.is_available() is False; "
            "training on the CPU",
            RuntimeWarning,
            stacklevel=2,
        )
        return torch.device("cpu")
    if requested == "cuda":
        raise ValueError("config.device: 'cuda' requested but no CUDA device is available; valid: auto, cpu")
    return torch.device("cpu")
