"""Datasets stored as image files beside label-map files: a generic folder pair, and CamVid."""

from __future__ import annotations

from pathlib import Path

from .base import FileListDataset

__all__ = ["ImageMaskFolder", "CamVid", "CAMVID_CLASSES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageMaskFolder(FileListDataset):
    """Images in ``image_dir`` paired by file stem with single-channel label maps in ``mask_dir``.

    ``image_dir`` may be ``None`` for a label-only dataset (the spectral analysis needs no images).
    """

    name = "folder"

    def __init__(
        self,
        mask_dir: str | Path,
        image_dir: str | Path | None = None,
        *,
        num_classes: int,
        ignore_index: int | None = 255,
        class_names: tuple[str, ...] = (),
        mask_suffix: str = ".png",
        transform=None,
        name: str | None = None,
    ):
        super().__init__(transform)
        if name is not None:
            self.name = name
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = tuple(class_names) or tuple(f"class_{i}" for i in range(num_classes))
        self.mask_dir = Path(mask_dir)
        self.image_dir = Path(image_dir) if image_dir is not None else None
        if not self.mask_dir.is_dir():
            raise FileNotFoundError(f"label folder {self.mask_dir} does not exist")
        self.label_paths = sorted(p for p in self.mask_dir.iterdir() if p.suffix.lower() == mask_suffix)
        if not self.label_paths:
            raise FileNotFoundError(f"no label files (*{mask_suffix}) in {self.mask_dir}")
        self.image_paths: list[Path] = []
        if self.image_dir is not None:
            if not self.image_dir.is_dir():
                raise FileNotFoundError(f"image folder {self.image_dir} does not exist")
            by_stem = {p.stem: p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
            missing = [p.name for p in self.label_paths if p.stem not in by_stem]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} label file(s) in {self.mask_dir} have no image in {self.image_dir}, "
                    f"e.g. {missing[:3]}"
                )
            self.image_paths = [by_stem[p.stem] for p in self.label_paths]


CAMVID_CLASSES = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)


class CamVid(ImageMaskFolder):
    """CamVid, 11 classes, ignore index 11, in the SegNet layout: ``root/{split}`` with RGB PNGs and
    ``root/{split}annot`` with label maps of the same file names (see shared/data/camvid/README)."""

    SPLITS = ("train", "val", "test")

    def __init__(self, root: str | Path, split: str = "train", *, transform=None, labels_only: bool = False):
        root = Path(root)
        if split not in self.SPLITS:
            raise ValueError(f"CamVid split must be one of {list(self.SPLITS)}, got {split!r}")
        if not root.is_dir():
            raise FileNotFoundError(f"CamVid root {root} does not exist")
        super().__init__(
            root / f"{split}annot",
            None if labels_only else root / split,
            num_classes=11,
            ignore_index=11,
            class_names=CAMVID_CLASSES,
            transform=transform,
            name="camvid",
        )
        self.split = split
