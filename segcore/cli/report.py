"""``segcore report EXPERIMENT --out DIR``: fronts, fitted trade-off and recommendations of a sweep,
as JSON, PNGs and a self-contained HTML page, also logged to the sweep's parent run in MLflow."""

from __future__ import annotations

import argparse

from segcore.cli.pareto import add_source_arguments

COMMAND = "report"
ORDER = 55


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        COMMAND, help="HTML report of a sweep: front, fitted trade-off, efficient grid vs spectral",
        description="Fit accuracy and cost against the knobs per network, compare the measured "
        "efficient grid with the spectral prediction, and write report.html (+ JSON, CSV, PNGs) "
        "to DIR and under report/ of the sweep's parent run in MLflow.",
    )
    add_source_arguments(p)
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the report files")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="relative accuracy loss accepted for the efficient configuration (default 0.01)")
    p.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from segcore.analysis import parse_objectives
    from segcore.analysis.report import report_experiment
    from segcore.cli._tables import frame_table

    objectives = parse_objectives(args.objective) if args.objective else None
    print(f"reading {args.experiment} ...", flush=True)
    report, files, run_id = report_experiment(
        args.experiment, args.out, args.tracking_uri, sweep=args.sweep, objectives=objectives,
        tolerance=args.tolerance, log_artifacts=not args.no_log)
    print(f"{len(report.trials)} full-length trials, networks: "
          f"{', '.join(sorted(report.trials['network'].astype(str).unique()))}")
    print("\nPareto front per network:")
    print(frame_table(report.front_table(per_network=True)))
    print("\nhypervolume: " + ", ".join(f"{k} {v:.6g}" for k, v in report.hypervolume.items()))
    print("\ntrade-off fit (accuracy model chosen by leave-one-out RMSE):")
    print(frame_table(report.model.summary()))
    spectral = report.model.spectral_efficient_grid
    print(f"\nrecommended configurations (spectral efficient grid of the native labels: by oracle "
          f"mIoU {spectral.get('by_miou', '-')}, by band energy {spectral.get('by_energy', '-')}; "
          "below in the trials' grid strides):")
    print(frame_table(report.model.recommendations()))
    for warning in report.warnings():
        print(f"WARNING: {warning}")
    print(f"\nreport: {files['html']}")
    if run_id:
        print(f"logged under report/ of parent run {run_id}")
    return 0
