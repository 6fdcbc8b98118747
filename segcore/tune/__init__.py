"""Ray Tune, and only here: a sweep spec becomes a Tuner whose trials call :func:`segcore.train.fit`.

* :mod:`.search` — search algorithm (Optuna multi-objective with dedupe, grid, random), ASHA.
* :mod:`.trainable` — the trial: ``fit`` with a report callback, checkpoints, CPU fallback.
* :mod:`.callbacks` — driver-side MLflow bookkeeping and compact progress lines.
* :mod:`.runner` — connect to Ray, parent run, build/restore the Tuner, collect the results.
* :mod:`.summary` — best trial per network (pandas only).
"""

from .runner import SweepOutcome, build_tuner, connect, results_frame, run_sweep
from .summary import best_per_network, completed, format_table

__all__ = [
    "SweepOutcome",
    "build_tuner",
    "connect",
    "run_sweep",
    "results_frame",
    "best_per_network",
    "completed",
    "format_table",
]
