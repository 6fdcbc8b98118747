"""One trial: train, evaluate and cost one configuration.

``fit(config, report)`` builds the data (``segcore.data``), the network with its knobs
(``segcore.models``), measures its cost once (``segcore.cost``), trains with a poly learning-rate
schedule (AMP on CUDA), evaluates on the dense validation labels after every epoch and calls
``report(metrics, checkpoint_dir)``. No Ray and no MLflow in here: the same function runs alone,
under Ray Tune, or in a test.

The knobs at training time (docs/design.md, Science): ``grid_stride`` and ``block`` shape the
training targets and the loss (:mod:`segcore.train.losses`); ``keep`` / ``truncation`` act inside
the network (:class:`segcore.models.SpectralTruncation`). Evaluation always up-samples the logits
bilinearly to the label size and accumulates one confusion matrix over the split.

The rooms: ``validate`` (the configuration, before any data is opened), ``device`` (CPU or GPU),
``data`` (datasets, loaders, the process-wide sample cache), ``losses``, ``evaluation``,
``render`` (the sample panel), ``checkpoint`` (save, resume, RNG state), ``loop`` (:func:`fit`)
and ``result`` (:class:`TrialResult` and its JSON form).
"""

from segcore.train.checkpoint import CHECKPOINT_FILE, save_checkpoint
from segcore.train.data import CachedSamples
from segcore.train.device import DeviceChoice, choose_device
from segcore.train.evaluation import evaluate
from segcore.train.loop import ReportFn, fit
from segcore.train.losses import soft_cross_entropy, training_loss, training_targets
from segcore.train.render import palette, render_sample
from segcore.train.result import TrialResult, result_to_dict
from segcore.train.validate import resolve_config, validate_config

__all__ = [
    "fit", "ReportFn", "validate_config", "resolve_config", "TrialResult", "result_to_dict", "choose_device",
    "DeviceChoice", "training_targets", "training_loss", "soft_cross_entropy", "evaluate", "palette",
    "render_sample", "save_checkpoint", "CachedSamples", "CHECKPOINT_FILE",
]
