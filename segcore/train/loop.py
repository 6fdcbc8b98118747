"""The trial: :func:`fit` builds data, network and cost, trains epoch by epoch, and reports."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from segcore.config.trial import TrialConfig
from segcore.cost import measure_cost
from segcore.metrics import SegmentationScores
from segcore.models import create_model
from segcore.names import METRIC_EPOCH, METRIC_MIOU, METRIC_PIXEL_ACCURACY, METRIC_TRAIN_LOSS
from segcore.train.checkpoint import (
    EpochCheckpoints, find_checkpoint, restore_checkpoint, save_checkpoint, seed_everything,
)
from segcore.train.data import build_data, epoch_seed, make_loader
from segcore.train.device import choose_device
from segcore.train.evaluation import evaluate
from segcore.train.losses import training_loss
from segcore.train.render import render_sample
from segcore.train.result import TrialResult
from segcore.train.validate import check_size, resolve_config, validate_config

__all__ = ["fit", "ReportFn", "BatchFn"]

ReportFn = Callable[[dict[str, float], str | None], None]
#: ``on_batch(epoch, batch, batches, loss)``: after each training step (``batch`` 1-based of ``batches``).
BatchFn = Callable[[int, int, int, float], None]


@dataclass
class _Data:
    """The two splits of a trial and what the loop needs to know about them."""

    train_set: Any
    val_set: Any
    num_classes: int
    ignore_index: int | None
    class_names: list[str]
    train_size: tuple[int, int]  # of the first (cropped) training sample
    eval_size: tuple[int, int]  # of the first validation sample


@dataclass
class _Training:
    """Everything one training step changes, and what a checkpoint saves."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: bool
    steps_per_epoch: int


def _open_data(cfg: TrialConfig) -> _Data:
    train_set, val_set = build_data(cfg)
    _, first_label = train_set[0]
    size = tuple(first_label.shape[-2:])
    check_size(cfg, *size, where=f"training images are {size}")
    val_image, _ = val_set[0]
    num_classes = train_set.num_classes
    class_names = list(getattr(train_set, "class_names", ())) or [f"class_{i}" for i in range(num_classes)]
    return _Data(train_set, val_set, num_classes, train_set.ignore_index, class_names, size,
                 tuple(val_image.shape[-2:]))


def _measure_cost(cfg: TrialConfig, model: torch.nn.Module, data: _Data, device: torch.device) -> dict[str, float]:
    """Cost once, before training; annotation metrics over a few dense training labels."""
    train_set = data.train_set
    sample_labels = torch.stack([train_set[i][1] for i in range(min(len(train_set), 8))]) if cfg.block > 1 else None
    cost = measure_cost(
        model, data.eval_size, block=cfg.block, labels=sample_labels, num_classes=data.num_classes,
        ignore_index=data.ignore_index, device=device, repeats=cfg.latency_repeats,
    )
    if sample_labels is None:  # dense labels: nothing mixed, one unit per pixel of the crop
        height, width = data.train_size
        cost.update(annotation_units=float(height * width), relative_annotation_units=1.0, mixed_block_share=0.0)
    return cost


def _steps_per_epoch(cfg: TrialConfig, train_set) -> int:
    steps = len(make_loader(train_set, cfg, train=True))
    return steps if cfg.max_train_batches is None else min(steps, cfg.max_train_batches)


def _build_training(cfg: TrialConfig, data: _Data, device: torch.device) -> _Training:
    model = create_model(
        cfg.network, data.num_classes, grid_stride=cfg.grid_stride, keep=cfg.keep, truncation=cfg.truncation,
        backbone=cfg.backbone, weights=cfg.weights, weights_backbone=cfg.weights_backbone, **cfg.model_options,
    ).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = _steps_per_epoch(cfg, data.train_set)
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    # Poly schedule (DeepLab): lr * (1 - step / total) ** 0.9, stepped per batch.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total_steps) ** 0.9)
    amp = bool(cfg.amp and device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    return _Training(model, optimizer, scheduler, scaler, device, amp, steps_per_epoch)


def _train_epoch(training: _Training, data: _Data, cfg: TrialConfig, epoch: int, on_batch: BatchFn | None) -> float:
    """One pass over the training batches (``max_train_batches`` at most); the mean loss."""
    # Transforms (crop, flip) and dropout draw from the global RNG: seed it per epoch too.
    torch.manual_seed(epoch_seed(cfg.seed, epoch))
    device, model = training.device, training.model
    loss_sum, batches = 0.0, 0
    for images, labels in itertools.islice(make_loader(data.train_set, cfg, train=True, epoch=epoch),
                                           cfg.max_train_batches):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=training.amp):
            logits = model(images)
        loss = training_loss(logits, labels, cfg, data.num_classes, data.ignore_index)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss at epoch {epoch} (batch {batches + 1}): {loss.item()}; "
                f"lower config.lr (now {cfg.lr}) or check the data"
            )
        training.optimizer.zero_grad(set_to_none=True)
        training.scaler.scale(loss).backward()
        training.scaler.step(training.optimizer)
        training.scaler.update()
        training.scheduler.step()
        loss_sum += float(loss.detach())
        batches += 1
        if on_batch is not None:
            on_batch(epoch, batches, training.steps_per_epoch, loss_sum / batches)
    return loss_sum / max(batches, 1)


def _evaluate(training: _Training, data: _Data, cfg: TrialConfig) -> SegmentationScores:
    loader = make_loader(data.val_set, cfg, train=False)
    return evaluate(training.model, loader, cfg, data.num_classes, data.ignore_index, training.device, training.amp)


def _epoch_metrics(epoch: int, scores: SegmentationScores, train_loss: float, seconds: float,
                   cost: dict[str, float]) -> dict[str, float]:
    """What ``report`` receives after an epoch (the keys of ``segcore.names`` where it has them)."""
    return {
        METRIC_EPOCH: float(epoch),
        METRIC_MIOU: scores.miou,
        METRIC_PIXEL_ACCURACY: scores.pixel_accuracy,
        "mean_accuracy": scores.mean_accuracy,
        METRIC_TRAIN_LOSS: train_loss,
        "epoch_seconds": seconds,
        **cost,
    }


def fit(config: TrialConfig | dict, report: ReportFn | None = None, *, resume_from: str | None = None,
        on_batch: BatchFn | None = None) -> TrialResult:
    """Train, evaluate and cost one configuration.

    Args:
        config: a :class:`TrialConfig` or a dict of its fields; checked by
            :func:`segcore.train.validate_config` before any data is opened.
        report: called once per epoch as ``report(metrics, checkpoint_dir)``; ``metrics`` holds
            ``epoch`` (1-based), ``miou``, ``pixel_accuracy``, ``mean_accuracy``, ``train_loss``,
            ``epoch_seconds`` and every key of ``COST_METRICS`` (measured once, before training);
            ``checkpoint_dir`` is a fresh local directory holding ``checkpoint.pt`` (under
            ``config.checkpoint_dir/epoch_E`` when set, kept; otherwise a temporary directory,
            removed after the next report or when ``fit`` returns, so a caller that keeps it
            copies it during ``report`` — Ray Tune's ``Checkpoint.from_directory`` does).
        resume_from: a checkpoint directory (or ``checkpoint.pt``) from an earlier report; the
            trial continues with the next epoch and ends exactly as an uninterrupted one would.
        on_batch: called after every training step as ``on_batch(epoch, batch, batches, loss)``:
            the 1-based batch of the epoch's ``batches`` and the epoch's mean loss so far (for a
            progress bar).

    Returns:
        A :class:`TrialResult`.

    Raises:
        ValueError: bad configuration (before any work) or unreadable data (naming the file).
        FloatingPointError: the training loss became NaN or infinite.
    """
    cfg = validate_config(config)
    checkpoint_file = find_checkpoint(resume_from) if resume_from is not None else None
    resolved = resolve_config(cfg)
    device_choice = choose_device(cfg.device)
    device = device_choice.device
    seed_everything(cfg.seed)
    data = _open_data(cfg)
    training = _build_training(cfg, data, device)
    cost = _measure_cost(cfg, training.model, data, device)
    state = dict(model=training.model, optimizer=training.optimizer, scheduler=training.scheduler,
                 scaler=training.scaler)
    history: list[dict] = []
    start_epoch = 1
    if checkpoint_file is not None:
        history, start_epoch = restore_checkpoint(checkpoint_file, **state, config=resolved, device=device)

    scores = None
    checkpoints = EpochCheckpoints(cfg.checkpoint_dir, reported=report is not None)
    training.model.train()
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            started = time.perf_counter()
            train_loss = _train_epoch(training, data, cfg, epoch, on_batch)
            scores = _evaluate(training, data, cfg)
            metrics = _epoch_metrics(epoch, scores, train_loss, time.perf_counter() - started, cost)
            history.append(metrics)
            checkpoint_dir = checkpoints.directory(epoch)
            if checkpoint_dir is not None:
                save_checkpoint(checkpoint_dir, **state, epoch=epoch, config=resolved, history=history, cost=cost)
            if report is not None:
                report(dict(metrics), str(checkpoint_dir) if checkpoint_dir is not None else None)
            checkpoints.reported_epoch(checkpoint_dir)
    finally:
        checkpoints.close()

    if scores is None:  # resumed after the last epoch: score the restored weights once more
        scores = _evaluate(training, data, cfg)
    final = dict(history[-1]) if history else {METRIC_EPOCH: 0.0, METRIC_MIOU: scores.miou,
                                                METRIC_PIXEL_ACCURACY: scores.pixel_accuracy, **cost}
    return TrialResult(
        config=resolved,
        metrics=final,
        history=history,
        per_class_iou={name: float(iou) for name, iou in zip(data.class_names, scores.per_class_iou)},
        cost=cost,
        samples=render_sample(training.model, data.val_set, cfg, data.num_classes, data.ignore_index, device,
                              class_names=data.class_names),
        device=str(device),
        gpu_fallback=device_choice.gpu_fallback,
        epochs_completed=int(final[METRIC_EPOCH]),
    )
