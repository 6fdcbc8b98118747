"""The ``segcore`` command line: ``segcore spectrum | train | sweep | demo | replay | pareto | report``.

Each sub-command lives in its own module of this package and exposes ``COMMAND`` (its name),
``ORDER`` (its place in ``--help``) and ``register(subparsers)``, which adds its parser and sets
``func``. Heavy imports (torch, Ray, MLflow) happen inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from segcore import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segcore",
        description="How coarse can a segmentation grid, decoder and labels be? "
        "Spectral analysis, training, Ray Tune sweeps tracked in MLflow, and the Pareto front.",
    )
    parser.add_argument("--version", action="version", version=f"segcore {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    for module in sorted((m for m in modules if hasattr(m, "register")), key=lambda m: m.ORDER):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        # Errors for users: one clear line, no traceback (library code names field and choices).
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"segcore {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
