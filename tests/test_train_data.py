"""segcore.train.data: the process-wide sample cache changes nothing but the speed."""

from __future__ import annotations

from _train_configs import easy

from segcore.train import fit
from segcore.train.data import epoch_seed


def test_cached_samples_train_identically():
    config = easy(network="dan_tiny", epochs=1, max_train_batches=2, max_val_batches=2, crop=[24, 24])
    plain = fit(config)
    cached = fit(dict(config, cache_data=True))
    assert cached.history[0]["train_loss"] == plain.history[0]["train_loss"]
    assert cached.metrics["miou"] == plain.metrics["miou"]


def test_epoch_seed_depends_on_seed_and_epoch_only():
    assert epoch_seed(0, 1) == 1 and epoch_seed(2, 3) == 2 * 100_003 + 3
    assert len({epoch_seed(seed, epoch) for seed in range(3) for epoch in range(1, 4)}) == 9
