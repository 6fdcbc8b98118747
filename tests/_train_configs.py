"""Small trial configurations shared by the ``test_train_*`` and ``test_cli_train`` tests."""

from __future__ import annotations

# An easy synthetic set: 3 classes with large regions, 32 px, distinct colours.
EASY = dict(num_samples=32, size=[32, 32], num_classes=3, cutoff=1 / 16, noise=0.03)


def easy(**overrides) -> dict:
    """A U-Net tiny trial of two epochs on :data:`EASY`, with ``overrides`` applied."""
    config = dict(network="unet_tiny", grid_stride=2, dataset="synthetic", dataset_options=dict(EASY),
                  epochs=2, batch_size=4, lr=1e-2, latency_repeats=1, seed=0)
    config.update(overrides)
    return config
