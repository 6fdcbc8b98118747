"""Datasets: CamVid, Cityscapes, PASCAL VOC 2012, ADE20K, image/mask folders, in-memory labels, and
synthetic scenes with a known cut-off, opened by name.

``build_dataset(name, root, split)`` opens any of them; see :mod:`segcore.data.base` for the
contract every dataset keeps.
"""

from . import builtin as _builtin  # noqa: F401  (registers the built-in datasets)
from .base import SegmentationDataset, check_label_values, read_image_file, read_image_size, read_label_file
from .benchmarks import ADE20K, CITYSCAPES_CLASSES, VOC_CLASSES, Cityscapes, VOCSegmentation2012
from .folder import CAMVID_CLASSES, CamVid, ImageMaskFolder
from .memory import InMemoryLabels
from .registry import build_dataset, list_datasets, register_dataset
from .synthetic import SyntheticScenes, band_limited_labels, predicted_stride
from .transforms import SegmentationTransform

__all__ = [
    "SegmentationDataset",
    "SegmentationTransform",
    "CamVid",
    "CAMVID_CLASSES",
    "Cityscapes",
    "CITYSCAPES_CLASSES",
    "VOCSegmentation2012",
    "VOC_CLASSES",
    "ADE20K",
    "ImageMaskFolder",
    "InMemoryLabels",
    "SyntheticScenes",
    "band_limited_labels",
    "predicted_stride",
    "build_dataset",
    "list_datasets",
    "register_dataset",
    "check_label_values",
    "read_image_file",
    "read_label_file",
    "read_image_size",
]
