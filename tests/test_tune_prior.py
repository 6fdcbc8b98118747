"""The spectral prior (segcore.tune.prior): exact costs, the predicted front first and cheapest
first, configurations dominated even optimistically last, and the hand-over to NSGA-II."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("ray.tune", reason="the sweep extra (ray[tune]) is not installed")

import optuna  # noqa: E402
from ray.tune.search import ConcurrencyLimiter, Searcher  # noqa: E402

from _sweep_store import SPECTRUM  # noqa: E402
from _sweep_specs import good, with_  # noqa: E402
from segcore.config.sweep import SweepSpecError, load_sweep_spec  # noqa: E402
from segcore.tune.prior import (  # noqa: E402
    Calibration, SpectralSearch, enumerate_space, measure_configurations, spectral_candidates,
)
from segcore.tune.search import build_search, optuna_space  # noqa: E402

A, B = "unet_tiny", "dan_tiny"
#: GFLOPs by (network, grid stride), made up so the fronts below are known by hand.
GFLOPS = {(A, 2): 5.0, (A, 4): 3.0, (A, 8): 2.0, (B, 2): 8.0, (B, 4): 6.0, (B, 8): 4.0}


def _spec(networks=(A,), **space):
    spec = with_("networks", list(networks))
    spec["space"] = space
    spec["search"] = {"algorithm": "spectral"}
    return load_sweep_spec(spec)


def _table_cost(spec, configs, metrics):
    """A cost table instead of forward passes: GFLOPS at keep 1, 0.5 less at keep 0.5."""
    out = []
    for config in configs:
        full = spec.trial_config(config)
        key = (full["network"], full["grid_stride"])
        gflops = GFLOPS[key] if full.get("keep", 1.0) == 1.0 else GFLOPS[key] - 0.5
        out.append({"gflops": gflops, "annotation_units": 1024.0 / full.get("block", 1) ** 2})
    return out


def _searcher(spec, **kwargs) -> SpectralSearch:
    return SpectralSearch(spectral_candidates(spec, SPECTRUM, measure=_table_cost), objectives=spec.objectives,
                          epochs=spec.epochs, optuna_space=optuna_space(spec),
                          sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=2), **kwargs)


def _knobs(config):
    return (config.get("network", A), config["grid_stride"], config.get("keep", 1.0))


def _done(epochs=2, **values):
    return {"epoch": epochs, **values}


def test_the_first_suggestions_are_the_predicted_front_cheapest_first():
    # One network, c = 1 and g = 1 before any result: accuracy = the soft oracle at s / keep
    # (1.0, 0.98, 0.95, 0.88, 0.74 at 1, 2, 4, 8, 16). Keep 0.5 costs 0.5 GFLOPs less than keep 1:
    #   s2 k1 .98@5    s2 k.5 .95@4.5   s4 k1 .95@3   s4 k.5 .88@2.5   s8 k1 .88@2   s8 k.5 .74@1.5
    # s2 k.5 is dominated by s4 k1, s4 k.5 by s8 k1; the rest is the front.
    searcher = _searcher(_spec(grid_stride=[2, 4, 8], keep=[1.0, 0.5]))
    picks = [searcher.suggest(f"t{i}") for i in range(4)]
    assert [_knobs(p) for p in picks] == [(A, 8, 0.5), (A, 8, 1.0), (A, 4, 1.0), (A, 2, 1.0)]
    # The front is proposed and still running: wait for its results rather than hand over.
    assert searcher.suggest("t4") is None and searcher.nsga is None


def test_calibration_known_answers():
    calibration = Calibration()
    assert calibration.parameters("a") == (1.0, 1.0)  # the optimistic prior
    calibration.add("a", 0.95, 0.76)
    assert calibration.parameters("a") == pytest.approx((0.8, 1.0))  # best miou / oracle
    calibration.add("a", 1.0, 0.81)
    c, g = calibration.parameters("a")
    # log miou = log c + g log O through (log .95, log .76) and (0, log .81)
    assert g == pytest.approx(math.log(0.81 / 0.76) / math.log(1 / 0.95))
    assert c == pytest.approx(0.81)
    assert calibration.predict("a", 0.95) == pytest.approx(0.76, rel=1e-3)
    assert calibration.optimistic(0.5) == 0.5  # the oracle itself, whatever the network reached


def test_a_configuration_dominated_even_optimistically_runs_last():
    spec = _spec(networks=(A, B), grid_stride=[2, 4, 8])
    searcher = _searcher(spec)
    # Finished elsewhere (a warm start): A is good and cheap, B poor. B at stride 8 (oracle .88,
    # 4 GFLOPs) has the optimistic bound .88 (the oracle), behind A's .90 at 3.
    for (net, stride), miou in {(A, 4): 0.90, (A, 2): 0.93, (B, 4): 0.50, (B, 2): 0.55}.items():
        seed = _done(miou=miou, gflops=GFLOPS[net, stride])
        assert searcher.add_finished({"network": net, "grid_stride": stride}, seed)
    deferred = {"network": B, "grid_stride": 8}
    assert searcher.deferred_while_others_remain(deferred)  # A at stride 8 has not run
    first = searcher.suggest("t0")
    assert _knobs(first) == (A, 8, 1.0)  # the cheapest, on the predicted front
    assert searcher.deferred_while_others_remain(deferred) is False  # nothing else remains
    searcher.on_trial_complete("t0", _done(miou=0.80, gflops=2.0))
    assert _knobs(searcher.suggest("t1")) == (B, 8, 1.0)  # last, through NSGA-II
    assert searcher.suggest("t2") == Searcher.FINISHED


def test_never_while_other_candidates_remain_through_nsga2():
    # The hand-over's NSGA-II refuses a deferred configuration until only such ones remain.
    spec = _spec(networks=(A, B), grid_stride=[2, 4, 8])
    searcher = _searcher(spec)
    searcher._hand_over()
    refuse = {(B, 8), (B, 4)}
    searcher.nsga._skip = lambda config: ((config["network"], config["grid_stride"]) in refuse
                                          and len(searcher.nsga._proposed) < 4)
    order = [searcher.suggest(f"t{i}") for i in range(6)]
    assert {(c["network"], c["grid_stride"]) for c in order[4:]} == refuse
    assert searcher.suggest("t6") == Searcher.FINISHED


def test_the_hand_over_tells_nsga2_every_trial_so_far():
    spec = _spec(networks=(A, B), grid_stride=[2, 4, 8])
    searcher = _searcher(spec)
    picks = [searcher.suggest(f"t{i}") for i in range(3)]  # A at 8, 4, 2 (B dominated at c = 1)
    assert [_knobs(p) for p in picks] == [(A, 8, 1.0), (A, 4, 1.0), (A, 2, 1.0)]
    searcher.on_trial_complete("t0", _done(miou=0.80, gflops=2.0))
    searcher.on_trial_complete("t1", _done(epochs=1, miou=0.70, gflops=3.0))  # stopped early
    searcher.on_trial_complete("t2", error=True)
    # A is calibrated (c = .80 / .88); B, still at c = 1, is now on the predicted front, cheapest first.
    assert [_knobs(searcher.suggest(f"t{i}")) for i in (3, 4, 5)] == [(B, 8, 1.0), (B, 4, 1.0), (B, 2, 1.0)]
    searcher.on_trial_complete("t3", _done(miou=0.45, gflops=4.0))
    searcher.on_trial_complete("t4", _done(miou=0.50, gflops=6.0))
    assert searcher.suggest("t6") is None and searcher.nsga is None  # B at 2 still runs
    searcher.on_trial_complete("t5", _done(miou=0.52, gflops=8.0))
    assert searcher.suggest("t6") == Searcher.FINISHED  # every configuration ran: nothing left for NSGA-II
    told = [(t.params["network"], t.params["grid_stride"], t.state, t.values)
            for t in searcher.nsga._ot_study.trials]
    complete, pruned, failed = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                optuna.trial.TrialState.FAIL)
    assert told == [(A, 8, complete, [0.80, 2.0]), (A, 4, pruned, None), (A, 2, failed, None),
                    (B, 8, complete, [0.45, 4.0]), (B, 4, complete, [0.50, 6.0]), (B, 2, complete, [0.52, 8.0])]
    # Told as NSGA-II's first generation, so they can be parents.
    key = optuna.samplers.NSGAIISampler._get_generation_key()
    assert all(t.system_attrs.get(key) == 0 for t in searcher.nsga._ot_study.trials)


def test_the_prior_needs_a_finite_space_and_a_spectrum():
    with pytest.raises(SweepSpecError, match=r"space\.keep: spectral search needs a list or a range with `step`"):
        load_sweep_spec(with_("search", {"algorithm": "spectral"}))
    with pytest.raises(SweepSpecError, match=r"spectral\.enabled"):
        load_sweep_spec(with_("spectral", {"enabled": False}, with_("search", {"algorithm": "spectral"},
                                                                     with_("space", {"grid_stride": [2, 4]}))))
    with pytest.raises(SweepSpecError, match=r"objectives\.train_loss"):
        load_sweep_spec(with_("objectives", {"miou": "max", "train_loss": "min"},
                              with_("search", {"algorithm": "spectral"}, with_("space", {"grid_stride": [2, 4]}))))
    spec = _spec(grid_stride=[2, 4])
    assert enumerate_space(spec) == [{"grid_stride": 2}, {"grid_stride": 4}]
    assert spec.num_trials() == 2  # capped at the space
    with pytest.raises(ValueError, match="spectral needs the sweep's spectrum"):
        build_search(spec)
    # A replay passes recorded costs instead of forward passes.
    prior = build_search(spec, spectrum=SPECTRUM, measure=_table_cost).searcher
    assert [(c.config, c.cost["gflops"], c.oracle) for c in prior._candidates] == [
        ({"grid_stride": 2}, 5.0, 0.98), ({"grid_stride": 4}, 3.0, 0.95)]


def test_every_configuration_is_costed_exactly_once_per_network(monkeypatch):
    import segcore.cost
    from segcore.cost import count_flops
    from segcore.data import build_dataset
    from segcore.models import create_model

    calls = []

    def counting(model, size, device="cpu"):
        calls.append(size)
        return count_flops(model, size, device)

    monkeypatch.setattr(segcore.cost, "count_flops", counting)
    spec = _spec(grid_stride=[2, 4], block=[1, 2])
    configs = enumerate_space(spec)
    costs = measure_configurations(spec, configs, ["gflops"])
    assert len(calls) == 2  # blocks share the network's forward pass
    classes = build_dataset("synthetic", None, "train", num_samples=4, size=(32, 32)).num_classes
    for config, cost in zip(configs, costs):
        model = create_model(A, classes, grid_stride=config["grid_stride"])
        assert cost["gflops"] == pytest.approx(count_flops(model, (32, 32)).total / 1e9)
        assert cost["annotation_units"] == (32 // config["block"]) ** 2
    searcher = build_search(spec, spectrum=SPECTRUM)
    assert isinstance(searcher, ConcurrencyLimiter) and isinstance(searcher.searcher, SpectralSearch)


def test_a_restored_searcher_goes_on_where_it_stopped(tmp_path):
    spec = _spec(networks=(A, B), grid_stride=[2, 4, 8])
    searcher = _searcher(spec)
    for (net, stride), miou in {(A, 4): 0.90, (A, 2): 0.93, (B, 4): 0.50, (B, 2): 0.55}.items():
        searcher.add_finished({"network": net, "grid_stride": stride}, _done(miou=miou, gflops=GFLOPS[net, stride]))
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", _done(miou=0.80, gflops=2.0))
    searcher._hand_over()
    searcher.save(str(tmp_path / "searcher.pkl"))
    restored = _searcher(spec)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.nsga._skip.__self__ is restored
    assert _knobs(restored.suggest("t1")) == (B, 8, 1.0)
    assert restored.suggest("t2") == Searcher.FINISHED


def test_constraints_keep_configurations_out_and_reach_nsga2():
    spec = with_("networks", [A, B])
    spec.update(space={"grid_stride": [2, 4, 8]}, search={"algorithm": "spectral", "population_size": 2},
                constraints={"gflops": {"max": 5.0}})
    spec = load_sweep_spec(spec)
    searcher = build_search(spec, spectrum=SPECTRUM, measure=_table_cost).searcher
    suggested = []
    for i in range(8):
        config = searcher.suggest(f"t{i}")
        if not isinstance(config, dict):
            assert config == Searcher.FINISHED
            break
        suggested.append((config["network"], config["grid_stride"]))
        gflops = GFLOPS[suggested[-1]]
        searcher.on_trial_complete(f"t{i}", _done(miou=0.9 - gflops / 20, gflops=gflops))
    # B at 2 and 4 (8 and 6 GFLOPs) break gflops <= 5: never run; the four others run once each.
    assert len(suggested) == 4 and set(suggested) == {(A, 2), (A, 4), (A, 8), (B, 8)}
    told = [t for t in searcher.nsga._ot_study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # Every point NSGA-II knows carries its constraint value (gflops - 5), the told ones included.
    assert told and all(t.constraints == {"gflops.max": t.values[1] - 5.0} for t in told)
