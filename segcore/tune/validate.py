"""The sweep checks that need the layers below ``tune``: the model registry, the datasets, and each
network with each knob value through the trial's own validation.

They run before any trial starts and join the spec's own problems in one
:class:`~segcore.config.sweep.SweepSpecError`: :func:`load_sweep` (the command line, the demo)
reads and checks a spec in one step; :func:`validate_sweep` checks a parsed one (``run_sweep`` calls
it, so a spec built any other way is checked too). Neither imports Ray or MLflow.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from segcore.config.knobs import choices
from segcore.config.sweep import SpecCheck, SweepSpec, SweepSpecError, load_sweep_spec

__all__ = ["load_sweep", "validate_sweep", "sweep_checks", "check_networks", "check_dataset", "check_combinations"]


def check_networks(spec: SweepSpec, errors: list[tuple[str, str]]) -> None:
    """Every network of the sweep is in the model registry."""
    from segcore.models import list_models

    known = list(list_models())
    for i, net in enumerate(spec.networks):
        if net not in known:
            errors.append((f"networks[{i}]", f"unknown network {net!r}; valid networks: {choices(known)}"))


def check_dataset(spec: SweepSpec, errors: list[tuple[str, str]], *, check_paths: bool = True) -> None:
    """The dataset is registered and has a root; with ``check_paths``, both splits open (labels only:
    cheap, and catches bad options, missing splits and empty folders)."""
    from segcore.data import build_dataset, list_datasets

    dataset = spec.dataset
    if dataset.name not in list_datasets():
        errors.append(("dataset.name", f"unknown dataset {dataset.name!r}; valid datasets: {choices(list_datasets())}"))
        return
    if dataset.name != "synthetic" and dataset.root is None:
        errors.append(("dataset.root", f"dataset {dataset.name!r} needs a root folder"))
        return
    if not check_paths:
        return
    if dataset.root is not None and not Path(dataset.root).expanduser().is_dir():
        errors.append(("dataset.root", f"folder {dataset.root} does not exist"))
        return
    for split in (dataset.train_split, dataset.val_split):
        try:
            build_dataset(dataset.name, dataset.root, split, labels_only=True, **dataset.options)
        except TypeError as exc:
            errors.append(("dataset.options", f"not accepted by dataset {dataset.name!r}: {exc}"))
            return
        except (ValueError, KeyError, FileNotFoundError) as exc:
            msg = f"{exc.args[0] if exc.args else exc}"
            field = "dataset.train_split" if split == dataset.train_split else "dataset.val_split"
            if any(option in msg for option in dataset.options):
                field = "dataset.options"  # e.g. "cutoff must be in (0, 0.5]"
            elif isinstance(exc, FileNotFoundError):
                field = "dataset.root"
            errors.append((field, f"split {split!r}: {msg}"))
            return


def _first_value(knob) -> Any:
    return knob.grid_values()[0] if knob.kind in ("choice", "int") or knob.step else knob.low


def _values_to_try(knob) -> list:
    return knob.grid_values() if knob.kind in ("choice", "int") or knob.step else [knob.low, knob.high]


def check_combinations(spec: SweepSpec, errors: list[tuple[str, str]], *, check_paths: bool = True) -> None:
    """Each network with each value of each knob (the others at their first value), through the
    trial's own validation (:func:`segcore.train.validate_config`): e.g. a grid stride a network
    cannot produce, or a block larger than the crop, is caught here rather than in trial 17.

    Skipped when ``errors`` already holds problems: it builds trial configs, which needs a sane spec.
    """
    if errors:
        return
    from segcore.train import validate_config

    if not check_paths and spec.dataset.root is not None:
        # The data lives elsewhere (a cluster's shared storage): check everything but the root.
        with tempfile.TemporaryDirectory(prefix="segcore-spec-") as stand_in:
            stand_in_dataset = spec.dataset.model_copy(update={"root": stand_in})
            check_combinations(spec.model_copy(update={"dataset": stand_in_dataset}), errors)
            return
    knobs = {name: knob for name, knob in spec.searched_knobs().items() if name != "network"}
    first = {name: _first_value(knob) for name, knob in knobs.items()}
    reported = set()
    for i, net in enumerate(spec.networks):
        try:
            validate_config(spec.trial_config(dict(first, network=net)))
        except (ValueError, KeyError) as exc:
            # The network fails with every knob at its first value: one message, not one per knob.
            errors.append((f"networks[{i}]", f"network {net!r}: {exc.args[0] if exc.args else exc}"))
            continue
        for name, knob in knobs.items():
            for value in _values_to_try(knob):
                try:
                    validate_config(spec.trial_config(dict(first, network=net, **{name: value})))
                except (ValueError, KeyError) as exc:
                    msg = exc.args[0] if exc.args else str(exc)
                    if (name, msg) not in reported:
                        reported.add((name, msg))
                        errors.append((f"space.{name}", f"{name}={value!r} with network {net!r}: {msg}"))


def sweep_checks(*, check_paths: bool = True) -> list[SpecCheck]:
    """The checks of this module, in order, for ``load_sweep_spec(..., checks=...)``.

    Args:
        check_paths: open the dataset's splits (label-only) to check the root and options. Turn off
            to check a cluster spec whose data lives elsewhere.
    """
    return [
        check_networks,
        partial(check_dataset, check_paths=check_paths),
        partial(check_combinations, check_paths=check_paths),
    ]


def load_sweep(
    source: str | Path | dict[str, Any],
    *,
    overrides: dict[str, Any] | None = None,
    check_paths: bool = True,
) -> SweepSpec:
    """:func:`~segcore.config.sweep.load_sweep_spec` with this module's checks: every problem of the
    spec, its networks, its dataset and its knob values in one :class:`SweepSpecError`."""
    return load_sweep_spec(source, overrides=overrides, checks=sweep_checks(check_paths=check_paths))


def validate_sweep(spec: SweepSpec, *, check_paths: bool = True) -> None:
    """Check a parsed spec with this module's checks.

    Raises:
        SweepSpecError: listing every problem found.
    """
    errors: list[tuple[str, str]] = []
    for check in sweep_checks(check_paths=check_paths):
        check(spec, errors)
    if errors:
        raise SweepSpecError(errors)
