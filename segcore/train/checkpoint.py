"""Checkpoints of a trial: what they hold, where each epoch's goes, and resuming from one."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_FILE", "find_checkpoint", "save_checkpoint", "restore_checkpoint", "seed_everything",
    "EpochCheckpoints",
]

CHECKPOINT_FILE = "checkpoint.pt"
# A checkpoint only continues a trial of the same network, knobs, data and schedule.
_RESUME_FIELDS = (
    "network", "backbone", "model_options", "grid_stride", "loss_at", "keep", "truncation", "block",
    "block_mode", "dataset", "dataset_options", "image_scale", "crop", "epochs", "batch_size", "optimizer",
    "lr", "max_train_batches", "seed",
)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def find_checkpoint(resume_from: str | os.PathLike) -> Path:
    """The checkpoint file of ``resume_from`` (a directory holding ``checkpoint.pt``, or the file)."""
    path = Path(resume_from)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"resume_from: no checkpoint at {path}")
    return path


def save_checkpoint(directory: Path, *, model, optimizer, scheduler, scaler, epoch: int, config: dict,
                    history: list[dict], cost: dict) -> Path:
    """Write ``directory/checkpoint.pt`` atomically: weights, optimiser, schedule, scaler, RNGs,
    the resolved config, the history so far and the cost."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / CHECKPOINT_FILE
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "rng": _rng_state(),
        "config": config,
        "history": history,
        "cost": cost,
    }
    partial = path.with_suffix(".tmp")
    torch.save(state, partial)
    os.replace(partial, path)  # never leave a half-written checkpoint behind
    return path


def restore_checkpoint(path: Path, *, model, optimizer, scheduler, scaler, config: dict,
                       device: torch.device) -> tuple[list[dict], int]:
    """Load ``path`` into the given objects and the global RNGs; return ``(history, next_epoch)``.

    Raises:
        ValueError: the checkpoint was trained with other values of the resume fields (network,
            knobs, data, schedule), or its weights do not fit ``model``.
    """
    state = torch.load(path, map_location=device, weights_only=False)
    saved_config = state.get("config", {})
    changed = [name for name in _RESUME_FIELDS if saved_config.get(name, config[name]) != config[name]]
    if changed:
        raise ValueError(
            f"checkpoint {path} was trained with a different configuration: "
            + ", ".join(f"{name}={saved_config[name]!r} there, {config[name]!r} here" for name in changed)
        )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} does not match config.network={config['network']!r}: {exc}") from None
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    return list(state.get("history", [])), int(state["epoch"]) + 1


class EpochCheckpoints:
    """Where each epoch's checkpoint goes.

    Under ``root/epoch_E`` when a root is given (kept). Otherwise, when someone reads the reports,
    a fresh temporary directory per epoch, removed once the next epoch has been reported (or at
    :meth:`close`): a caller that keeps it copies it during ``report``, as Ray Tune's
    ``Checkpoint.from_directory`` does. Otherwise none.
    """

    def __init__(self, root: str | None, reported: bool):
        self.root = Path(root) if root is not None else None
        self.reported = reported
        self._temporary: Path | None = None

    def directory(self, epoch: int) -> Path | None:
        if self.root is not None:
            return self.root / f"epoch_{epoch}"
        if self.reported:
            return Path(tempfile.mkdtemp(prefix=f"segcore-ckpt-e{epoch}-"))
        return None

    def reported_epoch(self, directory: Path | None) -> None:
        """The epoch whose checkpoint is ``directory`` has been reported: the previous temporary
        one is no longer needed."""
        self.close()
        if self.root is None:
            self._temporary = directory

    def close(self) -> None:
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None
