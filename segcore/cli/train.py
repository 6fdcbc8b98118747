"""``segcore train``: one trial from the command line — progress within each epoch, a result JSON."""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path
from typing import TextIO

from segcore.formatting import parse_key_values
from segcore.names import METRIC_EPOCH, METRIC_MIOU, METRIC_PIXEL_ACCURACY, METRIC_TRAIN_LOSS

COMMAND = "train"
ORDER = 20

_FIELDS = {  # CLI dest -> TrialConfig field (only those given on the command line override)
    "network": "network", "backbone": "backbone", "dataset": "dataset", "root": "data_root",
    "grid_stride": "grid_stride", "loss_at": "loss_at", "keep": "keep", "truncation": "truncation",
    "block": "block", "block_mode": "block_mode", "epochs": "epochs", "batch_size": "batch_size",
    "optimizer": "optimizer", "lr": "lr", "weight_decay": "weight_decay", "image_scale": "image_scale",
    "crop": "crop", "max_train_batches": "max_train_batches", "max_val_batches": "max_val_batches",
    "seed": "seed", "device": "device", "num_workers": "num_workers", "checkpoint_dir": "checkpoint_dir",
    "weights": "weights", "weights_backbone": "weights_backbone", "train_split": "train_split",
    "val_split": "val_split",
}


def build_config(args: argparse.Namespace) -> dict:
    """TrialConfig fields: the ``--config`` YAML file, overridden by flags given explicitly."""
    import yaml

    config: dict = {}
    if args.config is not None:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config file {path} must hold a mapping of TrialConfig fields")
        config.update(loaded)
    for dest, name in _FIELDS.items():
        value = getattr(args, dest)
        if value is not None:
            config[name] = list(value) if isinstance(value, tuple) else value
    if args.no_amp:
        config["amp"] = False
    if args.no_hflip:
        config["hflip"] = False
    if args.option:
        config["model_options"] = {**config.get("model_options", {}), **parse_key_values(args.option, "--option")}
    if args.dataset_option:
        config["dataset_options"] = {
            **config.get("dataset_options", {}), **parse_key_values(args.dataset_option, "--dataset-option")
        }
    return config


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _reports_no_width(stream: TextIO) -> bool:
    """A terminal of zero columns and rows (a pseudo-terminal nobody sized)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns == 0
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


class TrainingProgress:
    """What ``segcore train`` shows while it trains.

    Every epoch ends with one plain line (loss, mIoU, pixel accuracy, seconds) written to ``out``
    and flushed at once, so a log file or a pipe sees each epoch as it finishes. Within an epoch,
    a tqdm bar over the batches goes to ``bar_stream`` — only when that stream is a terminal
    (``show_bar=None``), since a bar's carriage returns would litter a file.
    """

    def __init__(self, epochs: int, *, out: TextIO | None = None, bar_stream: TextIO | None = None,
                 show_bar: bool | None = None):
        self.epochs = epochs
        self.out = out if out is not None else sys.stdout
        self.bar_stream = bar_stream if bar_stream is not None else sys.stderr
        self.show_bar = _is_terminal(self.bar_stream) if show_bar is None else show_bar
        self._bar = None

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def batch(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        """``fit``'s ``on_batch``: advance the bar."""
        if not self.show_bar:
            return
        if self._bar is None:
            from tqdm import tqdm

            unsized = _reports_no_width(self.bar_stream)  # then tqdm would draw nothing
            self._bar = tqdm(total=batches, desc=f"epoch {epoch}/{self.epochs}", unit="batch",
                             file=self.bar_stream, leave=False, dynamic_ncols=not unsized,
                             ncols=100 if unsized else None, nrows=24 if unsized else None)
        self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        self._bar.update(1)
        if batch == batches:  # a full bar while the epoch is evaluated (tqdm throttles redraws)
            self._bar.refresh()

    def epoch(self, metrics: dict[str, float], checkpoint_dir: str | None = None) -> None:
        """``fit``'s ``report``: close the bar, write the epoch's line."""
        self.close()
        self.say(
            f"epoch {int(metrics[METRIC_EPOCH])}/{self.epochs}  loss {metrics[METRIC_TRAIN_LOSS]:.4f}  "
            f"mIoU {metrics[METRIC_MIOU]:.4f}  pixel acc {metrics[METRIC_PIXEL_ACCURACY]:.4f}  "
            f"{metrics['epoch_seconds']:.1f}s"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def summary(result) -> str:
    """The closing line: device, mIoU and the cost; annotation cost relative to dense labels."""
    cost = result.cost
    return (
        f"done on {result.device}: mIoU {result.metrics[METRIC_MIOU]:.4f}  GFLOPs {cost['gflops']:.3f} "
        f"(decoder {cost['decoder_gflops']:.3f})  params {cost['params_m']:.2f}M  "
        f"latency {cost['latency_ms']:.1f} ms  relative annotation units {cost['relative_annotation_units']:.4f}"
    )


def run(args: argparse.Namespace) -> int:
    from segcore.train import fit, result_to_dict, validate_config

    cfg = validate_config(build_config(args))  # errors before any data is opened
    progress = TrainingProgress(cfg.epochs)
    progress.say(
        f"training {cfg.network} on {cfg.dataset}: grid_stride={cfg.grid_stride} loss_at={cfg.loss_at} "
        f"keep={cfg.keep} ({cfg.truncation}) block={cfg.block} ({cfg.block_mode}), {cfg.epochs} epoch(s)"
    )
    try:
        result = fit(cfg, progress.epoch, resume_from=args.resume, on_batch=progress.batch)
    finally:
        progress.close()
    progress.say(summary(result))
    text = json.dumps(result_to_dict(result), indent=2)
    if args.out is not None:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        progress.say(f"result written to {out}")
    else:
        progress.say(text)
    if args.samples is not None and result.samples is not None:
        from PIL import Image

        Image.fromarray(result.samples).save(args.samples)
        progress.say(f"sample panel written to {args.samples}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="train, evaluate and cost one configuration (network x grid x keep x block)",
        description="Train one network with the three knobs, evaluate on dense labels every epoch, "
        "measure its cost, and write a result JSON (metrics, cost, resolved config).",
    )
    p.add_argument("--config", help="YAML file of TrialConfig fields (flags override it)")
    p.add_argument("--network", help="registered network, e.g. deeplabv3plus, dan, unet, *_tiny")
    p.add_argument("--backbone", help="backbone (resnet18|resnet50|resnet101|mobilenet_v3_large)")
    p.add_argument("--dataset", help="dataset name (synthetic, camvid, folder, ...)")
    p.add_argument("--root", help="dataset root folder")
    p.add_argument("--grid-stride", type=int, help="stride of the logit grid")
    p.add_argument("--loss-at", choices=["grid", "full"], help="loss on the grid (soft targets) or full size")
    p.add_argument("--keep", type=float, help="share of decoder-feature frequencies kept per axis, (0, 1]")
    p.add_argument("--truncation", choices=["fft", "resize"], help="decoder truncation: fft or resize")
    p.add_argument("--block", type=int, help="annotation block size of the training labels (1 = dense)")
    p.add_argument("--block-mode", choices=["hard", "soft"], help="block label: majority or proportions")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--optimizer", choices=["sgd", "adamw"])
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--image-scale", type=float, help="resize factor of images and labels, e.g. 0.25")
    p.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), help="random training crop")
    p.add_argument("--no-hflip", action="store_true", help="no random horizontal flips")
    p.add_argument("--max-train-batches", type=int)
    p.add_argument("--max-val-batches", type=int)
    p.add_argument("--train-split")
    p.add_argument("--val-split")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--num-workers", type=int)
    p.add_argument("--weights", help="local state dict / checkpoint.pt for the whole network")
    p.add_argument("--weights-backbone", help="torchvision weights name for the backbone")
    p.add_argument("--option", action="append", metavar="KEY=VALUE", help="model option, e.g. output_stride=8")
    p.add_argument("--dataset-option", action="append", metavar="KEY=VALUE", help="dataset option, e.g. num_samples=32")
    p.add_argument("--checkpoint-dir", help="keep a checkpoint per epoch under DIR/epoch_E")
    p.add_argument("--resume", help="checkpoint directory to resume from")
    p.add_argument("--out", help="result JSON file (default: print it)")
    p.add_argument("--samples", help="PNG file for the sample panel: image | labels | prediction, with a class legend")
    p.set_defaults(func=run)
