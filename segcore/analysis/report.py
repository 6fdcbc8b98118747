"""The sweep report: fronts, hypervolume, fitted trade-off and recommendations, as JSON, PNGs and one
self-contained HTML page (images embedded), optionally logged to the sweep's parent run in MLflow.

:func:`build_report` computes (plain data), :func:`write_report` renders, :func:`report_experiment`
does both for an MLflow experiment and logs the files under ``report/`` of the parent run so the
MLflow UI shows them beside the sweep.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from segcore.analysis.pareto import feasible_mask, hypervolume, parse_objectives, pareto_front, reference_point
from segcore.analysis.progress import sweep_progress
from segcore.analysis.tradeoff import TradeoffModel, fit_tradeoff
from segcore.formatting import jsonable
from segcore.names import KNOB_PARAMS

__all__ = ["FRONT_COLUMNS", "MISSING_SPECTRUM", "Report", "build_report", "report_experiment",
           "sweep_constraints", "sweep_objectives", "write_report"]

FRONT_COLUMNS = ("network", "grid_stride", "keep", "block", "block_mode", "trial_id", "node")

MISSING_SPECTRUM = (
    "NO SPECTRUM: this sweep has no spectrum.json, so the spectral prediction (the efficient grid and "
    "block from labels alone) and the calibrated-oracle model are missing from this report. A sweep "
    "with spectral.enabled computes it again on `segcore sweep SPEC --resume`; `segcore spectrum` "
    "computes it alone.")


@dataclass
class Report:
    """Everything the report shows, computed once.

    Attributes:
        experiment: experiment name.
        objectives: ``{column: "max" | "min"}``.
        trials: the trial table analysed (full-length trials), with a ``feasible`` column: whether
            the trial's cost satisfies the sweep's constraints.
        front: the global Pareto front (feasible trials only).
        fronts: the front of each network.
        reference: the hypervolume reference point (columns' own units).
        hypervolume: ``{"all": hv, network: hv, ...}``.
        model: the fitted trade-off.
        spectrum: the dataset's spectral analysis, if the sweep logged one.
        constraints: the sweep's cost constraints, ``{metric: {"min": low, "max": high}}``.
        progress: the hypervolume (feasible trials, the same reference) after each finished trial,
            in the order they ended, with the wall time
            (:func:`segcore.analysis.progress.sweep_progress`).
    """

    experiment: str
    objectives: dict[str, str]
    trials: pd.DataFrame
    front: pd.DataFrame
    fronts: pd.DataFrame
    reference: dict[str, float]
    hypervolume: dict[str, float]
    model: TradeoffModel
    spectrum: dict | None = None
    constraints: dict[str, dict[str, float | None]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    progress: pd.DataFrame | None = None

    def front_table(self, per_network: bool = False) -> pd.DataFrame:
        """The front's knobs and objectives, for printing."""
        return _front_columns(self.fronts if per_network else self.front, self.objectives)

    def warnings(self) -> list[str]:
        """What the reader must not miss: a missing spectrum, networks with too few trials to fit,
        answers that could not be measured, spectral answers rounded to strides the trials use."""
        out = [MISSING_SPECTRUM] if self.spectrum is None else []
        for name, fit in sorted(self.model.networks.items()):
            notes = ([fit.note] if fit.note else []) + fit.recommended.get("notes", [])
            notes += self.model.spectral_in_trial_units(name)["notes"]
            out += [f"{name}: {note}" for note in notes]
        return out

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "experiment": self.experiment,
            "warnings": self.warnings(),
            "objectives": self.objectives,
            "n_trials": int(len(self.trials)),
            "constraints": self.constraints,
            "n_infeasible": int((~self.trials["feasible"]).sum()),
            "networks": sorted(self.trials["network"].astype(str).unique().tolist()),
            "front": _records(self.front_table()),
            "fronts_by_network": _records(self.front_table(per_network=True)),
            "reference": self.reference,
            "hypervolume": self.hypervolume,
            "tradeoff": self.model.to_dict(),
            "fit_summary": _records(self.model.summary()),
            "recommendations": _records(self.model.recommendations()),
            "spectral_efficient_grid": self.model.spectral_efficient_grid,
            "progress": [] if self.progress is None else _records(self.progress),
            **self.extra,
        })


def _front_columns(front: pd.DataFrame, objectives: Mapping[str, str]) -> pd.DataFrame:
    cols = [c for c in FRONT_COLUMNS if c in front.columns] + [c for c in objectives if c not in FRONT_COLUMNS]
    return front[cols].reset_index(drop=True)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows as dicts, missing values (NaN, None, pd.NA, NaT) as None; :func:`jsonable` does the rest."""
    return [{k: (None if _isna(v) else v) for k, v in row.items()}
            for row in df.astype(object).to_dict(orient="records")]


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def build_report(
    df: pd.DataFrame,
    spectrum: Mapping[str, Any] | None = None,
    *,
    experiment: str = "",
    objectives: Mapping[str, str] | None = None,
    reference: Mapping[str, float] | None = None,
    tolerance: float = 0.01,
    constraints: Mapping[str, Mapping[str, float | None]] | None = None,
) -> Report:
    """Fronts (global and per network), hypervolumes with one shared reference, and the trade-off fit.

    ``constraints`` (the sweep's, ``{metric: {"min": low, "max": high}}``) mark each trial
    ``feasible`` or not; the fronts and hypervolumes count the feasible ones only, the fit all.

    Raises:
        KeyError: an objective is not a column (lists those that exist).
        ValueError: no full-length trial to analyse.
    """
    objectives = parse_objectives(objectives)
    constraints = {metric: dict(bounds) for metric, bounds in (constraints or {}).items()}
    trials = df[df["full_length"].astype(bool)] if "full_length" in df else df
    trials = trials.assign(feasible=feasible_mask(trials, constraints))
    feasible = trials[trials["feasible"]]
    front = pareto_front(feasible, objectives)
    fronts = pareto_front(feasible, objectives, by="network")
    ref = dict(reference) if reference is not None else reference_point(trials, objectives)
    hv = {"all": hypervolume(feasible, objectives, ref)}
    for name, sub in feasible.groupby(feasible["network"].astype(str), sort=True):
        hv[str(name)] = hypervolume(sub, objectives, ref)
    model = fit_tradeoff(trials, dict(spectrum) if spectrum else None, tolerance=tolerance)
    progress = sweep_progress(trials, objectives, ref, counts="feasible")
    return Report(experiment, objectives, trials, front, fronts, ref, hv, model,
                  dict(spectrum) if spectrum else None, constraints, progress=progress)


def write_report(report: Report, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Render the report into ``out_dir``: ``report.json``, ``trials.csv``, ``front.png``,
    ``accuracy_vs_stride.png``, ``accuracy_vs_block.png`` (when the block size varies),
    ``measured_vs_predicted.png``, ``progress.png`` (hypervolume against finished trials and wall
    time), ``parallel_coordinates.png`` (knobs and objectives) and ``report.html`` (self-contained).

    Returns:
        ``{name: path}`` of the files written.
    """
    from segcore.analysis import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["json"] = out / "report.json"
    files["json"].write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    files["csv"] = out / "trials.csv"
    _front_columns(report.trials, report.objectives).join(
        report.trials[[c for c in ("miou", "gflops", "pixel_accuracy", "feasible", "run_id") if c in report.trials
                       and c not in report.objectives]]).to_csv(files["csv"], index=False)
    pngs = {}
    if len(report.objectives) >= 2:
        # Infeasible trials are no points of the front: they are listed in the page, not drawn.
        pngs["front"] = plots.plot_front(report.trials[report.trials["feasible"]], out / "front.png",
                                         report.objectives)
    pngs["accuracy_vs_stride"] = plots.plot_accuracy_vs_stride(
        report.trials, report.model, out / "accuracy_vs_stride.png")
    block = plots.plot_accuracy_vs_block(report.trials, report.model, out / "accuracy_vs_block.png")
    if block is not None:
        pngs["accuracy_vs_block"] = block
    pngs["measured_vs_predicted"] = plots.plot_measured_vs_predicted(
        report.trials, report.model, out / "measured_vs_predicted.png")
    if report.progress is not None and len(report.progress):
        pngs["progress"] = plots.plot_progress(report.progress, out / "progress.png", report.hypervolume["all"])
    pngs["parallel_coordinates"] = plots.plot_parallel_coordinates(
        report.trials, out / "parallel_coordinates.png", list(KNOB_PARAMS), report.objectives)
    files.update(pngs)
    files["html"] = out / "report.html"
    files["html"].write_text(_html(report, pngs))
    return files


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-", border=0)


def _html(report: Report, pngs: Mapping[str, Path]) -> str:
    title = f"segcore report: {report.experiment}" if report.experiment else "segcore report"
    objectives = ", ".join(f"{k} ({v})" for k, v in report.objectives.items())
    hv = pd.DataFrame([{"group": k, "hypervolume": v} for k, v in report.hypervolume.items()])
    ref = ", ".join(f"{k} = {v:.4g}" for k, v in report.reference.items())
    spectral = report.model.spectral_efficient_grid
    warnings = report.warnings()
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        ('<div class="warnings"><h2>Read this first</h2><ul>'
         + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul></div>") if warnings else "",
        f"<p>{len(report.trials)} full-length trials of {report.trials['network'].nunique()} networks; "
        f"objectives: {html.escape(objectives)}; tolerance {report.model.tolerance:g} (relative).</p>",
        _constraints_html(report),
        "<h2>Pareto front</h2>", _img(pngs["front"]) if "front" in pngs else "",
        "<h3>Global front</h3>", _table(report.front_table()),
        "<h3>Front per network</h3>", _table(report.front_table(per_network=True)),
        f"<h3>Hypervolume</h3><p>reference point: {html.escape(ref)}</p>", _table(hv),
        "<h2>Progress of the sweep</h2>",
        "<p>The hypervolume of the front of the feasible full-length trials so far (the reference "
        "point above), after each trial in the order they ended, and against the wall time since "
        "the first trial started; the dashed line is the whole sweep's. Below, every trial across "
        "its knobs (values at evenly spaced positions) and objectives (scaled from the smallest to "
        "the largest value), one colour per network, the front's trials thick.</p>",
        _img(pngs["progress"]) if "progress" in pngs else "",
        _img(pngs["parallel_coordinates"]),
        "<h2>Trade-off fit</h2>",
        "<p>Per network, a calibrated oracle <code>miou = c &middot; O(s/keep)^g &middot; O_block(b)^g</code> "
        "anchored on the spectral oracle curves competes with a free saturating curve "
        "<code>miou = m / (1 + (s/s0)^p)</code>; leave-one-out RMSE picks the model. A model is fitted "
        "only with at least its parameters plus two trials; a network with fewer is marked "
        "&ldquo;too few trials to fit&rdquo; and has no fitted curve. Curves are drawn only at the keep "
        "and block the trials used; error bars are one standard deviation over seeds.</p>",
        _table(report.model.summary()),
        _img(pngs["accuracy_vs_stride"]),
        _img(pngs["accuracy_vs_block"]) if "accuracy_vs_block" in pngs else "",
        _img(pngs["measured_vs_predicted"]),
        "<h2>Recommended configurations and the efficient grid</h2>",
        f"<p>Spectral prediction from labels alone (native label pixels): efficient grid by oracle "
        f"mIoU {spectral.get('by_miou', '-')}, by band energy {spectral.get('by_energy', '-')}. The "
        "table gives it in the trials' grid strides: by oracle mIoU re-derived with this report's "
        "tolerance relative to the oracle at the trials' own resolution, by energy as native "
        "stride &times; image scale, each rounded down to a whole stride of at least 1 (the notes say "
        "where). The measured efficient grid reads only trials at keep 1 and block 1, seeds "
        "averaged.</p>",
        _table(report.model.recommendations()),
    ]
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.5em}"
             "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
             "img{max-width:100%;display:block;margin:1em 0}"
             ".warnings{border:2px solid #b22;background:#fdecea;padding:0.2em 1em;margin:1em 0}"
             ".warnings h2{color:#b22;margin:0.4em 0}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _constraints_html(report: Report) -> str:
    """The sweep's constraints and the trials that break them (left out of the fronts)."""
    if not report.constraints:
        return ""
    bounds = ", ".join(f"{metric} {bound} {limit:g}" for metric, limits in report.constraints.items()
                       for bound, limit in limits.items() if limit is not None)
    infeasible = report.trials[~report.trials["feasible"]]
    text = f"<p>Constraints: {html.escape(bounds)}; {len(infeasible)} infeasible trial(s), left out of the fronts.</p>"
    return text + (_table(_front_columns(infeasible, report.objectives)) if len(infeasible) else "")


def _logged_spec(experiment: str, tracking_uri: str | None, sweep: str | None) -> dict:
    from segcore.tracking import query

    return query.load_sweep_spec(experiment, tracking_uri, sweep=sweep) or {}


def sweep_constraints(experiment: str, tracking_uri: str | None = None, *,
                      sweep: str | None = None) -> dict[str, dict[str, float | None]]:
    """The cost constraints the sweep ran under (from its logged ``sweep.yaml``), else none."""
    return dict(_logged_spec(experiment, tracking_uri, sweep).get("constraints") or {})


def sweep_objectives(experiment: str, tracking_uri: str | None = None, *,
                     sweep: str | None = None) -> dict[str, str]:
    """The objectives the sweep optimised (from its logged ``sweep.yaml``), else the default."""
    spec = _logged_spec(experiment, tracking_uri, sweep)
    return parse_objectives(spec.get("objectives") or None)


def report_experiment(
    experiment: str,
    out_dir: str | os.PathLike,
    tracking_uri: str | None = None,
    *,
    sweep: str | None = None,
    objectives: Mapping[str, str] | None = None,
    tolerance: float = 0.01,
    log_artifacts: bool = True,
) -> tuple[Report, dict[str, Path], str | None]:
    """Load an experiment, build and write its report, and log it to the sweep's parent run.

    Args:
        objectives: default: the sweep's own objectives (its logged ``sweep.yaml``), else
            ``{"miou": "max", "gflops": "min"}``.

    Returns:
        ``(report, files, parent_run_id)`` (the run id is None when not logged).
    """
    from segcore.tracking import query

    df = query.load_trials(experiment, tracking_uri, sweep=sweep)
    if objectives is None:
        objectives = sweep_objectives(experiment, tracking_uri, sweep=sweep)
    if df.empty:
        raise ValueError(f"experiment {experiment!r} has no completed full-length trial to report "
                         "on (see `load_trials(..., include_partial=True)` for the others)")
    spectrum = query.load_spectrum(experiment, tracking_uri, sweep=sweep)
    report = build_report(df, spectrum, experiment=experiment, objectives=objectives, tolerance=tolerance,
                          constraints=sweep_constraints(experiment, tracking_uri, sweep=sweep))
    files = write_report(report, out_dir)
    run_id = query.log_report_artifacts(experiment, out_dir, tracking_uri, sweep=sweep) if log_artifacts else None
    return report, files, run_id
