"""Label maps with known structure for the spectral tests."""

from __future__ import annotations

import torch


def random_blobs(height: int, width: int, num_classes: int, seed: int, scale: int = 6) -> torch.Tensor:
    """Piecewise-constant labels: nearest up-sampling of a coarse random map, then a shift so the
    blocks do not align with any grid."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, num_classes, (height // scale + 2, width // scale + 2), generator=generator)
    fine = coarse.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    oy, ox = (int(v) for v in torch.randint(0, scale, (2,), generator=generator))
    return fine[oy : oy + height, ox : ox + width].contiguous()
