"""What every segcore network shares: the knobs, the encoder/decoder split, grid-sized output.

A :class:`SegmentationModel` maps images ``(N, 3, H, W)`` to logits on the stride-``s`` grid,
``(N, C, ceil(H/s), ceil(W/s))`` (the geometry of :func:`segcore.labels.grid_shape`). It is split
into ``encoder`` (images -> list of feature maps) and ``decoder`` (features, grid size -> logits);
the decoder brings its inputs to the grid, truncates them spectrally by ``keep``
(:class:`~segcore.models.truncation.SpectralTruncation`), runs every convolution on maps no larger
than the truncated grid and resizes the logits to the grid. :mod:`segcore.cost` counts the decoder's FLOPs on its own.
"""

from __future__ import annotations

import torch
from torch import nn

from segcore.labels import grid_shape

from .truncation import SpectralTruncation, check_keep, check_truncation, resize_to

__all__ = ["SegmentationModel", "resize_to", "conv_bn_relu", "powers_of_two"]


def powers_of_two(largest: int) -> tuple[int, ...]:
    """``(1, 2, 4, ..., largest)``."""
    out, s = [], 1
    while s <= largest:
        out.append(s)
        s *= 2
    return tuple(out)


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    """``Conv2d (no bias) -> BatchNorm2d -> ReLU`` with 'same' padding."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def check_grid_stride(grid_stride: int, valid: tuple[int, ...], network: str) -> int:
    if isinstance(grid_stride, bool) or not isinstance(grid_stride, int) or grid_stride not in valid:
        raise ValueError(
            f"grid_stride={grid_stride!r} cannot be produced by {network}; valid grid strides: "
            f"{', '.join(map(str, valid))}"
        )
    return grid_stride


class SegmentationModel(nn.Module):
    """Base class of the registered networks.

    Subclasses build ``self.encoder`` (``x -> list[Tensor]``) and ``self.decoder``
    (``(features, grid) -> logits``) and call :meth:`_set_knobs` first, with the strides they
    can produce. Attributes: ``num_classes``, ``grid_stride``, ``keep``, ``truncation``,
    ``valid_strides``, ``network`` (the registry name, set by ``create_model``).
    """

    network: str = "model"
    encoder: nn.Module
    decoder: nn.Module

    def _set_knobs(self, num_classes: int, grid_stride: int, keep: float, truncation: str,
                   valid_strides: tuple[int, ...]) -> None:
        name = type(self).__name__
        self.valid_strides = tuple(valid_strides)
        self.num_classes = int(num_classes)
        self.grid_stride = check_grid_stride(grid_stride, self.valid_strides, name)
        self.keep = check_keep(keep)
        self.truncation = check_truncation(truncation)

    def make_truncation(self) -> SpectralTruncation:
        return SpectralTruncation(self.keep, self.truncation)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Logit grid ``(ceil(H/s), ceil(W/s))`` for an ``H x W`` input."""
        return grid_shape(height, width, self.grid_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(N, 3, H, W)`` -> logits ``(N, C, ceil(H/s), ceil(W/s))``."""
        grid = self.grid_size(*x.shape[-2:])
        return self.decoder(self.encoder(x), grid)

    def knobs(self) -> dict:
        return {"grid_stride": self.grid_stride, "keep": self.keep, "truncation": self.truncation}
