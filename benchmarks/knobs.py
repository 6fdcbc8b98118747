"""The three knobs on real data: CamVid train -> val, a fixed short budget per setting.

For each network (tiny variants by default) this trains, side by side in one run and with the same
seed and budget, a baseline (grid stride 4, keep 1, dense labels) and one change of one knob at a
time: keep 0.5 with FFT and with resize truncation, block-8 hard labels, grid strides 2 and 8. It
prints mIoU, GFLOPs and decoder GFLOPs with their ratios to the baseline and writes the figures to
``benchmarks/results/knobs.json``.

    PYTHONPATH=. python benchmarks/knobs.py [--root ../shared/data/camvid] [--networks ...]

Budget (defaults, sized for a shared 2-core machine): images at 0.25 scale (90 x 120), 2 epochs of
12 batches of 8, scored on the first 64 validation images.
The short budget ranks settings against each other; it is not a converged accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from segcore.train import fit

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = Path(os.environ.get("SEGCORE_CAMVID", REPO.parent / "shared" / "data" / "camvid"))

# (label, knob overrides relative to the baseline)
SETTINGS = [
    ("baseline s4 keep1 dense", {}),
    ("keep 0.5 fft", {"keep": 0.5, "truncation": "fft"}),
    ("keep 0.5 resize", {"keep": 0.5, "truncation": "resize"}),
    ("block 8 hard", {"block": 8, "block_mode": "hard"}),
    ("grid stride 2", {"grid_stride": 2}),
    ("grid stride 8", {"grid_stride": 8}),
]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    base = dict(
        dataset="camvid", data_root=str(args.root), image_scale=args.scale, grid_stride=4, keep=1.0, block=1,
        epochs=args.epochs, batch_size=args.batch_size, max_train_batches=args.batches, lr=args.lr,
        max_val_batches=args.val_batches,
        optimizer="adamw", seed=0, device="cpu", cache_data=True, latency_repeats=5,
    )
    rows = []
    start = time.perf_counter()
    for network in args.networks:
        baseline = None
        for label, knobs in SETTINGS:
            config = dict(base, network=network, **knobs)
            t0 = time.perf_counter()
            result = fit(config)
            seconds = time.perf_counter() - t0
            m = result.metrics
            row = {
                "network": network, "setting": label, **{k: config[k] for k in ("grid_stride", "keep", "block")},
                "truncation": config.get("truncation", "fft"), "miou": m["miou"],
                "pixel_accuracy": m["pixel_accuracy"], "gflops": m["gflops"], "decoder_gflops": m["decoder_gflops"],
                "latency_ms": m["latency_ms"], "relative_annotation_units": m["relative_annotation_units"],
                "mixed_block_share": m["mixed_block_share"], "train_seconds": seconds,
            }
            if baseline is None:
                baseline = row
            row["miou_ratio"] = row["miou"] / baseline["miou"] if baseline["miou"] else float("nan")
            row["gflops_ratio"] = row["gflops"] / baseline["gflops"]
            row["decoder_gflops_ratio"] = row["decoder_gflops"] / baseline["decoder_gflops"]
            rows.append(row)
            print(
                f"{network:20s} {label:24s} mIoU {row['miou']:.4f} (x{row['miou_ratio']:.3f})  "
                f"GFLOPs {row['gflops']:.4f} (x{row['gflops_ratio']:.3f})  "
                f"decoder {row['decoder_gflops']:.4f} (x{row['decoder_gflops_ratio']:.3f})  {seconds:.0f}s",
                flush=True,
            )
    return {
        "benchmark": "knobs",
        "dataset": "camvid",
        "split": "train -> val",
        "budget": {k: base[k] for k in ("image_scale", "epochs", "batch_size", "max_train_batches", "max_val_batches", "lr", "optimizer")},
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__},
        "total_seconds": time.perf_counter() - start,
        "rows": rows,
    }


def table(payload: dict) -> str:
    """Markdown table of the rows, ratios relative to each network's baseline."""
    lines = [
        "| network | setting | mIoU | x base | GFLOPs | x base | decoder GFLOPs | x base | annot. units |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in payload["rows"]:
        lines.append(
            f"| {r['network']} | {r['setting']} | {r['miou']:.4f} | {r['miou_ratio']:.3f} | {r['gflops']:.4f} | "
            f"{r['gflops_ratio']:.3f} | {r['decoder_gflops']:.4f} | {r['decoder_gflops_ratio']:.3f} | "
            f"{r['relative_annotation_units']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="CamVid root (SegNet layout)")
    parser.add_argument("--networks", nargs="+", default=["deeplabv3plus_tiny", "dan_tiny", "unet_tiny"])
    parser.add_argument("--scale", type=float, default=0.25, help="image scale (0.25: 90 x 120)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batches", type=int, default=12, help="training batches per epoch")
    parser.add_argument("--val-batches", type=int, default=8, help="validation batches (of --batch-size)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "knobs.json")
    args = parser.parse_args()
    if not (args.root / "trainannot").is_dir():
        raise SystemExit(f"CamVid not found at {args.root} (--root or $SEGCORE_CAMVID)")
    payload = run(args)
    print()
    print(table(payload))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\n{len(payload['rows'])} runs in {payload['total_seconds']:.0f}s; figures written to {args.out}")


if __name__ == "__main__":
    main()
