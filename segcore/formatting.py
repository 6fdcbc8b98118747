"""Plain-text and JSON helpers every layer shares: one owner each for NaN-safe JSON, fixed-width
tables and ``KEY=VALUE`` command-line items. No dependency beyond the standard library and PyYAML.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

__all__ = ["jsonable", "format_cell", "format_table", "parse_key_values"]


def jsonable(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, +-inf) replaced by ``None``, recursively through
    dicts, lists and tuples (tuples become lists), so ``json.dumps`` writes strict JSON (``null``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return jsonable(value.item())  # NumPy / torch scalars
    return value


def format_cell(value: Any, missing: str = "-") -> str:
    """One table cell: ``missing`` for None/NaN, whole floats without decimals, else 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e9:
            return str(int(value))  # counts (annotation units, epochs) read better whole
        return f"{value:.4g}"
    return str(value)


def format_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "(no rows)") -> str:
    """A fixed-width table: a header, a rule, then one line per row (cells via :func:`format_cell`)."""
    columns = [str(c) for c in columns]
    cells = [[format_cell(v) for v in row] for row in rows]
    if not cells:
        return empty
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def parse_key_values(items: Iterable[str] | None, flag: str) -> dict[str, Any]:
    """``["a=1", "b=[2, 3]"]`` -> ``{"a": 1, "b": [2, 3]}``; values are read as YAML.

    Raises:
        ValueError: naming ``flag`` when an item has no ``=`` or an empty key.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(raw)
    return out
