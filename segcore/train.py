"""One trial: train, evaluate and cost one configuration (COMMON.md contract 2).

``fit(config, report)`` builds the data (``segcore.data``), the network with its knobs
(``segcore.models``), measures its cost once (``segcore.cost``), trains with a poly learning-rate
schedule (AMP on CUDA), evaluates on the dense validation labels after every epoch and calls
``report(metrics, checkpoint_dir)``. No Ray and no MLflow in here: the same function runs alone,
under Ray Tune, or in a test.

The knobs at training time (DESIGN.md §2):

- ``grid_stride`` ``s``: the network predicts logits on the stride-``s`` grid. ``loss_at="full"``
  up-samples them bilinearly to the label size for the cross-entropy; ``loss_at="grid"`` compares
  them on the grid with soft targets, the class proportions of each cell
  (:func:`segcore.labels.grid_proportions`).
- ``keep`` / ``truncation``: inside the network (:class:`segcore.models.SpectralTruncation`).
- ``block`` ``b`` / ``block_mode``: the training labels are replaced by block annotation
  (:func:`segcore.labels.block_annotation`: majority label or class proportions per ``b x b``
  block, taken after cropping) before the loss; validation always scores dense labels.

Evaluation always up-samples the logits bilinearly to the label size
(:func:`segcore.labels.upsample_proportions`) and accumulates one confusion matrix over the split.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from segcore.config.trial import TrialConfig, format_validation_error

__all__ = ["fit", "validate_config", "TrialResult", "resolve_device", "training_targets", "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "checkpoint.pt"
# A checkpoint only continues a trial of the same network, knobs, data and schedule.
_RESUME_FIELDS = (
    "network", "backbone", "model_options", "grid_stride", "loss_at", "keep", "truncation", "block",
    "block_mode", "dataset", "dataset_options", "image_scale", "crop", "epochs", "batch_size", "optimizer",
    "lr", "max_train_batches", "seed",
)
ReportFn = Callable[[dict[str, float], str | None], None]


@dataclass
class TrialResult:
    """What :func:`fit` returns.

    Attributes:
        config: the resolved configuration (``TrialConfig.model_dump()`` plus the backbone used).
        metrics: final metrics (the last epoch's report).
        history: every epoch's metrics, in order.
        per_class_iou: class name -> IoU of the last evaluation (NaN for classes absent from both
            truth and prediction).
        cost: the ``COST_METRICS`` of the configuration.
        samples: ``(H, W*3, 3)`` uint8 panel image | truth | prediction, or ``None``.
        device: the device trained on (``cpu``, ``cuda``, ``cuda:1``...).
        epochs_completed: epochs trained in total (including those before a resume).
    """

    config: dict
    metrics: dict[str, float]
    history: list[dict] = field(default_factory=list)
    per_class_iou: dict[str, float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    samples: np.ndarray | None = None
    device: str = "cpu"
    epochs_completed: int = 0


# ---------------------------------------------------------------------------------------------
# configuration


def _dataset_size(cfg: TrialConfig) -> tuple[int, int]:
    """Training image size without decoding any image: the crop, the synthetic size, or the
    header of the first training label file, scaled by ``image_scale``."""
    if cfg.crop is not None:
        return int(cfg.crop[0]), int(cfg.crop[1])
    if cfg.dataset == "synthetic":
        import inspect

        from segcore.data.synthetic import SyntheticScenes

        default = inspect.signature(SyntheticScenes).parameters["size"].default
        height, width = cfg.dataset_options.get("size", default)
    else:
        from segcore.data import build_dataset

        try:
            labels = build_dataset(cfg.dataset, cfg.data_root, cfg.train_split, labels_only=True, **cfg.dataset_options)
            if len(labels) == 0:
                raise ValueError(f"no samples in split {cfg.train_split!r}")
            height, width = labels.label_size(0)
        except (FileNotFoundError, ValueError, TypeError) as exc:
            raise ValueError(f"config.data_root: cannot open {cfg.dataset!r} at {cfg.data_root}: {exc}") from None
    scale = cfg.image_scale or 1.0
    return max(1, round(height * scale)), max(1, round(width * scale))


def _check_size(cfg: TrialConfig, height: int, width: int, where: str) -> None:
    """grid_stride and block must fit the training image (``check_stride`` names the range)."""
    from segcore.labels import check_stride

    for name in ("grid_stride", "block"):
        try:
            check_stride(getattr(cfg, name), height, width, name=name)
        except ValueError as exc:
            raise ValueError(f"config.{name}: {exc} ({where})") from None


def validate_config(config: TrialConfig | dict) -> TrialConfig:
    """Check a trial configuration without loading data or training; return it typed.

    Raises:
        ValueError: naming the field, the bad value and the valid choices — unknown network,
            backbone, dataset or model option; a grid stride the network cannot produce; keep
            outside (0, 1]; block < 1 or larger than the crop; a missing dataset root.
    """
    if isinstance(config, TrialConfig):
        cfg = config
    elif isinstance(config, dict):
        try:
            cfg = TrialConfig(**config)
        except ValidationError as exc:
            raise ValueError(format_validation_error(exc)) from None
    else:
        raise ValueError(f"config must be a TrialConfig or a dict, got {type(config).__name__}")

    from segcore.data import list_datasets
    from segcore.models import create_model, list_models, model_entry

    if cfg.network not in list_models():
        raise ValueError(f"config.network: unknown network {cfg.network!r}; valid networks: {', '.join(list_models())}")
    if cfg.dataset not in list_datasets():
        raise ValueError(f"config.dataset: unknown dataset {cfg.dataset!r}; valid datasets: {', '.join(list_datasets())}")
    if cfg.dataset != "synthetic":
        if cfg.data_root is None:
            raise ValueError(f"config.data_root: dataset {cfg.dataset!r} needs a root folder (--root)")
        if not Path(cfg.data_root).is_dir():
            raise ValueError(f"config.data_root: {cfg.data_root} is not a folder")
    if cfg.crop is not None and min(cfg.crop) < 1:
        raise ValueError(f"config.crop: both sides must be >= 1, got {cfg.crop}")
    # Building on the meta device checks backbone, grid stride, keep and options in microseconds.
    try:
        with torch.device("meta"):
            create_model(
                cfg.network, 2, grid_stride=cfg.grid_stride, keep=cfg.keep, truncation=cfg.truncation,
                backbone=cfg.backbone, **cfg.model_options,
            )
    except ValueError as exc:
        msg = str(exc)
        fieldname = next((f for f in ("grid_stride", "backbone", "keep", "truncation") if f in msg), "model_options")
        raise ValueError(f"config.{fieldname}: {msg}") from None
    entry = model_entry(cfg.network)
    if cfg.weights is not None and not Path(cfg.weights).is_file():
        raise ValueError(f"config.weights: file {cfg.weights} does not exist")
    if cfg.weights_backbone is not None and not entry.backbones:
        raise ValueError(f"config.weights_backbone: network {cfg.network!r} takes no backbone")
    size = _dataset_size(cfg)
    _check_size(cfg, *size, where=f"training images are {size[0]}x{size[1]}")
    return cfg


def resolve_config(cfg: TrialConfig) -> dict:
    """The configuration as run: every field, with the backbone resolved to the one used."""
    from segcore.models import resolve_backbone

    resolved = cfg.model_dump(mode="json")
    resolved["backbone"] = resolve_backbone(cfg.network, cfg.backbone)
    return resolved


def resolve_device(requested: str = "auto") -> torch.device:
    """``cuda`` when present; the CPU otherwise.

    A scheduler that granted a GPU sets ``CUDA_VISIBLE_DEVICES``; if CUDA is nevertheless not
    usable (driver missing, GPU lost), the trial warns and falls back to the CPU instead of dying.
    ``device="cuda"`` without any GPU granted or present is a configuration error.
    """
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    granted = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if granted.strip() not in ("", "-1"):
        warnings.warn(
            f"a GPU was granted (CUDA_VISIBLE_DEVICES={granted}) but torch.cuda.is_available() is False; "
            "training on the CPU",
            RuntimeWarning,
            stacklevel=2,
        )
        return torch.device("cpu")
    if requested == "cuda":
        raise ValueError("config.device: 'cuda' requested but no CUDA device is available; valid: auto, cpu")
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# data


_SAMPLE_CACHE: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}


class CachedSamples(torch.utils.data.Dataset):
    """A dataset's samples decoded and resized once, kept in memory (``config.cache_data``).

    The deterministic part of the pipeline (decode, resize by ``image_scale``) runs once per
    process and split — trials of a sweep or a benchmark in the same process share it — and the
    random part (crop, flip) and normalisation run per access, so training sees the same
    distribution as without the cache.
    """

    def __init__(self, base, key: tuple, scale: float | None, transform):
        from segcore.data import SegmentationTransform

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


def _build_data(cfg: TrialConfig):
    from segcore.data import SegmentationTransform, build_dataset

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
        ident = (cfg.dataset, cfg.data_root, repr(sorted(cfg.dataset_options.items())), cfg.image_scale)
        train_tf = SegmentationTransform(crop=crop, hflip=cfg.hflip, ignore_index=train_set.ignore_index)
        val_tf = SegmentationTransform(ignore_index=val_set.ignore_index)
        return (CachedSamples(train_set, ident + (cfg.train_split,), cfg.image_scale, train_tf),
                CachedSamples(val_set, ident + (cfg.val_split,), cfg.image_scale, val_tf))
    train_set.transform = SegmentationTransform(
        scale=cfg.image_scale, crop=crop, hflip=cfg.hflip, ignore_index=train_set.ignore_index
    )
    val_set.transform = SegmentationTransform(scale=cfg.image_scale, ignore_index=val_set.ignore_index)
    return train_set, val_set


def _loader(dataset, cfg: TrialConfig, *, train: bool, epoch: int = 0) -> torch.utils.data.DataLoader:
    # A generator seeded by (seed, epoch): the shuffle order and the workers' seeds of an epoch do
    # not depend on what ran before, so a resumed trial sees exactly the batches it would have.
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=train,
        # BatchNorm (and ASPP's pooled branch) cannot train on a batch of one sample.
        drop_last=train and len(dataset) > cfg.batch_size,
        num_workers=cfg.num_workers,
        generator=gen,
        pin_memory=False,
    )


# ---------------------------------------------------------------------------------------------
# losses


def _ignore(ignore_index: int | None) -> int:
    return -100 if ignore_index is None else ignore_index


def _cell_proportions(pixel_props: torch.Tensor, stride: int) -> torch.Tensor:
    """Average per-pixel class proportions ``(N, C, H, W)`` over the cells of the stride-``s``
    grid (``(N, C, ceil(H/s), ceil(W/s))``), renormalised over the pixels that carry a label."""
    height, width = pixel_props.shape[-2:]
    pad_h, pad_w = (-height) % stride, (-width) % stride
    sums = F.avg_pool2d(F.pad(pixel_props, (0, pad_w, 0, pad_h)), stride, divisor_override=1)
    return sums / sums.sum(dim=1, keepdim=True).clamp_min(1e-12)


def training_targets(
    labels: torch.Tensor, cfg: TrialConfig, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    """The training target of a batch of dense labels ``(N, H, W)`` under the knobs.

    Returns hard labels ``(N, H, W)`` (``loss_at="full"`` with dense or hard block labels) or
    soft proportions: ``(N, C, H, W)`` per pixel (``full`` with soft blocks) or ``(N, C, h, w)``
    on the logit grid (``loss_at="grid"``).
    """
    from segcore.labels import block_annotation, grid_proportions, upsample_labels, upsample_proportions

    size = tuple(labels.shape[-2:])
    if cfg.block > 1:
        blocks = block_annotation(labels, cfg.block, num_classes, ignore_index, mode=cfg.block_mode)
        if cfg.block_mode == "hard":
            labels = upsample_labels(blocks, cfg.block, size)
            pixel_props = None
        else:
            pixel_props = upsample_proportions(blocks, cfg.block, size, mode="nearest")
    else:
        pixel_props = None
    if cfg.loss_at == "grid":
        if pixel_props is None:
            return grid_proportions(labels, cfg.grid_stride, num_classes, ignore_index)
        return _cell_proportions(pixel_props, cfg.grid_stride)
    return labels if pixel_props is None else pixel_props


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against class proportions ``(N, C, H, W)``, averaged over the positions that
    carry a label (an all-zero proportion vector marks a position without one)."""
    logp = F.log_softmax(logits.float(), dim=1)
    per_pos = -(target * logp).sum(dim=1)
    valid = target.sum(dim=1) > 0
    return per_pos[valid].sum() / valid.sum().clamp_min(1)


def training_loss(
    logits: torch.Tensor, labels: torch.Tensor, cfg: TrialConfig, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    """Loss of grid logits ``(N, C, h, w)`` against dense labels ``(N, H, W)`` under the knobs."""
    from segcore.labels import upsample_proportions

    target = training_targets(labels, cfg, num_classes, ignore_index)
    if cfg.loss_at == "grid":
        return soft_cross_entropy(logits, target)
    full = upsample_proportions(logits.float(), cfg.grid_stride, tuple(labels.shape[-2:]))
    if target.dim() == 4:
        return soft_cross_entropy(full, target)
    return F.cross_entropy(full, target, ignore_index=_ignore(ignore_index))


# ---------------------------------------------------------------------------------------------
# evaluation and samples


@torch.no_grad()
def evaluate(model, loader, cfg: TrialConfig, num_classes: int, ignore_index: int | None, device,
             amp: bool) -> "Any":
    """Scores on dense labels: logits bilinearly up-sampled to the label size, one confusion
    matrix over the split (``max_val_batches`` batches at most)."""
    from segcore.labels import upsample_proportions
    from segcore.metrics import ConfusionMatrix

    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index, device=device)
    # islice, not a check inside the loop: fetching (decoding) one batch past the limit is waste.
    for images, labels in itertools.islice(loader, cfg.max_val_batches):
        images, labels = images.to(device), labels.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits = model(images)
        full = upsample_proportions(logits.float(), cfg.grid_stride, tuple(labels.shape[-2:]))
        cm.update(full.argmax(dim=1), labels)
    model.train()
    return cm.compute()


def palette(num_classes: int) -> np.ndarray:
    """Fixed colours ``(C + 1, 3)`` uint8 for the classes; the last row (black) is 'ignore'."""
    gen = np.random.default_rng(7)
    colours = gen.integers(40, 256, size=(num_classes, 3), dtype=np.int64)
    return np.concatenate([colours, np.zeros((1, 3), dtype=np.int64)]).astype(np.uint8)


@torch.no_grad()
def render_sample(model, dataset, cfg: TrialConfig, num_classes: int, ignore_index: int | None, device,
                  index: int = 0) -> np.ndarray:
    """``(H, W*3, 3)`` uint8 panel: image | truth | prediction (fixed palette, ignore in black)."""
    from segcore.data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from segcore.labels import upsample_proportions

    image, label = dataset[index]
    model.eval()
    logits = model(image.unsqueeze(0).to(device)).float()
    model.train()
    pred = upsample_proportions(logits, cfg.grid_stride, tuple(label.shape))[0].argmax(0).cpu().numpy()
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    rgb = ((image * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    colours = palette(num_classes)
    truth = label.numpy().copy()
    truth[(truth < 0) | (truth >= num_classes)] = num_classes
    return np.concatenate([rgb, colours[truth], colours[pred]], axis=1)


# ---------------------------------------------------------------------------------------------
# checkpoints


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _checkpoint_path(resume_from: str | os.PathLike) -> Path:
    path = Path(resume_from)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"resume_from: no checkpoint at {path}")
    return path


def save_checkpoint(directory: Path, *, model, optimizer, scheduler, scaler, epoch: int, config: dict,
                    history: list[dict], cost: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "rng": _rng_state(),
        "config": config,
        "history": history,
        "cost": cost,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind
    return path


# ---------------------------------------------------------------------------------------------
# the trial


def fit(config: TrialConfig | dict, report: ReportFn | None = None, *, resume_from: str | None = None) -> TrialResult:
    """Train, evaluate and cost one configuration.

    Args:
        config: a :class:`TrialConfig` or a dict of its fields; checked by :func:`validate_config`
            before any data is opened.
        report: called once per epoch as ``report(metrics, checkpoint_dir)``; ``metrics`` holds
            ``epoch`` (1-based), ``miou``, ``pixel_accuracy``, ``mean_accuracy``, ``train_loss``,
            ``epoch_seconds`` and every key of ``COST_METRICS`` (measured once, before training);
            ``checkpoint_dir`` is a fresh local directory holding ``checkpoint.pt`` (under
            ``config.checkpoint_dir/epoch_E`` when set, kept; otherwise a temporary directory,
            removed after the next report or when ``fit`` returns, so a caller that keeps it
            copies it during ``report`` — Ray Tune's ``Checkpoint.from_directory`` does).
        resume_from: a checkpoint directory (or ``checkpoint.pt``) from an earlier report; the
            trial continues with the next epoch and ends exactly as an uninterrupted one would.

    Returns:
        A :class:`TrialResult`.

    Raises:
        ValueError: bad configuration (before any work) or unreadable data (naming the file).
        FloatingPointError: the training loss became NaN or infinite.
    """
    from segcore.cost import measure_cost
    from segcore.models import create_model

    cfg = validate_config(config)
    ckpt_path = _checkpoint_path(resume_from) if resume_from is not None else None
    resolved = resolve_config(cfg)
    device = resolve_device(cfg.device)
    amp = bool(cfg.amp and device.type == "cuda")
    _seed_everything(cfg.seed)

    train_set, val_set = _build_data(cfg)
    num_classes, ignore_index = train_set.num_classes, train_set.ignore_index
    first_image, first_label = train_set[0]
    _check_size(cfg, *first_label.shape[-2:], where=f"training images are {tuple(first_label.shape[-2:])}")
    val_image, _ = val_set[0]
    eval_size = tuple(val_image.shape[-2:])

    model = create_model(
        cfg.network, num_classes, grid_stride=cfg.grid_stride, keep=cfg.keep, truncation=cfg.truncation,
        backbone=cfg.backbone, weights=cfg.weights, weights_backbone=cfg.weights_backbone, **cfg.model_options,
    ).to(device)

    # Cost once, before training: annotation metrics over a few dense training labels.
    sample_labels = torch.stack([train_set[i][1] for i in range(min(len(train_set), 8))]) if cfg.block > 1 else None
    cost = measure_cost(
        model, eval_size, block=cfg.block, labels=sample_labels, num_classes=num_classes,
        ignore_index=ignore_index, device=device, repeats=cfg.latency_repeats,
    )
    if sample_labels is None:  # dense labels: nothing mixed, one unit per pixel of the crop
        height, width = first_label.shape[-2:]
        cost.update(annotation_units=float(height * width), relative_annotation_units=1.0, mixed_block_share=0.0)

    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(_loader(train_set, cfg, train=True))
    if cfg.max_train_batches is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_train_batches)
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    # Poly schedule (DeepLab): lr * (1 - step / total) ** 0.9, stepped per batch.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total_steps) ** 0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)

    history: list[dict] = []
    start_epoch = 1
    if ckpt_path is not None:
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        changed = [k for k in _RESUME_FIELDS if state.get("config", {}).get(k, resolved[k]) != resolved[k]]
        if changed:
            raise ValueError(
                f"checkpoint {ckpt_path} was trained with a different configuration: "
                + ", ".join(f"{k}={state['config'][k]!r} there, {resolved[k]!r} here" for k in changed)
            )
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise ValueError(f"checkpoint {ckpt_path} does not match config.network={cfg.network!r}: {exc}") from None
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        history = list(state.get("history", []))
        start_epoch = int(state["epoch"]) + 1

    scores = None
    previous_tmp: Path | None = None
    model.train()
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        # Transforms (crop, flip) and dropout draw from the global RNG: seed it per epoch too.
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        loss_sum, batches = 0.0, 0
        for images, labels in itertools.islice(_loader(train_set, cfg, train=True, epoch=epoch),
                                               cfg.max_train_batches):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                logits = model(images)
            loss = training_loss(logits, labels, cfg, num_classes, ignore_index)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite training loss at epoch {epoch} (batch {batches + 1}): {loss.item()}; "
                    f"lower config.lr (now {cfg.lr}) or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += float(loss.detach())
            batches += 1
        scores = evaluate(model, _loader(val_set, cfg, train=False), cfg, num_classes, ignore_index, device, amp)
        metrics = {
            "epoch": float(epoch),
            "miou": scores.miou,
            "pixel_accuracy": scores.pixel_accuracy,
            "mean_accuracy": scores.mean_accuracy,
            "train_loss": loss_sum / max(batches, 1),
            "epoch_seconds": time.perf_counter() - t0,
            **cost,
        }
        history.append(metrics)
        ckpt_dir: Path | None = None
        if cfg.checkpoint_dir is not None:
            ckpt_dir = Path(cfg.checkpoint_dir) / f"epoch_{epoch}"
        elif report is not None:
            ckpt_dir = Path(tempfile.mkdtemp(prefix=f"segcore-ckpt-e{epoch}-"))
        if ckpt_dir is not None:
            save_checkpoint(ckpt_dir, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                            epoch=epoch, config=resolved, history=history, cost=cost)
        if report is not None:
            report(dict(metrics), str(ckpt_dir) if ckpt_dir is not None else None)
        if previous_tmp is not None:
            shutil.rmtree(previous_tmp, ignore_errors=True)
        previous_tmp = ckpt_dir if cfg.checkpoint_dir is None else None

    if previous_tmp is not None:  # the caller copied it during report (Ray Tune persists it there)
        shutil.rmtree(previous_tmp, ignore_errors=True)
    if scores is None:  # resumed after the last epoch: score the restored weights once more
        scores = evaluate(model, _loader(val_set, cfg, train=False), cfg, num_classes, ignore_index, device, amp)
    class_names = list(getattr(train_set, "class_names", ())) or [f"class_{i}" for i in range(num_classes)]
    per_class = {name: float(v) for name, v in zip(class_names, scores.per_class_iou)}
    final = dict(history[-1]) if history else {"epoch": 0.0, "miou": scores.miou,
                                                "pixel_accuracy": scores.pixel_accuracy, **cost}
    samples = render_sample(model, val_set, cfg, num_classes, ignore_index, device)
    return TrialResult(
        config=resolved,
        metrics=final,
        history=history,
        per_class_iou=per_class,
        cost=cost,
        samples=samples,
        device=str(device),
        epochs_completed=int(final["epoch"]),
    )


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def result_to_dict(result: TrialResult) -> dict:
    """JSON-ready dict of a :class:`TrialResult` (NaN -> null, no sample image)."""
    return _nan_to_none({
        "config": result.config,
        "metrics": result.metrics,
        "cost": result.cost,
        "per_class_iou": result.per_class_iou,
        "history": result.history,
        "device": result.device,
        "epochs_completed": result.epochs_completed,
    })

