"""The search space of a sweep: which trial fields may be searched, and one :class:`Knob` per entry
of a spec's ``space`` section, checked value by value against :class:`TrialConfig`.

A ``space`` entry is a list (the choices), a range ``{low, high[, step][, log]}`` or a single value
(fixed)::

    space:
      grid_stride: [2, 4, 8]
      keep: {low: 0.25, high: 1.0}
      lr: {low: 1.0e-4, high: 1.0e-2, log: true}
      truncation: fft
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import ValidationError

from segcore import names

from .trial import TrialConfig

__all__ = ["Knob", "knob_from_space", "check_space", "check_trial_value", "config_key", "SEARCHABLE_FIELDS",
           "SET_ELSEWHERE"]

#: TrialConfig fields that the sweep sets elsewhere (dataset section, epochs, seed, networks), so
#: neither ``space`` nor ``train`` may set them: field -> where the spec sets it.
SET_ELSEWHERE = {
    "network": "networks",
    "dataset": "dataset.name",
    "data_root": "dataset.root",
    "dataset_options": "dataset.options",
    "train_split": "dataset.train_split",
    "val_split": "dataset.val_split",
    "image_scale": "dataset.image_scale",
    "crop": "dataset.crop",
    "epochs": "epochs",
    "seed": "seed",
    "checkpoint_dir": "(managed by Ray Tune)",
}
#: TrialConfig fields a sweep may search over (the knobs first, then other hyper-parameters).
SEARCHABLE_FIELDS: tuple[str, ...] = tuple(
    [k for k in names.KNOB_PARAMS if k != "network"]
    + [
        k
        for k in TrialConfig.model_fields
        if k not in names.KNOB_PARAMS and k not in SET_ELSEWHERE and k not in ("model_options",)
    ]
)
INT_FIELDS = frozenset(k for k, f in TrialConfig.model_fields.items() if f.annotation is int)
FLOAT_FIELDS = frozenset(k for k, f in TrialConfig.model_fields.items() if f.annotation is float)
_RANGE_KEYS = ("high", "log", "low", "step")


def choices(values) -> str:
    """``a, b, c``: how every message lists the valid values."""
    return ", ".join(str(v) for v in values)


@dataclass(frozen=True)
class Knob:
    """One dimension of the search space, normalised.

    ``kind`` is ``fixed`` (``values[0]``), ``choice`` (``values``), ``int`` or ``float`` (a range
    ``[low, high]`` with optional ``step`` and ``log``).
    """

    name: str
    kind: Literal["fixed", "choice", "int", "float"]
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    @property
    def searched(self) -> bool:
        return self.kind != "fixed" and not (self.kind == "choice" and len(self.values) == 1)

    def grid_values(self) -> list:
        """Every value of this knob, in order (a range needs a step, or must be an int range)."""
        if self.kind in ("fixed", "choice"):
            return list(self.values)
        if self.kind == "int":
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.step is None:
            raise ValueError(f"float range of {self.name} has no step")
        num_steps = int(math.floor((self.high - self.low) / self.step + 1e-9))
        return [round(self.low + i * self.step, 12) for i in range(num_steps + 1)]

    def describe(self) -> str:
        if self.kind == "fixed":
            return repr(self.values[0])
        if self.kind == "choice":
            return "{" + ", ".join(repr(v) for v in self.values) + "}"
        extra = (f" step {self.step:g}" if self.step else "") + (" log" if self.log else "")
        kind = "int" if self.kind == "int" else "float"
        return f"{kind} [{self.low:g}, {self.high:g}]{extra}"


def knob_from_space(name: str, raw: Any) -> Knob:
    """The :class:`Knob` of one (already checked) ``space`` entry: a range, a list or a value."""
    if isinstance(raw, dict):
        whole = all(float(raw.get(k, 0) or 0).is_integer() for k in ("low", "high", "step"))
        return Knob(
            name,
            "int" if name in INT_FIELDS and whole else "float",
            low=raw["low"],
            high=raw["high"],
            step=raw.get("step"),
            log=bool(raw.get("log", False)),
        )
    if isinstance(raw, (list, tuple)):
        return Knob(name, "choice", tuple(raw))
    return Knob(name, "fixed", (raw,))


def check_trial_value(field_name: str, value: Any) -> str | None:
    """Validate one value of a TrialConfig field on its own; return the message or None."""
    try:
        TrialConfig.model_validate({field_name: value})
    except ValidationError as exc:
        return f"{exc.errors()[0]['msg']} (got {value!r})"
    return None


def check_space(space: dict[str, Any], train: dict[str, Any], errors: list[tuple[str, str]]) -> None:
    """Append a ``(field, message)`` to ``errors`` for every bad entry of a spec's ``space``."""
    for name, raw in space.items():
        where = f"space.{name}"
        if name in SET_ELSEWHERE:
            errors.append((where, f"{name} is not searched here; set it in `{SET_ELSEWHERE[name]}`"))
            continue
        if name not in SEARCHABLE_FIELDS:
            errors.append((where, f"unknown knob {name!r}; valid knobs: {choices(SEARCHABLE_FIELDS)}"))
            continue
        if name in train:
            errors.append((f"train.{name}", f"{name} is also in `space`; set it in one place"))
        if isinstance(raw, dict):
            _check_range(name, raw, where, errors)
        elif isinstance(raw, (list, tuple)):
            _check_choices(name, raw, where, errors)
        else:
            msg = check_trial_value(name, raw)
            if msg:
                errors.append((where, msg))


def _check_choices(name: str, raw: list | tuple, where: str, errors: list[tuple[str, str]]) -> None:
    if not raw:
        errors.append((where, "empty list of choices; give at least one value"))
        return
    seen = []
    for i, value in enumerate(raw):
        if isinstance(value, (dict, list)):
            errors.append((f"{where}[{i}]", f"a choice must be a single value (got {value!r})"))
            continue
        msg = check_trial_value(name, value)
        if msg:
            errors.append((f"{where}[{i}]", msg))
        elif value in seen:
            errors.append((f"{where}[{i}]", f"duplicate choice {value!r}"))
        seen.append(value)


def _check_range(name: str, raw: dict, where: str, errors: list[tuple[str, str]]) -> None:
    unknown = sorted(set(raw) - set(_RANGE_KEYS))
    if unknown:
        errors.append((f"{where}.{unknown[0]}", f"unknown range key; valid keys: {choices(_RANGE_KEYS)}"))
        return
    if name not in INT_FIELDS and name not in FLOAT_FIELDS:
        categories = get_args(TrialConfig.model_fields[name].annotation)
        shown = f" (choices: {choices(categories)})" if categories else ""
        errors.append((where, f"{name} is categorical{shown}; give a list of choices, not a range"))
        return
    for key in ("low", "high"):
        if key not in raw:
            errors.append((f"{where}.{key}", "a range needs both `low` and `high`"))
            return
        bound = raw[key]
        if not isinstance(bound, (int, float)) or isinstance(bound, bool):
            errors.append((f"{where}.{key}", f"must be a number (got {bound!r})"))
            return
        msg = check_trial_value(name, int(bound) if name in INT_FIELDS and float(bound).is_integer() else bound)
        if msg:
            errors.append((f"{where}.{key}", msg))
            return
    low, high = raw["low"], raw["high"]
    if not low < high:
        errors.append((where, f"low must be < high (got low={low!r}, high={high!r})"))
        return
    step, log = raw.get("step"), raw.get("log", False)
    if not isinstance(log, bool):
        errors.append((f"{where}.log", f"must be true or false (got {log!r})"))
    if step is not None:
        if not isinstance(step, (int, float)) or isinstance(step, bool) or step <= 0:
            errors.append((f"{where}.step", f"must be a positive number (got {step!r})"))
        elif log:
            errors.append((f"{where}.step", "a log range cannot have a step"))
        elif name in INT_FIELDS and not float(step).is_integer():
            errors.append((f"{where}.step", f"{name} is an integer; step must be a whole number (got {step!r})"))
    if name in INT_FIELDS and not (float(low).is_integer() and float(high).is_integer()):
        errors.append((where, f"{name} is an integer; low and high must be whole numbers (got {low!r}, {high!r})"))
    if log and low <= 0:
        errors.append((f"{where}.low", f"a log range needs low > 0 (got {low!r})"))


def config_key(config: Mapping[str, Any]) -> tuple:
    """A hashable key of a configuration (its field values, order-free): two configurations with
    the same key are the same point of the space."""
    return tuple(sorted((k, repr(v)) for k, v in config.items()))
