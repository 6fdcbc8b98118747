"""What ``keep`` saves in the decoder, FFTs included: decoder and FFT GFLOPs at keep 1, 0.5, 0.25.

For every network (the full ones with their default backbones, and the ``*_tiny`` variants), both
truncations (``fft``, ``resize``) and each grid stride asked for, this counts one synthetic image's
forward FLOPs with :func:`segcore.cost.count_flops` (FFTs at 5 N log2 N per complex transform, half
for real ones) and prints, side by side, ``decoder_gflops`` and ``fft_gflops`` at each keep with the
decoder's ratio to keep 1. Nothing is trained: FLOPs depend only on the shapes. The figures are
written to ``benchmarks/results/cost_keep.json``.

    PYTHONPATH=. python benchmarks/cost_keep.py [--size 64] [--strides 4 8] [--networks ...]

The aim the ratios are read against: keep 0.5 cuts the decoder's GFLOPs, FFTs included, by at least
65% (ratio <= 0.35). U-Net at grid stride ``2**depth`` (8 for ``unet_tiny``, 16 for ``unet``) cannot
meet it: its decoder is only the 1x1 classifier, so the truncation has nothing to shrink but adds
its FFTs.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from segcore.cost import count_flops
from segcore.formatting import format_table, jsonable
from segcore.models import create_model

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "cost_keep.json"
NETWORKS = ["deeplabv3plus", "dan", "unet", "deeplabv3plus_tiny", "dan_tiny", "unet_tiny"]
KEEPS = (1.0, 0.5, 0.25)
AIM_RATIO = 0.35  # keep 0.5 cuts the decoder's GFLOPs by at least 65%
NUM_CLASSES = 11


def measure(network: str, stride: int, truncation: str, size: tuple[int, int]) -> dict | None:
    """Decoder and FFT GFLOPs of ``network`` at each of :data:`KEEPS`; None if it cannot produce
    ``stride``."""
    row: dict = {"network": network, "grid_stride": stride, "truncation": truncation}
    for keep in KEEPS:
        try:
            model = create_model(network, NUM_CLASSES, grid_stride=stride, keep=keep, truncation=truncation)
        except ValueError:  # a grid stride this network cannot produce
            return None
        flops = count_flops(model, size)
        row[f"decoder_gflops_keep{keep:g}"] = flops.decoder / 1e9
        row[f"fft_gflops_keep{keep:g}"] = flops.fft / 1e9
        row.setdefault("gflops_keep1", flops.total / 1e9)
    dense = row["decoder_gflops_keep1"]
    for keep in KEEPS[1:]:
        row[f"decoder_ratio_keep{keep:g}"] = row[f"decoder_gflops_keep{keep:g}"] / dense
    row["meets_aim"] = row["decoder_ratio_keep0.5"] <= AIM_RATIO
    return row


def table(rows: list[dict]) -> str:
    columns = ["network", "stride", "trunc", "dec k1", "dec k0.5", "fft k0.5", "dec k0.25", "fft k0.25",
               "x k0.5", "x k0.25", "aim"]
    cells = [
        [r["network"], r["grid_stride"], r["truncation"], r["decoder_gflops_keep1"], r["decoder_gflops_keep0.5"],
         r["fft_gflops_keep0.5"], r["decoder_gflops_keep0.25"], r["fft_gflops_keep0.25"],
         r["decoder_ratio_keep0.5"], r["decoder_ratio_keep0.25"], "yes" if r["meets_aim"] else "NO"]
        for r in rows
    ]
    return format_table(columns, cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[64], help="image H [W] (default 64 x 64)")
    parser.add_argument("--strides", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--networks", nargs="+", default=NETWORKS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = (args.size[0], args.size[-1])
    start = time.perf_counter()
    rows = []
    for stride in args.strides:
        for network in args.networks:
            for truncation in ("fft", "resize"):
                row = measure(network, stride, truncation, size)
                if row is not None:
                    rows.append(row)
    print(f"decoder and FFT GFLOPs of one {size[0]}x{size[1]} image, {NUM_CLASSES} classes; "
          f"x k: decoder GFLOPs (FFTs included) over keep 1; aim: x k0.5 <= {AIM_RATIO}")
    print(table(rows))
    payload = {
        "benchmark": "cost_keep",
        "image_size": list(size),
        "num_classes": NUM_CLASSES,
        "keeps": list(KEEPS),
        "aim_decoder_ratio_keep0.5": AIM_RATIO,
        "fft_flops": "5 N log2 N per complex transform of N points (N the product of the transformed sizes), "
                     "half for real-input or real-output transforms",
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "total_seconds": time.perf_counter() - start,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(jsonable(payload), indent=2) + "\n")
    print(f"\n{len(rows)} rows in {payload['total_seconds']:.0f}s; written to {args.out}")


if __name__ == "__main__":
    main()
