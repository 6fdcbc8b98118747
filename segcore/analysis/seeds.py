"""Trials that differ only in their seed, taken together: one row per configuration with the mean
and the spread of its accuracy, which the figures draw as error bars and the recommendations read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["SEED_COLUMN", "configuration_columns", "seed_means"]

SEED_COLUMN = "seed"
# Trial-configuration fields that do not change what is trained (docs/design.md, Contracts: runtime).
_RUNTIME_FIELDS = frozenset({SEED_COLUMN, "device", "amp", "num_workers", "checkpoint_dir", "latency_repeats"})


def configuration_columns(df: pd.DataFrame) -> list[str]:
    """The columns that identify a configuration: every trial-configuration field in ``df``
    (flattened option keys such as ``model_options.width`` included) except the runtime ones, the
    seed among them."""
    from segcore.config.trial import TrialConfig

    fields = set(TrialConfig.model_fields) - _RUNTIME_FIELDS
    return [c for c in df.columns if str(c).split(".", 1)[0] in fields]


def seed_means(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per configuration: the trials of ``df`` that differ only in ``seed`` averaged.

    Returns:
        The configuration columns, every other numeric column averaged (``metric`` among them),
        ``<metric>_std`` (the sample standard deviation over seeds, ddof 1; NaN for one seed),
        ``seeds`` (how many trials were averaged) and the other columns of the first trial (its
        ``trial_id``, say), in the order the configurations first occur; no ``seed`` column.
    """
    keys = configuration_columns(df)
    if not keys or df.empty:
        return df.drop(columns=SEED_COLUMN, errors="ignore").assign(**{f"{metric}_std": np.nan, "seeds": 1})
    rest = [c for c in df.columns if c not in keys and c != SEED_COLUMN]
    numeric = [c for c in rest if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    groups = df.groupby(keys, dropna=False, sort=False)
    out = groups[[c for c in rest if c not in numeric]].first() if len(rest) > len(numeric) else None
    means = groups[numeric].mean()
    out = means if out is None else out.join(means)
    out[f"{metric}_std"] = groups[metric].std(ddof=1)
    out["seeds"] = groups.size()
    return out.reset_index()[[*keys, *[c for c in out.columns if c not in keys]]]
