"""``segcore train``: one trial from the command line — progress per epoch, a result JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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


def _key_values(items: list[str] | None, flag: str) -> dict:
    import yaml

    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


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
        config["model_options"] = {**config.get("model_options", {}), **_key_values(args.option, "--option")}
    if args.dataset_option:
        config["dataset_options"] = {
            **config.get("dataset_options", {}), **_key_values(args.dataset_option, "--dataset-option")
        }
    return config


def run(args: argparse.Namespace) -> int:
    from segcore.train import fit, result_to_dict, validate_config

    config = build_config(args)
    cfg = validate_config(config)  # errors before any data is opened
    epochs = cfg.epochs

    def progress(metrics: dict, checkpoint_dir: str | None) -> None:
        print(
            f"epoch {int(metrics['epoch'])}/{epochs}  loss {metrics['train_loss']:.4f}  "
            f"mIoU {metrics['miou']:.4f}  pixel acc {metrics['pixel_accuracy']:.4f}  "
            f"{metrics['epoch_seconds']:.1f}s",
            flush=True,
        )

    print(
        f"training {cfg.network} on {cfg.dataset}: grid_stride={cfg.grid_stride} loss_at={cfg.loss_at} "
        f"keep={cfg.keep} ({cfg.truncation}) block={cfg.block} ({cfg.block_mode}), {epochs} epoch(s)",
        flush=True,
    )
    result = fit(cfg, progress, resume_from=args.resume)
    cost = result.cost
    print(
        f"done on {result.device}: mIoU {result.metrics['miou']:.4f}  GFLOPs {cost['gflops']:.3f} "
        f"(decoder {cost['decoder_gflops']:.3f})  params {cost['params_m']:.2f}M  "
        f"latency {cost['latency_ms']:.1f} ms  annotation units {cost['relative_annotation_units']:.4f}",
        flush=True,
    )
    payload = result_to_dict(result)
    text = json.dumps(payload, indent=2)
    if args.out is not None:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        print(f"result written to {out}")
    else:
        sys.stdout.write(text + "\n")
    if args.samples is not None and result.samples is not None:
        from PIL import Image

        Image.fromarray(result.samples).save(args.samples)
        print(f"sample panel written to {args.samples}")
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
    p.add_argument("--samples", help="PNG file for the image | truth | prediction panel")
    p.set_defaults(func=run)
