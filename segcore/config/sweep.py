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
    scheduler: {name: mo_asha, grace_period: 1}   # or {name: asha, metric: miou}
    constraints: {gflops: {max: 2.0}}            # cost bounds (also `min`): breaking ones never run
    num_samples: 8
    max_concurrent: 2
    resources: {cpu: 1, gpu: 0.5}
    epochs: 3

:func:`load_sweep_spec` turns a file or a dict into a :class:`SweepSpec` or raises
:class:`SweepSpecError` listing every problem as ``field: message (got value); valid: ...``.
No YAML line numbers are needed: every message names the exact field (``space.keep[1]``).
Each ``space`` entry becomes a :class:`~segcore.config.knobs.Knob` (:mod:`segcore.config.knobs`).
The checks live in :mod:`segcore.config.checks` (what the spec alone shows) and
:mod:`segcore.tune.validate` (the model registry, the datasets, each network with each knob value).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from segcore import names

from .checks import VALID_METRICS, SweepSpecError, pydantic_errors, validate_spec
from .knobs import SEARCHABLE_FIELDS, Knob, config_key, knob_from_space

__all__ = [
    "SweepSpec",
    "SearchSpec",
    "SweepSpecError",
    "SpecCheck",
    "Knob",
    "load_sweep_spec",
    "VALID_METRICS",
    "SEARCHABLE_FIELDS",
]

#: A check run by :func:`load_sweep_spec` after the spec's own: it appends ``(field, message)``
#: pairs to the list it is given (which holds the problems found so far).
SpecCheck = Callable[["SweepSpec", list], None]


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
    """The training-free analysis logged on the sweep's parent run (docs/design.md, Science)."""

    enabled: bool = True
    split: str = "train"
    limit: int | None = Field(None, ge=1)
    strides: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    blocks: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    # The efficient grid: the coarsest stride whose oracle mIoU is within `tolerance` of dense, or
    # whose band energy reaches `energy_threshold`.
    tolerance: float = Field(0.01, gt=0.0, lt=1.0)
    energy_threshold: float = Field(0.95, gt=0.0, le=1.0)


class SearchSpec(_Strict):
    """``optuna`` (multi-objective NSGA-II or TPE), ``grid`` (every combination), ``random``, or
    ``spectral`` (the spectral prior's predicted front first, then NSGA-II: ``segcore.tune.prior``)."""

    algorithm: Literal["optuna", "grid", "random", "spectral"] = "optuna"
    sampler: Literal["nsga2", "tpe"] | None = None
    # Small categorical spaces make samplers propose the same configuration again; re-running it
    # would waste a slot, so a repeat gets the earlier result instead (Optuna's FAQ recipe).
    dedupe: bool = True
    population_size: int | None = Field(None, ge=2)
    # `grid` only. Axes: sub-grids run one after another around the baseline in `space` (one-factor-
    # at-a-time designs), e.g. [{grid_stride: [1, 2, 4, 8]}, {block: [2, 4], block_mode: [hard, soft]}];
    # a knob an axis names overrides `space`, the searched knobs of `space` are crossed with every
    # axis, and a configuration two axes share runs once. Seeds: every configuration runs once per seed.
    axes: list[dict[str, Any]] | None = None
    seeds: list[int] | None = None

    @property
    def explicit_points(self) -> bool:
        """Whether the grid is a list of configurations (axes or seeds) rather than one product."""
        return self.axes is not None or self.seeds is not None


class SchedulerSpec(_Strict):
    """Early stopping by asynchronous successive halving (time unit: epochs).

    ``asha`` ranks each rung by one metric (``metric``, ``mode``); ``mo_asha`` by non-dominated
    sorting over every objective of the sweep, so cheap trials on the front's low-cost end go on.
    """

    name: Literal["asha", "mo_asha"]
    metric: str | None = None
    mode: Literal["max", "min"] | None = None
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)


class WarmStartSpec(_Strict):
    """An earlier sweep whose finished trials seed the search (those whose configuration lies in
    this sweep's space); its tracking URI defaults to this sweep's."""

    experiment: str = Field(min_length=1)
    sweep: str = Field(min_length=1)
    tracking_uri: str | None = None


class BoundSpec(_Strict):
    """Bounds on one cost metric (either or both); see :mod:`segcore.config.constraints`."""

    min: float | None = None
    max: float | None = None


class ResourcesSpec(_Strict):
    """Resources per trial; a GPU fraction (``gpu: 0.5``) packs two trials on one GPU."""

    cpu: float = Field(1.0, gt=0.0)
    gpu: float = Field(0.0, ge=0.0)



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
    scheduler: SchedulerSpec | None = None
    # Bounds on cost metrics, e.g. {gflops: {max: 2.0}}: a configuration whose cost (measured
    # before training) breaks one never runs.
    constraints: dict[str, BoundSpec] = Field(default_factory=dict)
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
    warm_start: WarmStartSpec | None = None

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
            out[name] = knob_from_space(name, raw)
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
        """The ``grid`` algorithm's configurations, once each: every combination of the searched
        knobs, or, with ``search.axes``, the union of each axis crossed with the searched knobs it
        does not name (in order, a configuration shared by two axes once); with ``search.seeds``,
        each configuration once per seed."""
        knobs = self.searched_knobs()
        points: list[dict[str, Any]] = []
        seen: set[tuple] = set()
        for axis in self.search.axes or [{}]:
            varied = {name: list(v) if isinstance(v, (list, tuple)) else [v] for name, v in axis.items()}
            crossed = {n: k.grid_values() for n, k in knobs.items() if n not in varied}
            names = list(crossed) + list(varied)
            values = [*crossed.values(), *varied.values()]
            for combo in itertools.product(*values):
                point = dict(zip(names, combo))
                key = config_key(point)
                if key not in seen:
                    seen.add(key)
                    points.append(point)
        if self.search.seeds is not None:
            # Seed-major: every configuration once before any runs again (a cut-short study has one
            # seed of everything rather than two seeds of half).
            points = [{**point, "seed": seed} for seed in self.search.seeds for point in points]
        return points

    def space_size(self) -> int | None:
        """Number of distinct configurations, or ``None`` when a knob is continuous."""
        if self.search.algorithm == "grid" and self.search.explicit_points:
            return len(self.grid())
        size = 1
        for knob in self.searched_knobs().values():
            if knob.kind == "float" and knob.step is None:
                return None
            size *= len(knob.grid_values())
        return size

    def num_trials(self) -> int:
        """Trials the sweep will run: the grid times ``num_samples`` for ``grid``, else ``num_samples``
        (capped at the space size for ``spectral``, and for ``optuna`` when ``dedupe`` is on and the
        space is finite)."""
        if self.search.algorithm == "grid":
            return len(self.grid()) * self.num_samples
        size = self.space_size()
        if size is not None and (self.search.algorithm == "spectral"
                                 or (self.search.algorithm == "optuna" and self.search.dedupe)):
            return min(self.num_samples, size)
        return self.num_samples

    def trial_config(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """The full trial config (a dict for :func:`segcore.train.fit`) for one sampled point."""
        cfg = self.base_config()
        cfg.update(sampled)
        cfg.update(self.network_config.get(cfg.get("network"), {}))
        return cfg

    def scheduler_objectives(self) -> dict[str, str]:
        """What the scheduler ranks a rung by, ``{metric: mode}``: every objective for ``mo_asha``;
        for ``asha`` its one metric (default ``miou``) with its mode (given, else the objective's,
        else the metric's natural one); nothing without a scheduler."""
        if self.scheduler is None:
            return {}
        if self.scheduler.name == "mo_asha":
            return dict(self.objectives)
        metric = self.scheduler.metric or names.METRIC_MIOU
        return {metric: self.scheduler.mode or self.objectives.get(metric) or _natural_mode(metric)}

    def constraint_bounds(self) -> dict[str, dict[str, float | None]]:
        """``{metric: {"min": low, "max": high}}`` for :func:`segcore.config.constraints.constraint_values`."""
        return {metric: bound.model_dump() for metric, bound in self.constraints.items()}

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec (defaults filled in), JSON/YAML-safe, for logging on the parent run."""
        data = self.model_dump(mode="json")
        data["experiment"] = self.experiment_name
        data["search"]["sampler"] = self.sampler if self.search.algorithm == "optuna" else None
        if self.scheduler is not None and self.scheduler.name == "asha":
            ((data["scheduler"]["metric"], data["scheduler"]["mode"]),) = self.scheduler_objectives().items()
        return data


def _natural_mode(metric: str) -> str | None:
    if metric in (names.METRIC_MIOU, names.METRIC_PIXEL_ACCURACY):
        return "max"
    if metric in VALID_METRICS:
        return "min"  # losses and every cost: less is better
    return None


def _absolute(path: str) -> str:
    return str(Path(os.path.expandvars(path)).expanduser().resolve())


def _resolve_paths(spec: SweepSpec) -> SweepSpec:
    """Relative paths are relative to the working directory of the command. Trials run in Ray
    workers whose working directory is elsewhere, so every path is made absolute here, once: the
    dataset root, the storage path and a relative SQLite file (``sqlite:///mlflow.db``, the sweep's
    and the warm start's)."""
    update: dict[str, Any] = {"storage_path": _absolute(spec.storage_path)}
    if spec.dataset.root is not None:
        update["dataset"] = spec.dataset.model_copy(update={"root": _absolute(spec.dataset.root)})
    update["tracking_uri"] = _absolute_sqlite(spec.tracking_uri)
    if spec.warm_start is not None and spec.warm_start.tracking_uri is not None:
        update["warm_start"] = spec.warm_start.model_copy(
            update={"tracking_uri": _absolute_sqlite(spec.warm_start.tracking_uri)})
    return spec.model_copy(update=update)


def _absolute_sqlite(uri: str) -> str:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////") and ":memory:" not in uri:
        return "sqlite:///" + _absolute(uri[len("sqlite:///"):])
    return uri


def load_sweep_spec(
    source: str | Path | dict[str, Any],
    *,
    overrides: dict[str, Any] | None = None,
    checks: Sequence[SpecCheck] = (),
) -> SweepSpec:
    """Read (YAML file or dict), apply ``overrides`` (top-level keys, e.g. ``tracking_uri`` from the
    command line), and validate everything before any work starts.

    Args:
        source: path to a YAML file, or the spec as a dict.
        overrides: top-level fields replacing the file's (``None`` values are ignored).
        checks: further checks, run after the spec's own, whose problems join the same error
            (:func:`segcore.tune.validate.load_sweep` passes the registry, dataset and trial checks).

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
        raise SweepSpecError(pydantic_errors(exc, SweepSpec), label) from None
    spec = _resolve_paths(spec)
    errors = validate_spec(spec)
    for check in checks:
        check(spec, errors)
    if errors:
        raise SweepSpecError(errors, label)
    return spec
