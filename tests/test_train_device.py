"""segcore.train.device: one rule for CPU or GPU, and the recorded GPU-to-CPU fallback."""

from __future__ import annotations

import warnings

import pytest
import torch
from _train_configs import easy

from segcore.train import choose_device, fit, result_to_dict


@pytest.fixture
def no_cuda(monkeypatch):
    """A machine where CUDA is not usable by a CUDA build of PyTorch, nothing granted."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def _quietly(requested, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        return choose_device(requested, **kwargs)


def test_usable_cuda_is_chosen_unless_cpu_is_requested(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _quietly("auto").device == torch.device("cuda")
    assert _quietly("cuda").device == torch.device("cuda")
    assert _quietly("cpu", gpu_granted=True).device == torch.device("cpu")
    assert not _quietly("auto").gpu_fallback


def test_auto_without_cuda_or_grant_is_the_cpu_without_a_warning(no_cuda, monkeypatch):
    choice = _quietly("auto")
    assert choice.device == torch.device("cpu") and choice.fallback_reason is None and not choice.gpu_fallback
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # "no GPU", not a grant
    assert not _quietly("auto").gpu_fallback


def test_cuda_requested_but_not_usable_falls_back_with_the_reason(no_cuda):
    with pytest.warns(RuntimeWarning, match=r"'cuda' requested but torch.cuda.is_available\(\) is False .*"
                                            r"CUDA_VISIBLE_DEVICES unset.*training on the CPU"):
        choice = choose_device("cuda")
    assert choice.device == torch.device("cpu") and choice.gpu_fallback
    assert choice.fallback_reason.startswith("'cuda' requested but torch.cuda.is_available() is False")


def test_a_cpu_only_build_is_named_as_the_reason(no_cuda, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.warns(RuntimeWarning, match="has no CUDA support"):
        assert choose_device("cuda").gpu_fallback


@pytest.mark.parametrize("granted_by", ["argument", "environment"])
def test_a_granted_gpu_without_cuda_falls_back(no_cuda, monkeypatch, granted_by):
    kwargs = {"gpu_granted": True} if granted_by == "argument" else {}
    if granted_by == "environment":
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.warns(RuntimeWarning, match="a GPU was granted but"):
        choice = choose_device("auto", **kwargs)
    assert choice.device == torch.device("cpu") and choice.gpu_fallback


def test_the_scheduler_saying_nothing_was_granted_wins_over_the_environment(no_cuda, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert not _quietly("auto", gpu_granted=False).gpu_fallback


def test_unknown_device_names_the_valid_ones():
    with pytest.raises(ValueError, match="config.device: unknown device 'tpu'; valid: auto, cpu, cuda"):
        choose_device("tpu")


def test_fit_records_the_fallback(no_cuda):
    with pytest.warns(RuntimeWarning, match="'cuda' requested"):
        result = fit(easy(epochs=1, max_train_batches=1, max_val_batches=1, device="cuda"))
    assert result.device == "cpu" and result.gpu_fallback
    assert result_to_dict(result)["gpu_fallback"] is True


def test_the_tune_trainable_asks_the_same_rule(no_cuda, monkeypatch):
    pytest.importorskip("ray")
    import ray

    from segcore.tune.trainable import _device

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [0])
    with pytest.warns(RuntimeWarning, match="a GPU was granted"):
        assert _device({"device": "auto"}) == ("cpu", True)
    monkeypatch.setattr(ray, "get_gpu_ids", lambda: [])
    assert _device({"device": "auto"}) == ("cpu", False)
    assert _device({"device": "cpu"}) == ("cpu", False)
