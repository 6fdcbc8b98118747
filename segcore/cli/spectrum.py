"""``segcore spectrum``: the training-free spectral analysis of a dataset's labels.

Prints a table and writes ``spectrum.json``, ``spectrum.csv`` and ``spectrum.png`` into ``--out``.
Outputs are written to a temporary folder beside ``--out`` and moved in only when everything
succeeded, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

from segcore.formatting import format_cell, format_table, jsonable, parse_key_values

COMMAND = "spectrum"
ORDER = 10

OUTPUT_FILES = ("spectrum.json", "spectrum.csv", "spectrum.png")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        COMMAND,
        help="training-free spectral curves, oracle mIoU and the efficient grid of a dataset's labels",
        description="From the label maps alone: band energy E(s) per grid stride, radial spectrum, "
        "oracle mIoU of each grid (soft + bilinear, majority + nearest), CE floor, oracle mIoU and "
        "cost of block annotation, and the efficient grid (docs/design.md, Science).",
    )
    p.add_argument("--dataset", required=True, help="dataset name (camvid, cityscapes, voc, ade20k, folder, synthetic)")
    p.add_argument("--root", default=None, help="dataset folder (not needed for synthetic)")
    p.add_argument("--split", default="train", help="split to analyse (default: train)")
    # Defaults (None) are segcore.spectral's DEFAULT_STRIDES / DEFAULT_BLOCKS, read when the command runs
    # so that --help does not import torch.
    p.add_argument("--strides", type=int, nargs="+", default=None, metavar="S",
                   help="grid strides (default: 1 2 4 8 16 32)")
    p.add_argument("--blocks", type=int, nargs="+", default=None, metavar="B",
                   help="annotation block sizes (default: 1 2 4 8 16 32)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="analyse only the first N labels")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="relative mIoU loss allowed for the efficient grid (default: 0.01)")
    p.add_argument("--energy-threshold", type=float, default=0.95,
                   help="band-energy share the efficient grid must keep (default: 0.95)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: spectrum/DATASET-SPLIT)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--workers", type=int, default=None, help="label-decoding threads")
    p.add_argument("--labels-only", action="store_true",
                   help="open the labels only (skips the image/label size check; for label-only trees)")
    p.add_argument("--dataset-option", action="append", default=None, metavar="KEY=VALUE",
                   help="extra dataset argument, e.g. num_classes=5 for 'folder', cutoff=0.05 for 'synthetic'")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _dataset_options(items: list[str] | None) -> dict:
    """``--dataset-option`` items as keyword arguments; lists become tuples (sizes)."""
    options = parse_key_values(items, "--dataset-option")
    return {key: tuple(value) if isinstance(value, list) else value for key, value in options.items()}


def _check_args(args: argparse.Namespace) -> Path:
    """Option checks that need no data; returns the output folder."""
    for option, sizes in (("--strides", args.strides), ("--blocks", args.blocks)):
        bad = [s for s in sizes or () if s < 1]
        if bad:
            raise ValueError(f"{option}: sizes must be integers >= 1, got {bad[0]}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    if not 0 <= args.tolerance < 1:
        raise ValueError(f"--tolerance must be in [0, 1), got {args.tolerance}")
    if not 0 < args.energy_threshold <= 1:
        raise ValueError(f"--energy-threshold must be in (0, 1], got {args.energy_threshold}")
    if args.root is not None and not Path(args.root).exists():
        raise FileNotFoundError(f"--root {args.root} does not exist")
    out = Path(args.out) if args.out else Path("spectrum") / f"{args.dataset}-{args.split}"
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    return out


CSV_COLUMNS = (
    "size", "band_energy", "band_energy_no_dc", "oracle_miou_soft", "oracle_miou_majority", "ce_floor",
    "block_oracle_miou_hard", "block_oracle_miou_soft", "annotation_units_per_image",
    "annotation_relative_units", "mixed_block_share",
)


def write_csv(result, path: Path) -> None:
    """One row per size (union of strides and blocks); grid columns are empty for a size that is
    only a block size, and the other way round."""
    rows: dict[int, dict] = {}
    for row in result.stride_rows():
        rows.setdefault(row.pop("stride"), {}).update(row)
    for row in result.block_rows():
        rows.setdefault(row.pop("block"), {}).update(row)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for size in sorted(rows):
            writer.writerow({"size": size, **{k: ("" if v is None else v) for k, v in rows[size].items()}})


STRIDE_COLUMNS = {
    "stride": "stride", "band_energy": "E(s)", "band_energy_no_dc": "E no DC", "oracle_miou_soft": "oracle soft",
    "oracle_miou_majority": "oracle major", "ce_floor": "CE floor",
}
BLOCK_COLUMNS = {
    "block": "block", "block_oracle_miou_hard": "oracle hard", "block_oracle_miou_soft": "oracle soft",
    "annotation_units_per_image": "units/img", "annotation_relative_units": "rel. units",
    "mixed_block_share": "mixed",
}


def render_table(result) -> str:
    """The terminal report: grid quantities per stride, annotation quantities per block size, the
    efficient grid and block, and the time taken."""
    rate = result.num_labels / max(result.elapsed_s, 1e-9)
    return "\n".join([
        f"{result.dataset} / {result.split}: {result.num_labels} labels, {result.num_classes} classes, "
        f"ignore {result.ignore_index}, {result.valid_pixels} valid pixels, DC share {format_cell(result.dc_share)}",
        "",
        format_table(STRIDE_COLUMNS.values(), ([row[k] for k in STRIDE_COLUMNS] for row in result.stride_rows())),
        "",
        format_table(BLOCK_COLUMNS.values(), ([row[k] for k in BLOCK_COLUMNS] for row in result.block_rows())),
        "",
        f"efficient grid: stride {result.efficient_grid_by_miou} by oracle mIoU (within "
        f"{result.tolerance:.1%} of dense), stride {result.efficient_grid_by_energy} by band energy "
        f"(E(s) >= {result.energy_threshold:g}); efficient block: {result.efficient_block}",
        f"time: {result.elapsed_s:.1f} s on {result.device} ({rate:.1f} labels/s)",
    ])


def run(args: argparse.Namespace) -> int:
    out = _check_args(args)
    from segcore.data import build_dataset
    from segcore.spectral import DEFAULT_BLOCKS, DEFAULT_STRIDES, analyze, plot_spectrum

    options = _dataset_options(args.dataset_option)
    dataset = build_dataset(args.dataset, args.root, args.split, labels_only=args.labels_only, **options)
    try:
        result = analyze(
            dataset,
            strides=args.strides or DEFAULT_STRIDES,
            blocks=args.blocks or DEFAULT_BLOCKS,
            tolerance=args.tolerance,
            energy_threshold=args.energy_threshold,
            limit=args.limit,
            device=args.device,
            progress=not args.no_progress,
            workers=args.workers,
        )
    except ValueError as exc:
        message = str(exc)
        if message.startswith(("strides:", "blocks:")):  # name the command-line option
            raise ValueError(f"--{message}") from exc
        raise
    # Everything is rendered into a temporary folder first: a failure leaves --out untouched.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        document = jsonable(result.to_dict())
        (staging / "spectrum.json").write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")
        write_csv(result, staging / "spectrum.csv")
        plot_spectrum(result, staging / "spectrum.png")
        out.mkdir(parents=True, exist_ok=True)
        for name in OUTPUT_FILES:
            (staging / name).replace(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(render_table(result))
    print(f"wrote {', '.join(str(out / n) for n in OUTPUT_FILES)}", file=sys.stderr)
    return 0
