"""The trade-off fit (segcore.analysis.tradeoff, .fitting): known parameters recovered, the model
chosen by cross-validation, the cost model, what is left out of a fit, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from _sweep_store import SPECTRUM
from _tradeoff_tables import calibrated_table, saturating_table
from segcore.analysis import fit_tradeoff
from segcore.spectral.curves import oracle_curves
from segcore.analysis.fitting import CALIBRATED_ORACLE, SATURATING


def test_calibrated_oracle_parameters_recovered():
    truth = {"deeplabv3plus": (0.62, 2.0), "dan": (0.45, 0.7)}
    model = fit_tradeoff(calibrated_table(truth), SPECTRUM)
    for net, (c, g) in truth.items():
        fit = model.networks[net]
        assert fit.accuracy.kind == CALIBRATED_ORACLE  # chosen by leave-one-out error
        assert fit.accuracy.params["c"] == pytest.approx(c, rel=0.02)
        assert fit.accuracy.params["g"] == pytest.approx(g, rel=0.06)
        assert fit.accuracy.r2 > 0.99
        assert fit.accuracy.loo_rmse < 0.005 < fit.candidates[SATURATING].loo_rmse
        # Cost: 5 + 40 (keep/s)^2 exactly, and its LOO error is ~0.
        assert fit.cost.coefficients == pytest.approx({"1": 5.0, "(keep/s)^2": 40.0}, abs=1e-6)
        assert fit.cost.loo_rmse < 1e-6
    pred = model.predict("dan", grid_stride=8, keep=0.5, block=1)
    oracle16 = 0.74  # the oracle at stride 8 / 0.5 = 16
    assert pred["miou"] == pytest.approx(0.45 * oracle16 ** 0.7, abs=0.005)
    assert pred["gflops"] == pytest.approx(5 + 40 * (0.5 / 8) ** 2, abs=1e-6)


def test_saturating_parameters_recovered_and_chosen_over_oracle():
    df = saturating_table()
    alone = fit_tradeoff(df)  # no spectrum: only the free curve
    assert alone.networks["unet"].accuracy.kind == SATURATING
    params = alone.networks["unet"].accuracy.params
    assert params["m"] == pytest.approx(0.7, rel=0.02)
    assert params["s0"] == pytest.approx(6.0, rel=0.03)
    assert params["p"] == pytest.approx(2.5, rel=0.05)
    with_spectrum = fit_tradeoff(df, SPECTRUM)
    fit = with_spectrum.networks["unet"]
    assert fit.accuracy.kind == SATURATING  # the oracle's shape is wrong here and LOO says so
    assert fit.candidates[SATURATING].loo_rmse < fit.candidates[CALIBRATED_ORACLE].loo_rmse


def test_cost_model_terms_chosen_by_cross_validation():
    """A U-Net-like decoder stops up-sampling at the grid: GFLOPs fall by a constant per octave."""
    df = pd.DataFrame({"network": "unet", "grid_stride": [1, 2, 4, 8, 16], "keep": 1.0, "block": 1,
                       "miou": [0.5, 0.5, 0.48, 0.44, 0.36]})
    df["gflops"] = 20.0 - 3.0 * np.log2(df["grid_stride"])
    cost = fit_tradeoff(df).networks["unet"].cost
    assert cost.coefficients == pytest.approx({"1": 20.0, "-log2(s)": 3.0}, abs=1e-6)
    assert cost.r2 == pytest.approx(1.0) and cost.loo_rmse < 1e-6
    model = fit_tradeoff(df)
    assert model.predict("unet", 32)["gflops"] == pytest.approx(5.0)


def test_block_knob_uses_block_oracle(tmp_path):
    curves = oracle_curves(SPECTRUM)
    rows = [{"network": "dl", "grid_stride": s, "keep": 1.0, "block": b, "block_mode": "hard",
             "miou": 0.5 * (curves.at_stride(s)[()] * curves.at_block(b, "hard")[0]) ** 1.5}
            for s in (2, 4, 8) for b in (1, 4, 16)]
    model = fit_tradeoff(pd.DataFrame(rows), SPECTRUM)
    fit = model.networks["dl"].accuracy
    assert fit.kind == CALIBRATED_ORACLE
    assert (fit.params["c"], fit.params["g"]) == pytest.approx((0.5, 1.5), rel=1e-4)
    assert model.predict("dl", 4, 1.0, 8)["miou"] == pytest.approx(0.5 * (0.95 * 0.85) ** 1.5, rel=1e-4)
    from segcore.analysis.plots import plot_accuracy_vs_block

    assert plot_accuracy_vs_block(pd.DataFrame(rows), model, tmp_path / "b.png").stat().st_size > 1000
    flat = pd.DataFrame(rows)[lambda d: d["block"] == 1]
    assert plot_accuracy_vs_block(flat, fit_tradeoff(flat, SPECTRUM), tmp_path / "none.png") is None
    # Block 4 already loses > 1%: the measured efficient block is 1, the spectral one 2.
    table = model.recommendations()
    assert table.loc[0, "efficient_block_measured"] == 1
    assert table.loc[0, "efficient_block_spectral"] == SPECTRUM["efficient_block"]


def test_partial_failed_and_nan_trials_are_not_fitted():
    df = calibrated_table({"dl": (0.6, 1.5)})
    clean = fit_tradeoff(df, SPECTRUM).networks["dl"].accuracy.params
    noisy = pd.concat([df, pd.DataFrame([
        {"network": "dl", "grid_stride": 2, "keep": 1.0, "block": 1, "miou": 0.01, "gflops": 1.0,
         "status": "early_stopped", "full_length": False},
        {"network": "dl", "grid_stride": 4, "keep": 1.0, "block": 1, "miou": math.nan, "gflops": 1.0,
         "status": "failed", "full_length": False},
        {"network": "dl", "grid_stride": 8, "keep": 1.0, "block": 1, "miou": math.nan, "gflops": 1.0,
         "status": "completed", "full_length": True},
    ])], ignore_index=True)
    assert fit_tradeoff(noisy, SPECTRUM).networks["dl"].accuracy.params == pytest.approx(clean)


def test_too_few_trials_to_fit():
    """A model is fitted only with at least its parameters plus two trials: (c, g) needs 4, the pure
    oracle shape (c alone, one stride) 3; with fewer the network has no model and no prediction."""
    rows = ([("two", 4, 0.13), ("two", 8, 0.13)]
            + [("three", s, y) for s, y in ((2, 0.6), (4, 0.55), (8, 0.4))]
            + [("four", s, 0.5 * o ** 2) for s, o in ((1, 1.0), (2, 0.98), (4, 0.95), (8, 0.88))]
            + [("seeds", 4, y) for y in (0.47, 0.48, 0.49)])
    df = pd.DataFrame([{"network": n, "grid_stride": s, "keep": 1.0, "block": 1, "miou": y, "gflops": 1.0 / s}
                       for n, s, y in rows])
    model = fit_tradeoff(df, SPECTRUM)
    for name, n in (("two", 2), ("three", 3)):
        fit = model.networks[name]
        assert fit.accuracy is None and fit.candidates == {} and not fit.fitted and fit.n_trials == n
        assert fit.note == (f"too few trials to fit: {n} trial(s); the smallest model the data can "
                            "identify, calibrated_oracle, has 2 parameter(s) and needs at least 4")
        with pytest.raises(ValueError, match=f"network '{name}' has no prediction: too few trials to fit"):
            model.predict(name, 4)
        assert fit.recommended["efficient_grid_fitted"] is None
    # Measured answers stay: 0.55 at stride 4 is not within 1% of 0.6, so the measured grid is 2.
    assert model.networks["three"].recommended["efficient_grid_measured"] == 2
    four = model.networks["four"].accuracy
    assert four.kind == CALIBRATED_ORACLE and four.n == 4 and math.isfinite(four.loo_rmse)
    assert (four.params["c"], four.params["g"]) == pytest.approx((0.5, 2.0), rel=1e-4)
    # Three seeds at one stride: only the pure oracle shape (c alone) can be told, and it is.
    seeds = model.networks["seeds"].accuracy
    assert seeds.kind == CALIBRATED_ORACLE and seeds.params == pytest.approx({"c": 0.48 / 0.95, "g": 1.0})
    summary = model.summary().set_index("network")
    assert summary.loc["two", "model"] == summary.loc["three", "model"] == "too few trials to fit"
    assert summary.loc["four", "model"] == CALIBRATED_ORACLE
    table = model.recommendations().set_index("network")
    assert table.loc["two", "notes"].startswith("too few trials to fit: 2 trial(s)")
    predicted = model.predict_frame(df)
    assert predicted[df["network"].isin(["two", "three"])].isna().all()
    assert predicted[df["network"] == "four"].notna().all()


def test_bad_input():
    df = saturating_table()
    model = fit_tradeoff(df)
    with pytest.raises(KeyError, match="network 'dan' was not fitted; fitted networks: unet"):
        model.predict("dan", 4)
    with pytest.raises(ValueError, match="keep in \\(0, 1\\]"):
        model.predict("unet", 4, keep=1.5)
    with pytest.raises(KeyError, match="missing column\\(s\\) block.*columns that exist: network"):
        fit_tradeoff(df.drop(columns="block"))
    with pytest.raises(ValueError, match="no full-length trial with a finite 'miou'"):
        fit_tradeoff(df.assign(miou=math.nan))
    with pytest.raises(ValueError, match="spectrum: missing key 'oracle_miou'"):
        fit_tradeoff(df, {"strides": [1, 2]})


def test_image_scale_reads_the_oracle_at_native_strides():
    """Trials trained at half scale: their stride s spans 2s native label pixels, and they are
    scored against labels already at stride 2, so the oracle is read relative to stride 2."""
    curves = oracle_curves(SPECTRUM)
    rows = [{"network": "dl", "grid_stride": s, "keep": 1.0, "block": 1, "image_scale": 0.5,
             "miou": 0.5 * (curves.at_stride(2 * s)[()] / 0.98) ** 2.0, "gflops": 1.0 + 8.0 / s ** 2}
            for s in (1, 2, 4, 8, 16)]
    model = fit_tradeoff(pd.DataFrame(rows), SPECTRUM)
    fit = model.networks["dl"]
    assert fit.image_scale == 0.5 and fit.accuracy.kind == CALIBRATED_ORACLE
    assert (fit.accuracy.params["c"], fit.accuracy.params["g"]) == pytest.approx((0.5, 2.0), rel=1e-4)
    assert model.predict("dl", 4)["miou"] == pytest.approx(0.5 * (0.88 / 0.98) ** 2, rel=1e-4)  # native 8
    assert model.predict("dl", 4, image_scale=1.0)["miou"] == pytest.approx(0.5 * 0.95 ** 2, rel=1e-4)
    # The spectral efficient grid (native 2 by mIoU, 4 by energy) is stride 1 and 2 at scale 0.5.
    row = model.recommendations().iloc[0]
    assert (row["efficient_grid_spectral"], row["efficient_grid_spectral_energy"]) == (1.0, 2.0)
