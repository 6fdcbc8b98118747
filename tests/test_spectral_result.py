"""The result document and the efficient-size rule (segcore/spectral/result.py)."""

from __future__ import annotations

import json

from _label_maps import random_blobs
from segcore import spectral
from segcore.data import InMemoryLabels

DOCUMENT_KEYS = {
    "strides", "band_energy", "band_energy_no_dc", "oracle_miou", "ce_floor", "blocks",
    "block_oracle_miou", "efficient_grid", "dataset", "split", "num_labels", "num_classes",
    "ignore_index",
}


def test_efficient_size_is_conservative():
    assert spectral.efficient_size([1, 2, 4, 8], [1.0, 0.995, 0.98, 0.999], 0.99) == 2
    assert spectral.efficient_size([2, 4], [0.5, 0.99], 0.99) is None
    assert spectral.efficient_size([4, 1, 2], [0.99, 1.0, 1.0], 0.99) == 4


def test_result_dict_has_the_document_keys_and_is_json():
    ds = InMemoryLabels([random_blobs(32, 32, 3, seed=0)], num_classes=3, ignore_index=255, name="blobs", split="val")
    r = spectral.analyze(ds, strides=(1, 2, 4), blocks=(2, 8), workers=1)
    d = r.to_dict()
    assert DOCUMENT_KEYS <= set(d)
    assert set(d["oracle_miou"]) == {"soft", "majority"}
    assert set(d["block_oracle_miou"]) == {"hard", "soft"}
    assert set(d["efficient_grid"]) == {"by_miou", "by_energy"}
    assert d["dataset"] == "blobs" and d["split"] == "val" and d["num_classes"] == 3
    assert len(d["band_energy"]) == 3 and len(d["block_oracle_miou"]["hard"]) == 2
    json.dumps(d, allow_nan=True)
