"""A trial's datasets and loaders, and the process-wide cache of decoded samples."""

from __future__ import annotations

import torch

from segcore.config.trial import TrialConfig
from segcore.data import SegmentationTransform, build_dataset

__all__ = ["CachedSamples", "build_data", "make_loader", "epoch_seed"]

# Decoded, resized samples per (dataset, root, options, scale, split), shared by every trial of
# the process (the trials of a sweep worker or a benchmark).
_SAMPLE_CACHE: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: its shuffle order, its workers and its random transforms depend on
    ``(seed, epoch)`` only, so a resumed trial sees exactly the batches it would have seen."""
    return seed * 100_003 + epoch


class CachedSamples(torch.utils.data.Dataset):
    """A dataset's samples decoded and resized once, kept in memory (``config.cache_data``).

    The deterministic part of the pipeline (decode, resize by ``image_scale``) runs once per
    process and split — trials of a sweep or a benchmark in the same process share it — and the
    random part (crop, flip) and normalisation run per access, so training sees the same
    distribution as without the cache.
    """

    def __init__(self, base, key: tuple, scale: float | None, transform):
        self.base, self.transform = base, transform
        self.num_classes, self.ignore_index = base.num_classes, base.ignore_index
        self.class_names = tuple(getattr(base, "class_names", ()))
        if key not in _SAMPLE_CACHE:
            base.transform = SegmentationTransform(scale=scale, normalize=False, ignore_index=base.ignore_index)
            _SAMPLE_CACHE[key] = [base[i] for i in range(len(base))]
        self.samples = _SAMPLE_CACHE[key]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.samples[index]
        return self.transform(image, label)


def build_data(cfg: TrialConfig):
    """``(train_set, val_set)``: random crop and flip on the training split only."""
    options = dict(cfg.dataset_options)
    if cfg.dataset == "synthetic" and "size" in options:
        options["size"] = tuple(options["size"])
    try:
        train_set = build_dataset(cfg.dataset, cfg.data_root, cfg.train_split, **options)
        val_set = build_dataset(cfg.dataset, cfg.data_root, cfg.val_split, **options)
    except KeyError as exc:
        raise ValueError(f"config.dataset: {exc.args[0]}") from None
    except TypeError as exc:
        raise ValueError(f"config.dataset_options: {exc}") from None
    crop = tuple(cfg.crop) if cfg.crop is not None else None
    if cfg.cache_data:
        cache_key = (cfg.dataset, cfg.data_root, repr(sorted(cfg.dataset_options.items())), cfg.image_scale)
        train_transform = SegmentationTransform(crop=crop, hflip=cfg.hflip, ignore_index=train_set.ignore_index)
        val_transform = SegmentationTransform(ignore_index=val_set.ignore_index)
        return (CachedSamples(train_set, cache_key + (cfg.train_split,), cfg.image_scale, train_transform),
                CachedSamples(val_set, cache_key + (cfg.val_split,), cfg.image_scale, val_transform))
    train_set.transform = SegmentationTransform(
        scale=cfg.image_scale, crop=crop, hflip=cfg.hflip, ignore_index=train_set.ignore_index
    )
    val_set.transform = SegmentationTransform(scale=cfg.image_scale, ignore_index=val_set.ignore_index)
    return train_set, val_set


def make_loader(dataset, cfg: TrialConfig, *, train: bool, epoch: int = 0) -> torch.utils.data.DataLoader:
    """A loader whose shuffle order and worker seeds come from :func:`epoch_seed`."""
    generator = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch))
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=train,
        # BatchNorm (and ASPP's pooled branch) cannot train on a batch of one sample.
        drop_last=train and len(dataset) > cfg.batch_size,
        num_workers=cfg.num_workers,
        generator=generator,
        pin_memory=False,
    )
