"""MLflow, and only here: the sweep's parent run, one child run per trial, and reading runs back
into pandas.

* :mod:`~segcore.tracking.schema`: the record's layout (tags, artifacts); no MLflow import.
* :mod:`~segcore.tracking.store`: the tracking URI, filter strings and paging, find-or-create of
  the experiment and its runs.
* :mod:`~segcore.tracking.queue`: the ordered, retrying background write queue.
* :mod:`~segcore.tracking.spectrum`: ``spectrum.json`` flattened into metrics and params.
* :mod:`~segcore.tracking.artifacts`: a trial's artifacts (sample PNG, per-class IoU JSON).
* :mod:`~segcore.tracking.recorder`: :class:`SweepRecorder`, the writer tune calls.
* :mod:`~segcore.tracking.query`: the reader analysis calls.
* :mod:`~segcore.tracking.links`: the MLflow UI command and the link to an experiment's runs.

The names below are imported lazily, so ``import segcore.tracking.schema`` stays free of MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY_NAMES = {
    "SweepRecorder": "recorder",
    "flatten_config": "recorder",
    "png_bytes": "artifacts",
    "trial_artifacts": "artifacts",
    "DEFAULT_TRACKING_URI": "store",
    "resolve_tracking_uri": "store",
}

__all__ = list(_LAZY_NAMES)


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        module = importlib.import_module(f"segcore.tracking.{_LAZY_NAMES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'segcore.tracking' has no attribute {name!r}")
