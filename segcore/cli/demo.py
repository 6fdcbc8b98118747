"""``segcore demo``: the whole product on one machine with no set-up, in a couple of minutes.

Synthetic scenes (or CamVid with ``--camvid DIR``) -> the training-free spectral analysis -> a small
multi-objective sweep over the three tiny networks on a local Ray instance -> every trial recorded
in MLflow (``sqlite:///mlflow.db``) -> a summary table and the Pareto front -> the ``mlflow ui``
command to browse it all. The sweep is :data:`DEMO_SPEC` (the same as ``sweeps/demo.yaml``).
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

COMMAND = "demo"
ORDER = 5

#: The demo sweep; ``sweeps/demo.yaml`` holds the same fields (a test keeps them equal).
DEMO_SPEC = """\
name: demo
dataset:
  name: synthetic
  options: {num_samples: 64, size: [64, 64], num_classes: 4, cutoff: 0.03125}
networks: [deeplabv3plus_tiny, dan_tiny, unet_tiny]
space:
  grid_stride: [2, 4, 8]
  keep: [0.5, 1.0]
  block: [1, 8]
  truncation: fft
  block_mode: hard
  loss_at: full
train:
  batch_size: 8
  lr: 0.005
  max_val_batches: 2
objectives: {miou: max, gflops: min}
search: {algorithm: optuna, sampler: nsga2, population_size: 4}
num_samples: 10
max_concurrent: 2
max_failures: 0
resources: {cpu: 1, gpu: 0}
epochs: 4
storage_path: ray_results
tracking_uri: sqlite:///mlflow.db
experiment: demo
seed: 0
spectral: {enabled: true, split: train, strides: [1, 2, 4, 8, 16], blocks: [1, 2, 4, 8, 16], tolerance: 0.05, energy_threshold: 0.9}
"""

# CamVid at a quarter of its size (120 x 90): the same sweep stays CPU-sized on real street scenes.
_CAMVID_DATASET = {"name": "camvid", "image_scale": 0.25}
_CAMVID_SPECTRAL_LIMIT = 96
_CAMVID_TRAIN = {"max_train_batches": 8, "max_val_batches": 4}


def _demo_defaults() -> dict:
    """The embedded demo spec as a dict (``--help`` states its trial and epoch counts)."""
    import yaml

    return yaml.safe_load(DEMO_SPEC)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        COMMAND,
        help="spectral analysis + a small sweep on local Ray + MLflow + Pareto front, in minutes",
        description="Run the whole pipeline on this machine: spectral analysis of the labels, a small "
        "multi-objective sweep over the three tiny networks on a local Ray instance, every trial "
        "recorded in MLflow (sqlite:///mlflow.db in --out), then the summary and the Pareto front.",
    )
    parser.add_argument("--camvid", metavar="DIR", help="use CamVid at DIR (SegNet layout) instead of synthetic scenes")
    parser.add_argument("--out", metavar="DIR", default=".", help="where mlflow.db and ray_results/ go (default: here)")
    defaults = _demo_defaults()
    parser.add_argument("--trials", type=int, help=f"number of trials (default {defaults['num_samples']}, as sweeps/demo.yaml)")
    parser.add_argument("--epochs", type=int, help=f"epochs per trial (default {defaults['epochs']}, as sweeps/demo.yaml)")
    parser.add_argument("--cpus", type=int, help="CPUs of the local Ray instance (default: all)")
    parser.set_defaults(func=main)


def demo_spec(out: Path, *, camvid: str | None = None, trials: int | None = None, epochs: int | None = None):
    """The demo's sweep spec, with a fresh sweep name and everything stored under ``out``."""
    from segcore.tune.validate import load_sweep

    data = _demo_defaults()
    # A fresh name per run: `make demo` twice gives two sweeps (parent runs) side by side in the
    # same MLflow experiment instead of refusing to overwrite the first.
    data["name"] = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
    data["storage_path"] = str(out / "ray_results")
    data["tracking_uri"] = f"sqlite:///{out / 'mlflow.db'}"
    if camvid:
        data["dataset"] = dict(_CAMVID_DATASET, root=camvid)
        data["spectral"]["limit"] = _CAMVID_SPECTRAL_LIMIT
        # 367 training images: a few batches per epoch keep the demo within minutes on a CPU.
        data["train"].update(_CAMVID_TRAIN)
    if trials is not None:
        data["num_samples"] = trials
    if epochs is not None:
        data["epochs"] = epochs
    return load_sweep(data)


def spectrum_table(spectrum: dict) -> str:
    """Stride | band energy | oracle mIoU (soft, majority) | CE floor, and the efficient grid."""
    from segcore.formatting import format_table

    columns = {
        "stride": spectrum["strides"],
        "band_energy": spectrum["band_energy"],
        "band_energy_no_dc": spectrum["band_energy_no_dc"],
        "oracle_miou_soft": spectrum["oracle_miou"]["soft"],
        "oracle_miou_majority": spectrum["oracle_miou"]["majority"],
        "ce_floor": spectrum["ce_floor"],
    }
    grid = spectrum["efficient_grid"]
    return (
        format_table(list(columns), zip(*columns.values()))
        + f"\nefficient grid, predicted from labels alone: stride {grid['by_miou']} (oracle mIoU within "
        f"{spectrum['tolerance']:.0%} of dense), stride {grid['by_energy']} (band energy >= {spectrum['energy_threshold']:g})"
    )


def main(args: argparse.Namespace) -> int:
    from segcore.analysis import pareto_front
    from segcore.cli._tables import frame_table
    from segcore.tune import best_per_network, completed, run_sweep

    t0 = time.monotonic()
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    spec = demo_spec(out, camvid=args.camvid, trials=args.trials, epochs=args.epochs)
    data = f"CamVid at {spec.dataset.root}" if args.camvid else "synthetic scenes (64 x 64, 4 classes, label cut-off 1/32 cycles per pixel)"
    print(
        f"segcore demo: {data}; {spec.num_trials()} trials of {', '.join(spec.networks)} x grid stride x keep x block, "
        f"{spec.epochs} epoch(s) each, on local Ray; MLflow in {out / 'mlflow.db'}",
        flush=True,
    )
    outcome = run_sweep(spec, address="local", num_cpus=args.cpus)
    df = outcome.trials
    objectives = spec.objectives
    knobs = [k for k in spec.searched_knobs() if k != "network"]
    cols = ["network", "trial_id", *knobs, *objectives, "annotation_units", "status"]

    if outcome.spectrum:
        print("\nspectral analysis (training-free, labels only):")
        print(spectrum_table(outcome.spectrum))
    print(f"\nall trials ({len(df)}), best mIoU first:")
    print(frame_table(df.sort_values("miou", ascending=False, na_position="last"), cols, empty="(no trials)"))
    print("\nbest trial per network:")
    print(frame_table(best_per_network(df, objectives), cols, empty="(no trials)"))
    done = completed(df, objectives)
    if not done.empty:
        front = pareto_front(done, objectives=objectives)
        print(f"\nPareto front ({', '.join(f'{m} {mode}' for m, mode in objectives.items())}): {len(front)} of {len(done)} trials")
        print(frame_table(front, cols))
    failed = df[df["status"] == "failed"]
    for _, row in failed.iterrows():
        print(f"failed: trial {row['trial_id']} ({row['network']}): {row['error']}")

    from segcore.tracking.links import browse_command, experiment_runs_url

    here = Path.cwd().resolve() == out
    browse = browse_command("sqlite:///mlflow.db")
    print(f"\ndone in {time.monotonic() - t0:.0f} s: {len(done)} completed trial(s) recorded in MLflow "
          f"(experiment {spec.experiment_name!r}, sweep {spec.name!r}). Browse them with:")
    print(f"  {browse}" if here else f"  cd {shlex.quote(str(out))} && {browse}")
    link = experiment_runs_url(spec.tracking_uri, spec.experiment_name)
    print(f"then open {link} (compare the child runs of the sweep's parent run).")
    return 0 if not done.empty else 1
