"""The public benchmark layouts: Cityscapes (gtFine), PASCAL VOC 2012 and ADE20K (SceneParsing).

Each maps its stored label values to training classes ``[0, C)`` plus the ignore index 255, reads
only file headers to list sizes, and decodes no image on the label-only path (``load_label``).
A stored value that the mapping does not know raises a ``ValueError`` naming the file and value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import FileListDataset, read_label_file

__all__ = [
    "Cityscapes",
    "VOCSegmentation2012",
    "ADE20K",
    "CITYSCAPES_CLASSES",
    "VOC_CLASSES",
    "cityscapes_label_map",
]

IGNORE = 255


def cityscapes_label_map() -> np.ndarray:
    """``(256,)`` int64 look-up table: Cityscapes ``labelIds`` -> the 19 train ids (ignore 255);
    ``-1`` marks values that are not Cityscapes label ids. Built from torchvision's class table."""
    from torchvision.datasets import Cityscapes as _TV

    lut = np.full(256, -1, dtype=np.int64)
    for cls in _TV.classes:
        if 0 <= cls.id < 256:
            lut[cls.id] = cls.train_id if 0 <= cls.train_id < 255 else IGNORE
    return lut


def _cityscapes_names() -> tuple[str, ...]:
    from torchvision.datasets import Cityscapes as _TV

    named = sorted((c.train_id, c.name) for c in _TV.classes if 0 <= c.train_id < 255)
    return tuple(name for _, name in named)


CITYSCAPES_CLASSES = _cityscapes_names()

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def _map_values(raw: torch.Tensor, lut: np.ndarray, source: str, what: str) -> torch.Tensor:
    """Apply a stored-value -> class table; unknown values raise naming ``source`` and the value."""
    if raw.numel() and (int(raw.min()) < 0 or int(raw.max()) >= lut.shape[0]):
        bad = sorted({int(v) for v in raw.unique() if not 0 <= int(v) < lut.shape[0]})[:5]
        raise ValueError(f"{source}: label value(s) {bad} are not {what}")
    mapped = torch.from_numpy(lut)[raw]
    if bool((mapped < 0).any()):
        bad = sorted({int(v) for v in raw[mapped < 0].unique()})[:5]
        raise ValueError(f"{source}: label value(s) {bad} are not {what}")
    return mapped


class _PairedFiles(FileListDataset):
    """The benchmark layouts: file lists filled by the subclasses, an error when none is found."""

    def _check_found(self, where: Path, pattern: str) -> None:
        if not self.label_paths:
            raise FileNotFoundError(f"no label files ({pattern}) under {where}")


class Cityscapes(_PairedFiles):
    """Cityscapes fine annotations, 19 train classes, ignore 255.

    Layout: ``root/gtFine/{split}/{city}/*_gtFine_labelIds.png`` and
    ``root/leftImg8bit/{split}/{city}/*_leftImg8bit.png``. ``labelIds`` are mapped to the 19 train
    ids of torchvision's Cityscapes class table; ids without a train id become 255.
    """

    name = "cityscapes"
    num_classes = 19
    ignore_index = IGNORE
    SPLITS = ("train", "val", "test")
    LABEL_SUFFIX = "_gtFine_labelIds.png"
    IMAGE_SUFFIX = "_leftImg8bit.png"

    def __init__(self, root: str | Path, split: str = "train", *, transform=None, labels_only: bool = False):
        super().__init__(transform)
        root = Path(root)
        if split not in self.SPLITS:
            raise ValueError(f"Cityscapes split must be one of {list(self.SPLITS)}, got {split!r}")
        if not root.is_dir():
            raise FileNotFoundError(f"Cityscapes root {root} does not exist")
        label_dir = root / "gtFine" / split
        if not label_dir.is_dir():
            raise FileNotFoundError(f"Cityscapes label folder {label_dir} does not exist (expected root/gtFine/{split})")
        self.split = split
        self.class_names = CITYSCAPES_CLASSES
        self.label_paths = sorted(label_dir.glob(f"*/*{self.LABEL_SUFFIX}"))
        self._check_found(label_dir, f"*/*{self.LABEL_SUFFIX}")
        self.image_paths = []
        if not labels_only:
            image_dir = root / "leftImg8bit" / split
            images = [
                image_dir / p.parent.name / (p.name[: -len(self.LABEL_SUFFIX)] + self.IMAGE_SUFFIX)
                for p in self.label_paths
            ]
            missing = [str(p) for p in images if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"{len(missing)} Cityscapes image(s) missing, e.g. {missing[:3]}")
            self.image_paths = images
        self._lut = cityscapes_label_map()

    def _load_label(self, index: int) -> torch.Tensor:
        raw = read_label_file(self.label_paths[index])
        return _map_values(raw, self._lut, self.describe(index), "Cityscapes labelIds (0..33)")


class VOCSegmentation2012(_PairedFiles):
    """PASCAL VOC 2012 segmentation, 21 classes (background included), ignore 255 (object borders).

    Opened with :class:`torchvision.datasets.VOCSegmentation` (never downloads):
    ``root/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation/{split}.txt}``.
    """

    name = "voc"
    num_classes = 21
    ignore_index = IGNORE
    SPLITS = ("train", "val", "trainval")

    def __init__(self, root: str | Path, split: str = "train", *, transform=None, labels_only: bool = False):
        from torchvision.datasets import VOCSegmentation

        super().__init__(transform)
        root = Path(root)
        if split not in self.SPLITS:
            raise ValueError(f"VOC split must be one of {list(self.SPLITS)}, got {split!r}")
        if not root.is_dir():
            raise FileNotFoundError(f"VOC root {root} does not exist")
        try:
            voc = VOCSegmentation(str(root), year="2012", image_set=split, download=False)
        except (RuntimeError, FileNotFoundError) as exc:
            raise FileNotFoundError(
                f"PASCAL VOC 2012 not found under {root} (expected root/VOCdevkit/VOC2012 with "
                f"ImageSets/Segmentation/{split}.txt): {exc}"
            ) from exc
        self.split = split
        self.class_names = VOC_CLASSES
        self.label_paths = [Path(p) for p in voc.masks]
        self._check_found(root / "VOCdevkit" / "VOC2012" / "SegmentationClass", f"{split}.txt entries")
        missing = [str(p) for p in self.label_paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} VOC label file(s) listed in {split}.txt are missing, e.g. {missing[:3]}")
        self.image_paths = [] if labels_only else [Path(p) for p in voc.images]
        lut = np.full(256, -1, dtype=np.int64)
        lut[: self.num_classes] = np.arange(self.num_classes)
        lut[IGNORE] = IGNORE
        self._lut = lut

    def _load_label(self, index: int) -> torch.Tensor:
        raw = read_label_file(self.label_paths[index])
        return _map_values(raw, self._lut, self.describe(index), "VOC classes (0..20) or 255")


class ADE20K(_PairedFiles):
    """ADE20K SceneParsing (ADEChallengeData2016), 150 classes; stored 0 ("other") becomes the
    ignore index 255 and every class value ``v`` becomes ``v - 1``.

    Layout: ``root/annotations/{training,validation}/*.png`` and ``root/images/...*.jpg``; ``root``
    may be the ``ADEChallengeData2016`` folder or its parent. Class names come from
    ``objectInfo150.csv`` (or ``.txt``) when present.
    """

    name = "ade20k"
    num_classes = 150
    ignore_index = IGNORE
    SPLITS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}

    def __init__(self, root: str | Path, split: str = "train", *, transform=None, labels_only: bool = False):
        super().__init__(transform)
        root = Path(root)
        if split not in self.SPLITS:
            raise ValueError(f"ADE20K split must be one of {list(self.SPLITS)}, got {split!r}")
        if not root.is_dir():
            raise FileNotFoundError(f"ADE20K root {root} does not exist")
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        folder = self.SPLITS[split]
        label_dir = root / "annotations" / folder
        if not label_dir.is_dir():
            raise FileNotFoundError(
                f"ADE20K label folder {label_dir} does not exist (expected ADEChallengeData2016/annotations/{folder})"
            )
        self.split = split
        self.class_names = self._read_names(root)
        self.label_paths = sorted(label_dir.glob("*.png"))
        self._check_found(label_dir, "*.png")
        self.image_paths = []
        if not labels_only:
            images = [root / "images" / folder / (p.stem + ".jpg") for p in self.label_paths]
            missing = [str(p) for p in images if not p.is_file()]
            if missing:
                raise FileNotFoundError(f"{len(missing)} ADE20K image(s) missing, e.g. {missing[:3]}")
            self.image_paths = images
        lut = np.full(256, -1, dtype=np.int64)
        lut[0] = IGNORE
        lut[1 : self.num_classes + 1] = np.arange(self.num_classes)
        self._lut = lut

    def _read_names(self, root: Path) -> tuple[str, ...]:
        for name in ("objectInfo150.csv", "objectInfo150.txt"):
            path = root / name
            if path.is_file():
                names = []
                for line in path.read_text().splitlines()[1:]:
                    cells = [c.strip() for c in line.replace("\t", ",").split(",") if c.strip()]
                    if cells:
                        names.append(cells[-1].split(";")[0])
                if len(names) == self.num_classes:
                    return tuple(names)
        return tuple(f"class_{i}" for i in range(self.num_classes))

    def _load_label(self, index: int) -> torch.Tensor:
        raw = read_label_file(self.label_paths[index])
        return _map_values(raw, self._lut, self.describe(index), "ADE20K values (0..150)")

