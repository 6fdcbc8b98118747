"""The dependency direction of docs/design.md ("Dependency direction"), checked two ways.

* Dynamically: importing a room below ``tune`` in a fresh interpreter leaves ``ray`` and ``mlflow``
  out of ``sys.modules`` (the core is usable without a cluster or a tracking server).
* Statically: every ``import`` statement under ``segcore/`` — top-level or inside a function —
  is parsed, so a lazy import that would only run on some code path is caught too. No room below
  ``tune`` names ``segcore.tune``, ``segcore.cli``, ``segcore.tracking`` or ``segcore.analysis``;
  no module outside ``segcore/tracking/`` imports ``mlflow``; no room below ``tune`` imports ``ray``;
  and every room imports only rooms of a lower tier of the design's arrows (``TIERS``).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "segcore"

#: Rooms that run without Ray and MLflow: the core, the science and one trial.
LOW_ROOMS = ("names", "formatting", "config", "labels", "metrics", "dominance", "spectral", "data", "models", "cost", "train")
#: Rooms above ``train``: only they may use the sweep service and its record.
UPPER_ROOMS = ("tune", "cli", "tracking", "analysis")
HEAVY = ("ray", "mlflow")
#: The arrows of docs/design.md as tiers: a room imports only rooms of a lower tier (and itself).
TIERS = {
    "": 0, "names": 0, "formatting": 0,           # segcore/__init__.py and the shared names
    "config": 1, "labels": 1, "metrics": 1, "dominance": 1,
    "spectral": 2, "data": 2, "models": 2, "cost": 2,
    "train": 3,
    "tracking": 4,
    "tune": 5, "analysis": 5,
    "cli": 6,
    "__main__": 7,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_subpackage_or_module(dotted: str) -> bool:
    base = REPO.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imported_names(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in ``source`` (module ``module``), at any depth.

    ``from segcore import names`` counts as ``segcore.names`` too (a submodule); relative imports are
    resolved against the module's package.
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            for alias in node.names:  # `from segcore import tracking` imports a room
                if _is_subpackage_or_module(f"{base}.{alias.name}"):
                    found.append((node.lineno, f"{base}.{alias.name}"))
    return found


def imports_of(path: Path) -> list[tuple[int, str]]:
    return imported_names(path.read_text(), _module_name(path), is_package=path.name == "__init__.py")


def room_of(module: str) -> str | None:
    """``segcore.tracking.schema`` -> ``tracking``; ``None`` outside the package."""
    parts = module.split(".")
    if parts[0] != "segcore":
        return None
    return parts[1] if len(parts) > 1 else ""


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_parser_finds_every_import_as_python_resolves_it():
    """Known answer for the helper the other tests rely on."""
    source = (
        "import os, ray.tune\n"
        "from segcore import names, __version__\n"
        "from . import sweep\n"
        "from ..tracking.schema import TAG_ROLE\n"
        "def lazy():\n"
        "    import mlflow\n"
    )
    found = imported_names(source, "segcore.config.trial")
    assert sorted(found) == [
        (1, "os"), (1, "ray.tune"), (2, "segcore"), (2, "segcore.names"), (3, "segcore.config"),
        (3, "segcore.config.sweep"), (4, "segcore.tracking.schema"), (6, "mlflow"),
    ]
    assert imported_names("from .trial import TrialConfig\n", "segcore.config", is_package=True) == [
        (1, "segcore.config.trial")
    ]
    assert [room_of(name) for name in ("segcore.tracking.schema", "segcore", "mlflow")] == ["tracking", "", None]


def test_low_rooms_never_name_an_upper_room_or_ray_or_mlflow():
    offences = []
    for path in _sources():
        own = room_of(_module_name(path))
        if own not in LOW_ROOMS:
            continue
        for line, name in imports_of(path):
            target = room_of(name)
            top = name.split(".")[0]
            if target in UPPER_ROOMS or top in HEAVY:
                offences.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not offences, "imports against the dependency direction:\n" + "\n".join(offences)


def test_every_room_imports_only_rooms_below_it():
    unknown = sorted({room_of(_module_name(path)) for path in _sources()} - set(TIERS))
    assert not unknown, f"rooms without a tier (add them to TIERS and to docs/design.md): {unknown}"
    offences = []
    for path in _sources():
        own = room_of(_module_name(path))
        for line, name in imports_of(path):
            target = room_of(name)
            # `segcore` itself holds only the version: any room may name it.
            if target not in (None, "", own) and TIERS.get(target, 99) >= TIERS[own]:
                offences.append(f"{path.relative_to(REPO)}:{line} ({own}) imports {name} ({target})")
    assert not offences, "imports against the dependency direction:\n" + "\n".join(offences)


def test_only_tracking_imports_mlflow():
    offences = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in _sources()
        if room_of(_module_name(path)) != "tracking"
        for line, name in imports_of(path)
        if name.split(".")[0] == "mlflow"
    ]
    assert not offences, "MLflow imported outside segcore/tracking:\n" + "\n".join(offences)


def test_importing_the_low_rooms_leaves_ray_and_mlflow_unloaded():
    """One fresh interpreter imports the rooms bottom-up and, after each, names what it loaded.

    Bottom-up order attributes a heavy import to the lowest room that pulls it in (one interpreter
    per room would find the same first offender, at ten times the start-up cost).
    """
    modules = ["segcore", "segcore.tracking.schema", *(f"segcore.{room}" for room in LOW_ROOMS)]
    code = (
        "import importlib, json, sys\n"
        "loaded = {}\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        f"    loaded[name] = [m for m in {list(HEAVY)!r} if m in sys.modules]\n"
        "print(json.dumps(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *modules], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(loaded) == modules
    offenders = {name: heavy for name, heavy in loaded.items() if heavy}
    assert not offenders, f"first import that loaded Ray or MLflow: {next(iter(offenders.items()))}"
