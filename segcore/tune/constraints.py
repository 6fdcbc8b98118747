"""The spec's cost constraints, checked before a configuration runs.

A configuration's cost is known before training (docs/design.md, Contracts: "Cost keys"), so a
configuration that breaks a bound of ``constraints`` never runs:

* ``optuna``: :class:`~segcore.tune.search.DedupOptunaSearch` costs each proposal and sets its
  constraint values on the Optuna trial (``Trial.set_constraint``, Optuna 5's constraints mechanism,
  which NSGA-II and TPE read: infeasible trials rank behind feasible ones), tells an infeasible one
  ``PRUNED`` without training it and asks for another point;
* ``grid`` / ``random``: the configurations become an explicit list of points, the infeasible ones
  left out before anything starts (random draws are repeated until ``num_samples`` are feasible);
* ``spectral``: the prior, which costs every configuration anyway, never proposes an infeasible one
  and hands the check to its NSGA-II.

The rule itself (a value per bound, ``<= 0`` satisfied) is :mod:`segcore.config.constraints`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from segcore.config.constraints import constraint_values
from segcore.config.sweep import SweepSpec
from segcore.names import KNOB_PARAMS

__all__ = ["ConstraintCheck"]

#: The trial fields a configuration's cost depends on: the network and its knobs, the data it is
#: measured on (the seed draws the labels of the annotation cost); not the optimisation.
_COST_FIELDS = (*KNOB_PARAMS, "model_options", "weights", "dataset", "data_root", "dataset_options", "train_split",
                "val_split", "image_scale", "crop", "seed")

#: ``measure(spec, sampled_configs, metrics) -> [cost dict per config]``, costs before training.
MeasureFn = Callable[[SweepSpec, Sequence[Mapping[str, Any]], Sequence[str]], list[dict[str, float]]]


def _measure_before_training(spec: SweepSpec, configs: Sequence[Mapping[str, Any]],
                             metrics: Sequence[str]) -> list[dict[str, float]]:
    from .prior import measure_configurations

    return measure_configurations(spec, configs, metrics)


class ConstraintCheck:
    """Constraint values of sampled configurations (the searched knobs), from their cost measured
    before training, cached per distinct cost-relevant configuration (two proposals that differ
    only in, say, the learning rate are costed once).

    Args:
        spec: the sweep; its ``constraints`` are checked and its trial settings build the models.
        measure: how costs are measured; default one forward pass per network under the FLOP
            counter and the annotation cost of the block size, only the constrained metrics.
    """

    def __init__(self, spec: SweepSpec, measure: MeasureFn | None = None):
        self._spec = spec
        self._bounds = spec.constraint_bounds()
        self._measure = measure or _measure_before_training
        self._costs: dict[tuple, dict[str, float]] = {}

    @property
    def bounds(self) -> dict[str, dict[str, float | None]]:
        return dict(self._bounds)

    def _key(self, sampled: Mapping[str, Any]) -> tuple:
        full = self._spec.trial_config(dict(sampled))
        return tuple((name, repr(full.get(name))) for name in _COST_FIELDS)

    def measure(self, configs: Sequence[Mapping[str, Any]]) -> None:
        """Cost every configuration not costed yet, in one batch (models and data built once)."""
        todo = list({self._key(c): dict(c) for c in configs if self._key(c) not in self._costs}.items())
        if not todo or not self._bounds:
            return
        costs = self._measure(self._spec, [config for _, config in todo], list(self._bounds))
        self._costs.update((key, dict(cost)) for (key, _), cost in zip(todo, costs))

    def remember(self, sampled: Mapping[str, Any], cost: Mapping[str, float]) -> None:
        """Take a cost measured elsewhere (the spectral prior costs every configuration)."""
        self._costs[self._key(sampled)] = dict(cost)

    def cost(self, sampled: Mapping[str, Any]) -> dict[str, float]:
        self.measure([sampled])
        return dict(self._costs.get(self._key(sampled), {}))

    def values(self, sampled: Mapping[str, Any]) -> dict[str, float]:
        """``{"<metric>.<bound>": value}`` (``<= 0`` satisfied), by
        :func:`segcore.config.constraints.constraint_values`."""
        if not self._bounds:
            return {}
        return constraint_values(self.cost(sampled), self._bounds)

    def feasible(self, sampled: Mapping[str, Any]) -> bool:
        return all(value <= 0 for value in self.values(sampled).values())

    def feasible_points(self, points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The points whose cost satisfies every bound, in their order."""
        self.measure(points)
        return [dict(point) for point in points if self.feasible(point)]
