"""Multi-objective asynchronous successive halving (MOASHA) for Ray Tune.

Ray's ``AsyncHyperBandScheduler`` ranks a rung by one metric, so a sweep of accuracy against cost
stops the cheap, less accurate trials that belong on the low-cost end of the Pareto front.
:class:`MultiObjectiveAsha` keeps ASHA's schedule (rungs at ``grace_period * reduction_factor**k``
epochs below ``max_t``, a decision the moment a trial reaches a rung, from what that rung has
recorded so far) but ranks a rung by non-dominated sorting over every objective, ties within a front
broken by crowding distance (Schmucker et al., "Multi-objective multi-fidelity hyperparameter
optimization with application to fairness", 2021; Syne Tune's ``MOASHA``).

The decision itself is the pure function :func:`continues_at_rung`: a trial goes on iff it is in
the top ``1 / reduction_factor`` of the trials recorded at the rung, itself included, by (front,
crowding). With one objective it is ASHA's quantile rule taken as an order statistic (Ray
interpolates between the recorded values instead, and leaves the arriving trial out of them).

A trial this scheduler stops ends ``early_stopped`` and is told to the searcher as pruned
(docs/design.md, Contracts: "Full length").
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from segcore.dominance import rows_ahead, top_share_count
from segcore.names import METRIC_EPOCH

__all__ = ["MultiObjectiveAsha", "continues_at_rung", "rung_milestones"]


def rung_milestones(grace_period: float, reduction_factor: float, max_t: float) -> list[float]:
    """The rungs, lowest first: ``grace_period * reduction_factor**k`` for every ``k >= 0`` below
    ``max_t`` (a trial that reaches ``max_t`` has finished; nothing is decided there)."""
    milestones = []
    milestone = float(grace_period)
    while milestone < max_t:
        milestones.append(milestone)
        milestone *= reduction_factor
    return milestones


def continues_at_rung(rung_losses: np.ndarray, row: int, reduction_factor: float) -> bool:
    """Whether the trial at ``row`` of a rung table goes on to the next rung.

    Args:
        rung_losses: (N, M) losses (every column minimised) of the N trials recorded at the rung,
            the arriving trial included.
        row: the arriving trial's row.
        reduction_factor: the rung keeps the top ``1 / reduction_factor``.

    Returns:
        True iff fewer than :func:`segcore.dominance.top_share_count` rows rank strictly ahead of
        ``row`` by (non-dominated front, crowding distance). Ties go to the arriving trial, as ASHA
        keeps a trial that equals its cutoff.
    """
    rung_losses = np.asarray(rung_losses, dtype=float)
    return rows_ahead(rung_losses, row) < top_share_count(len(rung_losses), reduction_factor)


class MultiObjectiveAsha(FIFOScheduler):
    """Asynchronous successive halving whose rungs promote by non-dominated sorting.

    Args:
        objectives: ``{metric: "max" | "min"}``, every objective of the sweep (one is plain ASHA
            with the order-statistic cutoff).
        max_t: a trial's full length in ``time_attr`` units; a trial that reaches it is stopped
            as finished, like Ray's ASHA with ``stop_last_trials``.
        grace_period: the first rung.
        reduction_factor: a rung keeps the top ``1 / reduction_factor`` of its trials, and the
            rungs are this factor apart.
        time_attr: the reported result that counts progress (segcore reports ``epoch``).
    """

    def __init__(self, objectives: Mapping[str, str], *, max_t: float, grace_period: float = 1,
                 reduction_factor: float = 2.0, time_attr: str = METRIC_EPOCH):
        if not objectives:
            raise ValueError("objectives: give at least one {metric: 'max' | 'min'}")
        bad = {name: mode for name, mode in objectives.items() if mode not in ("max", "min")}
        if bad:
            raise ValueError(f"objectives: modes must be 'max' or 'min' (got {bad})")
        if not (0 < grace_period <= max_t) or reduction_factor <= 1:
            raise ValueError(f"need 0 < grace_period <= max_t and reduction_factor > 1 (got grace_period="
                             f"{grace_period}, max_t={max_t}, reduction_factor={reduction_factor})")
        super().__init__()
        self._objectives = dict(objectives)
        # Tune checks that every result holds the scheduler's `metric`, a single key.
        self._metric = next(iter(self._objectives))
        self._signs = np.array([-1.0 if mode == "max" else 1.0 for mode in self._objectives.values()])
        self._max_t = max_t
        self._reduction_factor = reduction_factor
        self._time_attr = time_attr
        # Highest first, so the first milestone a result has passed is its rung.
        self._rungs: list[tuple[float, dict[str, np.ndarray]]] = [
            (milestone, {}) for milestone in reversed(rung_milestones(grace_period, reduction_factor, max_t))
        ]
        self._num_stopped = 0

    @property
    def objectives(self) -> dict[str, str]:
        return dict(self._objectives)

    @property
    def rungs(self) -> dict[float, dict[str, np.ndarray]]:
        """Milestone -> {trial id: its losses recorded there} (every column minimised)."""
        return {milestone: dict(recorded) for milestone, recorded in self._rungs}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        # The objectives are the scheduler's own: a metric or mode from TuneConfig would conflict.
        return metric is None and mode is None

    def _losses(self, result: Mapping[str, Any]) -> np.ndarray | None:
        if any(result.get(name) is None for name in self._objectives):
            return None
        values = np.array([float(result[name]) for name in self._objectives])
        return self._signs * values

    def _record(self, trial_id: str, progress: float, losses: np.ndarray) -> str:
        """Record a trial at the highest rung it has reached (once) and decide there."""
        for milestone, recorded in self._rungs:
            if progress < milestone:
                continue
            if trial_id in recorded:
                return TrialScheduler.CONTINUE  # decided at this rung already
            recorded[trial_id] = losses
            table = np.stack(list(recorded.values()))
            row = list(recorded).index(trial_id)
            if continues_at_rung(table, row, self._reduction_factor):
                return TrialScheduler.CONTINUE
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        progress = result.get(self._time_attr)
        losses = self._losses(result)
        if progress is None or losses is None:
            return TrialScheduler.CONTINUE
        if progress >= self._max_t:
            action = TrialScheduler.STOP
        else:
            action = self._record(trial.trial_id, float(progress), losses)
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        # A trial that finishes between reports still fills the rung it reached, as in Ray's ASHA.
        progress = (result or {}).get(self._time_attr)
        losses = self._losses(result or {})
        if progress is not None and losses is not None:
            self._record(trial.trial_id, float(progress), losses)

    def debug_string(self) -> str:
        sizes = ", ".join(f"{milestone:g}: {len(recorded)}" for milestone, recorded in reversed(self._rungs))
        return (f"Using MultiObjectiveAsha on {self._objectives}: num_stopped={self._num_stopped}; "
                f"trials per rung {{{sizes}}}")

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))
