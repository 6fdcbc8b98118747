"""What the sweep service costs: the same short trials through ``segcore.tune`` (Ray Tune + MLflow)
and in a plain loop calling ``segcore.train.fit``, side by side in one run.

Prints and writes (``benchmarks/results/overhead.json``):

* ``plain``: each trial's ``fit`` wall time in a plain loop (one thread, like a 1-CPU trial);
* ``sweep``: Ray start-up (once) and the sweep's wall time with ``max_concurrent`` slots;
* per-trial overhead = slot time per trial in the sweep (``slots * wall / trials``) minus the plain
  ``fit`` time, and the ratio of the two;
* the share of slot time busy with trial work (sum of plain ``fit`` times over ``slots * wall``);
* where the time goes, from the MLflow record and Tune's results: sweep set-up before the first
  trial, trial start-up before the first epoch, time inside trials beyond ``fit``, gaps between
  trials, and the sweep's tail after the last trial.

Usage::

    PYTHONPATH=. python benchmarks/overhead.py [--trials 8] [--epochs 2] [--slots 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no internet: no telemetry waits

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "overhead.json"


def sweep_spec(workdir: Path, trials: int, epochs: int, slots: int, size: int = 32,
               batches: int = 3) -> dict:
    """A grid sweep of ``trials`` tiny U-Net trials on synthetic scenes, CPU only."""
    strides = [1, 2, 4, 8]
    keeps = [1.0, 0.5, 0.75, 0.25][: max(1, -(-trials // len(strides)))]
    return {
        "name": "overhead",
        "dataset": {"name": "synthetic",
                    "options": {"num_samples": 4 * batches + 4, "size": [size, size],
                                "num_classes": 4}},
        "networks": ["unet_tiny"],
        "space": {"grid_stride": strides[: min(trials, 4)], "keep": keeps},
        "train": {"batch_size": 4, "max_train_batches": batches, "max_val_batches": 1,
                  "amp": False},
        "objectives": {"miou": "max", "gflops": "min"},
        "search": {"algorithm": "grid"},
        "num_samples": 1,
        "max_concurrent": slots,
        "max_failures": 0,
        "resources": {"cpu": 1, "gpu": 0},
        "epochs": epochs,
        "storage_path": str(workdir / "ray_results"),
        "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        "experiment": "overhead",
        "spectral": {"enabled": False},
    }


def store_creation(workdir: Path) -> dict:
    """A new SQLite store: MLflow's own creation (all schema migrations) vs the writer's copy of
    the cached empty store, each in a fresh subprocess (imports included in both)."""
    import subprocess

    code = ("import sys, time; from mlflow import MlflowClient; "
            "from segcore.tracking.store import new_sqlite_store; from pathlib import Path; "
            "t = time.perf_counter(); p = Path(sys.argv[1]); "
            "new_sqlite_store(p) if sys.argv[2] == 'copy' else None; "
            "MlflowClient('sqlite:///' + str(p)).search_experiments(); "
            "print(time.perf_counter() - t)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = {}
    for mode in ("copy", "mlflow"):  # "copy" first: it builds the cached store if missing
        db = workdir / f"store-{mode}.db"
        proc = subprocess.run([sys.executable, "-c", code, str(db), mode], env=env,
                              capture_output=True, text=True, check=True)
        out[f"{mode}_s"] = float(proc.stdout.strip().splitlines()[-1])
    return out


def run_plain(spec) -> list[dict]:
    """Each trial's config through ``fit`` in a loop: wall time and its epochs' time."""
    import torch

    from segcore.train import fit

    torch.set_num_threads(1)  # a trial gets one CPU in the sweep
    rows = []
    for point in spec.grid():
        config = dict(spec.trial_config({"network": spec.networks[0], **point}), device="cpu")
        epochs: list[float] = []
        t0 = time.perf_counter()
        fit(config, lambda metrics, _ckpt: epochs.append(metrics.get("epoch_seconds", 0.0)))
        rows.append({"config": point, "fit_s": time.perf_counter() - t0,
                     "epochs_s": sum(epochs)})
        print(f"  plain {point}: {rows[-1]['fit_s']:.2f} s", flush=True)
    return rows


def run_tuned(spec, slots: int) -> dict:
    """The sweep through ``segcore.tune.run_sweep`` on a local Ray started (and timed) here."""
    import ray

    from segcore.tune import run_sweep
    from segcore.tune.runner import connect

    t0 = time.perf_counter()
    connect("local", num_cpus=max(2, slots))
    ray_start_s = time.perf_counter() - t0
    t1 = time.time()
    t0 = time.perf_counter()
    try:
        outcome = run_sweep(spec, address="local", progress=False, log=lambda _msg: None)
    finally:
        wall = time.perf_counter() - t0
        ray.shutdown()
    return {"ray_start_s": ray_start_s, "wall_s": wall, "start_epoch_s": t1,
            "trials": len(outcome.trials),
            "completed": int((outcome.trials["status"] == "completed").sum())}


def _tune_trial_starts(storage: Path) -> dict[str, float]:
    """When each trial's function started (Tune's first result: ``timestamp - time_total_s``)."""
    starts = {}
    for result_file in storage.glob("*/result.json"):
        lines = [ln for ln in result_file.read_text().splitlines() if ln.strip()]
        if lines:
            first = json.loads(lines[0])
            starts[first["trial_id"]] = first["timestamp"] - first["time_total_s"]
    return starts


def record_timeline(uri: str, storage: Path, start: float, wall: float, slots: int) -> dict:
    """Where the sweep's time went, from the MLflow record and Tune's per-trial results.

    Per trial: ``function start`` (Tune) -> ``run opened`` (the MLflow child run created by the
    trial's background writer) -> ``first epoch`` (its first metric) -> ``run closed``.
    """
    from mlflow import MlflowClient

    from segcore.tracking import schema

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("overhead")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_SWEEP][0]
    tune_starts = _tune_trial_starts(storage)
    spans = []
    for run in runs:
        if run.data.tags.get(schema.TAG_ROLE) != schema.ROLE_TRIAL:
            continue
        history = client.get_metric_history(run.info.run_id, "epoch_seconds")
        begin, end = run.info.start_time / 1000, run.info.end_time / 1000
        trial_start = tune_starts.get(run.data.tags[schema.TAG_TRIAL_ID], begin)
        first_epoch = min((m.timestamp for m in history), default=run.info.end_time) / 1000
        spans.append({"trial_start": trial_start, "run_open": begin, "end": end,
                      "first_epoch_end": first_epoch, "epochs_s": sum(m.value for m in history)})
    spans.sort(key=lambda s: s["trial_start"])
    busy = sum(s["end"] - s["trial_start"] for s in spans)
    return {
        "parent_run_open_s": parent.info.start_time / 1000 - start,
        "first_trial_function_start_s": spans[0]["trial_start"] - start,
        "tail_after_last_trial_s": start + wall - max(s["end"] for s in spans),
        "trial_function_s_sum": busy,
        "function_start_to_run_open_s_mean": statistics.mean(
            s["run_open"] - s["trial_start"] for s in spans),
        "function_start_to_first_epoch_s_mean": statistics.mean(
            s["first_epoch_end"] - s["trial_start"] for s in spans),
        "epochs_s_sum": sum(s["epochs_s"] for s in spans),
        "gaps_between_trials_s_sum": slots * wall - busy,
        "first_trial_end_s": min(s["end"] for s in spans) - start,
        "last_trial_end_s": max(s["end"] for s in spans) - start,
        "runs": len(spans),
        "per_trial": [{"function_start_s": round(s["trial_start"] - start, 3),
                       "run_open_s": round(s["run_open"] - start, 3),
                       "first_epoch_end_s": round(s["first_epoch_end"] - start, 3),
                       "end_s": round(s["end"] - start, 3)} for s in spans],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--slots", type=int, default=1, help="max_concurrent of the sweep")
    parser.add_argument("--size", type=int, default=32, help="image side (pixels)")
    parser.add_argument("--batches", type=int, default=3, help="training batches per epoch")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    from segcore.config.sweep import load_sweep_spec

    with tempfile.TemporaryDirectory(prefix="segcore-overhead-") as tmp:
        workdir = Path(tmp)
        spec = load_sweep_spec(sweep_spec(workdir, args.trials, args.epochs, args.slots,
                                          args.size, args.batches))
        n = len(spec.grid())
        stores = store_creation(workdir)
        print(f"new MLflow SQLite store: {stores['mlflow_s']:.2f} s by MLflow's migrations, "
              f"{stores['copy_s']:.2f} s as a copy of the cached empty store", flush=True)
        print(f"{n} trials x {args.epochs} epochs, {args.slots} slot(s); plain loop ...", flush=True)
        plain = run_plain(spec)
        print("sweep (Ray Tune + MLflow) ...", flush=True)
        tuned = run_tuned(spec, args.slots)
        # The machine is shared: the plain loop runs again after the sweep, and each trial's
        # faster run counts (load that came and went is not charged to either side).
        print("plain loop again ...", flush=True)
        for row, again in zip(plain, run_plain(spec)):
            row["fit_s_runs"] = [row["fit_s"], again["fit_s"]]
            row["fit_s"] = min(row["fit_s"], again["fit_s"])
        timeline = record_timeline(spec.tracking_uri, workdir / "ray_results" / "overhead",
                                   tuned["start_epoch_s"], tuned["wall_s"], args.slots)

    plain_total = sum(r["fit_s"] for r in plain)
    plain_mean = plain_total / n
    slot_per_trial = args.slots * tuned["wall_s"] / n
    overhead = slot_per_trial - plain_mean
    busy = plain_total / (args.slots * tuned["wall_s"])
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1m": os.getloadavg()[0]},
        "trials": n, "epochs": args.epochs, "slots": args.slots,
        "plain": {"fit_s": [round(r["fit_s"], 3) for r in plain],
                  "fit_s_before_and_after": [[round(x, 3) for x in r["fit_s_runs"]]
                                             for r in plain],
                  "total_s": plain_total,
                  "mean_s": plain_mean, "epochs_s_sum": sum(r["epochs_s"] for r in plain)},
        "sweep": {"ray_start_s": tuned["ray_start_s"], "wall_s": tuned["wall_s"],
                  "completed": tuned["completed"], "slot_s_per_trial": slot_per_trial},
        "new_sqlite_store_s": stores,
        "overhead_s_per_trial": overhead,
        "ratio_sweep_to_plain": slot_per_trial / plain_mean,
        "slots_busy_share": busy,
        "where_the_time_goes": {
            **timeline,
            # Inside trial functions, beyond what fit itself takes (reporting, checkpoints, the
            # MLflow writes' final flush).
            "in_trial_beyond_fit_s_per_trial": (timeline["trial_function_s_sum"] - plain_total) / n,
        },
    }
    # Once the first trial has ended (sweep set up, first worker warm): the cost of each further
    # trial, and the share of slot time then busy with trial work.
    steady_slot = args.slots * (timeline["last_trial_end_s"] - timeline["first_trial_end_s"]) / (n - 1)
    result["steady_overhead_s_per_trial"] = steady_slot - plain_mean
    result["steady_slots_busy_share"] = plain_mean / steady_slot
    result["fixed_cost_s"] = timeline["first_trial_end_s"] - plain_mean
    print(f"\nplain fit: {plain_mean:.2f} s/trial; sweep: {slot_per_trial:.2f} slot-s/trial "
          f"(+ Ray start {tuned['ray_start_s']:.1f} s once)")
    print(f"overhead: {overhead:.2f} s/trial, ratio {result['ratio_sweep_to_plain']:.2f}x, "
          f"slots busy {100 * busy:.0f}%")
    w = result["where_the_time_goes"]
    print(f"  sweep set-up: parent run open at {w['parent_run_open_s']:.2f} s, first trial "
          f"function at {w['first_trial_function_start_s']:.2f} s; tail after the last trial "
          f"{w['tail_after_last_trial_s']:.2f} s")
    print(f"  per trial: function start -> run open {w['function_start_to_run_open_s_mean']:.2f} s,"
          f" -> first epoch {w['function_start_to_first_epoch_s_mean']:.2f} s; in trial beyond "
          f"fit {w['in_trial_beyond_fit_s_per_trial']:.2f} s")
    print(f"  fixed cost until the first trial ends {result['fixed_cost_s']:.2f} s; after it: "
          f"{result['steady_overhead_s_per_trial']:.2f} s overhead per trial, slots busy "
          f"{100 * result['steady_slots_busy_share']:.0f}%")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
