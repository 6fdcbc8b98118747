"""``segcore replay SPEC``: a sweep spec's search and scheduler replayed over a recorded sweep."""

from __future__ import annotations

import argparse
import time

COMMAND = "replay"
ORDER = 45


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        COMMAND, help="replay a sweep spec's search over a recorded exhaustive sweep (no training)",
        description="Run the spec's real Ray Tune searcher and scheduler on a local Ray, with trials "
        "that report the recorded epochs of their configuration instead of training, and say how "
        "much of the exhaustive sweep's hypervolume the search found for how many trial-epochs. "
        "Nothing is written to MLflow.",
    )
    p.add_argument("file", help="sweep spec (YAML) whose search, scheduler, objectives, epochs, "
                   "max_concurrent and seed are replayed")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--curves", metavar="CSV", help="recorded curves: one row per trial and epoch")
    source.add_argument("--experiment", help="read the curves of this MLflow experiment instead")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI for --experiment")
    p.add_argument("--sweep", default=None, help="only the trials of this sweep name (--experiment)")
    p.add_argument("--spectrum", default=None, metavar="JSON",
                   help="the recorded sweep's spectrum.json, for search.algorithm: spectral "
                   "(with --experiment: read from the sweep's parent run unless given)")
    p.add_argument("--seed", type=int, default=None, help="seed of the searcher (overrides the spec's)")
    p.add_argument("--missing", choices=("error", "skip"), default="error",
                   help="a configuration the table lacks: refuse the replay (default), or never run "
                   "it (the searcher is told it as a trial without a result, no epoch spent)")
    p.add_argument("--budget-share", type=float, default=None, metavar="SHARE",
                   help="stop once this share of the exhaustive trial-epochs is spent")
    p.add_argument("--num-samples", type=int, default=None, help="trials to ask the searcher for")
    p.add_argument("--events", default=None, metavar="CSV",
                   help="write every result and trial end, in order, here")
    p.set_defaults(func=run)


def _curves(args: argparse.Namespace):
    if args.curves:
        from segcore.tune.replay import read_curves

        return read_curves(args.curves)
    from segcore.tracking.query import load_curves

    return load_curves(args.experiment, args.tracking_uri, sweep=args.sweep)


def _spectrum(args: argparse.Namespace) -> dict | None:
    if args.spectrum:
        import json
        from pathlib import Path

        return json.loads(Path(args.spectrum).read_text())
    if args.experiment:
        from segcore.tracking.query import load_spectrum

        return load_spectrum(args.experiment, args.tracking_uri, sweep=args.sweep)
    return None


def run(args: argparse.Namespace) -> int:
    from segcore.analysis.progress import budget_to_reach, replay_progress
    from segcore.config.sweep import load_sweep_spec
    from segcore.tune.replay import ReplayTable, exhaustive_front_input, replay_sweep

    overrides = {"seed": args.seed} if args.seed is not None else None
    spec = load_sweep_spec(args.file, overrides=overrides)
    table = ReplayTable(_curves(args))
    total = table.trial_epochs()
    budget = None if args.budget_share is None else args.budget_share * total
    t0 = time.monotonic()
    outcome = replay_sweep(spec, table, missing=args.missing, budget_trial_epochs=budget,
                           num_samples=args.num_samples, spectrum=_spectrum(args))
    elapsed = time.monotonic() - t0
    ends = outcome.finished_trials()
    exhaustive = exhaustive_front_input(table, spec.epochs)
    progress = replay_progress(ends, exhaustive, spec.objectives, total)
    reached = float(progress["hypervolume_share"].iloc[-1]) if len(progress) else 0.0
    at_99 = budget_to_reach(progress["budget_share"], progress["hypervolume_share"], 0.99)
    per_trial = outcome.elapsed_s / max(len(ends), 1)
    print(f"replayed {len(ends)} trial(s) of {spec.name!r} ({spec.search.algorithm}"
          f"{', ' + spec.sampler if spec.search.algorithm == 'optuna' else ''}, seed {spec.seed}): "
          f"{int(ends['full_length'].sum()) if len(ends) else 0} full-length, "
          f"{len(outcome.skipped)} proposal(s) not in the table skipped")
    print(f"trial-epochs spent: {outcome.trial_epochs} of the exhaustive {total} "
          f"({outcome.trial_epochs / total:.1%})")
    print(f"hypervolume reached: {reached:.1%} of the exhaustive front's "
          f"({', '.join(f'{m} {d}' for m, d in spec.objectives.items())}; "
          f"{len(exhaustive)} full-length configuration(s) recorded)")
    print("99% of it after " + ("never" if at_99 == float("inf") else f"{at_99:.1%} of the trial-epochs"))
    print(f"replay: {outcome.elapsed_s:.1f} s in Tune ({per_trial:.2f} s per trial), {elapsed:.1f} s in all")
    if args.events:
        outcome.events.to_csv(args.events, index=False)
        print(f"events: {args.events}")
    return 0
