"""Cost constraints before a trial runs: the check's cache, Optuna told through its constraints
mechanism (``Trial.set_constraint``) without training, and grid/random reduced to their feasible
points."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.tune", reason="the sweep extra (ray[tune]) is not installed")

import optuna  # noqa: E402
from ray.tune.search import BasicVariantGenerator, Searcher  # noqa: E402

from segcore.config.sweep import load_sweep_spec  # noqa: E402
from segcore.tune import constraints as constraints_module  # noqa: E402
from segcore.tune import search as search_module  # noqa: E402
from segcore.tune.constraints import ConstraintCheck  # noqa: E402
from segcore.tune.search import (  # noqa: E402
    DedupOptunaSearch, build_search, explicit_points, param_space, tune_num_samples,
)


def fake_measure(calls: list | None = None):
    """gflops = 1 per grid cell of a 16x16 image (256 / stride^2), annotation units = 256 / block^2."""
    def measure(spec, configs, metrics):
        if calls is not None:
            calls.append(len(configs))
        out = []
        for sampled in configs:
            full = spec.trial_config(dict(sampled))
            out.append({"gflops": 256 / full["grid_stride"] ** 2, "annotation_units": 256 / full["block"] ** 2})
        return out
    return measure


@pytest.fixture
def fake_costs(monkeypatch):
    monkeypatch.setattr(constraints_module, "_measure_before_training", fake_measure())
    monkeypatch.setattr(search_module, "_CONSTRAINT_CHECKS", {})


def _spec(**fields):
    base = {"name": "c", "networks": ["unet_tiny"], "epochs": 2, "num_samples": 4,
            "space": {"grid_stride": [2, 4, 8], "block": [1, 4]},
            "constraints": {"gflops": {"max": 16.0}, "annotation_units": {"max": 64.0}}}
    return load_sweep_spec({**base, **fields})


def test_check_costs_each_configuration_once_and_gives_optunas_values():
    calls = []
    check = ConstraintCheck(_spec(), measure=fake_measure(calls))
    check.measure([{"grid_stride": 2, "block": 1}, {"grid_stride": 4, "block": 4}, {"grid_stride": 2, "block": 1},
                   {"grid_stride": 4, "block": 4, "lr": 0.1}])
    assert calls == [2]  # one batch; the repeat, and a learning rate that changes no cost, costed once
    # stride 4: 16 GFLOPs (on the bound); block 4: 16 units. stride 2: 64 GFLOPs, block 1: 256 units.
    assert check.values({"grid_stride": 4, "block": 4}) == {"gflops.max": 0.0, "annotation_units.max": -48.0}
    assert check.values({"grid_stride": 2, "block": 1}) == {"gflops.max": 48.0, "annotation_units.max": 192.0}
    assert calls == [2]
    assert check.feasible_points([{"grid_stride": s, "block": b} for s in (2, 4, 8) for b in (1, 4)]) == [
        {"grid_stride": 4, "block": 4}, {"grid_stride": 8, "block": 4}]


def _searcher(check: ConstraintCheck, sampler) -> DedupOptunaSearch:
    return DedupOptunaSearch(
        space={"grid_stride": optuna.distributions.CategoricalDistribution([2, 4, 8]),
               "block": optuna.distributions.CategoricalDistribution([1, 4])},
        metric=["miou", "gflops"], mode=["max", "min"], sampler=sampler, epochs=2, space_size=6,
        constraint_check=check,
    )


@pytest.mark.parametrize("sampler_class", [optuna.samplers.NSGAIISampler, optuna.samplers.TPESampler])
def test_optuna_is_told_infeasible_points_without_running_them(sampler_class):
    check = ConstraintCheck(_spec(), measure=fake_measure())
    searcher = _searcher(check, sampler_class(seed=0))
    ran = []
    for i in range(20):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        ran.append((config["grid_stride"], config["block"]))
        searcher.on_trial_complete(f"t{i}", {"miou": 0.5, "gflops": 1.0, "epoch": 2})
    assert sorted(ran) == [(4, 4), (8, 4)]  # only the feasible configurations ran, each once
    assert config == Searcher.FINISHED and searcher.skipped_infeasible >= 4
    trials = searcher._ot_study.trials
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    # Optuna's constraints mechanism: every told trial carries its values (<= 0 feasible).
    assert pruned and all(max(t.constraints.values()) > 0 for t in pruned)
    assert {(t.params["grid_stride"], t.params["block"]) for t in pruned} <= {(2, 1), (2, 4), (4, 1), (8, 1)}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(max(t.constraints.values()) <= 0 for t in complete)
    assert searcher._ot_study.best_trials  # the feasible front


def test_optuna_search_gets_the_spec_constraints(fake_costs):
    for sampler in ("nsga2", "tpe"):
        searcher = build_search(_spec(search={"sampler": sampler})).searcher
        assert searcher._constraint_check.bounds == {"gflops": {"min": None, "max": 16.0},
                                                     "annotation_units": {"min": None, "max": 64.0}}
    assert build_search(_spec(constraints={})).searcher._constraint_check is None


def test_grid_and_random_run_only_feasible_points(fake_costs):
    grid = _spec(search={"algorithm": "grid"}, num_samples=1)
    points = explicit_points(grid)
    assert [(p["grid_stride"], p["block"]) for p in points] == [(4, 4), (8, 4)]
    assert tune_num_samples(grid) == 2
    assert param_space(grid)["grid_stride"].categories == [4, 8]
    searcher = build_search(grid)
    assert isinstance(searcher, BasicVariantGenerator) and searcher._points_to_evaluate == points

    random = _spec(search={"algorithm": "random"}, num_samples=5)
    drawn = explicit_points(random)
    assert len(drawn) == 5 and tune_num_samples(random) == 5
    assert {(p["grid_stride"], p["block"]) for p in drawn} <= {(4, 4), (8, 4)}
    assert explicit_points(random) == drawn  # seeded: the same draws every time

    with pytest.raises(ValueError, match="no configuration of the grid satisfies"):
        explicit_points(_spec(search={"algorithm": "grid"}, constraints={"gflops": {"max": 1.0}}))
    assert explicit_points(_spec(search={"algorithm": "grid"}, constraints={})) is None  # Tune's own grid


def test_the_spectral_prior_never_proposes_an_infeasible_configuration():
    from _sweep_store import SPECTRUM

    gflops = {("unet_tiny", 2): 5.0, ("unet_tiny", 4): 3.0, ("unet_tiny", 8): 2.0,
              ("dan_tiny", 2): 8.0, ("dan_tiny", 4): 6.0, ("dan_tiny", 8): 4.0}

    def table(spec, configs, metrics):
        return [{"gflops": gflops[(c["network"], c["grid_stride"])], "annotation_units": 1.0} for c in configs]

    spec = _spec(networks=["unet_tiny", "dan_tiny"], space={"grid_stride": [2, 4, 8]},
                 search={"algorithm": "spectral", "population_size": 2}, constraints={"gflops": {"max": 5.0}})
    searcher = build_search(spec, spectrum=SPECTRUM, measure=table).searcher
    ran = []
    for i in range(12):
        config = searcher.suggest(f"t{i}")
        if config is None or config == Searcher.FINISHED:
            if config == Searcher.FINISHED:
                break
            continue
        ran.append((config["network"], config["grid_stride"]))
        searcher.on_trial_complete(f"t{i}", {"miou": 0.5 + 0.01 * i, "gflops": gflops[ran[-1]], "epoch": 2})
    assert sorted(ran) == [("dan_tiny", 8), ("unet_tiny", 2), ("unet_tiny", 4), ("unet_tiny", 8)]
    assert config == Searcher.FINISHED


def test_real_costs_before_training_known_annotation_units(monkeypatch):
    """The default measurement (one forward pass per network, annotation units of the block): on
    32 x 32 synthetic images a block b costs ceil(32 / b)^2 units, 1024, 256 and 64 for 1, 2, 4."""
    monkeypatch.setattr(search_module, "_CONSTRAINT_CHECKS", {})
    spec = _spec(dataset={"name": "synthetic", "options": {"num_samples": 4, "size": [32, 32], "num_classes": 3}},
                 space={"grid_stride": [4], "block": [1, 2, 4]}, search={"algorithm": "grid"}, num_samples=1,
                 constraints={"annotation_units": {"max": 256}})
    assert [p["block"] for p in explicit_points(spec)] == [2, 4]
    check = search_module.constraint_check(spec)
    assert check.cost({"grid_stride": 4, "block": 1})["annotation_units"] == 1024.0
    assert check.values({"grid_stride": 4, "block": 4}) == {"annotation_units.max": 64.0 - 256.0}
