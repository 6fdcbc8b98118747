"""MLflow, and only here: the sweep's parent run, one child run per trial, and reading runs back
into pandas. ``segcore.tracking.schema`` holds the names both sides agree on (no MLflow import).

``SweepRecorder`` and friends are imported lazily, so ``import segcore.tracking.schema`` stays
free of MLflow.
"""

from __future__ import annotations

from typing import Any

_WRITER_NAMES = ("SweepRecorder", "DEFAULT_TRACKING_URI", "resolve_tracking_uri", "flatten_config",
                 "png_bytes", "trial_artifacts")

__all__ = list(_WRITER_NAMES)


def __getattr__(name: str) -> Any:
    if name in _WRITER_NAMES:
        from segcore.tracking import writer

        return getattr(writer, name)
    raise AttributeError(f"module 'segcore.tracking' has no attribute {name!r}")
