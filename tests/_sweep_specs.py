"""A small good sweep spec and a way to change one field of it, for the sweep-spec tests."""

from __future__ import annotations

import copy


def good() -> dict:
    return {
        "name": "t",
        "dataset": {"name": "synthetic", "options": {"num_samples": 4, "size": [32, 32]}},
        "networks": ["unet_tiny"],
        "space": {"grid_stride": [2, 4], "keep": {"low": 0.5, "high": 1.0}, "block": [1, 2]},
        "objectives": {"miou": "max", "gflops": "min"},
        "epochs": 2,
    }


def with_(path: str, value, base: dict | None = None) -> dict:
    spec = copy.deepcopy(base or good())
    *parents, last = path.split(".")
    node = spec
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return spec
