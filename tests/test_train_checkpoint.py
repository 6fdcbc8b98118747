"""segcore.train.checkpoint: per-epoch checkpoints, exact resume, refused mismatches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _train_configs import easy

from segcore.train import fit


@pytest.mark.slow
def test_checkpoint_round_trip_resumes_to_identical_weights(tmp_path):
    config = easy(network="deeplabv3plus_tiny", grid_stride=4, keep=0.5, block=4, epochs=3, crop=[24, 24])
    full = fit(dict(config, checkpoint_dir=str(tmp_path / "a")))
    first = tmp_path / "a" / "epoch_1"
    assert (first / "checkpoint.pt").is_file()
    resumed_reports = []
    resumed = fit(dict(config, checkpoint_dir=str(tmp_path / "b")), lambda m, d: resumed_reports.append(m),
                  resume_from=str(first))
    assert [int(m["epoch"]) for m in resumed_reports] == [2, 3]
    a = torch.load(tmp_path / "a" / "epoch_3" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "b" / "epoch_3" / "checkpoint.pt", weights_only=False)["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed.metrics["miou"] == full.metrics["miou"]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]


def test_temporary_checkpoints_are_fresh_and_hold_the_state():
    seen = []

    def report(metrics, checkpoint_dir):
        state = torch.load(f"{checkpoint_dir}/checkpoint.pt", weights_only=False)
        assert set(state) >= {"model", "optimizer", "scheduler", "scaler", "epoch", "rng"}
        seen.append((checkpoint_dir, state["epoch"]))

    fit(easy(network="dan_tiny", epochs=2, max_train_batches=1, max_val_batches=1), report)
    assert [e for _, e in seen] == [1, 2] and seen[0][0] != seen[1][0]
    # removed once the next epoch was reported, the last one when fit returned
    assert not any(Path(directory).exists() for directory, _ in seen)


def test_resume_refuses_a_different_configuration(tmp_path):
    config = easy(network="dan_tiny", epochs=1, max_train_batches=1, max_val_batches=1,
                  checkpoint_dir=str(tmp_path))
    fit(config)
    with pytest.raises(ValueError, match="different configuration: keep=1.0 there, 0.5 here"):
        fit(dict(config, keep=0.5, epochs=2), resume_from=str(tmp_path / "epoch_1"))
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        fit(config, resume_from=str(tmp_path / "nowhere"))
