"""Rendering of a :class:`~segcore.spectral.result.SpectrumResult`: curves against stride / block
size, the CE floor, and the radial spectrum, with the efficient grid marked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from segcore.spectral.energy import MAX_RADIUS
from segcore.spectral.result import SpectrumResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["spectrum_figure", "plot_spectrum"]

# Above the curves (matplotlib draws lines at zorder 2), so a marker on a curve is never hidden.
MARKER_ZORDER = 5
_GRID_COLOURS = {"by_miou": "tab:red", "by_energy": "tab:purple"}


def _same_curve(sizes: Sequence[int], values: Sequence[float], other_sizes: Sequence[int],
                other_values: Sequence[float]) -> bool:
    """Whether the curve ``(sizes, values)`` lies on ``(other_sizes, other_values)`` at every one
    of its sizes (NaN equal to NaN): then drawing it again only hides the other."""
    other = dict(zip(other_sizes, other_values))
    for size, value in zip(sizes, values):
        if size not in other:
            return False
        theirs = other[size]
        if not (value == theirs or (math.isnan(value) and math.isnan(theirs))):
            return False
    return True


def _efficient_grids(result: SpectrumResult) -> list[tuple[int, str, str, float]]:
    """``(stride, colour, label, y)`` of the efficient grids, ``y`` the point of the curve that
    chose it (the better oracle mIoU, or E(s)); one entry when both criteria agree."""
    best_oracle = [max(a, b) for a, b in zip(result.oracle_miou_soft, result.oracle_miou_majority)]
    oracle_at = dict(zip(result.strides, best_oracle))
    energy_at = dict(zip(result.strides, result.band_energy))
    by_miou = f"mIoU within {result.tolerance:.0%}"
    by_energy = f"E(s) >= {result.energy_threshold:g}"
    miou, energy = result.efficient_grid_by_miou, result.efficient_grid_by_energy
    if miou is not None and miou == energy:
        return [(miou, _GRID_COLOURS["by_miou"], f"efficient grid s={miou} ({by_miou}; {by_energy})", oracle_at[miou])]
    grids = []
    if miou is not None:
        grids.append((miou, _GRID_COLOURS["by_miou"], f"efficient grid s={miou} ({by_miou})", oracle_at[miou]))
    if energy is not None:
        grids.append((energy, _GRID_COLOURS["by_energy"], f"efficient grid s={energy} ({by_energy})",
                      energy_at[energy]))
    return grids


def _plot_curves(ax: Axes, result: SpectrumResult) -> None:
    """Band energy and oracle mIoU by stride, block-annotation oracle by block size, efficient grids."""
    strides = result.strides
    ax.plot(strides, result.band_energy, "o-", label="band energy E(s)")
    ax.plot(strides, result.band_energy_no_dc, "o--", label="E(s) without DC")
    # A block's hard (soft) oracle is the majority (soft) oracle of the grid of that stride: where
    # the block sizes are strides too the curves coincide, so one line carries both names.
    grid_and_block = (
        (result.oracle_miou_soft, result.block_oracle_miou_soft, "s-", "oracle mIoU (soft + bilinear)",
         "v:", "block annotation (soft)"),
        (result.oracle_miou_majority, result.block_oracle_miou_hard, "s--", "oracle mIoU (majority + nearest)",
         "^:", "block annotation (hard)"),
    )
    for grid_values, block_values, grid_style, grid_label, block_style, block_label in grid_and_block:
        if _same_curve(result.blocks, block_values, strides, grid_values):
            ax.plot(strides, grid_values, grid_style, label=f"{grid_label} = {block_label}")
        else:
            ax.plot(strides, grid_values, grid_style, label=grid_label)
            ax.plot(result.blocks, block_values, block_style, label=block_label)
    for stride, colour, label, y in _efficient_grids(result):
        ax.axvline(stride, color=colour, alpha=0.8, linestyle="-.", linewidth=1.2, zorder=MARKER_ZORDER - 1)
        ax.plot([stride], [y], marker="*", markersize=16, color=colour, markeredgecolor="black",
                linestyle="none", zorder=MARKER_ZORDER, clip_on=False, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("grid stride s / block size b (pixels)")
    ax.set_ylabel("share / mIoU")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    distinct = dict(zip(labels, handles))  # one entry per label
    ax.legend(distinct.values(), distinct.keys(), fontsize=7, loc="lower left")
    ax.set_title(f"{result.dataset} {result.split or ''}: {result.num_labels} labels")


def _plot_ce_floor(ax: Axes, result: SpectrumResult) -> None:
    ax.plot(result.strides, result.ce_floor, "o-", color="tab:brown")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("grid stride s")
    ax.set_ylabel("CE floor (nats)")
    ax.grid(alpha=0.3)
    ax.set_title("cross-entropy floor of the grid")


def _plot_radial(ax: Axes, result: SpectrumResult) -> None:
    energy = [max(e, 1e-12) for e in result.radial_energy]
    ax.semilogy(result.radial_frequency, energy, "-", color="tab:green")
    for stride in result.strides:
        if stride > 1:
            ax.axvline(1 / (2 * stride), color="grey", alpha=0.3, linewidth=0.8)
    for stride, colour, label, _ in _efficient_grids(result):
        if 1 / (2 * stride) <= MAX_RADIUS:  # stride 1's band is the whole spectrum
            ax.axvline(1 / (2 * stride), color=colour, alpha=0.8, linestyle="-.", zorder=MARKER_ZORDER,
                       label=f"1/(2s) of the {label}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper right")
    ax.set_xlim(0, MAX_RADIUS)
    ax.set_xlabel("radial frequency |f| (cycles / pixel); grey: 1/(2s) of each stride")
    ax.set_ylabel("share of non-DC energy per bin")
    ax.grid(alpha=0.3)
    ax.set_title("radial label spectrum")


def spectrum_figure(result: SpectrumResult) -> Figure:
    """The figure of :func:`plot_spectrum` (three panels), not yet saved."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 4.6))
    axes = fig.subplots(1, 3)
    _plot_curves(axes[0], result)
    _plot_ce_floor(axes[1], result)
    _plot_radial(axes[2], result)
    fig.tight_layout()
    return fig


def plot_spectrum(result: SpectrumResult, path: str | Path) -> Path:
    """Write a PNG of the curves: band energy and oracle mIoU against stride / block size (log2
    axis, efficient grid marked), CE floor, and the radial spectrum."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    fig = spectrum_figure(result)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path
