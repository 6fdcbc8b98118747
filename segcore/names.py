"""The names every layer shares: the metrics a trial reports, its knobs, and a trial's end states.

These are plain strings with no dependency. The MLflow record (:mod:`segcore.tracking.schema`)
stores metrics and params under exactly these names, the sweep spec validates objectives against
them, and the analysis reads them back.
"""

__all__ = [
    "KNOB_PARAMS",
    "METRIC_MIOU",
    "METRIC_PIXEL_ACCURACY",
    "METRIC_TRAIN_LOSS",
    "METRIC_EPOCH",
    "COST_METRICS",
    "TRIAL_METRICS",
    "STATUS_COMPLETED",
    "STATUS_EARLY_STOPPED",
    "STATUS_FAILED",
    "is_full_length",
]

#: The fields of a trial configuration that identify a point of the trade-off (network + knobs).
KNOB_PARAMS = ("network", "backbone", "grid_stride", "loss_at", "keep", "truncation", "block", "block_mode")

# Metrics a trial reports after every epoch (step = epoch) and at its end, under these keys.
METRIC_MIOU = "miou"
METRIC_PIXEL_ACCURACY = "pixel_accuracy"
METRIC_TRAIN_LOSS = "train_loss"
METRIC_EPOCH = "epoch"
#: Cost of a configuration, known before training (:func:`segcore.cost.measure_cost` returns these keys).
COST_METRICS = (
    "gflops", "decoder_gflops", "fft_gflops", "params_m", "latency_ms", "peak_memory_mb",
    "annotation_units", "relative_annotation_units", "mixed_block_share",
)
#: Every metric a trial reports: objectives and schedulers choose from these.
TRIAL_METRICS = (METRIC_MIOU, METRIC_PIXEL_ACCURACY, METRIC_TRAIN_LOSS, *COST_METRICS)

# How a trial ended.
STATUS_COMPLETED = "completed"          # ran every epoch (full fidelity: may enter a Pareto front)
STATUS_EARLY_STOPPED = "early_stopped"  # stopped by the scheduler before the last epoch
STATUS_FAILED = "failed"


def is_full_length(epoch: float | None, epochs: int) -> bool:
    """Whether a trial whose last reported epoch is ``epoch`` ran its whole schedule of ``epochs``.

    Only full-length trials are ``completed`` and may enter a Pareto front or be told to a searcher
    as a finished point; a shorter one was stopped early by the scheduler.
    """
    return epoch is not None and float(epoch) >= int(epochs)
