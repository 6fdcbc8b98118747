"""Which device a trial trains on: the one owner of the GPU-to-CPU fallback."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch

__all__ = ["DeviceChoice", "choose_device"]

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DeviceChoice:
    """The device to train on and, when a wanted GPU had to be given up, why."""

    device: torch.device
    fallback_reason: str | None = None

    @property
    def gpu_fallback(self) -> bool:
        """Whether a GPU was wanted (requested or granted) but the trial runs on the CPU."""
        return self.fallback_reason is not None


def _granted_by_environment() -> bool:
    # A scheduler that grants GPUs (Ray, Slurm) names them in CUDA_VISIBLE_DEVICES.
    return os.environ.get("CUDA_VISIBLE_DEVICES", "").strip() not in ("", "-1")


def _why_cuda_is_not_usable() -> str:
    if torch.version.cuda is None:
        return f"this PyTorch build ({torch.__version__}) has no CUDA support"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    shown = "unset" if visible is None else repr(visible)
    return (f"torch.cuda.is_available() is False (PyTorch {torch.__version__} built for CUDA "
            f"{torch.version.cuda}; CUDA_VISIBLE_DEVICES {shown}): no driver or no usable device")


def choose_device(requested: str = "auto", *, gpu_granted: bool | None = None) -> DeviceChoice:
    """Decide the device of a trial; every caller (``fit``, the Ray Tune trainable) asks here.

    - ``cpu``: the CPU, always (a granted GPU then stays idle; that is not a fallback).
    - ``auto``: CUDA when ``torch.cuda.is_available()``, else the CPU.
    - ``cuda``: CUDA when usable.
    - The fallback: a GPU was wanted — ``cuda`` requested, or ``auto`` with a GPU granted by the
      scheduler — but CUDA is not usable (a CPU-only PyTorch, no driver, a lost device, the fake
      GPUs of a test cluster). The trial runs on the CPU instead of failing, warns with a
      :class:`RuntimeWarning` naming the reason, and the choice records it
      (:attr:`DeviceChoice.fallback_reason`, :attr:`DeviceChoice.gpu_fallback`), so a sweep's
      results show which trials ran on the CPU.

    Args:
        requested: ``auto``, ``cpu`` or ``cuda`` (``TrialConfig.device``).
        gpu_granted: whether a scheduler granted this trial a GPU; ``None`` reads it from
            ``CUDA_VISIBLE_DEVICES`` (set and not ``-1``).

    Raises:
        ValueError: ``requested`` is not one of ``auto``, ``cpu``, ``cuda``.
    """
    if requested not in DEVICES:
        raise ValueError(f"config.device: unknown device {requested!r}; valid: {', '.join(DEVICES)}")
    if requested == "cpu":
        return DeviceChoice(torch.device("cpu"))
    if torch.cuda.is_available():
        return DeviceChoice(torch.device("cuda"))
    granted = _granted_by_environment() if gpu_granted is None else gpu_granted
    if requested == "auto" and not granted:
        return DeviceChoice(torch.device("cpu"))
    wanted = "'cuda' requested" if requested == "cuda" else "a GPU was granted"
    reason = f"{wanted} but {_why_cuda_is_not_usable()}"
    warnings.warn(f"{reason}; training on the CPU", RuntimeWarning, stacklevel=2)
    return DeviceChoice(torch.device("cpu"), reason)
