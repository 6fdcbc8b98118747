"""Training-free spectral analysis of a dataset's label maps (docs/design.md, Science).

From the label maps alone, for every grid stride ``s`` and annotation block size ``b``:

* the **band energy** ``E(s)``: the share of the labels' spectral energy (unitary 2-D DFT of the
  one-hot planes, summed over classes) inside the band ``|f_y|, |f_x| <= 1/(2s)`` that a stride-``s``
  grid represents, with the DC term included and excluded, and the **radial spectrum**
  (:mod:`~segcore.spectral.energy`);
* the **oracle mIoU of a grid** (class proportions per cell, bilinear up-sampling, arg-max; and the
  majority label per cell, nearest up-sampling) and the **CE floor** (cross-entropy of the dense
  labels against the up-sampled proportions) (:mod:`~segcore.spectral.oracle`,
  :mod:`~segcore.spectral.soft_oracle`);
* the **oracle mIoU of block annotation** (hard majority / soft proportions per ``b x b`` block,
  up-sampled and scored against the dense labels) and its **annotation cost**
  (:mod:`~segcore.spectral.blocks`);
* the **efficient grid**: the coarsest stride whose oracle mIoU (the better of the two decodings)
  stays within ``tolerance`` of the dense score, and the coarsest whose ``E(s)`` reaches
  ``energy_threshold``; likewise the **efficient block** size (:mod:`~segcore.spectral.result`).

:func:`analyze` (:mod:`~segcore.spectral.analyze`) streams over a dataset in bounded memory;
:func:`plot_spectrum` renders its result.

Seed paper: Chen, Chiu, Wu, "Spectral Analysis for Semantic Segmentation with Applications on
Feature Truncation and Weak Annotation", arXiv 2012.14123.
"""

from segcore.spectral.analyze import DEFAULT_BLOCKS, DEFAULT_STRIDES, analyze
from segcore.spectral.energy import band_energy, band_mask, label_power_spectrum, spectral_cross_entropy
from segcore.spectral.plot import plot_spectrum
from segcore.spectral.result import SpectrumResult, efficient_size

__all__ = [
    "DEFAULT_STRIDES",
    "DEFAULT_BLOCKS",
    "SpectrumResult",
    "analyze",
    "plot_spectrum",
    "label_power_spectrum",
    "band_mask",
    "band_energy",
    "spectral_cross_entropy",
    "efficient_size",
]
