"""Warm start (``warm_start: {experiment, sweep}``, segcore.tune.search.load_warm_start): an earlier
sweep's finished trials that lie in the new space seed Optuna and the spectral prior."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.tune", reason="the sweep extra (ray[tune]) is not installed")
pytest.importorskip("mlflow", reason="the sweep extra (mlflow) is not installed")

import optuna  # noqa: E402
import ray  # noqa: E402
from ray.tune.search import Searcher  # noqa: E402

from _sweep_store import SPECTRUM, sqlite_uri, trial, write_sweep  # noqa: E402
from segcore.config.sweep import SweepSpecError, load_sweep_spec  # noqa: E402
from segcore.tracking import schema  # noqa: E402
from segcore.tune.runner import run_sweep  # noqa: E402
from segcore.tune.search import build_search, load_warm_start  # noqa: E402

U, D = "unet_tiny", "dan_tiny"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One recorded sweep ``old`` / ``s1``: four finished trials, two of them outside the new space
    (keep 0.5; truncation resize), one stopped early and one failed."""
    uri = sqlite_uri(tmp_path_factory.mktemp("warm"))
    resized = trial("t5", D, 4, 0.66, 0.004)
    resized["config"]["truncation"] = "resize"
    write_sweep(uri, "old", [
        trial("t1", U, 2, 0.61, 0.016),
        trial("t2", D, 4, 0.58, 0.005),
        trial("t3", U, 4, 0.55, 0.008, keep=0.5),
        trial("t4", D, 2, 0.40, 0.012, status=schema.STATUS_EARLY_STOPPED, epochs_run=1),
        resized,
        trial("t6", U, 4, None, 0.0, status=schema.STATUS_FAILED),
    ], sweep="s1")
    return uri


def _spec(uri, tmp_path, algorithm="optuna", **warm):
    return load_sweep_spec({
        "name": "new",
        "dataset": {"name": "synthetic", "options": {"num_samples": 4, "size": [32, 32]}},
        "networks": [U, D],
        "space": {"grid_stride": [2, 4], "keep": [1.0], "truncation": "fft"},
        "objectives": {"miou": "max", "gflops": "min"},
        "search": {"algorithm": algorithm},
        "epochs": 3,
        "storage_path": str(tmp_path / "ray_results"),
        "tracking_uri": uri,
        "warm_start": {"experiment": "old", "sweep": "s1", **warm},
    })


def test_only_finished_trials_inside_the_new_space_seed_the_search(store, tmp_path):
    warm = load_warm_start(_spec(store, tmp_path))
    assert warm.finished == 4  # t1, t2, t3, t5: completed and full length
    assert warm.trials == [({"network": D, "grid_stride": 4}, {"miou": 0.58, "gflops": 0.005}),
                           ({"network": U, "grid_stride": 2}, {"miou": 0.61, "gflops": 0.016})]
    assert warm.describe() == ("warm start: 2 of the 4 finished trial(s) of sweep 's1' (experiment 'old') lie in "
                               "this space and seed the search; 2 ignored")


def test_optuna_is_told_each_seed_and_never_reruns_it(store, tmp_path):
    spec = _spec(store, tmp_path)
    searcher = build_search(spec, warm_start=load_warm_start(spec)).searcher
    told = [(t.params["network"], t.params["grid_stride"], t.state, t.values) for t in searcher._ot_study.trials]
    complete = optuna.trial.TrialState.COMPLETE
    assert told == [(D, 4, complete, [0.58, 0.005]), (U, 2, complete, [0.61, 0.016])]
    suggested = {(c["network"], c["grid_stride"]) for c in (searcher.suggest("a"), searcher.suggest("b"))}
    assert suggested == {(U, 4), (D, 2)}
    assert searcher.suggest("c") == Searcher.FINISHED


def test_the_spectral_prior_counts_seeds_as_finished(store, tmp_path):
    spec = _spec(store, tmp_path, algorithm="spectral")
    prior = build_search(spec, spectrum=SPECTRUM, warm_start=load_warm_start(spec)).searcher
    # Calibration: each network has one finished trial; its c is miou / oracle (strides 4 and 2).
    assert prior.calibration.parameters(D) == pytest.approx((0.58 / 0.95, 1.0))
    assert prior.calibration.parameters(U) == pytest.approx((0.61 / 0.98, 1.0))
    suggested = set()
    for trial_id in ("a", "b", "c"):
        config = prior.suggest(trial_id)
        if isinstance(config, dict):
            suggested.add((config["network"], config["grid_stride"]))
            prior.on_trial_complete(trial_id, {"epoch": 3, "miou": 0.5, "gflops": 0.01})
    assert suggested == {(U, 4), (D, 2)}
    assert prior.suggest("d") == Searcher.FINISHED


def test_a_missing_experiment_or_sweep_is_refused_before_anything_starts(store, tmp_path):
    with pytest.raises(SweepSpecError, match=r"warm_start\.experiment: unknown experiment 'older'"):
        load_warm_start(_spec(store, tmp_path, experiment="older"))
    with pytest.raises(SweepSpecError, match=r"warm_start\.sweep: no trials of sweep 's2' .*its sweeps: s1"):
        load_warm_start(_spec(store, tmp_path, sweep="s2"))
    with pytest.raises(SweepSpecError, match=r"warm_start\.experiment"):
        load_warm_start(_spec(store, tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'none.db'}"))
    with pytest.raises(SweepSpecError, match=r"warm_start: seeds a searcher"):
        _spec(store, tmp_path, algorithm="grid")
    with pytest.raises(SweepSpecError, match=r"warm_start\.experiment"):
        run_sweep(_spec(store, tmp_path, experiment="older"), progress=False, log=lambda line: None)
    assert not ray.is_initialized() and not (tmp_path / "ray_results").exists()


def test_a_local_spectral_sweep_runs_only_what_the_warm_start_left(store, tmp_path):
    lines = []
    spec = _spec(store, tmp_path, algorithm="spectral")
    spectral = spec.spectral.model_copy(update={"strides": (1, 2, 4), "blocks": (1, 2)})
    spec = spec.model_copy(update={"epochs": 1, "num_samples": 4, "experiment": "new", "spectral": spectral})
    outcome = run_sweep(spec, num_cpus=2, progress=False, log=lines.append)
    assert lines[0].startswith("warm start: 2 of the 4 finished trial(s) of sweep 's1'")
    ran = sorted(zip(outcome.trials["network"], outcome.trials["grid_stride"]))
    assert ran == [(D, 2), (U, 4)]  # the two configurations the earlier sweep did not finish
    assert set(outcome.trials["status"]) == {schema.STATUS_COMPLETED}
