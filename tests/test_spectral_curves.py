"""The spectral oracle curves (segcore.spectral.curves), read by the trade-off fit and the spectral prior."""

from __future__ import annotations

import math

import pytest

from _sweep_store import SPECTRUM
from segcore.spectral.curves import oracle_curves


def test_curves_interpolate_in_log2_and_hold_their_ends():
    curves = oracle_curves(SPECTRUM)
    # Halfway between strides 4 and 8 in log2 (stride 4 * sqrt 2): halfway between 0.95 and 0.88.
    assert curves.at_stride(4 * math.sqrt(2)) == pytest.approx(0.915)
    assert curves.at_stride(64) == pytest.approx(0.55)  # beyond the last stride: held
    assert curves.at_block(2, "soft")[0] == pytest.approx(0.98)
    assert curves.at_block(2, "hard")[0] == pytest.approx(0.97)
    assert oracle_curves(SPECTRUM, "majority").at_stride(8) == pytest.approx(0.85)
    assert curves.efficient_grid == {"by_miou": 2, "by_energy": 4} and curves.efficient_block == 2


def test_config_oracle_is_relative_to_the_trials_dense_resolution():
    curves = oracle_curves(SPECTRUM)
    # grid stride 4 at keep 0.5 reads stride 8 (0.88); hard blocks of 2 read 0.97.
    assert curves.config_oracle(4, 0.5, 2, "hard")[0] == pytest.approx(0.88 * 0.97)
    assert curves.config_oracle(1)[0] == pytest.approx(1.0)
    # At image scale 0.5 a trial's stride 2 spans 4 label pixels and its dense resolution 2.
    assert curves.config_oracle(2, image_scale=0.5)[0] == pytest.approx(0.95 / 0.98)
    assert curves.relative_oracle(8.0, 1.0, "hard", 1.0)[0] == pytest.approx(0.88)


def test_curves_without_blocks_are_flat_in_the_block():
    spectrum = {k: v for k, v in SPECTRUM.items() if k not in ("blocks", "block_oracle_miou")}
    assert oracle_curves(spectrum).at_block([1, 8, 32]).tolist() == [1.0, 1.0, 1.0]


def test_malformed_spectrum_names_the_key():
    with pytest.raises(ValueError, match="no variant 'median'; have soft, majority"):
        oracle_curves(SPECTRUM, "median")
    with pytest.raises(ValueError, match="6 strides but 2 oracle_miou values"):
        oracle_curves(dict(SPECTRUM, oracle_miou=[1.0, 0.9]))
