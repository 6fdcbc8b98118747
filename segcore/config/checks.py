"""Checks of a parsed sweep spec that need nothing but the spec: every problem becomes a
``(field, message)`` pair, and :class:`SweepSpecError` lists them all at once.

Checks that need the model registry, the datasets or a trial's own validation belong to the layers
that own those (:mod:`segcore.tune.validate`); they append to the same list before the error is
raised, through ``load_sweep_spec(..., checks=...)``.
"""

from __future__ import annotations

import re
import typing
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from segcore import names

from .knobs import FLOAT_FIELDS, SEARCHABLE_FIELDS, SET_ELSEWHERE, check_space, check_trial_value, choices
from .trial import TrialConfig

if TYPE_CHECKING:
    from .sweep import SweepSpec

__all__ = ["SweepSpecError", "VALID_METRICS", "validate_spec", "pydantic_errors"]

#: Metrics every trial reports: objectives and schedulers pick from these.
VALID_METRICS: tuple[str, ...] = names.TRIAL_METRICS
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


class SweepSpecError(ValueError):
    """A sweep spec is invalid. ``errors`` holds ``(field, message)`` pairs; ``str()`` lists them."""

    def __init__(self, errors: list[tuple[str, str]], source: str | None = None):
        self.errors = list(errors)
        self.source = source
        head = f"invalid sweep spec{f' {source}' if source else ''}"
        lines = [f"  {name}: {msg}" for name, msg in self.errors]
        super().__init__("\n".join([head + f" ({len(self.errors)} problem(s)):", *lines]))


def pydantic_errors(exc: ValidationError, model: type[BaseModel]) -> list[tuple[str, str]]:
    """Field-exact messages; unknown fields list the valid ones of the model they sit in."""
    out = []
    for err in exc.errors():
        loc = list(err["loc"])
        name = _join_loc(loc)
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            valid = list(owner.model_fields) if owner else []
            out.append((name, f"unknown field; valid fields: {choices(valid)}"))
            continue
        got = err.get("input")
        shown = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {got!r})"
        out.append((name, f"{err['msg']}{shown}"))
    return out


def _join_loc(loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _model_at(model: type[BaseModel], loc) -> type[BaseModel] | None:
    """The pydantic model that holds the field at ``loc`` (to list its valid fields)."""
    current: Any = model
    keyed = False  # the previous part was a dict of models: this part is a key, not a field
    for part in loc:
        if keyed:
            keyed = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        annotation = current.model_fields[part].annotation
        args = getattr(annotation, "__args__", ())
        keyed = typing.get_origin(annotation) is dict
        current = next((a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _check_train(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    fields = [(f"train.{k}", k, v) for k, v in spec.train.items()]
    for net, overrides in spec.network_config.items():
        if net not in spec.networks:
            errors.append((f"network_config.{net}", f"not one of this sweep's networks: {choices(spec.networks)}"))
            continue
        for name, value in overrides.items():
            where = f"network_config.{net}.{name}"
            if name in spec.space:
                errors.append((where, f"{name} is also in `space`; set it in one place"))
            else:
                fields.append((where, name, value))
    for where, name, value in fields:
        if name in SET_ELSEWHERE:
            errors.append((where, f"set {name} in `{SET_ELSEWHERE[name]}`, not here"))
        elif name not in TrialConfig.model_fields:
            valid = [k for k in TrialConfig.model_fields if k not in SET_ELSEWHERE]
            errors.append((where, f"unknown trial field; valid fields: {choices(valid)}"))
        else:
            msg = check_trial_value(name, value)
            if msg:
                errors.append((where, msg))


def _check_networks(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    """Duplicates only: whether a name is registered is :mod:`segcore.tune.validate`'s check."""
    seen = set()
    for i, net in enumerate(spec.networks):
        if net in seen:
            errors.append((f"networks[{i}]", f"duplicate network {net!r}"))
        seen.add(net)


def _check_dataset(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    """The fields alone; the name and the folders are :mod:`segcore.tune.validate`'s checks."""
    dataset = spec.dataset
    if dataset.crop is not None and min(dataset.crop) < 1:
        errors.append(("dataset.crop", f"crop sizes must be >= 1 (got {list(dataset.crop)})"))


def _check_objectives(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    valid = choices(VALID_METRICS)
    if not spec.objectives:
        errors.append(("objectives", f"give at least one objective, e.g. {{miou: max}}; valid metrics: {valid}"))
    for metric in spec.objectives:
        if metric not in VALID_METRICS:
            errors.append((f"objectives.{metric}", f"unknown metric {metric!r}; valid metrics: {valid}"))


def _check_scheduler(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    scheduler = spec.scheduler
    if scheduler is None:
        return
    if scheduler.name == "asha":
        if scheduler.metric is not None and scheduler.metric not in VALID_METRICS:
            errors.append(("scheduler.metric", f"unknown metric {scheduler.metric!r}; valid metrics: {choices(VALID_METRICS)}"))
    else:
        for field in ("metric", "mode"):
            if getattr(scheduler, field) is not None:
                errors.append((f"scheduler.{field}", f"only used by scheduler asha; {scheduler.name} ranks by "
                               f"every objective ({choices(list(spec.objectives))})"))
    if scheduler.grace_period >= spec.epochs:
        errors.append((
            "scheduler.grace_period",
            f"must be < epochs ({spec.epochs}) for {scheduler.name} to stop anything (got {scheduler.grace_period})",
        ))


def _check_constraints(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    """Bounds on cost metrics only (what is known before training), each with a bound."""
    for metric, bound in spec.constraints.items():
        where = f"constraints.{metric}"
        if metric not in names.COST_METRICS:
            errors.append((where, f"unknown cost metric {metric!r}; valid cost metrics: {choices(names.COST_METRICS)}"))
        if bound.min is None and bound.max is None:
            errors.append((where, "no bound; give min, max or both, e.g. {max: 2.0}"))
        elif bound.min is not None and bound.max is not None and bound.min > bound.max:
            errors.append((where, f"min must be <= max (got min {bound.min:g}, max {bound.max:g})"))


def _check_search(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    algorithm = spec.search.algorithm
    if algorithm != "optuna":
        if spec.search.sampler is not None:
            errors.append(("search.sampler", f"only used by algorithm optuna (algorithm is {algorithm!r})"))
        if spec.search.population_size is not None and algorithm != "spectral":
            errors.append(("search.population_size",
                           f"only used by the NSGA-II of algorithms optuna and spectral (algorithm is {algorithm!r})"))
    if algorithm == "optuna" and spec.search.population_size is not None and spec.sampler != "nsga2":
        errors.append(("search.population_size", f"only used by sampler nsga2 (sampler is {spec.sampler!r})"))
    if algorithm != "grid" and spec.search.explicit_points:
        errors.append(("search.axes" if spec.search.axes is not None else "search.seeds",
                       f"only used by algorithm grid (algorithm is {algorithm!r})"))
    if spec.search.axes is not None and not spec.search.axes:
        errors.append(("search.axes", "empty list of axes; give at least one, or leave `axes` out"))
    for i, axis in enumerate(spec.search.axes or []):
        _check_axis(axis, f"search.axes[{i}]", errors)
    if spec.search.seeds is not None:
        if not spec.search.seeds:
            errors.append(("search.seeds", "empty list of seeds; give at least one, or leave `seeds` out"))
        elif len(set(spec.search.seeds)) != len(spec.search.seeds):
            errors.append(("search.seeds", f"duplicate seeds (got {spec.search.seeds})"))
    if algorithm in ("grid", "spectral"):
        for name, raw in spec.space.items():
            if isinstance(raw, dict) and name in FLOAT_FIELDS and raw.get("step") is None:
                errors.append((f"space.{name}", f"{algorithm} search needs a list or a range with `step` "
                                                f"(a finite space; a continuous range has no grid)"))
    if algorithm == "spectral":
        _check_spectral(spec, errors)
    if spec.warm_start is not None and algorithm not in ("optuna", "spectral"):
        errors.append(("warm_start", f"seeds a searcher: only used by algorithms optuna and spectral "
                                     f"(algorithm is {algorithm!r})"))


def _check_spectral(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    """The spectral prior predicts mIoU from the spectrum and knows every cost before training."""
    if not spec.spectral.enabled:
        errors.append(("spectral.enabled", "search.algorithm spectral reads the sweep's spectrum; "
                                           "turn the spectral analysis on"))
    if names.METRIC_MIOU not in spec.objectives:
        errors.append(("objectives", f"search.algorithm spectral predicts {names.METRIC_MIOU}: make it an objective"))
    for metric in spec.objectives:
        if metric != names.METRIC_MIOU and metric in VALID_METRICS and metric not in names.COST_METRICS:
            errors.append((f"objectives.{metric}", f"search.algorithm spectral knows only {names.METRIC_MIOU} and "
                                                   f"the costs before training; valid: {choices(names.COST_METRICS)}"))


def _check_axis(axis: dict[str, Any], where: str, errors: list[tuple[str, str]]) -> None:
    """One axis of ``search.axes``: searchable knobs, each a value or a non-empty list of values."""
    if not axis:
        errors.append((where, "empty axis; name at least one knob and its values"))
    for name, raw in axis.items():
        if name in SET_ELSEWHERE or name not in SEARCHABLE_FIELDS:
            errors.append((f"{where}.{name}", f"unknown knob {name!r}; valid knobs: {choices(SEARCHABLE_FIELDS)}"))
            continue
        values = list(raw) if isinstance(raw, (list, tuple)) else [raw]
        if not values:
            errors.append((f"{where}.{name}", "empty list of values"))
        for j, value in enumerate(values):
            field = f"{where}.{name}[{j}]" if isinstance(raw, (list, tuple)) else f"{where}.{name}"
            msg = check_trial_value(name, value)
            if msg:
                errors.append((field, msg))


def _check_runtime(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    gpu = spec.resources.gpu
    if gpu > 1 and not float(gpu).is_integer():
        errors.append(("resources.gpu", f"a GPU fraction must be <= 1; above 1 use whole GPUs (got {gpu})"))
    if not _NAME_RE.match(spec.name):
        errors.append(("name", f"use letters, digits, '_', '-' and '.' (got {spec.name!r})"))
    _check_tracking_uri(spec.tracking_uri, "tracking_uri", errors)
    if spec.warm_start is not None and spec.warm_start.tracking_uri is not None:
        _check_tracking_uri(spec.warm_start.tracking_uri, "warm_start.tracking_uri", errors)


def _check_tracking_uri(uri: str, field: str, errors: list[tuple[str, str]]) -> None:
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if ":" in uri else ""
    if scheme == "file" or not scheme:
        errors.append(
            (field, f"file stores are not supported; use sqlite:///mlflow.db or http://HOST:5000 (got {uri!r})")
        )
    elif scheme not in _TRACKING_SCHEMES:
        errors.append((field, f"unknown scheme {scheme!r}; valid schemes: {choices(_TRACKING_SCHEMES)}"))


def validate_spec(spec: SweepSpec) -> list[tuple[str, str]]:
    """Every problem of a parsed spec that the spec alone shows, as ``(field, message)``."""
    errors: list[tuple[str, str]] = []
    _check_runtime(spec, errors)
    _check_networks(spec, errors)
    _check_dataset(spec, errors)
    check_space(spec.space, spec.train, errors)
    _check_train(spec, errors)
    _check_objectives(spec, errors)
    _check_scheduler(spec, errors)
    _check_constraints(spec, errors)
    _check_search(spec, errors)
    return errors
