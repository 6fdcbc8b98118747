"""The dataset contract shared by every source of label maps.

A :class:`SegmentationDataset` yields ``(image, label)`` pairs: ``image`` a float tensor
``(3, H, W)`` (normalised when a transform asks for it), ``label`` an int64 tensor ``(H, W)`` with
values in ``[0, num_classes)`` or ``ignore_index``. :meth:`SegmentationDataset.load_label` is the
label-only fast path (no image is decoded) that the spectral analysis streams over.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = [
    "SegmentationDataset",
    "read_label_file",
    "read_image_file",
    "read_image_size",
    "check_label_values",
]


def read_image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image or label file from its header only (no pixel decoding)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    return height, width


def read_label_file(path: str | Path) -> torch.Tensor:
    """Read a single-channel label PNG as an int64 ``(H, W)`` tensor; errors name the file."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise ValueError(f"expected a single-channel label map, got mode {im.mode!r}")
            arr = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"cannot read label file {path}: {exc}") from exc
    return torch.from_numpy(arr.astype(np.int64, copy=False))


def read_image_file(path: str | Path) -> torch.Tensor:
    """Read an RGB image as a uint8 ``(3, H, W)`` tensor; errors name the file."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:
        raise ValueError(f"cannot read image file {path}: {exc}") from exc
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def check_label_values(label: torch.Tensor, num_classes: int, ignore_index: int | None, source: str) -> None:
    """Raise ``ValueError`` naming ``source`` if a label value is neither a class nor ignore."""
    bad = (label < 0) | (label >= num_classes)
    if ignore_index is not None:
        bad &= label != ignore_index
    if bool(bad.any()):
        values = sorted({int(v) for v in label[bad].unique()[:5]})
        valid = f"0..{num_classes - 1}" + (f" or ignore index {ignore_index}" if ignore_index is not None else "")
        raise ValueError(f"{source}: label value(s) {values} outside the classes (valid: {valid})")


class SegmentationDataset(torch.utils.data.Dataset):
    """Base class: subclasses set the class attributes and implement the four ``_`` hooks."""

    name: str = "dataset"
    num_classes: int
    ignore_index: int | None = 255
    class_names: Sequence[str] = ()

    def __init__(self, transform=None):
        self.transform = transform

    # --- hooks -------------------------------------------------------------------------------
    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load_label(self, index: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _load_image(self, index: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self, index: int) -> str:
        """Human-readable source of sample ``index`` (a file path for file datasets)."""
        return f"{self.name}[{index}]"

    # --- public API --------------------------------------------------------------------------
    def load_label(self, index: int) -> torch.Tensor:
        """Label map ``(H, W)`` int64 at its stored resolution, values checked."""
        label = self._load_label(index)
        check_label_values(label, self.num_classes, self.ignore_index, self.describe(index))
        return label

    def load_image(self, index: int) -> torch.Tensor:
        """Image ``(3, H, W)`` uint8 at its stored resolution."""
        return self._load_image(index)

    def label_size(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of label ``index`` (file datasets read only the file header)."""
        return tuple(self._load_label(index).shape[-2:])

    def image_size(self, index: int) -> tuple[int, int] | None:
        """``(H, W)`` of image ``index`` from its header, or ``None`` where there are no images."""
        return None

    def labels(self, limit: int | None = None):
        """Iterate over label maps only (the spectral fast path)."""
        n = len(self) if limit is None else min(limit, len(self))
        for i in range(n):
            yield self.load_label(i)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {self.name} with {len(self)} samples")
        image = self.load_image(index)
        label = self.load_label(index)
        if image.shape[-2:] != label.shape[-2:]:
            raise ValueError(
                f"{self.describe(index)}: image size {tuple(image.shape[-2:])} != label size "
                f"{tuple(label.shape[-2:])}"
            )
        if self.transform is not None:
            return self.transform(image, label)
        return image.float().div_(255.0), label

    def info(self) -> dict:
        return {
            "dataset": self.name,
            "num_samples": len(self),
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "class_names": list(self.class_names),
        }


class FileListDataset(SegmentationDataset):
    """A dataset of label files (and, unless opened label-only, their image files) listed up front.

    Subclasses fill ``label_paths`` and ``image_paths`` (empty on the label-only path) in
    ``__init__``; sizes come from file headers, nothing is decoded until a sample is asked for.
    """

    label_paths: list[Path]
    image_paths: list[Path]

    def __len__(self) -> int:
        return len(self.label_paths)

    def describe(self, index: int) -> str:
        return str(self.label_paths[index])

    def _load_label(self, index: int) -> torch.Tensor:
        return read_label_file(self.label_paths[index])

    def label_size(self, index: int) -> tuple[int, int]:
        return read_image_size(self.label_paths[index])

    def image_size(self, index: int) -> tuple[int, int] | None:
        return read_image_size(self.image_paths[index]) if self.image_paths else None

    def _load_image(self, index: int) -> torch.Tensor:
        if not self.image_paths:
            raise ValueError(f"{self.name} was opened label-only (no images)")
        return read_image_file(self.image_paths[index])
