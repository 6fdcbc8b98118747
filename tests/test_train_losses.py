"""segcore.train.losses: targets and losses under the grid and block knobs."""

from __future__ import annotations

import math

import pytest
import torch
from _train_configs import easy

from segcore.labels import grid_proportions
from segcore.models import create_model, list_models
from segcore.train import soft_cross_entropy, training_loss, training_targets, validate_config


@pytest.mark.parametrize("name", list_models(tiny=True))
@pytest.mark.parametrize("loss_at", ["grid", "full"])
@pytest.mark.parametrize("block_mode", ["hard", "soft"])
def test_block_labels_give_finite_loss(name, loss_at, block_mode):
    torch.manual_seed(0)
    cfg = validate_config(easy(network=name, grid_stride=4, loss_at=loss_at, block=8, block_mode=block_mode))
    labels = torch.randint(0, 3, (2, 40, 48))
    labels[:, :4, :4] = 255  # an ignored corner
    model = create_model(name, 3, grid_stride=4, keep=0.5)
    loss = training_loss(model(torch.randn(2, 3, 40, 48)), labels, cfg, 3, 255)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()


def test_grid_targets_are_cell_proportions():
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[:, :, 6:] = 1
    cfg = validate_config(easy(grid_stride=4, loss_at="grid"))
    target = training_targets(labels, cfg, 2, 255)
    assert target.shape == (1, 2, 2, 2)
    assert torch.allclose(target[0, :, 0, 1], torch.tensor([0.5, 0.5]))
    assert torch.allclose(target, grid_proportions(labels, 4, 2, 255))
    # soft blocks of 2 then a grid of 4 give the same proportions as the dense labels here
    soft = training_targets(labels, validate_config(easy(grid_stride=4, loss_at="grid", block=2, block_mode="soft")), 2, 255)
    assert torch.allclose(soft, target)
    # hard blocks of 4: the mixed column becomes its majority (tie -> class 0)
    hard = training_targets(labels, validate_config(easy(grid_stride=2, block=4)), 2, 255)
    assert hard.shape == (1, 8, 8) and int(hard[0, 0, 7]) == 0


def test_soft_cross_entropy_known_answer():
    # equal logits over 2 classes: -log(1/2) at every labelled position; unlabelled ones ignored
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]]]])
    assert soft_cross_entropy(logits, target).item() == pytest.approx(math.log(2))
