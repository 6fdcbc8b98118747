"""``segcore sweep FILE``: run a sweep spec on Ray Tune, recorded in MLflow."""

from __future__ import annotations

import argparse
import time

COMMAND = "sweep"
ORDER = 30


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        COMMAND,
        help="run a sweep spec (YAML) on Ray Tune, recorded in MLflow",
        description="Validate a sweep spec, run its trials on Ray Tune (local or a cluster) and record "
        "every trial in MLflow: a parent run per sweep, a child run per trial. Ends with the best "
        "trial per network.",
    )
    parser.add_argument("file", help="sweep spec, e.g. sweeps/camvid.yaml")
    parser.add_argument(
        "--address",
        default="local",
        help="'local' starts a private Ray on this machine (default); 'auto' or HOST:PORT joins a running cluster",
    )
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (overrides the spec's tracking_uri)")
    parser.add_argument("--experiment", help="MLflow experiment name (overrides the spec's experiment)")
    parser.add_argument("--storage-path", help="where Ray Tune keeps the sweep's state (overrides storage_path)")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the trials/space; start nothing")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted sweep of the same name")
    parser.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    parser.set_defaults(func=main)


def describe(spec) -> str:
    """The resolved sweep: what runs where, the space, and (for a grid) every trial."""
    lines = [
        f"sweep {spec.name!r}: dataset {spec.dataset.name}" + (f" at {spec.dataset.root}" if spec.dataset.root else ""),
        f"  networks:   {', '.join(spec.networks)}",
        f"  objectives: {', '.join(f'{m} ({mode})' for m, mode in spec.objectives.items())}",
    ]
    algo = spec.search.algorithm
    if algo == "optuna":
        algo += f" ({spec.sampler}{', dedupe' if spec.search.dedupe else ''}) behind a ConcurrencyLimiter"
    lines.append(f"  search:     {algo}")
    if spec.scheduler is not None:
        ranked = ", ".join(f"{m} ({mode})" for m, mode in spec.scheduler_objectives().items())
        lines.append(
            f"  scheduler:  {spec.scheduler.name} on {ranked}, grace {spec.scheduler.grace_period} epoch(s), "
            f"reduction {spec.scheduler.reduction_factor:g}"
        )
    size = spec.space_size()
    lines += [
        f"  trials:     {spec.num_trials()} (space: {'continuous' if size is None else f'{size} configurations'}), "
        f"{spec.max_concurrent} at a time, {spec.epochs} epoch(s) each, max_failures {spec.max_failures}",
        f"  resources:  {spec.resources.cpu:g} CPU + {spec.resources.gpu:g} GPU per trial",
        f"  storage:    {spec.storage_path}/{spec.name}",
        f"  tracking:   {spec.tracking_uri} (experiment {spec.experiment_name!r})",
        "  space:",
    ]
    for name, knob in spec.knobs().items():
        lines.append(f"    {name:<18}{knob.describe()}{'' if knob.searched else '   (fixed)'}")
    if algo == "grid":
        grid = spec.grid()
        lines.append(f"  grid ({len(grid)} point(s) x num_samples {spec.num_samples}):")
        lines += [f"    {i + 1:>4}  " + " ".join(f"{k}={v}" for k, v in point.items()) for i, point in enumerate(grid)]
    base = spec.base_config()
    fixed = {k: v for k, v in base.items() if k not in spec.searched_knobs() and v not in (None, {}, [])}
    for net, overrides in spec.network_config.items():
        lines.append(f"  {net} only: " + ", ".join(f"{k}={v}" for k, v in overrides.items()))
    lines.append("  fixed trial config: " + ", ".join(f"{k}={v}" for k, v in fixed.items()))
    return "\n".join(lines)


def print_outcome(outcome) -> None:
    from segcore.cli._tables import frame_table
    from segcore.tune.summary import best_per_network

    spec = outcome.spec
    df = outcome.trials
    knobs = [k for k in spec.searched_knobs() if k != "network"]
    counts = df["status"].value_counts().to_dict() if not df.empty else {}
    print(
        f"\n{len(df)} trial(s) in {outcome.elapsed_s:.0f} s: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    )
    cols = ["network", "trial_id", *knobs, *spec.objectives, "epochs", "node"]
    print("\nbest trial per network (by " + next(iter(spec.objectives)) + "):")
    print(frame_table(best_per_network(df, spec.objectives), cols, empty="(no trials)"))
    failed = df[df["status"] == "failed"] if not df.empty else df
    for _, row in failed.iterrows():
        print(f"failed: trial {row['trial_id']} ({row['network']}): {row['error']}")


def main(args: argparse.Namespace) -> int:
    from segcore.tune.validate import load_sweep

    overrides = {"tracking_uri": args.tracking_uri, "experiment": args.experiment, "storage_path": args.storage_path}
    # A joined cluster's data lives on its nodes' shared storage, not necessarily on this machine.
    spec = load_sweep(args.file, overrides=overrides, check_paths=args.address == "local")
    print(describe(spec), flush=True)
    if args.dry_run:
        print("\ndry run: the spec is valid; nothing started")
        return 0
    from segcore.tune import run_sweep

    t0 = time.monotonic()
    outcome = run_sweep(spec, address=args.address, resume=args.resume, progress=not args.quiet)
    print_outcome(outcome)
    from segcore.tracking.links import browse_command, experiment_runs_url

    print(f"\nsweep {spec.name!r} done in {time.monotonic() - t0:.0f} s; browse it with:")
    command = browse_command(spec.tracking_uri)
    if command:
        print(f"  {command}")
    print(f"  then open {experiment_runs_url(spec.tracking_uri, spec.experiment_name)}")
    return 0
