"""The specification of one trial: network, the three knobs, data and optimisation."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["TrialConfig", "format_validation_error"]


def format_validation_error(exc: ValidationError, where: str = "config") -> str:
    """One line per problem: ``where.field: message (got value)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{where}.{loc}: {err['msg']}{shown}")
    return "\n".join(lines)


class TrialConfig(BaseModel):
    """Everything :func:`segcore.train.fit` needs to train, evaluate and cost one configuration.

    The three knobs (docs/design.md, Science): ``grid_stride`` (the stride of the grid the logits are
    predicted on), ``keep`` (the low-frequency share of decoder features kept), ``block`` (the
    block size of the training annotation).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # network
    network: str = "deeplabv3plus"
    backbone: str | None = None
    model_options: dict[str, Any] = Field(default_factory=dict)
    weights: str | None = None
    weights_backbone: str | None = None

    # the three knobs
    grid_stride: int = Field(4, ge=1)
    loss_at: Literal["grid", "full"] = "full"
    keep: float = Field(1.0, gt=0.0, le=1.0)
    truncation: Literal["fft", "resize"] = "fft"
    block: int = Field(1, ge=1)
    block_mode: Literal["hard", "soft"] = "hard"

    # data
    dataset: str = "synthetic"
    data_root: str | None = None
    dataset_options: dict[str, Any] = Field(default_factory=dict)
    train_split: str = "train"
    val_split: str = "val"
    image_scale: float | None = Field(None, gt=0.0, le=4.0)
    crop: tuple[int, int] | None = None
    hflip: bool = True
    # decode + resize every sample once per process and keep it in memory (small data sets)
    cache_data: bool = False

    # optimisation
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(8, ge=1)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    max_train_batches: int | None = Field(None, ge=1)
    max_val_batches: int | None = Field(None, ge=1)

    # runtime
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    num_workers: int = Field(0, ge=0)
    checkpoint_dir: str | None = None
    latency_repeats: int = Field(5, ge=1)
