"""segcore.train.result: the JSON form of a trial's result."""

from __future__ import annotations

import json

import numpy as np

from segcore.train import TrialResult, result_to_dict


def test_result_to_dict_is_strict_json_without_the_image():
    result = TrialResult(
        config={"network": "dan_tiny"}, metrics={"miou": 0.5, "epoch": 1.0},
        history=[{"miou": 0.5, "train_loss": float("inf")}], per_class_iou={"sky": float("nan"), "road": 0.25},
        cost={"gflops": 1.0}, samples=np.zeros((2, 6, 3), np.uint8), device="cpu", epochs_completed=1,
    )
    payload = result_to_dict(result)
    assert payload == {
        "config": {"network": "dan_tiny"}, "metrics": {"miou": 0.5, "epoch": 1.0},
        "cost": {"gflops": 1.0}, "per_class_iou": {"sky": None, "road": 0.25},
        "history": [{"miou": 0.5, "train_loss": None}], "device": "cpu", "gpu_fallback": False,
        "epochs_completed": 1,
    }
    json.dumps(payload, allow_nan=False)
