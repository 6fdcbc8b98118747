"""The spectrum plot (segcore/spectral/plot.py): distinct legend entries, visible efficient grid."""

from __future__ import annotations

from _label_maps import random_blobs
from segcore import spectral
from segcore.data import InMemoryLabels
from segcore.spectral.plot import MARKER_ZORDER, spectrum_figure


def _result(strides, blocks):
    ds = InMemoryLabels([random_blobs(32, 40, 3, seed=2)], num_classes=3)
    return spectral.analyze(ds, strides=strides, blocks=blocks, workers=1, threads=1)


def test_plot_writes_png(tmp_path):
    path = spectral.plot_spectrum(_result((1, 2, 4, 8), (1, 4)), tmp_path / "s.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_legend_lists_each_line_once():
    # Blocks that are strides too: the block oracle is the grid oracle, one line with both names.
    ax = spectrum_figure(_result((1, 2, 4, 8), (1, 2, 4))).axes[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert len(labels) == len(set(labels))
    assert "oracle mIoU (majority + nearest) = block annotation (hard)" in labels
    assert "oracle mIoU (soft + bilinear) = block annotation (soft)" in labels
    assert len([line for line in ax.get_lines() if not line.get_label().startswith("_")]) == len(labels)
    # A block size that is not a stride: the block curves are their own lines.
    ax = spectrum_figure(_result((1, 2, 4, 8), (3, 4))).axes[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert len(labels) == len(set(labels))
    assert {"block annotation (hard)", "block annotation (soft)", "oracle mIoU (soft + bilinear)"} <= set(labels)


def test_efficient_grid_marker_is_on_top_inside_the_axes_and_labelled():
    result = _result((1, 2, 4, 8), (1, 4))
    ax = spectrum_figure(result).axes[0]
    markers = [line for line in ax.get_lines() if line.get_label().startswith("efficient grid")]
    strides = {result.efficient_grid_by_miou, result.efficient_grid_by_energy} - {None}
    assert markers and len(markers) == len(strides)
    curves = [line for line in ax.get_lines() if line not in markers]
    low, high = ax.get_xlim()
    for marker in markers:
        assert marker.get_zorder() == MARKER_ZORDER > max(line.get_zorder() for line in curves)
        (x,), (y,) = marker.get_data()
        assert x in strides and low < x < high and 0 <= y <= ax.get_ylim()[1]
        assert marker.get_label() in [text.get_text() for text in ax.get_legend().get_texts()]
    # Both criteria at the same stride: one marker naming both.
    result.efficient_grid_by_energy = result.efficient_grid_by_miou = 2
    ax = spectrum_figure(result).axes[0]
    (marker,) = [line for line in ax.get_lines() if line.get_label().startswith("efficient grid")]
    assert marker.get_label() == "efficient grid s=2 (mIoU within 1%; E(s) >= 0.95)"
