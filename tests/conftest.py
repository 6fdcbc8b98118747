"""Shared fixtures. Real data: CamVid from ../shared/data/camvid (or $SEGCORE_CAMVID)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def camvid_path() -> Path:
    return Path(os.environ.get("SEGCORE_CAMVID", REPO.parent / "shared" / "data" / "camvid"))


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    root = camvid_path()
    if not (root / "trainannot").is_dir():
        pytest.skip(f"CamVid not found at {root} (set SEGCORE_CAMVID to run the real-data tests)")
    return root


@pytest.fixture(autouse=True)
def _few_threads():
    # The CI machine has 2 cores; tests stay deterministic and polite.
    torch.set_num_threads(2)
    yield
