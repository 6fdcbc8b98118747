"""Datasets: registry, fake Cityscapes / VOC / ADE20K trees, folders, synthetic scenes, CamVid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segcore.data import (
    ADE20K,
    CamVid,
    Cityscapes,
    InMemoryLabels,
    SyntheticScenes,
    VOCSegmentation2012,
    build_dataset,
    list_datasets,
    predicted_stride,
)


def save_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def save_rgb(path, height, width, ext="png"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(path)


def fake_cityscapes(root, split="train", label=None, image_size=None):
    label = np.array([[7, 8, 11, 0], [26, 33, 1, 9], [23, 24, 21, 7]], dtype=np.uint8) if label is None else label
    name = "aachen_000000_000019"
    save_png(root / "gtFine" / split / "aachen" / f"{name}_gtFine_labelIds.png", label)
    h, w = image_size or label.shape
    save_rgb(root / "leftImg8bit" / split / "aachen" / f"{name}_leftImg8bit.png", h, w)
    return root


def test_registry_lists_every_dataset():
    assert {"camvid", "cityscapes", "voc", "ade20k", "folder", "synthetic"} <= set(list_datasets())
    with pytest.raises(KeyError, match="unknown dataset 'nope'; valid datasets: ade20k, camvid"):
        build_dataset("nope", "/tmp", "train")
    with pytest.raises(ValueError, match="needs a root"):
        build_dataset("cityscapes", None, "train")


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    root = fake_cityscapes(tmp_path)
    ds = build_dataset("cityscapes", root, "train")
    assert isinstance(ds, Cityscapes) and len(ds) == 1 and ds.num_classes == 19
    expected = torch.tensor([[0, 1, 2, 255], [13, 18, 255, 255], [10, 11, 8, 0]])
    assert torch.equal(ds.load_label(0), expected)
    assert ds.label_size(0) == (3, 4) and ds.image_size(0) == (3, 4)
    image, label = ds[0]
    assert image.shape == (3, 3, 4) and torch.equal(label, expected)
    assert ds.class_names[0] == "road" and ds.class_names[18] == "bicycle"
    # label-only: images are neither needed nor listed
    only = build_dataset("cityscapes", root, "train", labels_only=True)
    assert only.image_size(0) is None


def test_cityscapes_bad_input_names_the_file(tmp_path):
    root = fake_cityscapes(tmp_path, label=np.array([[7, 40], [7, 7]], dtype=np.uint8))
    ds = build_dataset("cityscapes", root, "train")
    with pytest.raises(ValueError, match=r"aachen_000000_000019_gtFine_labelIds.png: label value\(s\) \[40\]"):
        ds.load_label(0)
    with pytest.raises(FileNotFoundError, match="gtFine/val"):
        build_dataset("cityscapes", root, "val")
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'val', 'test'\]"):
        build_dataset("cityscapes", root, "training")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_dataset("cityscapes", tmp_path / "missing", "train")


def save_palette_png(path, array):
    """A palette PNG like VOC's: indices are the classes (a full palette keeps them as written)."""
    img = Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("P")
    img.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
    img.save(path, optimize=False)


def fake_voc(root, names=("2007_000032", "2007_000039"), split="train"):
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    for i, name in enumerate(names):
        (voc / "SegmentationClass").mkdir(exist_ok=True)
        save_palette_png(voc / "SegmentationClass" / f"{name}.png", [[0, 15, 255], [20, i, 0]])
        (voc / "JPEGImages").mkdir(exist_ok=True)
        Image.fromarray(np.zeros((2, 3, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{name}.jpg")
    return root


def test_voc_reads_palette_labels_via_torchvision(tmp_path):
    root = fake_voc(tmp_path)
    ds = build_dataset("voc", root, "train")
    assert isinstance(ds, VOCSegmentation2012) and len(ds) == 2 and ds.num_classes == 21
    assert torch.equal(ds.load_label(1), torch.tensor([[0, 15, 255], [20, 1, 0]]))
    assert ds.image_size(0) == ds.label_size(0) == (2, 3)
    assert ds[0][0].shape == (3, 2, 3)
    with pytest.raises(FileNotFoundError, match="PASCAL VOC 2012 not found"):
        build_dataset("voc", tmp_path / "VOCdevkit", "train")


def test_voc_value_outside_classes(tmp_path):
    root = fake_voc(tmp_path, names=("a",))
    path = root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "a.png"
    save_palette_png(path, [[0, 21]])
    ds = build_dataset("voc", root, "train", labels_only=True)
    with pytest.raises(ValueError, match=r"a.png: label value\(s\) \[21\] are not VOC classes"):
        ds.load_label(0)


def fake_ade(root, nested=True):
    base = root / "ADEChallengeData2016" if nested else root
    save_png(base / "annotations" / "training" / "ADE_train_00000001.png", np.array([[0, 1, 150], [2, 2, 0]]))
    save_rgb(base / "images" / "training" / "ADE_train_00000001.jpg", 2, 3)
    save_png(base / "annotations" / "validation" / "ADE_val_00000001.png", np.array([[3, 3], [3, 3]]))
    save_rgb(base / "images" / "validation" / "ADE_val_00000001.jpg", 2, 2)
    rows = ["Idx,Ratio,Train,Val,Name"] + [f"{i},0.1,1,1,name{i};alias" for i in range(1, 151)]
    (base / "objectInfo150.csv").write_text("\n".join(rows))
    return root


def test_ade20k_shifts_values_and_ignores_other(tmp_path):
    root = fake_ade(tmp_path)
    ds = build_dataset("ade20k", root, "train")
    assert isinstance(ds, ADE20K) and ds.num_classes == 150
    assert torch.equal(ds.load_label(0), torch.tensor([[255, 0, 149], [1, 1, 255]]))
    assert ds.class_names[0] == "name1" and ds.class_names[149] == "name150"
    val = build_dataset("ade20k", root / "ADEChallengeData2016", "val", labels_only=True)
    assert torch.equal(val.load_label(0), torch.full((2, 2), 2))
    save_png(root / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000002.png", np.array([[151]]))
    with pytest.raises(ValueError, match=r"ADE_train_00000002.png: label value\(s\) \[151\]"):
        build_dataset("ade20k", root, "train", labels_only=True).load_label(1)


def test_image_label_size_mismatch_is_caught_by_headers(tmp_path):
    from segcore.spectral import analyze

    root = fake_cityscapes(tmp_path, image_size=(5, 4))
    ds = build_dataset("cityscapes", root, "train")
    with pytest.raises(ValueError, match=r"gtFine_labelIds.png: label size 3x4 != image size 5x4"):
        analyze(ds)


def test_folder_dataset_and_empty_folder(tmp_path):
    save_png(tmp_path / "masks" / "train" / "a.png", np.array([[0, 1], [1, 255]]))
    save_rgb(tmp_path / "images" / "train" / "a.jpg", 2, 2)
    ds = build_dataset("folder", tmp_path, "train", num_classes=2)
    assert torch.equal(ds.load_label(0), torch.tensor([[0, 1], [1, 255]]))
    assert ds.label_size(0) == ds.image_size(0) == (2, 2)
    (tmp_path / "masks" / "val").mkdir()
    with pytest.raises(FileNotFoundError, match="no label files"):
        build_dataset("folder", tmp_path, "val", num_classes=2)


def test_in_memory_labels_check_values():
    ds = InMemoryLabels([torch.zeros(2, 3, dtype=torch.long)], num_classes=2, name="m")
    assert len(ds) == 1 and ds.label_size(0) == (2, 3)
    with pytest.raises(ValueError, match=r"m\[0\]: label value\(s\) \[5\] outside the classes"):
        InMemoryLabels([torch.tensor([[0, 5]])], num_classes=2, name="m")


def test_synthetic_is_deterministic_and_sized():
    a = SyntheticScenes("train", num_samples=3, size=(24, 40), num_classes=4, cutoff=1 / 8, seed=3)
    b = SyntheticScenes("train", num_samples=3, size=(24, 40), num_classes=4, cutoff=1 / 8, seed=3)
    assert torch.equal(a.load_label(2), b.load_label(2))
    assert not torch.equal(a.load_label(0), SyntheticScenes("val", num_samples=3, size=(24, 40), num_classes=4,
                                                            cutoff=1 / 8, seed=3).load_label(0))
    image, label = a[1]
    assert image.shape == (3, 24, 40) and label.shape == (24, 40) and int(label.max()) < 4
    assert a.label_size(0) == a.image_size(0) == (24, 40)
    assert predicted_stride(1 / 16) == 8


def test_camvid_real_labels(camvid_root):
    ds = CamVid(camvid_root, "val", labels_only=True)
    assert len(ds) == 101 and ds.num_classes == 11 and ds.ignore_index == 11
    label = ds.load_label(0)
    assert label.shape == (360, 480) and ds.label_size(0) == (360, 480)
    assert int(label.max()) <= 11
    full = build_dataset("camvid", camvid_root, "train")
    assert len(full) == 367 and full.image_size(0) == (360, 480)
