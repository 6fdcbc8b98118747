"""What a trial returns, and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from segcore.formatting import jsonable

__all__ = ["TrialResult", "result_to_dict"]


@dataclass
class TrialResult:
    """What :func:`segcore.train.fit` returns.

    Attributes:
        config: the resolved configuration (``TrialConfig.model_dump()`` plus the backbone used).
        metrics: final metrics (the last epoch's report).
        history: every epoch's metrics, in order.
        per_class_iou: class name -> IoU of the last evaluation (NaN for classes absent from both
            truth and prediction).
        cost: the ``COST_METRICS`` of the configuration.
        samples: the sample panel (:func:`segcore.train.render.sample_panel`: image | labels |
            prediction with titles and a class legend), ``(rows, columns, 3)`` uint8 RGB, or ``None``.
        device: the device trained on (``cpu`` or ``cuda``).
        gpu_fallback: a GPU was wanted but CUDA was not usable, so the trial ran on the CPU
            (:func:`segcore.train.device.choose_device`).
        epochs_completed: epochs trained in total (including those before a resume).
    """

    config: dict
    metrics: dict[str, float]
    history: list[dict] = field(default_factory=list)
    per_class_iou: dict[str, float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    samples: np.ndarray | None = None
    device: str = "cpu"
    gpu_fallback: bool = False
    epochs_completed: int = 0


def result_to_dict(result: TrialResult) -> dict:
    """JSON-ready dict of a :class:`TrialResult` (NaN -> null, no sample image)."""
    return jsonable({
        "config": result.config,
        "metrics": result.metrics,
        "cost": result.cost,
        "per_class_iou": result.per_class_iou,
        "history": result.history,
        "device": result.device,
        "gpu_fallback": result.gpu_fallback,
        "epochs_completed": result.epochs_completed,
    })
