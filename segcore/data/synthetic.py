"""Synthetic scenes whose label maps have a known, settable cut-off frequency.

Labels: ``C`` white-noise fields are low-pass filtered to radial frequency ``|f| <= cutoff``
(cycles per pixel) and the label is the arg-max over fields (a thresholded band-limited field, so
region boundaries bend on a length scale of about ``1 / cutoff``), with a few ellipses of diameter
``~1/cutoff`` pasted on top. By Nyquist a grid of stride ``s`` resolves frequencies up to
``1/(2s)``, so the stride this cut-off predicts is :func:`predicted_stride` ``= 1 / (2 * cutoff)``.

Images: rendered from the labels so that a network has something real to learn — a per-class colour
and an oriented sinusoidal texture, plus pixel noise. Class appearance depends only on
``num_classes`` (never on the split or seed), so a network trained on ``train`` transfers to ``val``.
Every sample is a pure function of ``(seed, split, index)``: nothing is stored.
"""

from __future__ import annotations

import math
import zlib

import torch

from .base import SegmentationDataset

__all__ = ["SyntheticScenes", "predicted_stride", "band_limited_labels"]


def predicted_stride(cutoff: float) -> float:
    """Grid stride whose Nyquist band ``1/(2s)`` equals the labels' cut-off frequency."""
    return 1.0 / (2.0 * cutoff)


def band_limited_labels(
    size: tuple[int, int],
    num_classes: int,
    cutoff: float,
    generator: torch.Generator,
    *,
    shapes: int = 2,
) -> torch.Tensor:
    """One label map ``(H, W)`` int64: arg-max of ``C`` low-passed noise fields plus ellipses."""
    height, width = size
    noise = torch.randn(num_classes, height, width, generator=generator)
    spec = torch.fft.rfft2(noise)
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    spec = spec * ((fy**2 + fx**2) <= cutoff**2)
    fields = torch.fft.irfft2(spec, s=(height, width))
    labels = fields.argmax(dim=0)
    if shapes:
        yy = torch.arange(height, dtype=torch.float32)[:, None]
        xx = torch.arange(width, dtype=torch.float32)[None, :]
        for _ in range(shapes):
            u = torch.rand(5, generator=generator)
            cy, cx = u[0] * height, u[1] * width
            ry = (0.5 + u[2]) / (2 * cutoff)  # diameters between 1/cutoff and 3/cutoff
            rx = (0.5 + u[3]) / (2 * cutoff)
            cls = int(u[4] * num_classes) % num_classes
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            labels[inside] = cls
    return labels


def _class_appearance(num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Colour (C, 3), texture frequency (C,) and orientation (C,) of each class, fixed per C."""
    g = torch.Generator().manual_seed(1234 + num_classes)
    colours = 0.15 + 0.7 * torch.rand(num_classes, 3, generator=g)
    freq = 0.05 + 0.2 * torch.rand(num_classes, generator=g)
    angle = math.pi * torch.rand(num_classes, generator=g)
    return colours, freq, angle


class SyntheticScenes(SegmentationDataset):
    """Synthetic segmentation set with a known label cut-off frequency.

    Args:
        split: ``train``, ``val`` or ``test`` (different samples, same class appearance).
        num_samples: number of images in the split.
        size: ``(H, W)`` of every sample.
        num_classes: number of classes ``C``.
        cutoff: label cut-off frequency in cycles per pixel, in ``(0, 0.5]``.
        shapes: ellipses pasted per image.
        noise: standard deviation of the image's pixel noise (images are in [0, 1]).
        seed: base seed; samples are a pure function of ``(seed, split, index)``.
    """

    name = "synthetic"
    SPLITS = ("train", "val", "test")

    def __init__(
        self,
        split: str = "train",
        *,
        num_samples: int = 64,
        size: tuple[int, int] = (128, 128),
        num_classes: int = 5,
        cutoff: float = 1 / 32,
        shapes: int = 2,
        noise: float = 0.08,
        seed: int = 0,
        ignore_index: int | None = 255,
        transform=None,
    ):
        super().__init__(transform)
        if split not in self.SPLITS:
            raise ValueError(f"synthetic split must be one of {list(self.SPLITS)}, got {split!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if not 0 < cutoff <= 0.5:
            raise ValueError(f"cutoff must be in (0, 0.5] cycles per pixel, got {cutoff}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        height, width = size
        if height < 2 or width < 2:
            raise ValueError(f"size must be at least 2x2, got {size}")
        self.split = split
        self.num_samples = int(num_samples)
        self.size = (int(height), int(width))
        self.num_classes = int(num_classes)
        self.cutoff = float(cutoff)
        self.shapes = int(shapes)
        self.noise = float(noise)
        self.seed = int(seed)
        self.ignore_index = ignore_index
        self.class_names = tuple(f"class_{i}" for i in range(self.num_classes))
        self._appearance = _class_appearance(self.num_classes)

    def __len__(self) -> int:
        return self.num_samples

    def _generator(self, index: int, stream: int) -> torch.Generator:
        key = f"{self.seed}/{self.split}/{index}/{stream}".encode()
        return torch.Generator().manual_seed(zlib.crc32(key))

    def _load_label(self, index: int) -> torch.Tensor:
        return band_limited_labels(
            self.size, self.num_classes, self.cutoff, self._generator(index, 0), shapes=self.shapes
        )

    def _load_image(self, index: int) -> torch.Tensor:
        label = self._load_label(index)
        colours, freq, angle = self._appearance
        height, width = self.size
        g = self._generator(index, 1)
        yy = torch.arange(height, dtype=torch.float32)[:, None]
        xx = torch.arange(width, dtype=torch.float32)[None, :]
        f, a = freq[label], angle[label]
        texture = torch.sin(2 * math.pi * f * (xx * torch.cos(a) + yy * torch.sin(a)))
        image = colours[label].permute(2, 0, 1) + 0.12 * texture
        # A global brightness jitter per image so that colour alone is not a perfect cue.
        image = image * (0.85 + 0.3 * torch.rand(1, generator=g))
        image = image + self.noise * torch.randn(3, height, width, generator=g)
        return (image.clamp(0, 1) * 255).round().to(torch.uint8)

    def describe(self, index: int) -> str:
        return f"synthetic/{self.split}[{index}]"

    def label_size(self, index: int) -> tuple[int, int]:
        return self.size

    def image_size(self, index: int) -> tuple[int, int] | None:
        return self.size

    def info(self) -> dict:
        info = super().info()
        info.update(cutoff=self.cutoff, size=list(self.size), predicted_stride=predicted_stride(self.cutoff))
        return info
