"""DataFrames as fixed-width terminal tables for the commands, through the one table formatter
(:func:`segcore.formatting.format_table`: the same cells, widths and missing-value dash everywhere)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from segcore.formatting import format_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["frame_table"]


def _cell(value: Any) -> Any:
    """None for any missing value (NaN, None, pd.NA, NaT), so it prints as the dash."""
    import pandas as pd

    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):  # a list or array in a cell: not missing
        return value


def frame_table(df: pd.DataFrame, columns: Sequence[str] | None = None, *, empty: str = "(none)") -> str:
    """``df``'s ``columns`` (those that exist; default: all) as a table; ``empty`` when it has no rows."""
    columns = [c for c in (columns or list(df.columns)) if c in df.columns]
    rows = ([_cell(v) for v in row] for row in df[columns].itertuples(index=False))
    return format_table(columns, rows, empty=empty)
