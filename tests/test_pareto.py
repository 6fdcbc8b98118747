"""Pareto front and hypervolume: a hand-built table with a known answer, cross-checked with Optuna."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from segcore.analysis import hypervolume, is_pareto_efficient, pareto_front, parse_objectives
from segcore.analysis.pareto import feasible_mask

# (name, network, miou, gflops). Known front under miou max / gflops min: A, B, F (a tie with B), D.
ROWS = [
    ("A", "dl", 0.70, 10.0),
    ("B", "dl", 0.65, 5.0),
    ("C", "dan", 0.60, 6.0),   # dominated by B
    ("D", "dan", 0.50, 2.0),
    ("E", "unet", 0.70, 12.0),  # dominated by A (same miou, dearer)
    ("F", "unet", 0.65, 5.0),   # tie with B: neither dominates, both stay
    ("G", "unet", math.nan, 1.0),  # failed: NaN never enters and never dominates
    ("H", "dl", 0.30, 2.0),    # dominated by D
]


@pytest.fixture()
def table() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=["trial_id", "network", "miou", "gflops"])


def test_hand_built_front(table):
    front = pareto_front(table)
    assert set(front["trial_id"]) == {"A", "B", "F", "D"}
    assert front["miou"].tolist() == sorted(front["miou"], reverse=True)  # best first


def test_front_per_network(table):
    front = pareto_front(table, by="network")
    got = {net: set(g["trial_id"]) for net, g in front.groupby("network")}
    # Within "dl", H (0.30 at 2 GFLOPs) is the cheapest and stays; D no longer dominates it.
    assert got == {"dl": {"A", "B", "H"}, "dan": {"C", "D"}, "unet": {"E", "F"}}


def test_hand_built_hypervolume(table):
    # minimise (-miou, gflops), reference (-0.4, 12): strips 0.3*2 + 0.25*5 + 0.1*3 = 2.15
    hv = hypervolume(table, {"miou": "max", "gflops": "min"}, {"miou": 0.4, "gflops": 12.0})
    assert hv == pytest.approx(2.15)
    # A point outside the reference adds nothing; a reference everything misses gives 0.
    assert hypervolume(table, None, {"miou": 0.69, "gflops": 20.0}) == pytest.approx(0.01 * 10.0)
    assert hypervolume(table, None, {"miou": 0.9, "gflops": 20.0}) == 0.0


def _optuna_study(loss_like: np.ndarray, directions: list[str]):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=directions)
    study.add_trials([optuna.trial.create_trial(values=list(map(float, v)), params={}, distributions={})
                      for v in loss_like])
    return study


def test_front_and_hypervolume_match_optuna(table):
    from optuna._hypervolume import compute_hypervolume

    valid = table.dropna()
    study = _optuna_study(valid[["miou", "gflops"]].to_numpy(), ["maximize", "minimize"])
    optuna_front = {valid.iloc[t.number]["trial_id"] for t in study.best_trials}
    assert optuna_front == set(pareto_front(table)["trial_id"])
    loss = np.stack([-valid["miou"].to_numpy(), valid["gflops"].to_numpy()], axis=1)
    assert hypervolume(table, None, {"miou": 0.4, "gflops": 12.0}) == pytest.approx(
        compute_hypervolume(loss[(loss < [-0.4, 12.0]).all(axis=1)], np.array([-0.4, 12.0])))


@pytest.mark.parametrize("m", [2, 3, 4])
def test_random_fronts_match_optuna(m):
    """Random points with many ties (values rounded to a coarse grid), mixed directions."""
    from optuna._hypervolume import compute_hypervolume
    from optuna.study._multi_objective import _is_pareto_front

    rng = np.random.default_rng(m)
    n = 60 if m < 4 else 25
    values = np.round(rng.uniform(0, 1, size=(n, m)) * 8) / 8
    names = [f"o{i}" for i in range(m)]
    directions = ["max" if i % 2 == 0 else "min" for i in range(m)]
    df = pd.DataFrame(values, columns=names)
    objectives = dict(zip(names, directions))
    loss = values * np.array([-1.0 if d == "max" else 1.0 for d in directions])
    expected = _is_pareto_front(loss, assume_unique_lexsorted=False)
    assert np.array_equal(is_pareto_efficient(loss), expected)
    assert set(pareto_front(df, objectives).index) == set(np.flatnonzero(expected))
    study = _optuna_study(values, ["maximize" if d == "max" else "minimize" for d in directions])
    assert {t.number for t in study.best_trials} == set(np.flatnonzero(expected))
    reference = {n_: (-0.1 if d == "max" else 1.1) for n_, d in objectives.items()}
    ref = np.array([-r if d == "max" else r for r, d in zip(reference.values(), directions)])
    assert hypervolume(df, objectives, reference) == pytest.approx(compute_hypervolume(loss, ref), rel=1e-9)


def test_nan_rows_and_empty(table):
    nan_only = table.assign(miou=math.nan)
    assert pareto_front(nan_only).empty
    assert hypervolume(nan_only, None, {"miou": 0.0, "gflops": 20.0}) == 0.0
    assert pareto_front(table.iloc[:0]).empty


def test_unknown_objective_lists_columns(table):
    with pytest.raises(KeyError, match=r"unknown objective 'latency'.*miou, gflops"):
        pareto_front(table, {"latency": "min"})
    with pytest.raises(KeyError, match="objective 'network' is not a numeric column.*miou, gflops"):
        pareto_front(table, {"miou": "max", "network": "min"})
    with pytest.raises(KeyError, match="by: unknown column 'node'"):
        pareto_front(table, by="node")
    with pytest.raises(KeyError, match="reference: no value for objective"):
        hypervolume(table, None, {"miou": 0.0})


def test_parse_objectives():
    assert parse_objectives(["miou:max", "gflops:MIN"]) == {"miou": "max", "gflops": "min"}
    assert parse_objectives(None) == {"miou": "max", "gflops": "min"}
    with pytest.raises(ValueError, match="direction 'up' is not one of"):
        parse_objectives({"miou": "up"})
    with pytest.raises(ValueError, match="expected COLUMN:max"):
        parse_objectives(["miou"])
    with pytest.raises(ValueError, match="at least one"):
        parse_objectives({})


def test_front_leaves_out_trials_that_break_the_constraints():
    table = pd.DataFrame({"miou": [0.9, 0.7, 0.5, 0.4], "gflops": [8.0, 3.0, 1.0, 2.0],
                          "annotation_units": [100.0, 10.0, 50.0, 5.0]})
    assert sorted(pareto_front(table).index) == [0, 1, 2]
    assert feasible_mask(table, {"gflops": {"max": 4.0}}).tolist() == [False, True, True, True]
    # The dear trial 0 breaks the bound: the best feasible accuracy leads the front.
    assert sorted(pareto_front(table, constraints={"gflops": {"max": 4.0}}).index) == [1, 2]
    bounds = {"gflops": {"max": 4.0}, "annotation_units": {"min": None, "max": 20.0}}
    assert sorted(pareto_front(table, constraints=bounds).index) == [1, 3]  # 3 joins once 2 is out
    assert feasible_mask(table.drop(columns="gflops"), {"gflops": {"max": 4.0}}).sum() == 0  # no cost: broken
