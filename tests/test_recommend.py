"""Recommendations (segcore.analysis.recommend): the knee, the cheapest configuration within the
tolerance, and the efficient grid measured, fitted and predicted by the spectral analysis."""

from __future__ import annotations

import pandas as pd
import pytest

from _sweep_store import SPECTRUM
from segcore.analysis import fit_tradeoff
from segcore.analysis.tradeoff import trial_stride


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
    # The spectral block (native 2) is half a trial pixel at scale 0.25: given as 1, and said so.
    assert spectral["grid_by_energy"] == 1.0 and spectral["block"] == 1.0
    assert spectral["notes"] == ["spectral efficient block 2 native pixels is 0.5 in the trials' pixels "
                                 "(below one pixel): given as 1"]
    assert "below one pixel" in model.recommendations().loc[0, "notes"]
    # At scale 1 and the spectrum's tolerance it is the spectrum's own efficient grid.
    same = fit_tradeoff(pd.DataFrame(rows).assign(image_scale=1.0), SPECTRUM, tolerance=0.02)
    assert same.spectral_in_trial_units("dl")["grid_by_miou"] == SPECTRUM["efficient_grid"]["by_miou"]


def test_measured_efficient_grid_only_from_keep_1_and_block_1():
    """Trials at keep 0.5 or block 4 say nothing about the grid alone: none at keep 1 and block 1
    means no measured (or fitted) efficient grid, and the notes say that none ran."""
    rows = [{"network": "dl", "grid_stride": s, "keep": keep, "block": block, "miou": 0.6 - 0.01 * s,
             "gflops": 1.0 + 4.0 / s ** 2} for s in (1, 2, 4, 8) for keep, block in ((0.5, 1), (1.0, 4))]
    model = fit_tradeoff(pd.DataFrame(rows), SPECTRUM)
    rec = model.networks["dl"].recommended
    assert rec["efficient_grid_measured"] is None and rec["efficient_grid_fitted"] is None
    assert rec["notes"] == ["no measured efficient grid: no trial ran at keep 1 and block 1"]
    # One pure stride is not a curve either.
    one = pd.DataFrame(rows + [{"network": "dl", "grid_stride": 4, "keep": 1.0, "block": 1, "miou": 0.6, "gflops": 2.0}])
    assert fit_tradeoff(one, SPECTRUM).networks["dl"].recommended["notes"] == [
        "no measured efficient grid: only grid stride 4 ran at keep 1 and block 1"]
    # With the pure axis present, the other trials do not move it: 0.60 at 1, 0.595 at 2, 0.5 at 4.
    pure = [{"network": "dl", "grid_stride": s, "keep": 1.0, "block": 1, "miou": y, "gflops": 1.0 + 4.0 / s ** 2}
            for s, y in ((1, 0.60), (2, 0.595), (4, 0.5))]
    both = fit_tradeoff(pd.DataFrame(rows + pure), SPECTRUM).networks["dl"].recommended
    assert both["efficient_grid_measured"] == 2 and both["notes"] == []


def test_seeds_are_averaged_before_recommending():
    """Two seeds per stride: the lucky seed at stride 4 (0.60) does not make 4 efficient when the
    mean there (0.55) is 8% below the mean at stride 1 (0.60)."""
    rows = [(1, 0, 0.61), (1, 1, 0.59), (2, 0, 0.60), (2, 1, 0.596), (4, 0, 0.60), (4, 1, 0.50)]
    df = pd.DataFrame([{"network": "dl", "grid_stride": s, "keep": 1.0, "block": 1, "seed": seed, "miou": y,
                        "gflops": 1.0 + 4.0 / s ** 2, "trial_id": f"s{s}-{seed}"} for s, seed, y in rows])
    rec = fit_tradeoff(df, SPECTRUM).networks["dl"].recommended
    assert rec["efficient_grid_measured"] == 2
    assert rec["best"]["metric"] == pytest.approx(0.60) and rec["best"]["seeds"] == 2
    assert rec["best"]["trial_id"] == "s1-0"  # the configuration's first trial


@pytest.mark.parametrize(("native", "ratio", "expected", "note"), [
    (8, 0.5, 4.0, None),
    (2, 0.25, 1.0, "spectral efficient block 2 native pixels is 0.5 in the trials' pixels (below one pixel): given as 1"),
    (3, 0.5, 1.0, "spectral efficient block 3 native pixels is 1.5 in the trials' pixels (not a whole stride): given as 1"),
    (None, 0.5, None, None),
])
def test_trial_stride_is_whole_and_at_least_one(native, ratio, expected, note):
    assert trial_stride(native, ratio, "efficient block") == (expected, note)
