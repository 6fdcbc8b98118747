"""``segcore pareto EXPERIMENT``: the Pareto front of a sweep recorded in MLflow, on the terminal."""

from __future__ import annotations

import argparse

COMMAND = "pareto"
ORDER = 50


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """EXPERIMENT, --tracking-uri, --sweep and --objective: what to read and what to optimise
    (shared with ``segcore report``)."""
    p.add_argument("experiment", metavar="EXPERIMENT", help="MLflow experiment name (or id)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    p.add_argument("--sweep", default=None, help="only the trials of this sweep name")
    p.add_argument("--objective", action="append", default=None, metavar="COLUMN:max|min",
                   help="objective (repeat for several); default: the sweep's own objectives, "
                   "else miou:max gflops:min")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        COMMAND, help="Pareto front of a sweep (accuracy vs cost) from MLflow",
        description="Read a sweep's trials from MLflow and print its Pareto front and hypervolume. "
        "Only completed, full-length trials enter the front unless --include-partial is given.",
    )
    add_source_arguments(p)
    p.add_argument("--by", default=None, metavar="COLUMN", help="one front per value, e.g. --by network")
    p.add_argument("--reference", action="append", default=None, metavar="COLUMN=VALUE",
                   help="hypervolume reference value (default: each objective's worst, plus 10%% of its range)")
    p.add_argument("--include-partial", action="store_true",
                   help="let early-stopped trials (with metrics) enter the front too; by default only "
                   "completed full-length trials do (a partial trial's accuracy is not comparable)")
    p.add_argument("--plot", default=None, metavar="FILE", help="write the front (PNG) here")
    p.set_defaults(func=run)


def _reference(items: list[str] | None) -> dict[str, float] | None:
    """``["miou=0", "gflops=1e3"]`` -> ``{"miou": 0.0, "gflops": 1000.0}``; None without items."""
    from segcore.formatting import parse_key_values

    if not items:
        return None
    out = {}
    for item in items:
        try:
            ((name, value),) = parse_key_values([item], "--reference").items()
            if isinstance(value, bool):
                raise ValueError(value)
            out[name] = float(value)  # YAML reads 1e3 as text: float() takes it
        except (ValueError, TypeError):
            raise ValueError(f"--reference {item!r}: expected COLUMN=NUMBER") from None
    return out


def run(args: argparse.Namespace) -> int:
    from segcore.analysis import hypervolume, load_trials, pareto_front, parse_objectives, reference_point
    from segcore.analysis.pareto import feasible_mask
    from segcore.analysis.report import FRONT_COLUMNS, sweep_constraints, sweep_objectives
    from segcore.cli._tables import frame_table

    objectives = parse_objectives(args.objective) if args.objective else None
    reference = _reference(args.reference)
    table = load_trials(args.experiment, args.tracking_uri, include_partial=True, sweep=args.sweep)
    if objectives is None:  # the sweep's own objectives, else miou:max gflops:min
        objectives = sweep_objectives(args.experiment, args.tracking_uri, sweep=args.sweep)
    full = table if args.include_partial else table[table["full_length"]]
    counts = ", ".join(f"{k} {v}" for k, v in table["status"].value_counts().sort_index().items())
    print(f"{args.experiment}: {len(table)} trials ({counts}), {int(table['full_length'].sum())} "
          f"completed full-length")
    feasible = feasible_mask(full, sweep_constraints(args.experiment, args.tracking_uri, sweep=args.sweep))
    if not feasible.all():
        print(f"{int((~feasible).sum())} trial(s) break the sweep's cost constraints: left out")
        full = full[feasible]
    if full.empty:
        raise ValueError(f"experiment {args.experiment!r}: no completed full-length trial to put on a "
                         "front (--include-partial admits early-stopped ones)")
    front = pareto_front(full, objectives, by=args.by)
    cols = [c for c in FRONT_COLUMNS if c in front.columns and c != args.by]
    cols += ["status"] if args.include_partial else []
    cols = ([args.by] if args.by else []) + cols + [c for c in objectives if c not in cols]
    print(f"\nPareto front ({', '.join(f'{k} {v}' for k, v in objectives.items())}"
          f"{', per ' + args.by if args.by else ''}): {len(front)} of {len(full)} trials")
    print(frame_table(front, cols))
    ref = reference or reference_point(full, objectives)
    print(f"\nhypervolume (reference {', '.join(f'{k}={v:.4g}' for k, v in ref.items())}):")
    hv_all = hypervolume(full, objectives, ref)
    if args.by:
        for name, sub in full.groupby(full[args.by].astype(str), sort=True):
            print(f"  {name}: {hypervolume(sub, objectives, ref):.6g}")
    print(f"  all: {hv_all:.6g}")
    if args.plot:
        from segcore.analysis.plots import plot_front

        path = plot_front(full, args.plot, objectives, by=args.by or "network")
        print(f"\nfront plot: {path}")
    return 0
