"""The constraint rule: one value per bound, <= 0 satisfied, a missing cost broken."""

from __future__ import annotations

import math

from segcore.config.constraints import constraint_values, is_feasible

BOUNDS = {"gflops": {"max": 2.0}, "annotation_units": {"min": 10.0, "max": 100.0}}


def test_one_value_per_bound_in_order():
    cost = {"gflops": 1.5, "annotation_units": 120.0}
    assert constraint_values(cost, BOUNDS) == {"gflops.max": -0.5, "annotation_units.min": 10.0 - 120.0,
                                               "annotation_units.max": 120.0 - 100.0}
    assert not is_feasible(cost, BOUNDS)  # 20 units over the annotation budget
    assert is_feasible({"gflops": 2.0, "annotation_units": 10.0}, BOUNDS)  # on the bounds: satisfied


def test_an_unset_bound_is_skipped_and_a_missing_cost_is_broken():
    assert constraint_values({"gflops": 3.0}, {"gflops": {"min": None, "max": 4.0}}) == {"gflops.max": -1.0}
    assert constraint_values({}, {"gflops": {"max": 4.0}}) == {"gflops.max": math.inf}
    assert constraint_values({"gflops": math.nan}, {"gflops": {"max": 4.0}}) == {"gflops.max": math.inf}
    assert is_feasible({"gflops": 9.0}, {})  # no constraint: always feasible
