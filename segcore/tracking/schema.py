"""Names shared by the writer (``segcore.tune`` via tracking) and the reader (``segcore.analysis``).

Importing this module does not import MLflow.
"""

# Tags on runs
TAG_ROLE = "segcore.role"            # "sweep" on the parent run, "trial" on each child run
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
TAG_SWEEP = "segcore.sweep"          # sweep name, on parent and children
TAG_TRIAL_ID = "segcore.trial_id"    # Ray Tune trial id, on children (one run per trial id)
TAG_STATUS = "segcore.status"        # on children: one of TRIAL_STATUSES
STATUS_COMPLETED = "completed"       # ran every epoch (full fidelity: may enter a Pareto front)
STATUS_EARLY_STOPPED = "early_stopped"  # stopped by the scheduler (ASHA) before the last epoch
STATUS_FAILED = "failed"
TRIAL_STATUSES = (STATUS_COMPLETED, STATUS_EARLY_STOPPED, STATUS_FAILED)
TAG_NODE = "segcore.node"            # hostname / Ray node IP the trial ran on
TAG_NETWORK = "segcore.network"

# Params on child runs: the flattened TrialConfig (nested dicts as "a.b"), always including
KNOB_PARAMS = ("network", "backbone", "grid_stride", "loss_at", "keep", "truncation", "block", "block_mode")

# Metrics on child runs: per epoch (step = epoch) and final values under the same keys
METRIC_MIOU = "miou"
METRIC_PIXEL_ACCURACY = "pixel_accuracy"
METRIC_TRAIN_LOSS = "train_loss"
METRIC_EPOCH = "epoch"
COST_METRICS = (
    "gflops", "decoder_gflops", "params_m", "latency_ms", "peak_memory_mb",
    "annotation_units", "relative_annotation_units", "mixed_block_share",
)

# Artifacts
ARTIFACT_SPECTRUM_JSON = "spectrum/spectrum.json"  # on the parent run
ARTIFACT_SPECTRUM_PLOT = "spectrum/spectrum.png"   # on the parent run
ARTIFACT_SPEC = "sweep.yaml"                       # the resolved sweep spec, on the parent run

# Added with the writer (segcore.tracking.writer)
TAG_ERROR = "segcore.error"                # on failed / interrupted children: the reason
TAG_EARLY_STOPPED = "segcore.early_stopped"  # "true" on children the scheduler stopped early
ARTIFACT_PER_CLASS_IOU = "per_class_iou.json"  # on children: {class name: IoU}
ARTIFACT_SAMPLES = "samples.png"               # on children: image | truth | prediction panel
