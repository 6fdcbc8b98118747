"""A trial's artifacts (segcore.tracking.artifacts): PNG panels and strict per-class IoU JSON."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from segcore.tracking import schema
from segcore.tracking.artifacts import artifact_content, png_bytes, trial_artifacts


def test_png_bytes_round_trip():
    image = np.zeros((4, 12, 3), np.uint8)
    image[:, 4:8] = 255
    png = png_bytes(image)
    assert png.startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(np.zeros((4, 4), np.float32))


def test_trial_artifacts_write_strict_json():
    result = type("R", (), {"per_class_iou": {"road": 0.5, "absent": float("nan")},
                            "samples": np.zeros((2, 6, 3), np.uint8)})()
    artifacts = trial_artifacts(result)
    assert set(artifacts) == {schema.ARTIFACT_PER_CLASS_IOU, schema.ARTIFACT_SAMPLES}
    # A class absent from truth and prediction has no IoU: null, not the non-JSON NaN.
    assert json.loads(artifacts[schema.ARTIFACT_PER_CLASS_IOU]) == {"road": 0.5, "absent": None}
    assert trial_artifacts(type("Empty", (), {})()) == {}


def test_artifact_content(tmp_path):
    (tmp_path / "f.txt").write_text("hi")
    assert artifact_content(b"raw") == b"raw"
    assert artifact_content(tmp_path / "f.txt") == b"hi"
    assert artifact_content(str(tmp_path)) == str(tmp_path.resolve())  # a folder, uploaded whole
    assert artifact_content(np.zeros((2, 2), np.uint8)).startswith(b"\x89PNG")
