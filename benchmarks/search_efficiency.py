"""How much of an exhaustive sweep's front each search strategy finds, for how many trial-epochs.

A recorded exhaustive sweep (one row per trial and epoch, ``curves.csv``) is replayed through the
real Ray Tune searchers and schedulers (:func:`segcore.tune.replay.replay_sweep`: trials report the
recorded epochs instead of training) for each strategy and seed. After every trial end the
hypervolume of the full-length trials so far is taken, with one reference point placed from the
exhaustive table (:func:`segcore.analysis.pareto.reference_point`), as a share of the exhaustive
front's hypervolume, against the trial-epochs spent as a share of the exhaustive trial-epochs.

Strategies (each built from the base spec: its objectives, epochs, max_concurrent; the searched
space is the product of the knob values the table holds, so a configuration the table lacks is
skipped at no cost):

* ``grid``: every configuration in the spec's grid order (the same for every seed);
* ``random``: Ray's random sampling, as many draws as the space has configurations (repeats run);
* ``tpe``, ``nsga2``: Optuna (multi-objective TPE, NSGA-II) with segcore's dedupe;
* ``asha``: NSGA-II with Ray's ASHA on mIoU (one metric);
* ``mo_asha``: NSGA-II with MO-ASHA (non-dominated sorting over every objective);
* ``spectral``: the spectral prior (costs from the table, accuracy predicted from ``--spectrum``);
* ``spectral+mo_asha``: the spectral prior with MO-ASHA.

Every replay stops once it has spent the exhaustive trial-epochs. ``budget_share_to_99pct_hv`` is
the share of the exhaustive trial-epochs at which 99% of the exhaustive hypervolume was first
reached (``null`` in the JSON, ``never`` in the table, when a seed never reached it: the median and
quartiles, taken as sample values, count those seeds as infinitely late).

    PYTHONPATH=. python benchmarks/search_efficiency.py [--quick] [--resume]
    PYTHONPATH=. python benchmarks/search_efficiency.py --curves benchmarks/results/camvid_study/curves.csv \\
        --spectrum benchmarks/results/camvid_study/spectrum.json --spec sweeps/camvid-study.yaml \\
        --out benchmarks/results/search_efficiency_camvid.json

The demo table (``benchmarks/results/demo_curves.csv``, ``demo_spectrum.json``) was recorded once
with ``sweeps/demo.yaml`` run as an exhaustive grid (``search: {algorithm: grid}``, ``num_samples:
1``, ``max_concurrent: 1``, the same space, the spectral analysis on) into a temporary MLflow store
and read back with :func:`segcore.tracking.query.load_curves`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from segcore import names
from segcore.analysis.progress import budget_to_reach, replay_progress
from segcore.config.sweep import load_sweep_spec
from segcore.formatting import format_table, jsonable
from segcore.tune.replay import ReplayTable, exhaustive_front_input, read_curves, replay_sweep, start_local_ray

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TARGET = 0.99
#: The budget grid the seeds' curves are summarised on (shares of the exhaustive trial-epochs).
GRID = np.round(np.linspace(0.0, 1.0, 101), 4)

STRATEGIES: dict[str, dict[str, Any]] = {
    "grid": {"search": {"algorithm": "grid"}},
    "random": {"search": {"algorithm": "random"}},
    "tpe": {"search": {"algorithm": "optuna", "sampler": "tpe"}},
    "nsga2": {"search": {"algorithm": "optuna", "sampler": "nsga2"}},
    "asha": {"search": {"algorithm": "optuna", "sampler": "nsga2"},
             "scheduler": {"name": "asha", "metric": names.METRIC_MIOU, "grace_period": 1}},
    "mo_asha": {"search": {"algorithm": "optuna", "sampler": "nsga2"},
                "scheduler": {"name": "mo_asha", "grace_period": 1}},
    "spectral": {"search": {"algorithm": "spectral"}},
    "spectral+mo_asha": {"search": {"algorithm": "spectral"}, "scheduler": {"name": "mo_asha", "grace_period": 1}},
}
NEEDS_SPECTRUM = ("spectral", "spectral+mo_asha")


def table_space(table: ReplayTable) -> tuple[list[str], dict[str, Any]]:
    """The networks and the ``space`` whose product holds every recorded configuration."""
    frame = table.final_frame()
    networks = list(dict.fromkeys(str(n) for n in frame["network"]))
    space: dict[str, Any] = {}
    for knob in table.knobs:
        if knob == "network":
            continue
        values = [v for v in dict.fromkeys(frame[knob].tolist()) if v is not None and not _missing(v)]
        if not values:
            continue
        values = sorted(_plain(v) for v in values)
        space[knob] = values if len(values) > 1 else values[0]
    return networks, space


def _missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def strategy_spec(base: dict[str, Any], strategy: str, table: ReplayTable, seed: int, trial_scale: bool = False):
    networks, space = table_space(table)
    size = int(np.prod([len(v) if isinstance(v, list) else 1 for v in space.values()])) * len(networks)
    data = {k: v for k, v in base.items() if k not in ("search", "scheduler", "asha", "warm_start")}
    data.update(STRATEGIES[strategy], networks=networks, space=space, seed=seed,
                num_samples=1 if strategy == "grid" else size,
                spectral={**base.get("spectral", {}), "enabled": True})
    if trial_scale:  # the spectrum is of the labels at the trials' scale: strides are trial pixels
        data["dataset"] = {**data.get("dataset", {}), "image_scale": None}
    if data["search"].get("sampler") == "nsga2" and base.get("search", {}).get("population_size"):
        data["search"] = {**data["search"], "population_size": base["search"]["population_size"]}
    with tempfile.TemporaryDirectory() as tmp:  # paths in the spec are never used by a replay
        data.update(storage_path=tmp, tracking_uri=f"sqlite:///{tmp}/unused.db")
        return load_sweep_spec(data)


def run_one(base: dict, strategy: str, seed: int, table: ReplayTable, spectrum: dict | None,
            trial_scale: bool = False) -> dict[str, Any]:
    spec = strategy_spec(base, strategy, table, seed, trial_scale)
    total = table.trial_epochs()
    t0 = time.monotonic()
    outcome = replay_sweep(spec, table, missing="skip", budget_trial_epochs=total, spectrum=spectrum)
    elapsed = time.monotonic() - t0
    ends = outcome.finished_trials()
    progress = replay_progress(ends, exhaustive_front_input(table, spec.epochs), spec.objectives, total)
    budget = progress["budget_share"].round(6).tolist()
    share = progress["hypervolume_share"].round(6).tolist()
    return {
        "budget_share_to_99pct_hv": budget_to_reach(budget, share, TARGET),
        "final_hypervolume_share": share[-1] if share else 0.0,
        "trial_epochs": outcome.trial_epochs,
        "trials": len(ends),
        "full_length_trials": int(ends["full_length"].sum()) if len(ends) else 0,
        "skipped_proposals": len(outcome.skipped),
        "seconds": round(elapsed, 2),
        "seconds_per_trial": round(elapsed / max(len(ends), 1), 3),
        "curve": {"budget_share": budget, "hypervolume_share": share},
    }


def on_grid(curve: dict[str, list[float]]) -> np.ndarray:
    """A seed's hypervolume share at each budget of :data:`GRID` (a step function of its ends)."""
    budget = np.asarray(curve["budget_share"], float)
    share = np.maximum.accumulate(np.asarray(curve["hypervolume_share"], float)) if budget.size else budget
    index = np.searchsorted(budget, GRID, side="right") - 1
    return np.where(index >= 0, share[np.clip(index, 0, None)] if budget.size else 0.0, 0.0)


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    budgets = np.array([r["budget_share_to_99pct_hv"] for r in runs.values()], float)
    budgets = np.where(np.isnan(budgets), np.inf, budgets)  # null in a resumed JSON: never reached
    curves = np.array([on_grid(r["curve"]) for r in runs.values()])
    # Quantiles as sample values (inverted CDF): a seed that never reached the target is infinitely
    # late, which an interpolating quantile would turn into NaN.
    q25, median, q75 = (float(np.percentile(budgets, q, method="inverted_cdf")) if budgets.size else math.nan
                        for q in (25, 50, 75))
    return {
        "seeds": len(runs),
        "budget_share_to_99pct_hv": {"median": median, "q25": q25, "q75": q75,
                                     "reached": int(np.isfinite(budgets).sum())},
        "final_hypervolume_share_median": float(np.median([r["final_hypervolume_share"] for r in runs.values()])),
        "seconds_per_trial_median": float(np.median([r["seconds_per_trial"] for r in runs.values()])),
        "median_curve": {"budget_share": GRID.tolist(),
                         "hypervolume_share": np.round(np.median(curves, axis=0), 6).tolist(),
                         "q25": np.round(np.percentile(curves, 25, axis=0), 6).tolist(),
                         "q75": np.round(np.percentile(curves, 75, axis=0), 6).tolist()},
    }


def write_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(jsonable(payload), handle, indent=1)
    os.chmod(tmp, 0o644)  # mkstemp makes it private
    os.replace(tmp, path)


def plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name, summary in payload["strategies"].items():
        curve = summary["median_curve"]
        (line,) = ax.step(curve["budget_share"], curve["hypervolume_share"], where="post", label=name)
        ax.fill_between(curve["budget_share"], curve["q25"], curve["q75"], step="post", alpha=0.12,
                        color=line.get_color())
    ax.axhline(TARGET, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("trial-epochs spent (share of the exhaustive sweep's)")
    ax.set_ylabel("hypervolume (share of the exhaustive front's)")
    ax.set_title(f"{payload['table']}: median over seeds, quartiles shaded")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ratio_table(payload: dict[str, Any]) -> str:
    strategies = payload["strategies"]

    def median(name: str) -> float:
        value = strategies.get(name, {}).get("budget_share_to_99pct_hv", {}).get("median")
        return math.inf if value is None else float(value)

    def show(value: float) -> Any:
        return "never" if not math.isfinite(value) else round(value, 3)

    rows = []
    for name, summary in strategies.items():
        stats = summary["budget_share_to_99pct_hv"]
        m = median(name)
        ratios = [show(m / median(ref)) if math.isfinite(median(ref)) and math.isfinite(m) else "-"
                  for ref in ("grid", "nsga2")]
        rows.append([name, summary["seeds"], show(m),
                     f"{show(_finite(stats['q25']))}-{show(_finite(stats['q75']))}",
                     f"{stats['reached']}/{summary['seeds']}", *ratios,
                     round(summary["final_hypervolume_share_median"], 4), summary["seconds_per_trial_median"]])
    return format_table(["strategy", "seeds", "budget to 99% HV (median)", "IQR", "reached",
                         "vs grid", "vs nsga2", "final HV share", "s/trial"], rows)


def _finite(value: Any) -> float:
    return math.inf if value is None else float(value)


def with_trial_costs(curves, trials_csv: str | Path):
    """The curves with the cost columns they lack (e.g. ``annotation_units``) from a trials table."""
    import pandas as pd

    path = Path(trials_csv)
    missing = [m for m in names.COST_METRICS if m not in curves.columns]
    if not missing or not path.exists():
        return curves
    trials = pd.read_csv(path)
    found = [m for m in missing if m in trials.columns]
    if not found or "trial_id" not in trials.columns:
        return curves
    print(f"cost columns {', '.join(found)} from {path}", flush=True)
    return curves.merge(trials[["trial_id", *found]].drop_duplicates("trial_id"), on="trial_id", how="left")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--curves", default=str(RESULTS / "demo_curves.csv"), help="recorded exhaustive sweep")
    p.add_argument("--spectrum", default=str(RESULTS / "demo_spectrum.json"),
                   help="its spectrum.json (the spectral strategies are left out without one)")
    p.add_argument("--spec", default=str(REPO / "sweeps" / "demo.yaml"),
                   help="base sweep spec: objectives, epochs, max_concurrent, population size")
    p.add_argument("--spectrum-at-trial-scale", action="store_true",
                   help="the spectrum is of the labels at the trials' image scale (the CamVid study's)")
    p.add_argument("--trials", default=None,
                   help="a trials.csv (one row per trial_id) whose cost columns fill those the curves lack "
                   "(default: trials.csv beside --curves, when there)")
    p.add_argument("--out", default=str(RESULTS / "search_efficiency.json"))
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="3 seeds")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    p.add_argument("--resume", action="store_true", help="keep the strategy/seed runs already in --out")
    p.add_argument("--summarise-only", action="store_true",
                   help="run nothing: summarise, plot and print the runs already in --out")
    return p.parse_args()


def table_metadata(args: argparse.Namespace, base: dict[str, Any], table: ReplayTable,
                   left_out: list[str]) -> dict[str, Any]:
    curves = Path(args.curves).resolve()
    return dict(
        table=curves.name, curves=str(curves.relative_to(REPO)) if curves.is_relative_to(REPO) else str(curves),
        spec=Path(args.spec).name, spectrum_at_trial_scale=args.spectrum_at_trial_scale,
        objectives=base.get("objectives"), epochs=base.get("epochs"), max_concurrent=base.get("max_concurrent"),
        configurations=len(table), exhaustive_trial_epochs=table.trial_epochs(), target_hypervolume_share=TARGET,
        left_out=left_out,
    )


def main() -> None:
    args = parse_args()
    seeds = [] if args.summarise_only else list(range(3 if args.quick else args.seeds))
    out = Path(args.out)
    trials_csv = args.trials or Path(args.curves).with_name("trials.csv")
    table = ReplayTable(with_trial_costs(read_curves(args.curves), trials_csv))
    spectrum = json.loads(Path(args.spectrum).read_text()) if args.spectrum and Path(args.spectrum).exists() else None
    base = yaml.safe_load(Path(args.spec).read_text())
    strategies = [s for s in args.strategies if spectrum is not None or s not in NEEDS_SPECTRUM]
    resume = args.resume or args.summarise_only
    payload: dict[str, Any] = json.loads(out.read_text()) if resume and out.exists() else {}
    runs: dict[str, dict[str, Any]] = payload.get("runs", {})
    payload.update(table_metadata(args, base, table, [s for s in args.strategies if s not in strategies]))
    t0 = time.monotonic()
    if seeds:
        payload["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(),
                              "load_at_start": os.getloadavg()}
        start_local_ray()
        print(f"ray up in {time.monotonic() - t0:.1f} s; {len(table)} configurations, "
              f"{table.trial_epochs()} exhaustive trial-epochs; load {os.getloadavg()[0]:.1f}", flush=True)
    # Seed-major: a run cut short has every strategy at the same seeds.
    for seed in seeds:
        for strategy in strategies:
            if str(seed) in runs.get(strategy, {}):
                continue
            result = run_one(base, strategy, seed, table, spectrum, args.spectrum_at_trial_scale)
            runs.setdefault(strategy, {})[str(seed)] = result
            print(f"{strategy:>17} seed {seed:>2}: 99% HV at {result['budget_share_to_99pct_hv']:.3f} of the "
                  f"budget, final {result['final_hypervolume_share']:.3f}, {result['trials']} trials in "
                  f"{result['seconds']:.1f} s", flush=True)
            payload["runs"] = runs
            write_atomic(out, payload)
    payload["strategies"] = {name: summarise(runs[name]) for name in STRATEGIES if name in runs}
    if seeds:
        payload["machine"].update(load_at_end=os.getloadavg(), seconds=round(time.monotonic() - t0, 1))
    write_atomic(out, payload)
    plot(payload, out.with_suffix(".png"))
    print(ratio_table(payload))
    print(f"wrote {out} and {out.with_suffix('.png')} ({time.monotonic() - t0:.0f} s, load "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())})")


if __name__ == "__main__":
    main()
