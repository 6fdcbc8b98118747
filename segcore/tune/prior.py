"""The spectral prior: a Ray Tune searcher that knows every configuration's cost and accuracy ceiling
before any training (``search: {algorithm: spectral}``).

Before the first trial the (finite) space is enumerated and every configuration is

* **costed exactly**: one forward pass of the network built with its knobs, at the trial's
  evaluation size, under the FLOP counter (:func:`segcore.cost.count_flops`), and the annotation
  units of its block size over the first training labels (:func:`segcore.labels.annotation_cost`);
  one pass per distinct network, cached (:func:`measure_configurations`);
* **bounded in accuracy** by the spectral oracle of the sweep's ``spectrum.json``
  (:class:`segcore.spectral.curves.OracleCurves`): ``miou = c * O(config) ** g``, where ``O`` is the
  grid oracle at the effective stride ``s / keep`` times the block oracle, relative to the trial's
  dense resolution (docs/design.md, Science: trade-off fit).

Calibration (:class:`Calibration`): before a network has a finished trial, ``c = prior_c`` (1.0)
and ``g = 1``, the optimistic bound (the network reaches the oracle). As its full-length trials
finish, ``c`` is its dense accuracy (or the best ``miou / O`` so far) and, once two distinct oracle
values have finished, ``c`` and ``g`` are fitted by least squares in log space.

The order of the search (:class:`SpectralSearch`):

1. **the predicted front first**: the configurations not dominated over the sweep's objectives
   (measured values for finished trials, predictions for the rest), cheapest first (the cost
   objectives in the spec's order, then the higher predicted accuracy). The front is recomputed
   with the current calibration at every suggestion; while it has no unproposed member but trials
   of this phase still run, the searcher waits (their results may move the front).
2. **then NSGA-II**: an Optuna ``NSGAIISampler`` study (:class:`~segcore.tune.search.DedupOptunaSearch`)
   told every trial so far with ``study.add_trial`` (full-length trials as complete points, trials
   a scheduler stopped early as pruned, failures as failed; trials still running when they finish),
   for the rest of the budget.

**Dominated even optimistically: never while other candidates remain, last otherwise.** A
configuration whose optimistic bound, the oracle itself (``c = 1``, ``g = 1``: no network predicting
on a grid beats that grid's oracle), is dominated by a measured full-length point is not proposed
while any configuration that is not so dominated has not run: NSGA-II's proposals of it are refused
and it is asked again (when its retries find nothing admissible, the cheapest of the predicted front
of the configurations left runs instead). Once only such configurations remain they run, so a
budget that lasts covers the whole space.

A trial is a full-fidelity point only when it ran every epoch (:func:`segcore.names.is_full_length`).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from ray.tune.search import Searcher

from segcore.config.knobs import config_key
from segcore.config.sweep import SweepSpec
from segcore.dominance import is_pareto_efficient
from segcore.names import COST_METRICS, METRIC_EPOCH, METRIC_MIOU, is_full_length
from segcore.spectral.curves import OracleCurves, oracle_curves

from .constraints import ConstraintCheck

__all__ = [
    "Calibration", "Candidate", "SpectralSearch", "enumerate_space", "measure_configurations",
    "spectral_candidates",
]

logger = logging.getLogger(__name__)

#: Bounds of the fitted sensitivity ``g`` (as in the trade-off fit).
_G_RANGE = (0.02, 50.0)
#: Costs that need a timed run rather than one counted forward pass.
_TIMED_COSTS = ("latency_ms", "peak_memory_mb")


@dataclass(frozen=True)
class Candidate:
    """One configuration of the space: its searched knobs, its network, its relative oracle and its
    exact pre-training cost (keys of ``COST_METRICS``)."""

    config: dict[str, Any]
    network: str
    oracle: float
    cost: dict[str, float]

    @property
    def key(self) -> tuple:
        return config_key(self.config)


def enumerate_space(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every configuration of the searched knobs, in the order of the space.

    Raises:
        ValueError: a knob is a continuous range (naming ``space.<knob>``).
    """
    knobs = spec.searched_knobs()
    for name, knob in knobs.items():
        if knob.kind == "float" and knob.step is None:
            raise ValueError(f"space.{name}: the spectral prior needs a finite space; give a list or a "
                             f"range with `step` (got {knob.describe()})")
    names = list(knobs)
    return [dict(zip(names, combo)) for combo in itertools.product(*(knobs[n].grid_values() for n in names))]


def _data_facts(trial_config) -> dict[str, Any]:
    """What the cost needs from a trial's data: evaluation size, classes, a few training labels."""
    import torch

    from segcore.train.data import build_data

    train_set, val_set = build_data(trial_config)
    with torch.random.fork_rng():  # the training crop is random: a fixed draw, the global RNG untouched
        torch.manual_seed(trial_config.seed)
        labels = torch.stack([train_set[i][1] for i in range(min(len(train_set), 8))])
    return {"eval_size": tuple(val_set[0][0].shape[-2:]), "num_classes": train_set.num_classes,
            "ignore_index": train_set.ignore_index, "labels": labels}


def measure_configurations(spec: SweepSpec, configs: Sequence[Mapping[str, Any]],
                           metrics: Sequence[str] = COST_METRICS) -> list[dict[str, float]]:
    """The exact cost of each configuration (``sampled knobs``), before any training.

    One forward pass under the FLOP counter per distinct network (network, options, grid stride,
    keep, truncation) at the trial's evaluation size, the annotation metrics per distinct block size
    over the first (up to 8) training labels; the data is opened once per distinct data setting.
    Latency and peak memory (timed forwards) are measured only when ``metrics`` names them, else NaN.
    """
    from segcore.config.trial import TrialConfig
    from segcore.cost import count_flops, count_params, measure_latency
    from segcore.labels import annotation_cost
    from segcore.models import create_model

    timed = any(m in _TIMED_COSTS for m in metrics)
    data_cache: dict[tuple, dict[str, Any]] = {}
    model_cache: dict[tuple, dict[str, float]] = {}
    out = []
    for sampled in configs:
        cfg = TrialConfig(**spec.trial_config(dict(sampled)))
        data_key = (cfg.dataset, cfg.data_root, repr(sorted(cfg.dataset_options.items())), cfg.image_scale,
                    repr(cfg.crop), cfg.train_split, cfg.val_split, cfg.seed)
        if data_key not in data_cache:
            data_cache[data_key] = _data_facts(cfg)
        data = data_cache[data_key]
        model_key = (data_key, cfg.network, cfg.backbone, repr(sorted(cfg.model_options.items())),
                     cfg.grid_stride, cfg.keep, cfg.truncation)
        if model_key not in model_cache:
            model = create_model(cfg.network, data["num_classes"], grid_stride=cfg.grid_stride, keep=cfg.keep,
                                 truncation=cfg.truncation, backbone=cfg.backbone, **cfg.model_options)
            flops = count_flops(model, data["eval_size"])
            latency, peak = measure_latency(model, data["eval_size"]) if timed else (math.nan, math.nan)
            model_cache[model_key] = {
                "gflops": flops.total / 1e9, "decoder_gflops": flops.decoder / 1e9, "fft_gflops": flops.fft / 1e9,
                "params_m": count_params(model) / 1e6, "latency_ms": latency, "peak_memory_mb": peak,
            }
        annotation = annotation_cost(data["labels"], cfg.block, data["num_classes"], data["ignore_index"])
        out.append({**model_cache[model_key], "annotation_units": annotation.units_per_image,
                    "relative_annotation_units": annotation.relative_units,
                    "mixed_block_share": annotation.mixed_block_share})
    return [{k: float(cost[k]) for k in COST_METRICS} for cost in out]


def spectral_candidates(
    spec: SweepSpec, spectrum: Mapping[str, Any],
    measure: Callable[[SweepSpec, Sequence[Mapping[str, Any]], Sequence[str]], list[dict[str, float]]]
    = measure_configurations,
) -> list[Candidate]:
    """Every configuration of ``spec``'s space with its relative oracle and its exact cost."""
    configs = enumerate_space(spec)
    curves: OracleCurves = oracle_curves(spectrum)
    costs = measure(spec, configs, list(spec.objectives))
    candidates = []
    for sampled, cost in zip(configs, costs):
        full = spec.trial_config(sampled)
        oracle = curves.config_oracle(full.get("grid_stride", 1), full.get("keep", 1.0), full.get("block", 1),
                                      full.get("block_mode", "hard"), full.get("image_scale") or 1.0)
        candidates.append(Candidate(dict(sampled), str(full["network"]), float(oracle[0]), dict(cost)))
    return candidates


@dataclass
class Calibration:
    """``miou = c * oracle ** g`` per network, from its finished full-length trials.

    Without a finished trial ``c = prior_c`` and ``g = 1``; with trials at one oracle value, ``c`` is
    the dense accuracy (oracle 1) or the best ``miou / oracle``, ``g = 1``; with two or more distinct
    oracle values, ``log miou = log c + g log oracle`` by least squares (``g`` clipped to [0.02, 50]).
    """

    prior_c: float = 1.0
    points: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def add(self, network: str, oracle: float, accuracy: float) -> None:
        self.points.setdefault(network, []).append((float(oracle), float(accuracy)))

    def parameters(self, network: str) -> tuple[float, float]:
        """``(c, g)`` of ``network``."""
        points = [(o, a) for o, a in self.points.get(network, []) if o > 0 and a > 0]
        if not points:
            return self.prior_c, 1.0
        oracles = np.array([o for o, _ in points])
        accuracies = np.array([a for _, a in points])
        if len(np.unique(np.round(oracles, 9))) >= 2:
            log_o, log_a = np.log(oracles), np.log(accuracies)
            slope = float(np.polyfit(log_o, log_a, 1)[0])
            g = min(max(slope, _G_RANGE[0]), _G_RANGE[1])
            return float(np.exp(np.mean(log_a - g * log_o))), g
        dense = accuracies[np.isclose(oracles, 1.0)]
        return (float(dense.max()) if len(dense) else float(np.max(accuracies / oracles))), 1.0

    def predict(self, network: str, oracle: float) -> float:
        c, g = self.parameters(network)
        return c * oracle ** g

    def optimistic(self, oracle: float) -> float:
        """The optimistic bound, the prior: ``c = prior_c`` (1: the oracle itself) and ``g = 1``.

        Not the network's best ``miou / oracle``: a network that loses more than the oracle at
        coarse grids (``g > 1``) would have its ceiling underestimated from its coarse trials, and
        its good fine configurations refused."""
        return self.prior_c * oracle


_COMPLETE, _PRUNED, _FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                             optuna.trial.TrialState.FAIL)


class SpectralSearch(Searcher):
    """The spectral prior's searcher: the predicted front first, cheapest first, then NSGA-II.

    Args:
        candidates: every configuration of the space with its oracle and cost
            (:func:`spectral_candidates`).
        objectives: the sweep's objectives, ``{metric: "max" | "min"}``: ``miou`` and cost metrics.
        epochs: a trial's full length (shorter trials are pruned, not points of the front).
        optuna_space: the searched knobs as Optuna distributions, for the NSGA-II study.
        sampler: the sampler of the hand-over (default NSGA-II seeded with ``seed``).
        prior_c: the ceiling ``c`` of a network before any of its trials finished.
        seed: seed of the default sampler.
        constraint_check: the spec's cost constraints: candidates whose cost breaks one never
            run, in the prior phase or after the hand-over (whose NSGA-II is told them as infeasible).
    """

    def __init__(self, candidates: Sequence[Candidate], *, objectives: Mapping[str, str], epochs: int,
                 optuna_space: Mapping[str, optuna.distributions.BaseDistribution],
                 sampler: optuna.samplers.BaseSampler | None = None, prior_c: float = 1.0, seed: int = 0,
                 constraint_check: ConstraintCheck | None = None):
        metrics = list(objectives)
        modes = [objectives[m] for m in metrics]
        super().__init__(metric=metrics if len(metrics) > 1 else metrics[0],
                         mode=modes if len(modes) > 1 else modes[0])
        self._space_size = len(candidates)
        if constraint_check is not None:
            for candidate in candidates:
                constraint_check.remember(candidate.config, candidate.cost)
            candidates = [c for c in candidates if constraint_check.feasible(c.config)]
        self._candidates = list(candidates)
        self._by_key = {c.key: c for c in self._candidates}
        self._objectives = dict(objectives)
        self._epochs = int(epochs)
        self._space = dict(optuna_space)
        self._sampler = sampler or optuna.samplers.NSGAIISampler(seed=seed)
        self._constraint_check = constraint_check
        self.calibration = Calibration(prior_c)
        self._measured: dict[tuple, dict[str, float]] = {}  # config key -> objectives of a full-length trial
        self._proposed: set[tuple] = set()  # config keys run, running or seeded
        self._trial_keys: dict[str, tuple] = {}  # trial id -> config key
        self._running_prior: set[str] = set()  # trial ids of the prior phase still running
        self._history: list[tuple[dict[str, Any], dict[str, float] | None, optuna.trial.TrialState]] = []
        self._nsga_trials: set[str] = set()
        self.nsga = None  # the DedupOptunaSearch after the hand-over
        self.prior_order: list[dict[str, Any]] = []  # the prior phase's configurations, in order

    # --- what is known --------------------------------------------------------------------
    def _minimised(self, values: Mapping[str, float]) -> tuple[float, ...]:
        return tuple(-values[m] if mode == "max" else values[m] for m, mode in self._objectives.items())

    def _predicted(self, candidate: Candidate, accuracy: float | None = None) -> dict[str, float]:
        if accuracy is None:
            accuracy = self.calibration.predict(candidate.network, candidate.oracle)
        return {**candidate.cost, METRIC_MIOU: accuracy}

    def _deferred(self, candidate: Candidate) -> bool:
        """Whether even the optimistic bound of ``candidate`` is dominated by a measured point."""
        if not self._measured:
            return False
        bound = self._minimised(self._predicted(
            candidate, self.calibration.optimistic(candidate.oracle)))
        measured = [self._minimised(values) for values in self._measured.values()]
        return not is_pareto_efficient(np.array([bound, *measured], dtype=float))[0]

    def deferred_while_others_remain(self, config: Mapping[str, Any]) -> bool:
        """True for a configuration dominated even optimistically while an unproposed configuration
        that is not remains (the rule "never while other candidates remain, last otherwise")."""
        candidate = self._by_key.get(config_key(config))
        if candidate is None or not self._deferred(candidate):
            return False
        return any(c.key not in self._proposed and c.key != candidate.key and not self._deferred(c)
                   for c in self._candidates)

    def predicted_front(self) -> list[Candidate]:
        """The unproposed, not deferred members of the current predicted front, in the order they run:
        the cost objectives in the spec's order (cheapest first), then the higher predicted accuracy."""
        values = [self._measured.get(c.key) or self._predicted(c) for c in self._candidates]
        vectors = np.array([self._minimised(v) for v in values], dtype=float)
        front = [int(i) for i in np.flatnonzero(is_pareto_efficient(vectors))
                 if self._candidates[i].key not in self._proposed and not self._deferred(self._candidates[i])]
        front.sort(key=lambda i: (*self._cheapest_first(vectors[i]), i))
        return [self._candidates[i] for i in front]

    def _cheapest_first(self, vector: np.ndarray) -> tuple[float, ...]:
        """The order of running: the cost objectives in the spec's order, then the higher accuracy."""
        names = list(self._objectives)
        return (*(vector[j] for j, m in enumerate(names) if m != METRIC_MIOU), vector[names.index(METRIC_MIOU)])

    # --- Searcher --------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | str | None:
        if self.nsga is None:
            front = self.predicted_front()
            if front:
                self.prior_order.append(dict(front[0].config))
                self._running_prior.add(trial_id)
                return self._propose(trial_id, front[0])
            if self._running_prior:
                return None  # their results may move the front: wait for them
            self._hand_over()
        if len(self._proposed) >= len(self._candidates):
            return Searcher.FINISHED
        config = self.nsga.suggest(trial_id)
        if config == Searcher.FINISHED:
            return config
        key = config_key(config) if isinstance(config, dict) else None
        if key is None or key in self._proposed or self.deferred_while_others_remain(config):
            # NSGA-II found no admissible configuration within its retries (None: every proposal broke
            # the constraints or repeated): take the proposal back and run the best remaining one
            # instead (NSGA-II is told its result when it ends).
            if key is not None:
                self.nsga.withdraw(trial_id, keep_proposed=key in self._proposed)
            candidate = self._best_remaining()
            return Searcher.FINISHED if candidate is None else self._propose(trial_id, candidate)
        self._nsga_trials.add(trial_id)
        return self._propose(trial_id, self._by_key[key])

    def _propose(self, trial_id: str, candidate: Candidate) -> dict[str, Any]:
        self._trial_keys[trial_id] = candidate.key
        self._proposed.add(candidate.key)
        if self.nsga is not None:
            self.nsga.reserve(candidate.config)
        return dict(candidate.config)

    def _best_remaining(self) -> Candidate | None:
        """The cheapest of the predicted front of the unproposed configurations, those dominated
        even optimistically only when nothing else remains."""
        remaining = [c for c in self._candidates if c.key not in self._proposed]
        remaining = [c for c in remaining if not self._deferred(c)] or remaining
        if not remaining:
            return None
        vectors = np.array([self._minimised(self._predicted(c)) for c in remaining], dtype=float)
        front = np.flatnonzero(is_pareto_efficient(vectors))
        if not len(front):  # every prediction undefined (NaN): no front, take the cheapest known
            front = np.arange(len(remaining))
        return remaining[int(min(front, key=lambda i: (*self._cheapest_first(vectors[i]), i)))]

    def _outcome(self, result: Mapping[str, Any] | None, error: bool):
        if error or not result:
            return None, _FAIL
        if not is_full_length(result.get(METRIC_EPOCH, self._epochs), self._epochs):
            return None, _PRUNED
        values = {m: result.get(m) for m in self._objectives}
        if any(v is None or not math.isfinite(float(v)) for v in values.values()):
            return None, _FAIL
        return {m: float(v) for m, v in values.items()}, _COMPLETE

    def _record(self, config: Mapping[str, Any], values: dict[str, float] | None,
                state: optuna.trial.TrialState, *, tell: bool = True) -> None:
        """Keep a finished trial: the front and the calibration; NSGA-II is told (``tell``) once it
        exists, else at the hand-over."""
        candidate = self._by_key[config_key(config)]
        if state == _COMPLETE:
            self._measured[candidate.key] = values
            self.calibration.add(candidate.network, candidate.oracle, values[METRIC_MIOU])
        if self.nsga is None:
            self._history.append((dict(candidate.config), values, state))
        elif tell:
            self.nsga.add_known(candidate.config, self._vector(values), state)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        key = self._trial_keys.pop(trial_id, None)
        if key is None:
            return
        self._running_prior.discard(trial_id)
        values, state = self._outcome(result, error)
        proposed_by_nsga = trial_id in self._nsga_trials
        self._nsga_trials.discard(trial_id)
        self._record(self._by_key[key].config, values, state, tell=not proposed_by_nsga)
        if proposed_by_nsga:  # its own trial: DedupOptunaSearch tells the study (pruned when stopped early)
            self.nsga.on_trial_complete(trial_id, result=result, error=error)

    def add_finished(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> bool:
        """Seed a full-length trial run elsewhere (a warm start): it counts as finished for the
        calibration and the front and is not run again. False when ``config`` is not in the space
        or ``result`` lacks an objective."""
        key = config_key(config)
        values, state = self._outcome(result, error=False)
        if key not in self._by_key or state != _COMPLETE or key in self._proposed:
            return False
        self._proposed.add(key)
        self._record(self._by_key[key].config, values, state)
        return True

    def _vector(self, values: Mapping[str, float] | None) -> list[float] | None:
        return None if values is None else [values[m] for m in self._objectives]

    def _hand_over(self) -> None:
        """Start the NSGA-II study and tell it every trial so far."""
        from .search import DedupOptunaSearch

        self.nsga = DedupOptunaSearch(
            space=self._space, metric=self.metric, mode=self.mode, sampler=self._sampler, epochs=self._epochs,
            space_size=self._space_size, skip=self.deferred_while_others_remain,
            constraint_check=self._constraint_check,
        )
        for config, values, state in self._history:
            self.nsga.add_known(config, self._vector(values), state)
        for key in self._trial_keys.values():  # still running: not to be proposed again
            self.nsga.reserve(self._by_key[key].config)
        logger.info("spectral prior: %d configuration(s) run from the predicted front; NSGA-II told %d trial(s)",
                    len(self.prior_order), len(self._history))

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__.copy(), handle)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))
        if self.nsga is not None:  # the pickled rule is bound to the pickled copy: bind it to this searcher
            self.nsga._skip = self.deferred_while_others_remain

