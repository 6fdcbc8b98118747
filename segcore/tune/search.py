"""Sweep spec -> Ray Tune search algorithm, scheduler and parameter space.

* ``optuna``: :class:`DedupOptunaSearch` (Ray's ``OptunaSearch`` with metric/mode *lists* for
  several objectives, NSGA-II or TPE) behind a ``ConcurrencyLimiter``.
* ``grid`` / ``random``: Ray's ``BasicVariantGenerator`` over ``tune.grid_search`` / sampling
  domains in the parameter space.
* ``spectral``: :class:`~segcore.tune.prior.SpectralSearch`, the predicted Pareto front of the
  spectral prior first, then NSGA-II, behind a ``ConcurrencyLimiter``.
* ``scheduler``: ``asha`` is Ray's ``AsyncHyperBandScheduler`` on one metric, ``mo_asha``
  :class:`~segcore.tune.schedulers.MultiObjectiveAsha` on every objective; time unit ``epoch``.

Two things Ray's stock pieces get wrong for us (docs/design.md, Components) are fixed in :class:`DedupOptunaSearch`:
a trial that the scheduler stopped early is told to Optuna as *pruned*, never as a complete multi-objective
point; and a configuration already evaluated (small categorical spaces repeat themselves) is not
run again: Optuna gets the earlier result and is asked for another point.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm, Searcher
from ray.tune.search.optuna import OptunaSearch

from segcore.config.sweep import Knob, SweepSpec, SweepSpecError
from segcore.names import METRIC_EPOCH, is_full_length

from .schedulers import MultiObjectiveAsha

__all__ = ["DedupOptunaSearch", "WarmStart", "build_search", "build_scheduler", "load_warm_start", "param_space",
           "optuna_space"]

logger = logging.getLogger(__name__)


def _config_key(config: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in config.items()))


class DedupOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that never runs a configuration twice and keeps early stops out of the front.

    Args:
        epochs: a trial's full length; a trial that ends with ``epoch < epochs`` was stopped by the
            scheduler and is told to Optuna as ``PRUNED`` (no objective values).
        space_size: number of distinct configurations, or ``None`` for a continuous space; once all
            were proposed the searcher reports ``FINISHED``.
        dedupe: answer repeats from earlier results instead of running them.
        max_retries: proposals tried per trial before a repeat is accepted (continuous spaces).
        skip: ``skip(config)`` true refuses a proposal like a repeat (told to Optuna as failed, asked
            again); the spectral prior refuses configurations dominated even optimistically.
        **kwargs: passed to ``OptunaSearch`` (space, metric, mode, sampler, ...).
    """

    def __init__(self, *, epochs: int, space_size: int | None = None, dedupe: bool = True, max_retries: int = 64,
                 skip: Callable[[dict[str, Any]], bool] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._skip = skip
        self._epochs = int(epochs)
        self._space_size = space_size
        self._dedupe = dedupe
        self._max_retries = max_retries
        self._keys: dict[str, tuple] = {}  # trial id -> config key
        self._proposed: set[tuple] = set()  # configs handed to Tune (running or done)
        self._values: dict[tuple, list[float] | float] = {}  # config key -> full-fidelity values
        self.skipped_repeats = 0

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._dedupe and self._space_size is not None and len(self._proposed) >= self._space_size:
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        if not self._dedupe or not isinstance(config, dict):
            return config
        for _ in range(self._max_retries):
            key = _config_key(config)
            if key not in self._proposed and not (self._skip is not None and self._skip(config)):
                break
            # A repeat: tell Optuna what it already knows (or that it is a running duplicate) and
            # ask again, so the sampler moves on without a wasted trial slot.
            ot_trial = self._ot_trials.pop(trial_id)
            known = self._values.get(key)
            if known is not None:
                self._ot_study.tell(ot_trial, known)
            else:
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            self.skipped_repeats += 1
            if self._space_size is not None and len(self._proposed) >= self._space_size:
                return Searcher.FINISHED
            config = super().suggest(trial_id)
        key = _config_key(config)
        self._keys[trial_id] = key
        self._proposed.add(key)
        return config

    def add_known(self, config: dict[str, Any], values: list[float] | None,
                  state: optuna.trial.TrialState = optuna.trial.TrialState.COMPLETE) -> None:
        """Tell the study a trial run elsewhere (a warm start, the spectral prior's trials) with
        ``study.add_trial``: ``values`` in the order of the metrics for a complete one, ``None`` for
        a pruned or failed one. It is not proposed again. A genetic sampler (NSGA-II) counts it in
        its first generation, so it can be a parent."""
        key = _config_key(config)
        self._proposed.add(key)
        complete = state == optuna.trial.TrialState.COMPLETE
        if complete:
            self._values[key] = list(values) if isinstance(self.metric, list) else values[0]
        generation_key = getattr(self._sampler, "_get_generation_key", None)
        self._ot_study.add_trial(optuna.trial.create_trial(
            state=state, values=list(values) if complete else None, params=dict(config),
            distributions={name: self._space[name] for name in config},
            system_attrs={generation_key(): 0} if generation_key is not None else None,
        ))

    def reserve(self, config: dict[str, Any]) -> None:
        """Mark a configuration that runs elsewhere (not told yet) as proposed."""
        self._proposed.add(_config_key(config))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if result and not error and not is_full_length(result.get(METRIC_EPOCH, self._epochs), self._epochs):
            # Stopped early by the scheduler: not a full-fidelity point, so it must not enter the
            # multi-objective front (Ray would tell it COMPLETE with its partial values).
            self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)
        if result and not error and trial_id in self._keys:
            metrics = self.metric if isinstance(self.metric, list) else [self.metric]
            values = [result.get(m) for m in metrics]
            if all(v is not None for v in values):
                self._values[self._keys[trial_id]] = values if isinstance(self.metric, list) else values[0]


def optuna_space(spec: SweepSpec) -> dict[str, optuna.distributions.BaseDistribution]:
    """The searched knobs as Optuna distributions (flat keys = TrialConfig fields)."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, knob in spec.searched_knobs().items():
        if knob.kind == "choice":
            out[name] = optuna.distributions.CategoricalDistribution(list(knob.values))
        elif knob.kind == "int":
            out[name] = optuna.distributions.IntDistribution(
                int(knob.low), int(knob.high), step=int(knob.step or 1), log=knob.log
            )
        else:
            out[name] = optuna.distributions.FloatDistribution(
                float(knob.low), float(knob.high), step=knob.step, log=knob.log
            )
    return out


def _ray_domain(knob: Knob, algorithm: str):
    if algorithm == "grid":
        return tune.grid_search(knob.grid_values())
    if knob.kind == "choice":
        return tune.choice(list(knob.values))
    if knob.kind == "int":
        if knob.log:
            return tune.lograndint(int(knob.low), int(knob.high) + 1)  # upper bound exclusive
        return tune.choice(knob.grid_values())
    if knob.log:
        return tune.loguniform(knob.low, knob.high)
    if knob.step:
        return tune.choice(knob.grid_values())
    return tune.uniform(knob.low, knob.high)


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """The explicit grid (``search.axes`` / ``search.seeds``), each point complete: a knob a point
    does not name takes its baseline value from the spec, so no point is left to chance."""
    points = spec.grid() * spec.num_samples
    names = list(dict.fromkeys(name for point in points for name in point))
    base = spec.base_config()
    return [{name: point.get(name, base.get(name)) for name in names} for point in points]


def _point_values(points: list[dict[str, Any]]) -> dict[str, list]:
    values: dict[str, list] = {}
    for point in points:
        for name, value in point.items():
            if value not in values.setdefault(name, []):
                values[name].append(value)
    return values


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """Tune's ``param_space``: the fixed trial config, plus sampling domains for grid/random.

    For ``optuna`` and ``spectral`` the searched knobs live in the searcher; Tune merges each suggestion into this.
    """
    space = spec.base_config()
    if spec.search.algorithm == "grid" and spec.search.explicit_points:
        # The configurations are the searcher's points_to_evaluate; Tune wants each key they set
        # to be a domain of the space that holds every value they give it.
        for name, values in _point_values(grid_points(spec)).items():
            space[name] = tune.choice(values)
        return space
    if spec.search.algorithm not in ("optuna", "spectral"):
        for name, knob in spec.searched_knobs().items():
            space[name] = _ray_domain(knob, spec.search.algorithm)
    return space


def _nsga2(spec: SweepSpec) -> optuna.samplers.NSGAIISampler:
    kwargs = {"population_size": spec.search.population_size} if spec.search.population_size else {}
    return optuna.samplers.NSGAIISampler(seed=spec.seed, **kwargs)


def _sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    return _nsga2(spec) if spec.sampler == "nsga2" else optuna.samplers.TPESampler(seed=spec.seed)


def _spectral_search(spec: SweepSpec, spectrum: dict[str, Any] | None, measure: Callable | None) -> Searcher:
    """The spectral prior (:mod:`segcore.tune.prior`): every configuration costed now."""
    from .prior import SpectralSearch, measure_configurations, spectral_candidates

    if spectrum is None:
        raise ValueError("search.algorithm: spectral needs the sweep's spectrum (spectral.enabled: true)")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    candidates = spectral_candidates(spec, spectrum, measure or measure_configurations)
    return SpectralSearch(candidates, objectives=spec.objectives, epochs=spec.epochs,
                          optuna_space=optuna_space(spec), sampler=_nsga2(spec))


def build_search(spec: SweepSpec, *, spectrum: dict[str, Any] | None = None,
                 warm_start: WarmStart | None = None, measure: Callable | None = None) -> SearchAlgorithm | Searcher:
    """The search algorithm for ``tune.TuneConfig(search_alg=...)``.

    Args:
        spectrum: the sweep's ``spectrum.json``, needed by the ``spectral`` algorithm.
        warm_start: finished trials of an earlier sweep (:func:`load_warm_start`): told to Optuna
            with ``study.add_trial``, or counted as finished by the spectral prior.
        measure: how the spectral prior costs the configurations, ``measure(spec, configs,
            metrics) -> [cost dict]`` (default :func:`segcore.tune.prior.measure_configurations`,
            one forward pass per network); a replay of a recorded sweep can pass the recorded costs.
    """
    if spec.search.algorithm == "spectral":
        prior = _spectral_search(spec, spectrum, measure)
        for config, values in (warm_start.trials if warm_start else []):
            prior.add_finished(config, {**values, METRIC_EPOCH: spec.epochs})
        return ConcurrencyLimiter(prior, max_concurrent=spec.max_concurrent)
    if spec.search.algorithm == "optuna":
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        metrics = list(spec.objectives)
        modes = [spec.objectives[m] for m in metrics]
        searcher = DedupOptunaSearch(
            space=optuna_space(spec),
            metric=metrics if len(metrics) > 1 else metrics[0],
            mode=modes if len(modes) > 1 else modes[0],
            sampler=_sampler(spec),
            epochs=spec.epochs,
            space_size=spec.space_size(),
            dedupe=spec.search.dedupe,
        )
        for config, values in (warm_start.trials if warm_start else []):
            searcher.add_known(config, [values[m] for m in metrics])
        return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent)
    if spec.search.algorithm == "grid" and spec.search.explicit_points:
        # Axes and seeds make the grid a list of configurations, not one product of domains: each
        # point replaces one of Tune's samples (num_samples = the points, see runner).
        return BasicVariantGenerator(points_to_evaluate=grid_points(spec), max_concurrent=spec.max_concurrent,
                                     random_state=spec.seed)
    return BasicVariantGenerator(max_concurrent=spec.max_concurrent, random_state=spec.seed)


@dataclass(frozen=True)
class WarmStart:
    """The finished trials of an earlier sweep that lie in this sweep's space.

    ``trials`` holds ``(searched knobs, objective values)`` pairs; ``finished`` counts the earlier
    sweep's full-length completed trials, those outside the space included.
    """

    experiment: str
    sweep: str
    trials: list[tuple[dict[str, Any], dict[str, float]]]
    finished: int

    def describe(self) -> str:
        return (f"warm start: {len(self.trials)} of the {self.finished} finished trial(s) of sweep {self.sweep!r} "
                f"(experiment {self.experiment!r}) lie in this space and seed the search; "
                f"{self.finished - len(self.trials)} ignored")


_OUTSIDE = object()


def _allowed(knob: Knob, value: Any) -> Any:
    """``value`` as the space spells it when ``knob`` allows it, else ``_OUTSIDE``."""
    import pandas as pd

    missing = value is None or (not isinstance(value, str) and bool(pd.isna(value)))
    if knob.kind in ("fixed", "choice"):
        for option in knob.values:
            if (option is None and missing) or (not missing and option == value):
                return option
        return _OUTSIDE
    if missing or not (knob.low <= float(value) <= knob.high or math.isclose(float(value), knob.low)
                       or math.isclose(float(value), knob.high)):
        return _OUTSIDE
    if knob.step or knob.kind == "int":
        return next((v for v in knob.grid_values() if math.isclose(float(v), float(value), abs_tol=1e-9)), _OUTSIDE)
    return float(value)


def load_warm_start(spec: SweepSpec) -> WarmStart | None:
    """The finished (completed, full-length) trials of ``spec.warm_start``'s sweep whose every knob
    value (``network`` and each ``space`` entry, fixed ones included) the new space allows, with
    their objectives; other params are ignored. ``None`` without a warm start.

    Raises:
        SweepSpecError: the experiment (or its tracking store) does not exist, naming
            ``warm_start.experiment``; the sweep has no trials there, naming ``warm_start.sweep``.
    """
    if spec.warm_start is None:
        return None
    from segcore.tracking.query import load_trials

    warm = spec.warm_start
    try:
        frame = load_trials(warm.experiment, warm.tracking_uri or spec.tracking_uri, include_partial=True)
    except (ValueError, FileNotFoundError) as exc:
        raise SweepSpecError([("warm_start.experiment", str(exc.args[0] if exc.args else exc))]) from None
    sweeps = sorted(str(name) for name in frame["sweep"].dropna().unique())
    if warm.sweep not in sweeps:
        message = (f"no trials of sweep {warm.sweep!r} in warm_start.experiment {warm.experiment!r}; "
                   f"its sweeps: {', '.join(sweeps) or '(none)'}")
        raise SweepSpecError([("warm_start.sweep", message)])
    finished = frame[(frame["sweep"] == warm.sweep) & frame["full_length"]]
    knobs, searched = spec.knobs(), spec.searched_knobs()
    trials = []
    for _, row in finished.iterrows():
        values = {name: _allowed(knob, row.get(name)) for name, knob in knobs.items()}
        objectives = {metric: row.get(metric) for metric in spec.objectives}
        if any(v is _OUTSIDE for v in values.values()) or any(_allowed_number(v) is None for v in objectives.values()):
            continue
        trials.append(({name: values[name] for name in searched}, {m: float(v) for m, v in objectives.items()}))
    return WarmStart(warm.experiment, warm.sweep, trials, len(finished))


def _allowed_number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def build_scheduler(spec: SweepSpec) -> TrialScheduler:
    """The spec's ``scheduler``: Ray's ASHA on one metric (``asha``), successive halving by
    non-dominated sorting over every objective (``mo_asha``), or first-in first-out without one."""
    scheduler = spec.scheduler
    if scheduler is None:
        return FIFOScheduler()
    objectives = spec.scheduler_objectives()
    if scheduler.name == "mo_asha":
        return MultiObjectiveAsha(objectives, max_t=spec.epochs, grace_period=scheduler.grace_period,
                                  reduction_factor=scheduler.reduction_factor, time_attr=METRIC_EPOCH)
    ((metric, mode),) = objectives.items()
    return AsyncHyperBandScheduler(
        time_attr=METRIC_EPOCH,
        metric=metric,
        mode=mode,
        max_t=spec.epochs,
        grace_period=scheduler.grace_period,
        reduction_factor=scheduler.reduction_factor,
    )
