"""Ray Tune, and only here: a sweep spec becomes a Tuner whose trials call :func:`segcore.train.fit`.

* :mod:`.validate` — the checks that need models, data and the trial's validation (no Ray).
* :mod:`.search` — search algorithm (Optuna multi-objective with dedupe, grid, random), ASHA.
* :mod:`.trainable` — the trial: ``fit`` with a report callback, checkpoints, CPU fallback.
* :mod:`.callbacks` — driver-side MLflow bookkeeping and compact progress lines.
* :mod:`.runner` — connect to Ray, parent run, build/restore the Tuner, collect the results.
* :mod:`.summary` — completed trials and the best one per network (pandas only).

The names below are imported on first use, so ``segcore.tune.validate`` (``segcore sweep
--dry-run``) does not pull in Ray.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SweepOutcome": "runner",
    "build_tuner": "runner",
    "connect": "runner",
    "run_sweep": "runner",
    "results_frame": "runner",
    "best_per_network": "summary",
    "completed": "summary",
    "load_sweep": "validate",
    "validate_sweep": "validate",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
