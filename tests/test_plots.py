"""The report's figures (segcore.analysis.plots): fitted curves only at the keep and block the
trials used and over the range they span, seeds as error bars, networks too small to fit drawn
without a curve."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _sweep_store import SPECTRUM
from segcore.analysis import fit_tradeoff
from segcore.spectral.curves import oracle_curves
from segcore.analysis.plots import (
    fitted_curves, plot_accuracy_vs_block, plot_accuracy_vs_stride, plot_measured_vs_predicted,
)
from segcore.analysis.seeds import seed_means


def _study_table() -> pd.DataFrame:
    """A one-factor-at-a-time design, two seeds: the grid at keep 1 / block 1, keep at stride 4,
    hard blocks at stride 2; accuracy 0.5 * oracle ** 1.5 (+-0.01 by seed)."""
    curves = oracle_curves(SPECTRUM)
    design = ([(s, 1.0, 1) for s in (1, 2, 4, 8)] + [(4, k, 1) for k in (0.5, 0.25)]
              + [(2, 1.0, b) for b in (4, 8)])
    rows = []
    for seed, shift in ((0, -0.01), (1, 0.01)):
        for s, keep, block in design:
            oracle = curves.at_stride(s / keep)[()] * curves.at_block(block, "hard")[0]
            rows.append({"network": "dl", "grid_stride": s, "keep": keep, "block": block, "block_mode": "hard",
                         "seed": seed, "miou": 0.5 * oracle ** 1.5 + shift, "gflops": 1.0 + 8 * (keep / s) ** 2})
    rows += [{"network": "tiny", "grid_stride": s, "keep": 1.0, "block": 1, "block_mode": "hard", "seed": 0,
              "miou": 0.3, "gflops": 1.0} for s in (2, 4)]
    return pd.DataFrame(rows)


def test_fitted_curves_only_at_the_settings_the_trials_used():
    df = _study_table()
    model = fit_tradeoff(df, SPECTRUM)
    configs = seed_means(df[df["network"] == "dl"], "miou")
    curves = fitted_curves(model, "dl", configs, "grid_stride", {"keep": 1.0, "block": 1})
    spans = {(c["knobs"]["keep"], c["knobs"]["block"]): (c["x"].min(), c["x"].max(), len(c["x"]), c["primary"])
             for c in curves}
    # The keep 1 / block 1 curve spans the strides that ran (1 to 8, not the spectrum's 32); keep 0.5
    # and 0.25 ran only at stride 4 and blocks 4 and 8 only at stride 2: one point each.
    assert spans == {(1.0, 1.0): (1.0, 8.0, 60, True), (0.5, 1.0): (4.0, 4.0, 1, False),
                     (0.25, 1.0): (4.0, 4.0, 1, False), (1.0, 4.0): (2.0, 2.0, 1, False),
                     (1.0, 8.0): (2.0, 2.0, 1, False)}
    for curve in curves:
        knobs = curve["knobs"]
        expected = model.predict("dl", curve["x"][-1], knobs["keep"], knobs["block"], knobs["block_mode"])["miou"]
        assert curve["y"][-1] == pytest.approx(expected)
    blocks = fitted_curves(model, "dl", configs[configs["grid_stride"] == 2], "block", {"grid_stride": 2, "keep": 1.0})
    assert [(c["knobs"]["grid_stride"], c["x"].min(), c["x"].max()) for c in blocks] == [(2.0, 1.0, 8.0)]
    # Two trials are too few to fit: no curve at all.
    assert fitted_curves(model, "tiny", seed_means(df[df["network"] == "tiny"], "miou"), "grid_stride",
                         {"keep": 1.0, "block": 1}) == []


def test_figures_with_seeds_and_an_unfitted_network(tmp_path):
    df = _study_table()
    model = fit_tradeoff(df, SPECTRUM)
    assert not model.networks["tiny"].fitted
    for plot, name in ((plot_accuracy_vs_stride, "s.png"), (plot_accuracy_vs_block, "b.png"),
                       (plot_measured_vs_predicted, "m.png")):
        path = plot(df, model, tmp_path / name)
        assert path.stat().st_size > 1000
        assert np.frombuffer(path.read_bytes()[:8], np.uint8).tolist() == list(b"\x89PNG\r\n\x1a\n")
