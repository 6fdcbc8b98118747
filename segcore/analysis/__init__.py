"""What the sweeps found: trial tables, Pareto fronts, hypervolume and the fitted trade-off.

Compute, then render: :func:`pareto_front`, :func:`hypervolume` and :func:`fit_tradeoff` take a
DataFrame and return plain data; :mod:`segcore.analysis.plots` draws and
:mod:`segcore.analysis.report` writes the HTML report. MLflow is reached only through
:mod:`segcore.tracking.query`, imported when :func:`load_trials` is called::

    from segcore.analysis import load_trials, pareto_front, fit_tradeoff
    df = load_trials("camvid", tracking_uri="http://head:5000")
    front = pareto_front(df, objectives={"miou": "max", "gflops": "min"})
    model = fit_tradeoff(df); model.predict(network="deeplabv3plus", grid_stride=8, keep=0.5, block=4)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from segcore.analysis.pareto import (
    DEFAULT_OBJECTIVES,
    hypervolume,
    is_pareto_efficient,
    parse_objectives,
    pareto_front,
    reference_point,
)
from segcore.analysis.tradeoff import CostFit, CurveFit, NetworkFit, TradeoffModel, fit_tradeoff

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_OBJECTIVES", "CostFit", "CurveFit", "NetworkFit", "TradeoffModel", "fit_tradeoff",
    "hypervolume", "is_pareto_efficient", "load_spectrum", "load_trials", "pareto_front",
    "parse_objectives", "reference_point", "write_report",
]


def load_trials(experiment: str, tracking_uri: str | None = None, include_partial: bool = False,
                *, sweep: str | None = None) -> pd.DataFrame:
    """One typed row per trial of an MLflow experiment; see :func:`segcore.tracking.query.load_trials`."""
    from segcore.tracking import query

    return query.load_trials(experiment, tracking_uri, include_partial, sweep=sweep)


def load_spectrum(experiment: str, tracking_uri: str | None = None, *,
                  sweep: str | None = None) -> dict | None:
    """The sweep's ``spectrum.json`` (None without one); see :func:`segcore.tracking.query.load_spectrum`."""
    from segcore.tracking import query

    return query.load_spectrum(experiment, tracking_uri, sweep=sweep)


def __getattr__(name: str):
    # The report pulls in matplotlib; load it only when asked for.
    if name == "write_report":
        from segcore.analysis.report import write_report

        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
