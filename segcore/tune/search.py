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

import numpy as np
import optuna
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, SearchAlgorithm, Searcher
from ray.tune.search.optuna import OptunaSearch

from segcore.config.knobs import config_key
from segcore.config.sweep import Knob, SweepSpec, SweepSpecError
from segcore.names import METRIC_EPOCH, is_full_length

from .constraints import ConstraintCheck
from .schedulers import MultiObjectiveAsha

__all__ = ["DedupOptunaSearch", "WarmStart", "build_search", "build_scheduler", "constraint_check", "explicit_points",
           "load_warm_start", "param_space", "optuna_space", "tune_num_samples"]

logger = logging.getLogger(__name__)


class DedupOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that never runs a configuration twice or out of bounds, and keeps early
    stops out of the front.

    Args:
        epochs: a trial's full length; a trial that ends with ``epoch < epochs`` was stopped by the
            scheduler and is told to Optuna as ``PRUNED`` (no objective values).
        space_size: number of distinct configurations, or ``None`` for a continuous space; once all
            were proposed (or found infeasible) the searcher reports ``FINISHED``.
        dedupe: answer repeats from earlier results instead of running them.
        constraint_check: the spec's cost constraints; each proposal's constraint values are set
            on its Optuna trial (``Trial.set_constraint``, read by NSGA-II and TPE), and an
            infeasible proposal is told ``PRUNED`` without running.
        max_retries: proposals tried per trial before a repeat is accepted (continuous spaces); an
            infeasible proposal is never accepted (Tune asks again later).
        skip: ``skip(config)`` true refuses a proposal like a repeat (told to Optuna as failed, asked
            again); the spectral prior refuses configurations dominated even optimistically.
        **kwargs: passed to ``OptunaSearch`` (space, metric, mode, sampler, ...).
    """

    def __init__(self, *, epochs: int, space_size: int | None = None, dedupe: bool = True,
                 constraint_check: ConstraintCheck | None = None, max_retries: int = 64,
                 skip: Callable[[dict[str, Any]], bool] | None = None, **kwargs):
        super().__init__(**kwargs)
        self._skip = skip
        self._epochs = int(epochs)
        self._space_size = space_size
        self._dedupe = dedupe
        self._constraint_check = constraint_check
        self._max_retries = max_retries
        self._keys: dict[str, tuple] = {}  # trial id -> config key
        self._proposed: set[tuple] = set()  # configs handed to Tune (running or done) or infeasible
        self._values: dict[tuple, list[float] | float] = {}  # config key -> full-fidelity values
        self.skipped_repeats = 0
        self.skipped_infeasible = 0

    def _exhausted(self) -> bool:
        return self._dedupe and self._space_size is not None and len(self._proposed) >= self._space_size

    def _infeasible(self, trial_id: str, config: dict[str, Any]) -> bool:
        """Set the proposal's constraint values on its Optuna trial; whether it breaks one."""
        if self._constraint_check is None:
            return False
        values = self._constraint_check.values(config)
        for name, value in values.items():
            self._ot_trials[trial_id].set_constraint(name, value)
        return any(value > 0 for value in values.values())

    def _tell_skipped(self, trial_id: str, key: tuple, infeasible: bool) -> None:
        """Tell Optuna about a proposal that will not run, so the sampler moves on: an infeasible
        one as pruned (its constraint values stored), a repeat with the earlier result (or as
        failed while its twin still runs)."""
        ot_trial = self._ot_trials.pop(trial_id)
        if infeasible:
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.PRUNED)
            self._proposed.add(key)
            self.skipped_infeasible += 1
            return
        known = self._values.get(key)
        if known is not None:
            self._ot_study.tell(ot_trial, known)
        else:
            self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        self.skipped_repeats += 1

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._exhausted():
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        for _ in range(self._max_retries):
            if not isinstance(config, dict):
                return config
            key = config_key(config)
            infeasible = self._infeasible(trial_id, config)
            refused = self._skip is not None and self._skip(config)
            if not infeasible and not refused and not (self._dedupe and key in self._proposed):
                break
            self._tell_skipped(trial_id, key, infeasible)
            if self._exhausted():
                return Searcher.FINISHED
            config = super().suggest(trial_id)
        else:  # every proposal skipped: a repeat may run again, an infeasible point never
            if not isinstance(config, dict):
                return config
            key = config_key(config)
            if self._infeasible(trial_id, config):
                self._tell_skipped(trial_id, key, infeasible=True)
                logger.warning("%d proposals in a row broke the constraints or repeated earlier ones; "
                               "asking again later", self._max_retries)
                return None
        self._keys[trial_id] = key
        self._proposed.add(key)
        return config

    def add_known(self, config: dict[str, Any], values: list[float] | None,
                  state: optuna.trial.TrialState = optuna.trial.TrialState.COMPLETE) -> None:
        """Tell the study a trial run elsewhere (a warm start, the spectral prior's trials) with
        ``study.add_trial``: ``values`` in the order of the metrics for a complete one, ``None`` for
        a pruned or failed one, with its constraint values when the sweep has constraints. It is not
        proposed again. A genetic sampler (NSGA-II) counts it in its first generation, so it can be
        a parent."""
        key = config_key(config)
        self._proposed.add(key)
        complete = state == optuna.trial.TrialState.COMPLETE
        if complete:
            self._values[key] = list(values) if isinstance(self.metric, list) else values[0]
        generation_key = getattr(self._sampler, "_get_generation_key", None)
        constraints = self._constraint_check.values(config) if self._constraint_check is not None else {}
        self._ot_study.add_trial(optuna.trial.create_trial(
            state=state, values=list(values) if complete else None, params=dict(config),
            distributions={name: self._space[name] for name in config},
            system_attrs={generation_key(): 0} if generation_key is not None else None,
            constraints=constraints or None,
        ))

    def withdraw(self, trial_id: str, *, keep_proposed: bool) -> None:
        """Take back the proposal made for ``trial_id`` (it will not run): told to Optuna as failed;
        its configuration stays proposed only with ``keep_proposed`` (it ran or runs elsewhere)."""
        self._ot_study.tell(self._ot_trials.pop(trial_id), state=optuna.trial.TrialState.FAIL)
        key = self._keys.pop(trial_id)
        if not keep_proposed:
            self._proposed.discard(key)

    def reserve(self, config: dict[str, Any]) -> None:
        """Mark a configuration that runs elsewhere (not told yet) as proposed."""
        self._proposed.add(config_key(config))

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


def constraint_check(spec: SweepSpec, measure: Callable | None = None) -> ConstraintCheck:
    """The spec's :class:`ConstraintCheck`: with the default measurement one per spec in this
    process, so the costs measured for the parameter space, the searcher and the number of trials
    are measured once; with ``measure`` (e.g. a replay's recorded costs) a new one."""
    if measure is not None:
        return ConstraintCheck(spec, measure)
    key = spec.model_dump_json()
    if key not in _CONSTRAINT_CHECKS:
        _CONSTRAINT_CHECKS[key] = ConstraintCheck(spec)
    return _CONSTRAINT_CHECKS[key]


_CONSTRAINT_CHECKS: dict[str, ConstraintCheck] = {}
#: Random draws per wanted configuration before a constrained ``random`` search gives up.
_RANDOM_DRAWS_PER_SAMPLE = 50


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _feasible_random_points(spec: SweepSpec, check: ConstraintCheck) -> list[dict[str, Any]]:
    """``num_samples`` random configurations that satisfy the constraints (seeded draws from the
    same domains Tune would sample; the infeasible ones drawn again)."""
    rng = np.random.default_rng(spec.seed)
    domains = {name: _ray_domain(knob, "random") for name, knob in spec.searched_knobs().items()}
    points: list[dict[str, Any]] = []
    draws = 0
    while len(points) < spec.num_samples and draws < _RANDOM_DRAWS_PER_SAMPLE * spec.num_samples:
        batch = [{name: _plain(domain.sample(random_state=rng)) for name, domain in domains.items()}
                 for _ in range(spec.num_samples - len(points))]
        draws += len(batch)
        points += check.feasible_points(batch)
    if len(points) < spec.num_samples:
        raise ValueError(f"constraints: only {len(points)} of {draws} random configurations satisfy "
                         f"{check.bounds}; loosen the constraints or narrow the space")
    return points


def explicit_points(spec: SweepSpec) -> list[dict[str, Any]] | None:
    """The configurations of a ``grid`` or ``random`` search as a list, when it is one: a grid
    with ``search.axes`` or ``search.seeds``, and either algorithm under ``constraints`` (the
    infeasible configurations left out before anything starts). None when Tune samples the space
    itself, or for ``optuna`` (whose searcher checks the constraints of each proposal).

    Raises:
        ValueError: the constraints leave no configuration (grid) or too few (random).
    """
    algorithm = spec.search.algorithm
    if algorithm not in ("grid", "random"):
        return None
    if not spec.constraints:
        return grid_points(spec) if algorithm == "grid" and spec.search.explicit_points else None
    check = constraint_check(spec)
    if algorithm == "random":
        return _feasible_random_points(spec, check)
    points = check.feasible_points(grid_points(spec))
    if not points:
        raise ValueError(f"constraints: no configuration of the grid satisfies {check.bounds}")
    return points


def tune_num_samples(spec: SweepSpec) -> int:
    """``TuneConfig.num_samples``: one per explicit point, the searcher's trials for ``optuna`` and
    ``spectral``, else the spec's ``num_samples`` (Tune repeats a grid of domains that often)."""
    points = explicit_points(spec)
    if points is not None:
        return len(points)
    return spec.num_trials() if spec.search.algorithm in ("optuna", "spectral") else spec.num_samples


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
    points = explicit_points(spec)
    if points is not None:
        # The configurations are the searcher's points_to_evaluate; Tune wants each key they set
        # to be a domain of the space that holds every value they give it.
        for name, values in _point_values(points).items():
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
    measure = measure or measure_configurations

    def measure_constrained_too(spec, configs, metrics):  # a timed cost is measured only on demand
        return measure(spec, configs, list(dict.fromkeys([*metrics, *spec.constraints])))

    candidates = spectral_candidates(spec, spectrum, measure_constrained_too)
    return SpectralSearch(candidates, objectives=spec.objectives, epochs=spec.epochs,
                          optuna_space=optuna_space(spec), sampler=_nsga2(spec),
                          constraint_check=constraint_check(spec, measure) if spec.constraints else None)


def build_search(spec: SweepSpec, *, spectrum: dict[str, Any] | None = None,
                 warm_start: WarmStart | None = None, measure: Callable | None = None) -> SearchAlgorithm | Searcher:
    """The search algorithm for ``tune.TuneConfig(search_alg=...)``.

    Args:
        spectrum: the sweep's ``spectrum.json``, needed by the ``spectral`` algorithm.
        warm_start: finished trials of an earlier sweep (:func:`load_warm_start`): told to Optuna
            with ``study.add_trial``, or counted as finished by the spectral prior.
        measure: how the spectral prior and the constraints cost the configurations,
            ``measure(spec, configs, metrics) -> [cost dict]`` (default
            :func:`segcore.tune.prior.measure_configurations`, one forward pass per network); a
            replay of a recorded sweep can pass the recorded costs.
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
            constraint_check=constraint_check(spec, measure) if spec.constraints else None,
        )
        for config, values in (warm_start.trials if warm_start else []):
            searcher.add_known(config, [values[m] for m in metrics])
        return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent)
    points = explicit_points(spec)
    if points is not None:
        # Axes, seeds and constraints make the search a list of configurations, not domains: each
        # point replaces one of Tune's samples (num_samples = the points, tune_num_samples).
        return BasicVariantGenerator(points_to_evaluate=points, max_concurrent=spec.max_concurrent,
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
