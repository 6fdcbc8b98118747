"""Trial tables with a known trade-off, for the analysis tests: accuracy from the spectral oracle
(or a saturating curve) with known parameters, GFLOPs from a known cost model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from _sweep_store import SPECTRUM
from segcore.spectral.curves import oracle_curves

STRIDES = [1, 2, 4, 8, 16, 32]


def calibrated_table(params: dict[str, tuple[float, float]], noise: float = 0.002, seed: int = 0):
    """Networks whose accuracy is c * oracle(s / keep) ** g, with GFLOPs = 5 + 40 (keep / s)^2."""
    curves = oracle_curves(SPECTRUM)
    rng = np.random.default_rng(seed)
    rows = []
    for net, (c, g) in params.items():
        for s in STRIDES:
            for keep in (1.0, 0.5):
                rows.append({"trial_id": f"{net}-{s}-{keep}", "network": net, "grid_stride": s,
                             "keep": keep, "block": 1, "block_mode": "hard",
                             "miou": c * curves.at_stride(s / keep)[()] ** g + rng.normal(0, noise),
                             "gflops": 5.0 + 40.0 * (keep / s) ** 2,
                             "status": "completed", "full_length": True})
    return pd.DataFrame(rows)


def saturating_table(m=0.7, s0=6.0, p=2.5, noise=0.002, seed=1):
    rng = np.random.default_rng(seed)
    strides = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
    return pd.DataFrame({"network": "unet", "grid_stride": strides, "keep": 1.0, "block": 1,
                         "miou": [m / (1 + (s / s0) ** p) + rng.normal(0, noise) for s in strides],
                         "gflops": [4.0 + 1.0 / s ** 2 for s in strides]})
