"""The specification of a whole sweep, validated once before Ray (or anything heavy) starts.

A sweep spec (YAML, see ``sweeps/*.yaml``) says which dataset, which networks, the search space of
each knob, what to optimise, how to search and with which resources per trial::

    name: demo
    dataset: {name: synthetic, options: {num_samples: 32, size: [64, 64]}}
    networks: [deeplabv3plus_tiny, dan_tiny, unet_tiny]
    space:
      grid_stride: [2, 4, 8]                  # a list: the choices
      keep: {low: 0.25, high: 1.0}            # a range (float); `step` makes it discrete
      lr: {low: 1.0e-4, high: 1.0e-2, log: true}
      truncation: fft                         # a single value: fixed
    train: {batch_size: 8, max_train_batches: 4}   # fixed TrialConfig fields
    objectives: {miou: max, gflops: min}
    search: {algorithm: optuna, sampler: nsga2}
    asha: {metric: miou, grace_period: 1}
    num_samples: 8
    max_concurrent: 2
    resources: {cpu: 1, gpu: 0.5}
    epochs: 3

:func:`load_sweep_spec` turns a file or a dict into a :class:`SweepSpec` or raises
:class:`SweepSpecError` listing every problem as ``field: message (got value); valid: ...``.
No YAML line numbers are needed: every message names the exact field (``space.keep[1]``).
"""

from __future__ import annotations

import itertools
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from segcore import names

from .trial import TrialConfig

__all__ = [
    "SweepSpec",
    "SweepSpecError",
    "Knob",
    "load_sweep_spec",
    "VALID_METRICS",
    "SEARCHABLE_FIELDS",
]

#: Metrics every trial reports: objectives and schedulers pick from these.
VALID_METRICS: tuple[str, ...] = names.TRIAL_METRICS

# TrialConfig fields that the sweep sets elsewhere (dataset section, epochs, seed, networks), so
# neither `space` nor `train` may set them.
_SET_ELSEWHERE = {
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
        if k not in names.KNOB_PARAMS and k not in _SET_ELSEWHERE and k not in ("model_options",)
    ]
)
_INT_FIELDS = {k for k, f in TrialConfig.model_fields.items() if f.annotation is int}
_FLOAT_FIELDS = {k for k, f in TrialConfig.model_fields.items() if f.annotation is float}
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


def _choices(values) -> str:
    return ", ".join(str(v) for v in values)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    """Where the data comes from; the trial configs get ``dataset``, ``data_root`` and so on."""

    name: str = "synthetic"
    root: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    image_scale: float | None = Field(None, gt=0.0, le=4.0)
    crop: tuple[int, int] | None = None


class SpectralSpec(_Strict):
    """The training-free analysis logged on the sweep's parent run (contract 1)."""

    enabled: bool = True
    split: str = "train"
    limit: int | None = Field(None, ge=1)
    strides: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    blocks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    # The efficient grid: the coarsest stride whose oracle mIoU is within `tolerance` of dense, or
    # whose band energy reaches `energy_threshold` (DESIGN.md §2).
    tolerance: float = Field(0.01, gt=0.0, lt=1.0)
    energy_threshold: float = Field(0.95, gt=0.0, le=1.0)


class SearchSpec(_Strict):
    """``optuna`` (multi-objective NSGA-II or TPE), ``grid`` (every combination) or ``random``."""

    algorithm: Literal["optuna", "grid", "random"] = "optuna"
    sampler: Literal["nsga2", "tpe"] | None = None
    # Small categorical spaces make samplers propose the same configuration again; re-running it
    # would waste a slot, so a repeat gets the earlier result instead (Optuna's FAQ recipe).
    dedupe: bool = True
    population_size: int | None = Field(None, ge=2)


class AshaSpec(_Strict):
    """Asynchronous successive halving on one metric (time unit: epochs)."""

    metric: str = names.METRIC_MIOU
    mode: Literal["max", "min"] | None = None
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)


class ResourcesSpec(_Strict):
    """Resources per trial; a GPU fraction (``gpu: 0.5``) packs two trials on one GPU."""

    cpu: float = Field(1.0, gt=0.0)
    gpu: float = Field(0.0, ge=0.0)


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
        n = int(math.floor((self.high - self.low) / self.step + 1e-9))
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]

    def describe(self) -> str:
        if self.kind == "fixed":
            return repr(self.values[0])
        if self.kind == "choice":
            return "{" + ", ".join(repr(v) for v in self.values) + "}"
        extra = (f" step {self.step:g}" if self.step else "") + (" log" if self.log else "")
        kind = "int" if self.kind == "int" else "float"
        return f"{kind} [{self.low:g}, {self.high:g}]{extra}"


class SweepSpec(_Strict):
    """A whole sweep. Build it with :func:`load_sweep_spec`, which also runs the semantic checks."""

    name: str
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    networks: list[str] = Field(min_length=1)
    space: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    # Per-network fixed trial fields on top of `train`, e.g. {deeplabv3plus: {backbone: resnet18}}
    # (U-Net takes no backbone, so a backbone cannot go in `train` for all three).
    network_config: dict[str, dict[str, Any]] = Field(default_factory=dict)
    objectives: dict[str, Literal["max", "min"]] = Field(
        default_factory=lambda: {names.METRIC_MIOU: "max", "gflops": "min"}
    )
    search: SearchSpec = Field(default_factory=SearchSpec)
    asha: AshaSpec | None = None
    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    max_failures: int = Field(1, ge=0)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    epochs: int = Field(5, ge=1)
    storage_path: str = "ray_results"
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str | None = None
    seed: int = 0
    spectral: SpectralSpec = Field(default_factory=SpectralSpec)

    # --- derived views ---------------------------------------------------------------------
    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name

    @property
    def sampler(self) -> str:
        """The Optuna sampler actually used: NSGA-II for several objectives, TPE for one."""
        if self.search.sampler:
            return self.search.sampler
        return "nsga2" if len(self.objectives) > 1 else "tpe"

    def knobs(self) -> dict[str, Knob]:
        """The normalised search space, ``network`` first (from ``networks``)."""
        out = {"network": Knob("network", "choice", tuple(self.networks))}
        for name, raw in self.space.items():
            out[name] = _to_knob(name, raw)
        return out

    def searched_knobs(self) -> dict[str, Knob]:
        return {k: v for k, v in self.knobs().items() if v.searched}

    def base_config(self) -> dict[str, Any]:
        """The fixed part of every trial's :class:`TrialConfig` (no searched knob in it)."""
        base: dict[str, Any] = dict(self.train)
        base.update(
            dataset=self.dataset.name,
            data_root=self.dataset.root,
            dataset_options=dict(self.dataset.options),
            train_split=self.dataset.train_split,
            val_split=self.dataset.val_split,
            image_scale=self.dataset.image_scale,
            crop=list(self.dataset.crop) if self.dataset.crop else None,
            epochs=self.epochs,
            seed=self.seed,
        )
        for name, knob in self.knobs().items():
            if not knob.searched:
                base[name] = knob.values[0]
        return base

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the searched knobs (the ``grid`` algorithm's trials, once each)."""
        knobs = self.searched_knobs()
        names = list(knobs)
        return [dict(zip(names, combo)) for combo in itertools.product(*(knobs[n].grid_values() for n in names))]

    def space_size(self) -> int | None:
        """Number of distinct configurations, or ``None`` when a knob is continuous."""
        size = 1
        for knob in self.searched_knobs().values():
            if knob.kind == "float" and knob.step is None:
                return None
            size *= len(knob.grid_values())
        return size

    def num_trials(self) -> int:
        """Trials the sweep will run: the grid times ``num_samples`` for ``grid``, else ``num_samples``
        (capped at the space size when ``dedupe`` is on and the space is finite)."""
        if self.search.algorithm == "grid":
            return len(self.grid()) * self.num_samples
        size = self.space_size()
        if self.search.algorithm == "optuna" and self.search.dedupe and size is not None:
            return min(self.num_samples, size)
        return self.num_samples

    def trial_config(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """The full trial config (a dict for :func:`segcore.train.fit`) for one sampled point."""
        cfg = self.base_config()
        cfg.update(sampled)
        cfg.update(self.network_config.get(cfg.get("network"), {}))
        return cfg

    def asha_mode(self) -> str | None:
        if self.asha is None:
            return None
        return self.asha.mode or self.objectives.get(self.asha.metric) or _natural_mode(self.asha.metric)

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec (defaults filled in), JSON/YAML-safe, for logging on the parent run."""
        data = self.model_dump(mode="json")
        data["experiment"] = self.experiment_name
        data["search"]["sampler"] = self.sampler if self.search.algorithm == "optuna" else None
        if self.asha is not None:
            data["asha"]["mode"] = self.asha_mode()
        return data


def _natural_mode(metric: str) -> str | None:
    if metric in (names.METRIC_MIOU, names.METRIC_PIXEL_ACCURACY):
        return "max"
    if metric in VALID_METRICS:
        return "min"  # losses and every cost: less is better
    return None


def _to_knob(name: str, raw: Any) -> Knob:
    if isinstance(raw, dict):
        kind = "int" if name in _INT_FIELDS and all(
            float(raw.get(k, 0) or 0).is_integer() for k in ("low", "high", "step")
        ) else "float"
        return Knob(
            name,
            kind,
            low=raw["low"],
            high=raw["high"],
            step=raw.get("step"),
            log=bool(raw.get("log", False)),
        )
    if isinstance(raw, (list, tuple)):
        return Knob(name, "choice", tuple(raw))
    return Knob(name, "fixed", (raw,))


# --- validation ----------------------------------------------------------------------------------


def _pydantic_errors(exc: ValidationError, model: type[BaseModel]) -> list[tuple[str, str]]:
    """Field-exact messages; unknown fields list the valid ones of the model they sit in."""
    out = []
    for err in exc.errors():
        loc = [p for p in err["loc"]]
        name = _join_loc(loc)
        got = err.get("input")
        if err["type"] == "extra_forbidden":
            owner = _model_at(model, loc[:-1])
            valid = list(owner.model_fields) if owner else []
            out.append((name, f"unknown field; valid fields: {_choices(valid)}"))
            continue
        shown = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {got!r})"
        out.append((name, f"{err['msg']}{shown}"))
    return out


def _join_loc(loc) -> str:
    text = ""
    for p in loc:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text or "(root)"


def _model_at(model: type[BaseModel], loc) -> type[BaseModel] | None:
    current: Any = model
    for p in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or p not in current.model_fields:
            return None
        ann = current.model_fields[p].annotation
        args = getattr(ann, "__args__", ())
        current = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _check_trial_value(field_name: str, value: Any, where: str) -> str | None:
    """Validate one value of a TrialConfig field on its own; return the message or None."""
    try:
        TrialConfig.model_validate({field_name: value})
    except ValidationError as exc:
        err = exc.errors()[0]
        return f"{err['msg']} (got {value!r})"
    return None


def _check_space(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    for name, raw in spec.space.items():
        where = f"space.{name}"
        if name in _SET_ELSEWHERE:
            errors.append((where, f"{name} is not searched here; set it in `{_SET_ELSEWHERE[name]}`"))
            continue
        if name not in SEARCHABLE_FIELDS:
            errors.append((where, f"unknown knob {name!r}; valid knobs: {_choices(SEARCHABLE_FIELDS)}"))
            continue
        if name in spec.train:
            errors.append((f"train.{name}", f"{name} is also in `space`; set it in one place"))
        if isinstance(raw, dict):
            _check_range(name, raw, where, errors)
        elif isinstance(raw, (list, tuple)):
            if not raw:
                errors.append((where, "empty list of choices; give at least one value"))
                continue
            seen = []
            for i, value in enumerate(raw):
                if isinstance(value, (dict, list)):
                    errors.append((f"{where}[{i}]", f"a choice must be a single value (got {value!r})"))
                    continue
                msg = _check_trial_value(name, value, f"{where}[{i}]")
                if msg:
                    errors.append((f"{where}[{i}]", msg))
                elif value in seen:
                    errors.append((f"{where}[{i}]", f"duplicate choice {value!r}"))
                seen.append(value)
        else:
            msg = _check_trial_value(name, raw, where)
            if msg:
                errors.append((where, msg))


def _check_range(name: str, raw: dict, where: str, errors: list[tuple[str, str]]) -> None:
    allowed = {"low", "high", "step", "log"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        errors.append((f"{where}.{unknown[0]}", f"unknown range key; valid keys: {_choices(sorted(allowed))}"))
        return
    if name not in _INT_FIELDS and name not in _FLOAT_FIELDS:
        choices = get_args(TrialConfig.model_fields[name].annotation)
        shown = f" (choices: {_choices(choices)})" if choices else ""
        errors.append((where, f"{name} is categorical{shown}; give a list of choices, not a range"))
        return
    for key in ("low", "high"):
        if key not in raw:
            errors.append((f"{where}.{key}", "a range needs both `low` and `high`"))
            return
        if not isinstance(raw[key], (int, float)) or isinstance(raw[key], bool):
            errors.append((f"{where}.{key}", f"must be a number (got {raw[key]!r})"))
            return
        msg = _check_trial_value(name, int(raw[key]) if name in _INT_FIELDS and float(raw[key]).is_integer() else raw[key], where)
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
        elif name in _INT_FIELDS and not float(step).is_integer():
            errors.append((f"{where}.step", f"{name} is an integer; step must be a whole number (got {step!r})"))
    if name in _INT_FIELDS and not (float(low).is_integer() and float(high).is_integer()):
        errors.append((where, f"{name} is an integer; low and high must be whole numbers (got {low!r}, {high!r})"))
    if log and low <= 0:
        errors.append((f"{where}.low", f"a log range needs low > 0 (got {low!r})"))


def _check_train(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    fields = [(f"train.{k}", k, v) for k, v in spec.train.items()]
    for net, overrides in spec.network_config.items():
        if net not in spec.networks:
            errors.append((f"network_config.{net}", f"not one of this sweep's networks: {_choices(spec.networks)}"))
            continue
        for name, value in overrides.items():
            where = f"network_config.{net}.{name}"
            if name in spec.space:
                errors.append((where, f"{name} is also in `space`; set it in one place"))
            else:
                fields.append((where, name, value))
    for where, name, value in fields:
        if name in _SET_ELSEWHERE:
            errors.append((where, f"set {name} in `{_SET_ELSEWHERE[name]}`, not here"))
        elif name not in TrialConfig.model_fields:
            valid = [k for k in TrialConfig.model_fields if k not in _SET_ELSEWHERE]
            errors.append((where, f"unknown trial field; valid fields: {_choices(valid)}"))
        else:
            msg = _check_trial_value(name, value, where)
            if msg:
                errors.append((where, msg))


def _known_networks() -> list[str] | None:
    try:
        from segcore.models import list_models
    except ImportError:  # the models room has not landed in this checkout: checked at trial time
        return None
    return list(list_models())


def _check_networks(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    known = _known_networks()
    seen = set()
    for i, net in enumerate(spec.networks):
        if known is not None and net not in known:
            errors.append((f"networks[{i}]", f"unknown network {net!r}; valid networks: {_choices(known)}"))
        elif net in seen:
            errors.append((f"networks[{i}]", f"duplicate network {net!r}"))
        seen.add(net)


def _check_dataset(spec: SweepSpec, errors: list[tuple[str, str]], check_paths: bool) -> None:
    from segcore.data import build_dataset, list_datasets

    ds = spec.dataset
    if ds.name not in list_datasets():
        errors.append(("dataset.name", f"unknown dataset {ds.name!r}; valid datasets: {_choices(list_datasets())}"))
        return
    if ds.crop is not None and min(ds.crop) < 1:
        errors.append(("dataset.crop", f"crop sizes must be >= 1 (got {list(ds.crop)})"))
    if ds.name != "synthetic" and ds.root is None:
        errors.append(("dataset.root", f"dataset {ds.name!r} needs a root folder"))
        return
    if not check_paths:
        return
    if ds.root is not None and not Path(ds.root).expanduser().is_dir():
        errors.append(("dataset.root", f"folder {ds.root} does not exist"))
        return
    # Open both splits label-only: cheap, and catches bad options, missing splits and empty folders.
    for key, split in (("dataset.train_split", ds.train_split), ("dataset.val_split", ds.val_split)):
        try:
            build_dataset(ds.name, ds.root, split, labels_only=True, **ds.options)
        except TypeError as exc:
            errors.append(("dataset.options", f"not accepted by dataset {ds.name!r}: {exc}"))
            return
        except (ValueError, KeyError, FileNotFoundError) as exc:
            msg = f"{exc.args[0] if exc.args else exc}"
            if any(opt in msg for opt in ds.options):
                key = "dataset.options"  # e.g. "cutoff must be in (0, 0.5]"
            elif isinstance(exc, FileNotFoundError):
                key = "dataset.root"
            errors.append((key, f"split {split!r}: {msg}"))
            return


def _check_objectives(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    if not spec.objectives:
        errors.append(("objectives", f"give at least one objective, e.g. {{miou: max}}; valid metrics: {_choices(VALID_METRICS)}"))
    for metric in spec.objectives:
        if metric not in VALID_METRICS:
            errors.append((f"objectives.{metric}", f"unknown metric {metric!r}; valid metrics: {_choices(VALID_METRICS)}"))
    if spec.asha is not None:
        if spec.asha.metric not in VALID_METRICS:
            errors.append(("asha.metric", f"unknown metric {spec.asha.metric!r}; valid metrics: {_choices(VALID_METRICS)}"))
        if spec.asha.grace_period >= spec.epochs:
            errors.append(
                ("asha.grace_period", f"must be < epochs ({spec.epochs}) for ASHA to stop anything (got {spec.asha.grace_period})")
            )


def _check_search(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    algo = spec.search.algorithm
    if algo != "optuna":
        if spec.search.sampler is not None:
            errors.append(("search.sampler", f"only used by algorithm optuna (algorithm is {algo!r})"))
        if spec.search.population_size is not None:
            errors.append(("search.population_size", f"only used by the optuna nsga2 sampler (algorithm is {algo!r})"))
    if algo == "optuna" and spec.search.population_size is not None and spec.sampler != "nsga2":
        errors.append(("search.population_size", f"only used by sampler nsga2 (sampler is {spec.sampler!r})"))
    if algo == "grid":
        for name, raw in spec.space.items():
            if isinstance(raw, dict) and name in _FLOAT_FIELDS and raw.get("step") is None:
                errors.append((f"space.{name}", "grid search needs a list or a range with `step` (a continuous range has no grid)"))


def _check_runtime(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    gpu = spec.resources.gpu
    if gpu > 1 and not float(gpu).is_integer():
        errors.append(("resources.gpu", f"a GPU fraction must be <= 1; above 1 use whole GPUs (got {gpu})"))
    if not _NAME_RE.match(spec.name):
        errors.append(("name", f"use letters, digits, '_', '-' and '.' (got {spec.name!r})"))
    uri = spec.tracking_uri
    scheme = uri.split(":", 1)[0].split("+", 1)[0] if ":" in uri else ""
    if scheme == "file" or not scheme:
        errors.append(
            ("tracking_uri", f"file stores are not supported; use sqlite:///mlflow.db or http://HOST:5000 (got {uri!r})")
        )
    elif scheme not in _TRACKING_SCHEMES:
        errors.append(("tracking_uri", f"unknown scheme {scheme!r}; valid schemes: {_choices(_TRACKING_SCHEMES)}"))


def _check_combinations(spec: SweepSpec, errors: list[tuple[str, str]], check_paths: bool = True) -> None:
    """Each network with each value of each knob (the others at their first value), through the
    trial's own validation (``segcore.train.validate_config``): e.g. a grid stride a network cannot
    produce, or a block larger than the crop, is caught here rather than in trial 17."""
    try:
        from segcore.train import validate_config
    except ImportError:  # the models room has not landed in this checkout: checked at trial time
        return
    if not check_paths and spec.dataset.root is not None:
        # The data lives elsewhere (a cluster's shared storage): check everything but the root.
        with tempfile.TemporaryDirectory(prefix="segcore-spec-") as stand_in:
            return _check_combinations(
                spec.model_copy(update={"dataset": spec.dataset.model_copy(update={"root": stand_in})}), errors
            )
    knobs = spec.searched_knobs()
    first = {n: (k.grid_values()[0] if k.kind in ("choice", "int") or k.step else k.low) for n, k in knobs.items()}
    reported = set()
    for i, net in enumerate(spec.networks):
        try:
            validate_config(spec.trial_config(dict(first, network=net)))
        except (ValueError, KeyError) as exc:
            # The network fails with every knob at its first value: one message, not one per knob.
            errors.append((f"networks[{i}]", f"network {net!r}: {exc.args[0] if exc.args else exc}"))
            continue
        for name, knob in knobs.items():
            if name == "network":
                continue
            values = knob.grid_values() if knob.kind in ("choice", "int") or knob.step else [knob.low, knob.high]
            for value in values:
                try:
                    validate_config(spec.trial_config(dict(first, network=net, **{name: value})))
                except (ValueError, KeyError) as exc:
                    msg = exc.args[0] if exc.args else str(exc)
                    if (name, msg) not in reported:
                        reported.add((name, msg))
                        errors.append((f"space.{name}", f"{name}={value!r} with network {net!r}: {msg}"))


def validate_spec(spec: SweepSpec, *, check_paths: bool = True) -> list[tuple[str, str]]:
    """All semantic problems of a parsed spec as ``(field, message)``; empty when it is good."""
    errors: list[tuple[str, str]] = []
    _check_runtime(spec, errors)
    _check_networks(spec, errors)
    _check_dataset(spec, errors, check_paths)
    _check_space(spec, errors)
    _check_train(spec, errors)
    _check_objectives(spec, errors)
    _check_search(spec, errors)
    if not errors:
        # The combination check builds trial configs, so it needs everything above to be sane.
        _check_combinations(spec, errors, check_paths)
    return errors


def _absolute(path: str) -> str:
    return str(Path(os.path.expandvars(path)).expanduser().resolve())


def _resolve_paths(spec: SweepSpec) -> SweepSpec:
    """Relative paths are relative to the working directory of the command. Trials run in Ray
    workers whose working directory is elsewhere, so every path is made absolute here, once: the
    dataset root, the storage path and a relative SQLite file (``sqlite:///mlflow.db``)."""
    update: dict[str, Any] = {"storage_path": _absolute(spec.storage_path)}
    if spec.dataset.root is not None:
        update["dataset"] = spec.dataset.model_copy(update={"root": _absolute(spec.dataset.root)})
    uri = spec.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////") and ":memory:" not in uri:
        update["tracking_uri"] = "sqlite:///" + _absolute(uri[len("sqlite:///"):])
    return spec.model_copy(update=update)


def load_sweep_spec(
    source: str | Path | dict[str, Any],
    *,
    overrides: dict[str, Any] | None = None,
    check_paths: bool = True,
) -> SweepSpec:
    """Read (YAML file or dict), apply ``overrides`` (top-level keys, e.g. ``tracking_uri`` from the
    command line), and validate everything before any work starts.

    Args:
        source: path to a YAML file, or the spec as a dict.
        overrides: top-level fields replacing the file's (``None`` values are ignored).
        check_paths: open the dataset's splits (label-only) to check the root and options. Turn off
            to check a cluster spec whose data lives elsewhere.

    Raises:
        SweepSpecError: listing every problem, each naming its field, the bad value and valid choices.
        FileNotFoundError: the YAML file does not exist.
    """
    label = None
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"sweep spec {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SweepSpecError([("(file)", f"not valid YAML: {exc}")], label) from None
    else:
        data = source
    if not isinstance(data, dict):
        raise SweepSpecError([("(root)", f"a sweep spec is a mapping of fields (got {type(data).__name__})")], label)
    data = dict(data)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SweepSpecError(_pydantic_errors(exc, SweepSpec), label) from None
    spec = _resolve_paths(spec)
    errors = validate_spec(spec, check_paths=check_paths)
    if errors:
        raise SweepSpecError(errors, label)
    return spec
