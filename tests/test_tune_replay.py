"""Replaying a recorded sweep through Ray Tune's real searchers (segcore.tune.replay, segcore replay)."""

from __future__ import annotations

import pandas as pd
import pytest

from segcore.cli import main
from segcore.config.sweep import load_sweep_spec
from segcore.tune.replay import ReplayTable, exhaustive_front_input, read_curves, replay_sweep, start_local_ray

EPOCHS = 2


def _rows(trial_id, network, stride, mious, gflops, seed=0):
    return [{"trial_id": trial_id, "network": network, "backbone": None, "grid_stride": stride, "keep": 1.0,
             "block": 1, "seed": seed, "epoch": epoch, "miou": miou, "train_loss": 1.0 / epoch, "gflops": gflops}
            for epoch, miou in enumerate(mious, start=1)]


# Four configurations, two epochs each; dan_tiny at stride 2 has two seeds (replayed as their mean).
CURVES = pd.DataFrame(
    _rows("a", "unet_tiny", 2, [0.3, 0.5], 4.0) + _rows("b", "unet_tiny", 4, [0.2, 0.4], 2.0)
    + _rows("c", "dan_tiny", 2, [0.4, 0.6], 5.0) + _rows("c2", "dan_tiny", 2, [0.6, 0.8], 5.0, seed=1)
    + _rows("d", "dan_tiny", 4, [0.1, 0.2], 3.0)
)


def _spec(**changes):
    data = {"name": "replay-test", "networks": ["unet_tiny", "dan_tiny"], "space": {"grid_stride": [2, 4]},
            "objectives": {"miou": "max", "gflops": "min"}, "search": {"algorithm": "grid"},
            "num_samples": 1, "max_concurrent": 2, "epochs": EPOCHS, "spectral": {"enabled": False}}
    data.update(changes)
    return load_sweep_spec(data)


def test_table_means_seeds_and_counts_trial_epochs():
    table = ReplayTable(CURVES)
    assert len(table) == 4 and table.trial_epochs() == 8
    curve = table.curves[table.key({"network": "dan_tiny", "backbone": None, "grid_stride": 2, "keep": 1.0, "block": 1})]
    assert [row["miou"] for row in curve] == pytest.approx([0.5, 0.7])
    assert [row["epoch"] for row in curve] == [1.0, 2.0] and curve[0]["gflops"] == 5.0
    final = exhaustive_front_input(table, EPOCHS)
    assert sorted(final["miou"].round(6)) == [0.2, 0.4, 0.5, 0.7]


def test_csv_round_trip_keeps_knob_types(tmp_path):
    path = tmp_path / "curves.csv"
    CURVES.to_csv(path, index=False)
    curves = read_curves(path)
    assert curves["grid_stride"].dtype == "Int64" and curves["keep"].dtype == "float64"
    assert ReplayTable(curves).curves.keys() == ReplayTable(CURVES).curves.keys()


def test_missing_columns_and_configurations_are_named():
    with pytest.raises(ValueError, match="missing column.*epoch"):
        ReplayTable(CURVES.drop(columns="epoch"))
    # stride 8 was never recorded: refused before Ray starts.
    spec = _spec(space={"grid_stride": [2, 4, 8]})
    with pytest.raises(ValueError, match=r"2 configuration\(s\).*network=unet_tiny .*grid_stride=8"):
        replay_sweep(spec, CURVES)
    with pytest.raises(ValueError, match="objectives annotation_units"):
        replay_sweep(_spec(objectives={"miou": "max", "annotation_units": "min"}), CURVES)


@pytest.fixture(scope="module")
def local_ray():
    import ray

    started = start_local_ray(num_cpus=4)
    yield
    if started:
        ray.shutdown()


def test_grid_replay_reports_the_recorded_epochs(local_ray):
    outcome = replay_sweep(_spec(), CURVES)
    ends = outcome.finished_trials()
    assert len(ends) == 4 and ends["full_length"].all() and outcome.trial_epochs == 8
    epochs = outcome.events[outcome.events["event"] == "epoch"]
    assert epochs["trial_epochs"].tolist() == list(range(1, 9))
    by_config = {(r.network, r.grid_stride): r.miou for r in ends.itertuples()}
    assert by_config == pytest.approx({("unet_tiny", 2): 0.5, ("unet_tiny", 4): 0.4,
                                       ("dan_tiny", 2): 0.7, ("dan_tiny", 4): 0.2})
    assert outcome.skipped == []


def test_missing_configurations_skipped_cost_nothing(local_ray):
    outcome = replay_sweep(_spec(space={"grid_stride": [2, 4, 8]}), CURVES, missing="skip")
    assert len(outcome.skipped) == 2 and all("grid_stride=8" in s for s in outcome.skipped)
    assert outcome.trial_epochs == 8 and len(outcome.finished_trials()) == 4


def test_budget_stops_the_replay(local_ray):
    outcome = replay_sweep(_spec(max_concurrent=1), CURVES, budget_trial_epochs=4)
    # One trial at a time, two epochs each: the budget of 4 is spent by the second trial's last
    # epoch, which still ends that trial (full length) in the log.
    assert outcome.trial_epochs == 4
    ends = outcome.finished_trials()
    assert len(ends) == 2 and ends["full_length"].all()


def test_optuna_with_asha_runs_each_configuration_once(local_ray):
    spec = _spec(search={"algorithm": "optuna", "sampler": "tpe"}, objectives={"miou": "max"},
                 scheduler={"name": "asha", "metric": "miou", "grace_period": 1}, num_samples=4, max_concurrent=1)
    ends = replay_sweep(spec, CURVES).finished_trials()
    assert len(ends) == 4
    assert len(set(zip(ends["network"], ends["grid_stride"]))) == 4
    # Every trial ends at a recorded epoch; a stopped one is not full-length.
    assert set(ends["epoch"]) <= {1.0, 2.0}
    assert (ends["full_length"] == (ends["epoch"] == 2.0)).all()


def test_cli_replay(local_ray, tmp_path, capsys):
    curves, spec, events = tmp_path / "curves.csv", tmp_path / "spec.yaml", tmp_path / "events.csv"
    CURVES.to_csv(curves, index=False)
    import yaml

    spec.write_text(yaml.safe_dump(_spec().model_dump(mode="json")))
    assert main(["replay", str(spec), "--curves", str(curves), "--events", str(events)]) == 0
    out = capsys.readouterr().out
    assert "replayed 4 trial(s)" in out and "4 full-length" in out
    assert "trial-epochs spent: 8 of the exhaustive 8 (100.0%)" in out
    assert "hypervolume reached: 100.0%" in out
    assert len(pd.read_csv(events)) == 12  # 8 epochs and 4 trial ends


def test_spectral_prior_and_mo_asha_replayed_with_recorded_costs(local_ray):
    from _sweep_store import SPECTRUM

    spec = _spec(search={"algorithm": "spectral"}, spectral={"enabled": True},
                 scheduler={"name": "mo_asha", "grace_period": 1}, num_samples=4, max_concurrent=1)
    outcome = replay_sweep(spec, CURVES, spectrum=SPECTRUM)
    ends = outcome.finished_trials()
    assert len(set(zip(ends["network"], ends["grid_stride"]))) == len(ends) <= 4
    # The prior costs every configuration from the table: the first one it runs is the cheapest
    # of its predicted front (unet_tiny at stride 4, 2 GFLOPs, is on every front).
    first = ends.iloc[0]
    assert (first["network"], first["grid_stride"]) == ("unet_tiny", 4)
