"""Multi-objective successive halving: the rung rule on hand-made rung tables, the scheduler's
decisions as Ray Tune calls it, and the spec's ``scheduler`` built into a Tune scheduler."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("ray.tune", reason="the sweep extra (ray[tune]) is not installed")

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler  # noqa: E402

from segcore.config.sweep import load_sweep_spec  # noqa: E402
from segcore.tune.schedulers import MultiObjectiveAsha, continues_at_rung, rung_milestones  # noqa: E402
from segcore.tune.search import build_scheduler  # noqa: E402

CONTINUE, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
OBJECTIVES = {"miou": "max", "gflops": "min"}
# A rung table as (miou, gflops). A is accurate and dear; C cheap and less accurate, on the front;
# D is dominated by C (less accurate and dearer).
A, C, D = (0.8, 4.0), (0.6, 1.0), (0.5, 3.0)


def _losses(*points) -> np.ndarray:
    return np.array([(-miou, gflops) for miou, gflops in points])


def test_rung_keeps_a_cheap_trial_on_the_front_and_stops_a_dominated_one():
    # Three recorded, the arrival included: the top share is 1 + floor(2 / 2) = 2 trials.
    assert continues_at_rung(_losses(A, D, C), row=2, reduction_factor=2)       # front 0, with A
    assert not continues_at_rung(_losses(A, C, D), row=2, reduction_factor=2)   # behind C: 2 ahead


def test_rung_breaks_ties_within_the_last_front_by_crowding():
    # Five trials on one front (losses as in tests/test_dominance.py: crowding inf, 0.7, 1.0,
    # 1.3, inf); rf 2 keeps three: the two extremes and the loneliest inner point.
    line = np.array([[0.0, 10.0], [1.0, 6.0], [2.0, 5.0], [6.0, 1.0], [10.0, 0.0]])
    assert [continues_at_rung(line, row, 2) for row in range(5)] == [True, False, False, True, True]
    assert [continues_at_rung(line, row, 4) for row in range(5)] == [True, False, False, False, True]


def test_one_objective_is_ashas_quantile_rule():
    """With one objective a trial continues iff its value is at or above the (1 - 1/rf) quantile
    of the rung's values, the arrival included (order statistic: numpy's method="higher")."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        values = rng.integers(0, 6, size=rng.integers(1, 12)).astype(float)  # ties on purpose
        factor = float(rng.choice([2, 4]))
        cutoff = np.percentile(values, 100 * (1 - 1 / factor), method="higher")
        for row, value in enumerate(values):
            assert continues_at_rung(-values[:, None], row, factor) == (value >= cutoff)


def test_rungs_lie_below_max_t():
    assert rung_milestones(1, 2, 8) == [1, 2, 4]
    assert rung_milestones(1, 3, 10) == [1, 3, 9]
    assert rung_milestones(2, 2, 2) == []


def _result(point, epoch):
    return {"miou": point[0], "gflops": point[1], "epoch": epoch}


def test_scheduler_decides_on_arrival_where_single_metric_asha_stops_the_cheap_trial():
    scheduler = MultiObjectiveAsha(OBJECTIVES, max_t=4, grace_period=1, reduction_factor=2)
    asha = AsyncHyperBandScheduler(time_attr="epoch", metric="miou", mode="max", max_t=4, grace_period=1,
                                   reduction_factor=2)
    trials = {name: SimpleNamespace(trial_id=name) for name in "ACDE"}
    for name in "ADC":
        asha.on_trial_add(None, trials[name])
    points = {"A": A, "C": C, "D": D, "E": (0.55, 3.5)}
    assert scheduler.on_trial_result(None, trials["A"], _result(A, 1)) == CONTINUE    # first at the rung
    assert scheduler.on_trial_result(None, trials["D"], _result(D, 1)) == CONTINUE    # on the front with A
    assert scheduler.on_trial_result(None, trials["C"], _result(C, 1)) == CONTINUE    # cheap, on the front
    assert scheduler.on_trial_result(None, trials["E"], _result(points["E"], 1)) == STOP  # behind C, 2 ahead
    # Ray's ASHA on mIoU alone stops D (below A) and C: its cutoff is then the median of A and D, 0.65.
    assert [asha.on_trial_result(None, trials[name], _result(points[name], 1)) for name in "ADC"] == [
        CONTINUE, STOP, STOP]
    assert scheduler.on_trial_result(None, trials["A"], _result(A, 1.5)) == CONTINUE  # decided at rung 1
    assert scheduler.on_trial_result(None, trials["A"], _result(A, 2)) == CONTINUE    # first at rung 2
    assert scheduler.on_trial_result(None, trials["A"], _result(A, 4)) == STOP        # max_t: finished
    assert scheduler.on_trial_result(None, trials["C"], {"epoch": 2}) == CONTINUE     # no objectives: no decision
    assert {m: sorted(r) for m, r in scheduler.rungs.items()} == {2.0: ["A"], 1.0: ["A", "C", "D", "E"]}


def test_scheduler_state_survives_save_and_restore(tmp_path):
    scheduler = MultiObjectiveAsha(OBJECTIVES, max_t=4, grace_period=1, reduction_factor=2)
    for name, point in (("A", A), ("C", C)):
        scheduler.on_trial_result(None, SimpleNamespace(trial_id=name), _result(point, 1))
    scheduler.save(str(tmp_path / "scheduler.pkl"))
    restored = MultiObjectiveAsha({"miou": "max"}, max_t=2)
    restored.restore(str(tmp_path / "scheduler.pkl"))
    assert restored.objectives == OBJECTIVES and sorted(restored.rungs[1.0]) == ["A", "C"]
    assert restored.on_trial_result(None, SimpleNamespace(trial_id="D"), _result(D, 1)) == STOP


def test_scheduler_refuses_a_metric_from_tune_config_and_bad_objectives():
    scheduler = MultiObjectiveAsha(OBJECTIVES, max_t=4)
    assert scheduler.set_search_properties(None, None)
    assert not scheduler.set_search_properties("miou", "max")
    assert scheduler.metric == "miou"  # one key Tune can look for in every result
    with pytest.raises(ValueError, match="'max' or 'min'"):
        MultiObjectiveAsha({"miou": "up"}, max_t=4)
    with pytest.raises(ValueError, match="reduction_factor"):
        MultiObjectiveAsha(OBJECTIVES, max_t=4, reduction_factor=1)


def _spec(**fields):
    base = {"name": "s", "networks": ["unet_tiny"], "epochs": 4,
            "objectives": {"miou": "max", "gflops": "min", "annotation_units": "min"}}
    return load_sweep_spec({**base, **fields})


def test_build_scheduler_from_the_spec():
    assert isinstance(build_scheduler(_spec()), FIFOScheduler)
    mo = build_scheduler(_spec(scheduler={"name": "mo_asha", "grace_period": 1, "reduction_factor": 3}))
    assert isinstance(mo, MultiObjectiveAsha)
    assert mo.objectives == {"miou": "max", "gflops": "min", "annotation_units": "min"}
    assert sorted(mo.rungs) == [1.0, 3.0]
    asha = build_scheduler(_spec(scheduler={"name": "asha", "metric": "train_loss"}))
    assert isinstance(asha, AsyncHyperBandScheduler) and not isinstance(asha, MultiObjectiveAsha)
    assert (asha.metric, asha._mode, asha._time_attr) == ("train_loss", "min", "epoch")


@pytest.mark.slow
def test_under_ray_tune_the_dominated_trial_stops_and_ends_early_stopped(tmp_path):
    """The hand-made rung above, one trial after the other under a real Tuner: E stops at its first
    rung, the cheap C goes on to the end; the driver's status calls E early stopped."""
    import ray
    from ray import tune

    from segcore.names import STATUS_COMPLETED, STATUS_EARLY_STOPPED
    from segcore.tune.callbacks import trial_status
    from segcore.tune.replay import start_local_ray

    def reporting_trial(config):  # defined here: pickled by value for the workers
        miou, gflops = config["point"]
        for epoch in (1, 2, 3, 4):
            tune.report({"epoch": float(epoch), "miou": miou, "gflops": gflops})

    points = {"A": A, "D": D, "C": C, "E": (0.55, 3.5)}
    started = start_local_ray(num_cpus=2)
    try:
        tuner = tune.Tuner(
            reporting_trial,
            param_space={"point": tune.grid_search(list(points.values()))},
            tune_config=tune.TuneConfig(scheduler=MultiObjectiveAsha(OBJECTIVES, max_t=4, grace_period=1,
                                                                     reduction_factor=2),
                                        max_concurrent_trials=1),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="mo", verbose=0),
        )
        results = tuner.fit()
    finally:
        if started:
            ray.shutdown()
    ends = {tuple(r.config["point"]): trial_status(r.metrics, 4, errored=r.error is not None) for r in results}
    # One after the other: A, D and C each pass both rungs (epochs 1 and 2) with what was recorded
    # before them; E arrives at the rung of epoch 1 behind C with A and C ahead of it and stops.
    assert ends == {A: STATUS_COMPLETED, D: STATUS_COMPLETED, C: STATUS_COMPLETED,
                    points["E"]: STATUS_EARLY_STOPPED}
