"""Recommendations (segcore.analysis.recommend): the knee, the cheapest configuration within the
tolerance, and the efficient grid measured, fitted and predicted by the spectral analysis."""

from __future__ import annotations

import pandas as pd

from _sweep_store import SPECTRUM
from segcore.analysis import fit_tradeoff


def test_recommendations_and_efficient_grid():
    # Flat to stride 4, then falling: measured efficient grid 4 at a 1% tolerance.
    rows = [(1, 0.600, 10.0), (2, 0.598, 6.0), (4, 0.597, 5.0), (8, 0.55, 4.8), (16, 0.40, 4.7)]
    df = pd.DataFrame([{"network": "dl", "grid_stride": s, "keep": 1.0, "block": 1, "miou": y,
                        "gflops": g, "trial_id": f"s{s}"} for s, y, g in rows])
    model = fit_tradeoff(df, SPECTRUM, tolerance=0.01)
    rec = model.networks["dl"].recommended
    assert rec["efficient_grid_measured"] == 4
    assert rec["cheapest_within_tolerance"]["trial_id"] == "s4"
    assert rec["best"]["trial_id"] == "s1"
    # Kneedle on the front (all five points): s4 lies farthest above the chord.
    assert rec["knee"]["trial_id"] == "s4"
    # A convex front (every point below its chord) has no knee: the cheapest within tolerance.
    convex = df.assign(miou=[0.60, 0.40, 0.30, 0.25, 0.22], gflops=[10.0, 8.0, 6.0, 4.0, 2.0])
    convex_rec = fit_tradeoff(convex, SPECTRUM).networks["dl"].recommended
    assert convex_rec["knee"]["trial_id"] == convex_rec["cheapest_within_tolerance"]["trial_id"] == "s1"
    table = model.recommendations()
    # The spectral grid under the same 1% criterion: the oracle loses 2% at stride 2, so 1.
    assert table.loc[0, "efficient_grid_spectral"] == 1.0
    assert table.loc[0, "efficient_grid_spectral_energy"] == SPECTRUM["efficient_grid"]["by_energy"]
    assert 1 <= table.loc[0, "efficient_grid_fitted"] <= 16


def test_spectral_efficient_grid_at_the_trials_resolution():
    """At scale 0.25 the trials' dense grid is native stride 4 (oracle 0.95): within 10% of it
    stay native 8 (0.88) and 16 (0.74 / 0.95 = 0.78 does not), so stride 2 in trial pixels."""
    rows = [{"network": "dl", "grid_stride": s, "keep": 1.0, "block": 1, "image_scale": 0.25,
             "miou": 0.5 - 0.01 * s, "gflops": 1.0} for s in (1, 2, 4)]
    model = fit_tradeoff(pd.DataFrame(rows), SPECTRUM, tolerance=0.1)
    spectral = model.spectral_in_trial_units("dl")
    assert spectral["grid_by_miou"] == 2.0
    assert spectral["grid_by_energy"] == 1.0 and spectral["block"] == 0.5
    # At scale 1 and the spectrum's tolerance it is the spectrum's own efficient grid.
    same = fit_tradeoff(pd.DataFrame(rows).assign(image_scale=1.0), SPECTRUM, tolerance=0.02)
    assert same.spectral_in_trial_units("dl")["grid_by_miou"] == SPECTRUM["efficient_grid"]["by_miou"]
