"""Labels per second of the full spectral analysis (all strides and blocks), segcore vs. a plain
reference, measured side by side in one run.

Sets: CamVid train (and val, for the "train + val" figure) from ../shared/data/camvid, and a
synthetic Cityscapes-sized set (1024 x 2048, 19 classes, 12 present per image, an ignored band at
the bottom like Cityscapes' ego vehicle), timed on a handful of labels and extrapolated to the
2975 labels of Cityscapes train.

The reference is what one would write first: NumPy float64, one ``fft2`` per class over the full
spectrum, and per size a resize of every class plane (area down, bilinear up, arg-max). It
computes each size once (block sizes equal to strides reuse the stride's numbers, as segcore does),
so the ratio is conservative. Its results are checked against segcore's on the labels it sees.

    PYTHONPATH=. python benchmarks/spectral.py [--camvid DIR] [--cityscapes-labels 4] [--quick]

Prints the figures and ratios and writes ``benchmarks/results/spectral.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from segcore import spectral
from segcore.data import InMemoryLabels, band_limited_labels, build_dataset

SIZES = (1, 2, 4, 8, 16, 32)
CITYSCAPES_TRAIN = 2975
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# The plain reference
# --------------------------------------------------------------------------------------------


def _bilinear_up(grid: np.ndarray, stride: int, height: int, width: int) -> np.ndarray:
    """``(C, h, w)`` -> ``(C, H, W)``, bilinear with ``align_corners=False`` (cell centres at
    ``(i + 0.5) s - 0.5``, clamped at the borders), like ``torch.nn.functional.interpolate``."""
    _, h, w = grid.shape

    def axis(n_out: int, n_in: int):
        src = np.clip((np.arange(n_out) + 0.5) / stride - 0.5, 0, None)
        i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, ly = axis(height, h)
    x0, x1, lx = axis(width, w)
    top = grid[:, y0][:, :, x0] * (1 - lx) + grid[:, y0][:, :, x1] * lx
    bottom = grid[:, y1][:, :, x0] * (1 - lx) + grid[:, y1][:, :, x1] * lx
    return top * (1 - ly)[:, None] + bottom * ly[:, None]


def reference_analysis(labels: list[np.ndarray], num_classes: int, ignore_index: int | None, sizes=SIZES) -> dict:
    """Band energy, oracle mIoU (soft / majority) and CE floor per size, the plain way."""
    c = num_classes
    band = {s: 0.0 for s in sizes}
    total = dc = 0.0
    conf_soft = {s: np.zeros((c, c), np.int64) for s in sizes}
    conf_major = {s: np.zeros((c, c), np.int64) for s in sizes}
    ce = {s: 0.0 for s in sizes}
    valid_pixels = 0
    for lab in labels:
        height, width = lab.shape
        valid = (lab >= 0) & (lab < c)
        if ignore_index is not None:
            valid &= lab != ignore_index
        planes = np.stack([((lab == k) & valid) for k in range(c)]).astype(np.float64)
        power = np.zeros((height, width))
        for k in range(c):  # one full-spectrum FFT per class
            power += np.abs(np.fft.fft2(planes[k], norm="ortho")) ** 2
        fy = np.abs(np.fft.fftfreq(height))[:, None]
        fx = np.abs(np.fft.fftfreq(width))[None, :]
        for s in sizes:
            band[s] += power[(fy <= 1 / (2 * s) + 1e-12) & (fx <= 1 / (2 * s) + 1e-12)].sum()
        total += power.sum()
        dc += power[0, 0]
        truth = np.where(valid, lab, 0)
        valid_pixels += int(valid.sum())
        for s in sizes:
            h, w = math.ceil(height / s), math.ceil(width / s)
            padded = np.zeros((c, h * s, w * s))
            padded[:, :height, :width] = planes
            counts = padded.reshape(c, h, s, w, s).sum(axis=(2, 4))  # area resize (sums)
            props = counts / np.maximum(counts.sum(0), 1)
            up = _bilinear_up(props, s, height, width)
            pred = up.argmax(0)
            np.add.at(conf_soft[s], (truth[valid], pred[valid]), 1)
            p = up / np.maximum(up.sum(0), 1e-30)
            p_true = np.take_along_axis(p, truth[None], 0)[0]
            ce[s] -= np.log(p_true[valid]).sum()
            major = counts.argmax(0)
            pred_major = np.repeat(np.repeat(major, s, 0), s, 1)[:height, :width]
            np.add.at(conf_major[s], (truth[valid], pred_major[valid]), 1)

    def miou(conf):
        tp = np.diag(conf).astype(np.float64)
        union = conf.sum(0) + conf.sum(1) - tp
        return float((tp[union > 0] / union[union > 0]).mean())

    return {
        "band_energy": [band[s] / total for s in sizes],
        "oracle_miou_soft": [miou(conf_soft[s]) for s in sizes],
        "oracle_miou_majority": [miou(conf_major[s]) for s in sizes],
        "ce_floor": [ce[s] / valid_pixels for s in sizes],
    }


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def agreement(result: spectral.SpectrumResult, ref: dict) -> dict:
    """Largest differences between segcore and the reference on the same labels."""
    return {
        "band_energy": max(abs(a - b) for a, b in zip(result.band_energy, ref["band_energy"])),
        # ties in the arg-max may break differently in float rounding: differences are pixels
        "oracle_miou_soft": max(abs(a - b) for a, b in zip(result.oracle_miou_soft, ref["oracle_miou_soft"])),
        "oracle_miou_majority": max(
            abs(a - b) for a, b in zip(result.oracle_miou_majority, ref["oracle_miou_majority"])
        ),
        "ce_floor": max(abs(a - b) for a, b in zip(result.ce_floor, ref["ce_floor"])),
    }


def cityscapes_like(count: int, seed: int = 0) -> list[torch.Tensor]:
    """1024 x 2048 label maps, 19 classes of which 12 per image, regions ~100 px, bottom 10% ignored."""
    g = torch.Generator().manual_seed(seed)
    maps = []
    for _ in range(count):
        lab = band_limited_labels((1024, 2048), 12, 1 / 128, g, shapes=6)
        lab = torch.randperm(19, generator=g)[:12][lab]
        lab[920:, :] = 255
        maps.append(lab)
    return maps


def bench_set(name: str, dataset, ref_labels: list[np.ndarray], num_classes: int, ignore: int | None,
              ref_count: int, analyse_limit: int | None = None) -> dict:
    n = len(dataset) if analyse_limit is None else min(len(dataset), analyse_limit)
    spectral.analyze(dataset, limit=min(2, n))  # warm-up: imports, caches, thread pools
    result, wall, cpu = timed(lambda: spectral.analyze(dataset, limit=analyse_limit))
    ref, ref_wall, ref_cpu = timed(lambda: reference_analysis(ref_labels, num_classes, ignore))
    same = spectral.analyze(InMemoryLabels([torch.from_numpy(x) for x in ref_labels], num_classes, ignore))
    fast_rate = n / wall
    ref_rate = ref_count / ref_wall
    row = {
        "labels": n,
        "segcore_seconds": wall,
        "segcore_cpu_seconds": cpu,
        "segcore_labels_per_s": fast_rate,
        "reference_labels": ref_count,
        "reference_seconds": ref_wall,
        "reference_cpu_seconds": ref_cpu,
        "reference_labels_per_s": ref_rate,
        "speedup": fast_rate / ref_rate,
        "speedup_cpu": (ref_cpu / ref_count) / (cpu / n),
        "max_abs_difference_vs_reference": agreement(same, ref),
        "efficient_grid": {"by_miou": result.efficient_grid_by_miou, "by_energy": result.efficient_grid_by_energy},
    }
    print(
        f"{name:<28} segcore {fast_rate:8.2f} labels/s ({n} in {wall:.1f} s, cpu {cpu:.1f} s) | "
        f"reference {ref_rate:7.3f} labels/s ({ref_count} in {ref_wall:.1f} s) | speedup {row['speedup']:.1f}x "
        f"(cpu time {row['speedup_cpu']:.1f}x)",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--camvid", default=os.environ.get("SEGCORE_CAMVID", str(REPO.parent / "shared" / "data" / "camvid")))
    parser.add_argument("--cityscapes-labels", type=int, default=4, help="synthetic 1024x2048 labels timed")
    parser.add_argument("--reference-camvid", type=int, default=8, help="CamVid labels the reference sees")
    parser.add_argument("--quick", action="store_true", help="CamVid limited to 48 labels (smoke run)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "spectral.json"))
    args = parser.parse_args()

    load_before = os.getloadavg()
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "load_average_before": load_before,
            "note": "shared machine: other jobs were running; wall times include their contention",
        },
        "sizes": list(SIZES),
    }
    camvid = Path(args.camvid)
    if (camvid / "trainannot").is_dir():
        limit = 48 if args.quick else None
        totals = {}
        for split in ("train", "val"):
            ds = build_dataset("camvid", camvid, split, labels_only=True)
            ref_labels = [ds.load_label(i).numpy() for i in range(args.reference_camvid)]
            row = bench_set(f"CamVid {split}", ds, ref_labels, 11, 11, len(ref_labels), limit)
            report[f"camvid_{split}"] = row
            totals[split] = row["segcore_seconds"]
        report["camvid_train_plus_val_seconds"] = sum(totals.values())
        print(f"CamVid train + val: {report['camvid_train_plus_val_seconds']:.1f} s (aim < 20 s)")
    else:
        print(f"CamVid not found at {camvid}: skipped")

    maps = cityscapes_like(args.cityscapes_labels)
    ds = InMemoryLabels(maps, 19, 255, name="cityscapes-like", split="train")
    row = bench_set("Cityscapes-sized (synthetic)", ds, [maps[0].numpy()], 19, 255, 1)
    row["extrapolated_cityscapes_train_seconds"] = CITYSCAPES_TRAIN / row["segcore_labels_per_s"]
    row["extrapolated_cityscapes_train_seconds_from_cpu_time_on_2_cores"] = (
        CITYSCAPES_TRAIN * row["segcore_cpu_seconds"] / row["labels"] / 2
    )
    row["set"] = "band_limited_labels(1024x2048, 12 of 19 classes, cutoff 1/128, 6 ellipses), rows 920+ ignored"
    report["cityscapes_like"] = row
    print(
        f"Cityscapes train ({CITYSCAPES_TRAIN} labels) extrapolated: "
        f"{row['extrapolated_cityscapes_train_seconds'] / 60:.1f} min wall "
        f"({row['extrapolated_cityscapes_train_seconds_from_cpu_time_on_2_cores'] / 60:.1f} min from CPU time / 2 cores; "
        "aim < 10 min)"
    )
    report["machine"]["load_average_after"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
