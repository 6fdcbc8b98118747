"""Tune callbacks on the driver: MLflow bookkeeping the trials cannot do themselves, and progress.

The trials record their own child runs (config and node, per-epoch metrics, final metrics and
artifacts; see :mod:`segcore.tune.trainable`). Only the driver knows *why* a trial ended otherwise:
:class:`TrackingCallback` tags trials that the scheduler stopped early as ``early_stopped`` and ends
failed trials (after their retries) as ``FAILED`` with the reason, and leaves no run ``RUNNING``
when the sweep ends (with :func:`segcore.tune.run_sweep`). Both callbacks hold only plain settings,
so they survive ``Tuner.restore``.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from segcore import names
from segcore.formatting import format_cell

__all__ = ["TrackingCallback", "ProgressCallback", "trial_status", "error_reason"]

_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Failure)\b")
_KNOB_SHORT = {"grid_stride": "s", "keep": "keep", "block": "b", "truncation": "", "block_mode": "", "loss_at": "loss@"}


def trial_status(last_result: dict[str, Any] | None, epochs: int, errored: bool) -> str:
    """``completed`` (every epoch ran), ``early_stopped`` (the scheduler stopped it) or ``failed``."""
    if errored:
        return names.STATUS_FAILED
    if names.is_full_length((last_result or {}).get(names.METRIC_EPOCH), epochs):
        return names.STATUS_COMPLETED
    return names.STATUS_EARLY_STOPPED


def error_reason(trial) -> str:
    """The last line of a failed trial's traceback, e.g. ``FloatingPointError: non-finite ...``."""
    path = getattr(trial, "error_file", None)
    text = ""
    if path and Path(path).is_file():
        text = Path(path).read_text(errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if _EXC_LINE.match(line):
            return line
    return lines[-1] if lines else "trial failed (no error file)"


def _numeric(result: dict[str, Any]) -> dict[str, float]:
    wanted = (names.METRIC_MIOU, names.METRIC_PIXEL_ACCURACY, names.METRIC_TRAIN_LOSS, names.METRIC_EPOCH, *names.COST_METRICS)
    out = {}
    for key in wanted:
        value = result.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


class TrackingCallback(Callback):
    """Driver-side MLflow bookkeeping through :class:`segcore.tracking.SweepRecorder`."""

    def __init__(self, tracking_uri: str, experiment: str, sweep_name: str, epochs: int):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.sweep_name = sweep_name
        self.epochs = int(epochs)
        self._recorder = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_recorder"] = None  # re-created after Tuner.restore
        return state

    @property
    def recorder(self):
        if self._recorder is None:
            from segcore.tracking import SweepRecorder

            self._recorder = SweepRecorder(self.tracking_uri, self.experiment, self.sweep_name)
        return self._recorder

    def on_trial_complete(self, iteration, trials, trial, **info):
        status = trial_status(trial.last_result, self.epochs, errored=False)
        if status == names.STATUS_EARLY_STOPPED and trial.last_result:
            # No metrics here: the trial logged each epoch itself, and this process cannot know
            # which steps are already in the store (logging the last one again would duplicate it).
            self.recorder.finish_trial(trial.trial_id, names.STATUS_EARLY_STOPPED)

    def on_trial_error(self, iteration, trials, trial, **info):
        reason = error_reason(trial)
        # The trial may have died before it opened its run (e.g. a bad config): find-or-create it.
        self.recorder.trial_run(trial.trial_id, dict(trial.config), node=(trial.last_result or {}).get("node"))
        self.recorder.finish_trial(
            trial.trial_id,
            names.STATUS_FAILED,
            metrics=_numeric(trial.last_result or {}) or None,
            error=reason,
        )

    def on_experiment_end(self, trials, **info):
        self.recorder.flush()


class ProgressCallback(Callback):
    """One compact line per trial event (Ray's own status table is turned off).

    A trial is numbered by its place in Tune's list of trials (the order they were created, which
    ``Tuner.restore`` keeps): the same number in every line about it, in this run and after
    ``--resume``, and for a grid search the grid point's number in ``segcore sweep --dry-run``.
    """

    def __init__(self, total: int, epochs: int, objectives: dict[str, str], searched: list[str]):
        self.total = total
        self.epochs = epochs
        self.objectives = dict(objectives)
        self.searched = [k for k in searched if k != "network"]
        self._t0 = time.monotonic()

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._t0 = time.monotonic()

    def _print(self, text: str) -> None:
        print(f"[{time.monotonic() - self._t0:6.1f}s] {text}", file=sys.stdout, flush=True)

    def _label(self, trials, trial) -> str:
        cfg = trial.config
        knobs = " ".join(f"{_KNOB_SHORT.get(k, k + '=')}{format_cell(cfg.get(k))}" for k in self.searched)
        number = next((i + 1 for i, t in enumerate(trials) if t.trial_id == trial.trial_id), len(trials) + 1)
        return f"trial {number:>2}/{max(self.total, number)} {trial.trial_id} {cfg.get('network')} {knobs}".rstrip()

    def _metrics(self, result: dict[str, Any]) -> str:
        keys = list(self.objectives) + [k for k in (names.METRIC_TRAIN_LOSS,) if k not in self.objectives]
        return " ".join(f"{k}={format_cell(result[k])}" for k in keys if k in result)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._print(f"start {self._label(trials, trial)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        where = result.get("node", "")
        cpu_note = " (GPU granted, no CUDA: on CPU)" if result.get("gpu_fallback") else ""
        self._print(
            f"epoch {self._label(trials, trial)} {format_cell(result.get(names.METRIC_EPOCH))}/{self.epochs} "
            f"{self._metrics(result)} [{where}]{cpu_note}"
        )

    def on_trial_complete(self, iteration, trials, trial, **info):
        status = trial_status(trial.last_result, self.epochs, errored=False)
        self._print(f"{status} {self._label(trials, trial)} {self._metrics(trial.last_result or {})}")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._print(f"retry {self._label(trials, trial)}: {error_reason(trial)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._print(f"FAILED {self._label(trials, trial)}: {error_reason(trial)}")
