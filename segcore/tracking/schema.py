"""How a sweep is laid out in MLflow: tags, params and artifacts shared by the writer and the reader.

The metric, knob and status names themselves live in :mod:`segcore.names` (re-exported here so a
reader of the record finds them in one place). Importing this module does not import MLflow.
"""

from segcore.names import (  # noqa: F401  (re-exported)
    COST_METRICS,
    KNOB_PARAMS,
    METRIC_EPOCH,
    METRIC_MIOU,
    METRIC_PIXEL_ACCURACY,
    METRIC_TRAIN_LOSS,
    STATUS_COMPLETED,
    STATUS_EARLY_STOPPED,
    STATUS_FAILED,
    TRIAL_METRICS,
)

# Tags on runs
TAG_ROLE = "segcore.role"            # "sweep" on the parent run, "trial" on each child run
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
TAG_SWEEP = "segcore.sweep"          # sweep name, on parent and children
TAG_TRIAL_ID = "segcore.trial_id"    # Ray Tune trial id, on children (one run per trial id)
TAG_STATUS = "segcore.status"        # on children: one of segcore.names.STATUS_*
TAG_NODE = "segcore.node"            # hostname / Ray node IP the trial ran on
TAG_NETWORK = "segcore.network"

# Params on child runs: the flattened TrialConfig (nested dicts as "a.b"), always including KNOB_PARAMS

# Metrics on child runs: per epoch (step = epoch) and final values under the segcore.names keys

# Artifacts
ARTIFACT_SPECTRUM_JSON = "spectrum/spectrum.json"  # on the parent run
ARTIFACT_SPECTRUM_PLOT = "spectrum/spectrum.png"   # on the parent run
ARTIFACT_SPEC = "sweep.yaml"                       # the resolved sweep spec, on the parent run

# On child runs
TAG_ERROR = "segcore.error"                # on failed / interrupted children: the reason
TAG_EARLY_STOPPED = "segcore.early_stopped"  # "true" on children the scheduler stopped early
ARTIFACT_PER_CLASS_IOU = "per_class_iou.json"  # on children: {class name: IoU}
ARTIFACT_SAMPLES = "samples.png"               # on children: image | truth | prediction panel
