"""Rendering of a :class:`~segcore.spectral.result.SpectrumResult` as a PNG."""

from __future__ import annotations

from pathlib import Path

from segcore.spectral.energy import MAX_RADIUS
from segcore.spectral.result import SpectrumResult

__all__ = ["plot_spectrum"]


def plot_spectrum(result: SpectrumResult, path: str | Path) -> Path:
    """Write a PNG of the curves: band energy and oracle mIoU against stride / block size (log2
    axis, efficient grid marked), CE floor, and the radial spectrum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    ax.plot(result.strides, result.band_energy, "o-", label="band energy E(s)")
    ax.plot(result.strides, result.band_energy_no_dc, "o--", label="E(s) without DC")
    ax.plot(result.strides, result.oracle_miou_soft, "s-", label="oracle mIoU (soft + bilinear)")
    ax.plot(result.strides, result.oracle_miou_majority, "s--", label="oracle mIoU (majority + nearest)")
    ax.plot(result.blocks, result.block_oracle_miou_hard, "^:", label="block annotation (hard)")
    ax.plot(result.blocks, result.block_oracle_miou_soft, "v:", label="block annotation (soft)")
    marks = [
        (result.efficient_grid_by_miou, "tab:red", f"efficient grid, mIoU within {result.tolerance:.0%}"),
        (result.efficient_grid_by_energy, "tab:purple", f"efficient grid, E(s) >= {result.energy_threshold:g}"),
    ]
    for s, colour, text in marks:
        if s is not None:
            ax.axvline(s, color=colour, alpha=0.6, linestyle="-.", label=f"{text}: s={s}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("grid stride s / block size b (pixels)")
    ax.set_ylabel("share / mIoU")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(f"{result.dataset} {result.split or ''}: {result.num_labels} labels")

    ax = axes[1]
    ax.plot(result.strides, result.ce_floor, "o-", color="tab:brown")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("grid stride s")
    ax.set_ylabel("CE floor (nats)")
    ax.grid(alpha=0.3)
    ax.set_title("cross-entropy floor of the grid")

    ax = axes[2]
    energy = [max(e, 1e-12) for e in result.radial_energy]
    ax.semilogy(result.radial_frequency, energy, "-", color="tab:green")
    for s in result.strides:
        if s > 1:
            ax.axvline(1 / (2 * s), color="grey", alpha=0.3, linewidth=0.8)
    for s, colour in ((result.efficient_grid_by_miou, "tab:red"), (result.efficient_grid_by_energy, "tab:purple")):
        if s is not None and 1 / (2 * s) <= MAX_RADIUS:  # stride 1's band is the whole spectrum
            ax.axvline(1 / (2 * s), color=colour, alpha=0.7, linestyle="-.")
    ax.set_xlim(0, MAX_RADIUS)
    ax.set_xlabel("radial frequency |f| (cycles / pixel); grey: 1/(2s), dash-dot: efficient grids")
    ax.set_ylabel("share of non-DC energy per bin")
    ax.grid(alpha=0.3)
    ax.set_title("radial label spectrum")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
