"""The spectral oracle curves of a dataset (``spectrum.json``): the oracle mIoU of a grid by stride
and of block annotation by block size, interpolated in log2, and the oracle of one configuration
relative to its dense resolution. Read by the trade-off fit (``segcore.analysis.tradeoff``) and by
the spectral prior of a sweep's search (``segcore.tune.prior``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["OracleCurves", "oracle_curves"]


@dataclass(frozen=True)
class OracleCurves:
    """The spectral oracle curves of a dataset, interpolated in log2 of the stride / block size.

    Beyond the measured range the curves are held at their end values (no extrapolation).
    """

    strides: np.ndarray
    grid: np.ndarray
    blocks: np.ndarray | None
    block: dict[str, np.ndarray]
    efficient_grid: dict[str, Any]
    efficient_block: int | None = None
    image_scale: float = 1.0  # the label resolution the curves were computed at (1: native)

    def at_stride(self, stride: np.ndarray | float) -> np.ndarray:
        return np.interp(np.log2(stride), np.log2(self.strides), self.grid)

    def at_block(self, block: np.ndarray | float, mode: np.ndarray | str = "hard") -> np.ndarray:
        block = np.atleast_1d(np.asarray(block, dtype=float))
        if self.blocks is None or not self.block:
            return np.ones_like(block)
        modes = np.broadcast_to(np.asarray(mode, dtype=object), block.shape)
        out = np.empty_like(block)
        for m in set(modes.tolist()):
            curve = self.block.get(str(m)) if str(m) in self.block else next(iter(self.block.values()))
            sel = modes == m
            out[sel] = np.interp(np.log2(block[sel]), np.log2(self.blocks), curve)
        return out

    def relative_oracle(self, s_eff, block, block_mode, dense) -> np.ndarray:
        """``O_grid(s_eff) * O_block(block)`` relative to both curves' value at ``dense``.

        All sizes are in the spectrum's label pixels: ``s_eff = grid_stride / keep / ratio``,
        ``block / ratio`` and ``dense = 1 / ratio``, where ``ratio`` is the trial's image scale over
        the spectrum's (:meth:`label_ratio`). At a trial's own dense resolution the value is 1, so a
        network's dense accuracy is its ceiling ``c`` (docs/design.md, Science: trade-off fit).
        """
        return (self.at_stride(s_eff) / self.at_stride(dense)
                * self.at_block(block, block_mode) / self.at_block(dense, block_mode))

    def label_ratio(self, image_scale) -> np.ndarray:
        """Trial pixels per spectrum pixel: a stride ``s`` of the trial spans ``s / ratio`` label pixels."""
        return np.asarray(image_scale, dtype=float) / self.image_scale

    def config_oracle(self, grid_stride, keep=1.0, block=1, block_mode="hard", image_scale=1.0) -> np.ndarray:
        """The relative oracle (:meth:`relative_oracle`) of configurations given by their knobs."""
        ratio = self.label_ratio(image_scale)
        s_eff = np.asarray(grid_stride, dtype=float) / np.asarray(keep, dtype=float) / ratio
        return self.relative_oracle(s_eff, np.asarray(block, dtype=float) / ratio, block_mode, 1.0 / ratio)


def oracle_curves(spectrum: Mapping[str, Any], variant: str = "soft") -> OracleCurves:
    """Read the oracle curves from a ``spectrum.json`` dict (the keys :meth:`segcore.spectral.SpectrumResult.to_dict` writes).

    Raises:
        ValueError: a required key is missing or the curve lengths disagree.
    """
    def need(key: str) -> Any:
        if key not in spectrum:
            raise ValueError(f"spectrum: missing key {key!r} (keys present: {', '.join(spectrum)})")
        return spectrum[key]

    strides = np.asarray(need("strides"), dtype=float)
    oracle = need("oracle_miou")
    if isinstance(oracle, Mapping):
        if variant not in oracle:
            raise ValueError(f"spectrum.oracle_miou: no variant {variant!r}; have {', '.join(oracle)}")
        oracle = oracle[variant]
    grid = np.asarray(oracle, dtype=float)
    if grid.shape != strides.shape:
        raise ValueError(f"spectrum: {len(strides)} strides but {len(grid)} oracle_miou values")
    blocks, block = None, {}
    if "blocks" in spectrum and "block_oracle_miou" in spectrum:
        blocks = np.asarray(spectrum["blocks"], dtype=float)
        raw = spectrum["block_oracle_miou"]
        raw = raw if isinstance(raw, Mapping) else {"hard": raw}
        block = {k: np.asarray(v, dtype=float) for k, v in raw.items() if len(v) == len(blocks)}
    order = np.argsort(strides)
    border = np.argsort(blocks) if blocks is not None else None
    return OracleCurves(
        strides=strides[order], grid=grid[order],
        blocks=None if blocks is None else blocks[border],
        block={k: v[border] for k, v in block.items()},
        efficient_grid=dict(spectrum.get("efficient_grid") or {}),
        efficient_block=spectrum.get("efficient_block"),
        image_scale=float(spectrum.get("image_scale") or 1.0),
    )
