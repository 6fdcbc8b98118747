#!/usr/bin/env bash
# The CamVid study on one GPU, end to end: the sweep (`segcore sweep` on a private local Ray, trials
# sharing the GPU), then the study's files (`benchmarks/camvid_study.py`: the report, trials.csv,
# curves.csv, study.json) under benchmarks/results/camvid_study_gpu/, with gpu_run.json (the device,
# the versions and the wall time of each step) and sweep.log beside them.
#
#   benchmarks/gpu_study.sh                       # sweeps/camvid-gpu.yaml as written
#   EPOCHS=2 IMAGE_SCALE=1.0 benchmarks/gpu_study.sh
#
# Every setting below may be overridden from the environment; the tests run this same script on a
# CPU with a tiny spec, a 4-image CamVid and LIMIT=1.
#   SEGCORE_GPU_STUDY_SPEC  sweep spec                         (sweeps/camvid-gpu.yaml)
#   CAMVID_ROOT             CamVid root, SegNet layout         (../shared/data/camvid)
#   STUDY_OUT               where the study's files go         (benchmarks/results/camvid_study_gpu)
#   WORKDIR                 the MLflow store and Ray's state   (runs/camvid-gpu; emptied first unless RESUME=1)
#   RESUME=1                continue an interrupted sweep in WORKDIR (`segcore sweep --resume`)
#   EPOCHS, IMAGE_SCALE, MAX_CONCURRENT   the spec's epochs, dataset.image_scale, max_concurrent
#   NETWORKS, SEEDS         comma lists replacing the spec's networks and search.seeds
#   RESOURCES               "CPU,GPU" per trial, e.g. "1,0" on a machine without a GPU
#   DEVICE                  the trials' device: auto, cpu or cuda
#   LIMIT                   at most LIMIT batches per epoch (train and val) and LIMIT label maps for
#                           the spectrum: a smoke run, not a study
#   STEPS                   "sweep study" (default) or "sweep" (the sweep alone)
#   PYTHON                  the interpreter with segcore installed (python)
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export SEGCORE_GPU_STUDY_SPEC=${SEGCORE_GPU_STUDY_SPEC:-sweeps/camvid-gpu.yaml}
export CAMVID_ROOT=${CAMVID_ROOT:-../shared/data/camvid}
STUDY_OUT=${STUDY_OUT:-benchmarks/results/camvid_study_gpu}
WORKDIR=${WORKDIR:-runs/camvid-gpu}
STEPS=${STEPS:-sweep study}
export EPOCHS=${EPOCHS:-} IMAGE_SCALE=${IMAGE_SCALE:-} MAX_CONCURRENT=${MAX_CONCURRENT:-} NETWORKS=${NETWORKS:-}
export SEEDS=${SEEDS:-} RESOURCES=${RESOURCES:-} DEVICE=${DEVICE:-} LIMIT=${LIMIT:-}

if [[ ! -d "$CAMVID_ROOT" ]]; then
    echo "gpu_study: no CamVid at $CAMVID_ROOT (set CAMVID_ROOT to its root: train/, trainannot/, val/, valannot/)" >&2
    exit 2
fi
if [[ "${RESUME:-0}" != 1 ]]; then
    rm -rf "$WORKDIR"
fi
mkdir -p "$WORKDIR" "$STUDY_OUT"
WORKDIR=$(cd "$WORKDIR" && pwd)
export CAMVID_ROOT=$(cd "$CAMVID_ROOT" && pwd)
TRACKING_URI="sqlite:///$WORKDIR/mlflow.db"

# The spec the sweep runs: the chosen one with the environment's overrides, written to WORKDIR.
EXPERIMENT=$("$PYTHON" - "$WORKDIR/spec.yaml" <<'PY'
import os
import sys

import yaml

with open(os.environ["SEGCORE_GPU_STUDY_SPEC"]) as f:
    spec = yaml.safe_load(f)
env = {k: os.environ.get(k, "") for k in
       ("EPOCHS", "IMAGE_SCALE", "MAX_CONCURRENT", "NETWORKS", "SEEDS", "RESOURCES", "DEVICE", "LIMIT")}
spec["dataset"]["root"] = os.environ["CAMVID_ROOT"]
if env["EPOCHS"]:
    spec["epochs"] = int(env["EPOCHS"])
if env["IMAGE_SCALE"]:
    spec["dataset"]["image_scale"] = float(env["IMAGE_SCALE"])
if env["MAX_CONCURRENT"]:
    spec["max_concurrent"] = int(env["MAX_CONCURRENT"])
if env["NETWORKS"]:
    spec["networks"] = env["NETWORKS"].split(",")
    spec["network_config"] = {k: v for k, v in (spec.get("network_config") or {}).items() if k in spec["networks"]}
if env["SEEDS"]:
    spec["search"]["seeds"] = [int(s) for s in env["SEEDS"].split(",")]
if env["RESOURCES"]:
    cpu, gpu = env["RESOURCES"].split(",")
    spec["resources"] = {"cpu": float(cpu), "gpu": float(gpu)}
train = spec.setdefault("train", {})
if env["DEVICE"]:
    train["device"] = env["DEVICE"]
if env["LIMIT"]:
    train["max_train_batches"] = train["max_val_batches"] = int(env["LIMIT"])
    spec.setdefault("spectral", {})["limit"] = int(env["LIMIT"])
with open(sys.argv[1], "w") as f:
    yaml.safe_dump(spec, f, sort_keys=False)
print(spec.get("experiment") or spec["name"])
PY
)

started=$(date +%s)
sweep_s=0
study_s=0
if [[ " $STEPS " == *" sweep "* ]]; then
    resume=()
    [[ "${RESUME:-0}" == 1 ]] && resume=(--resume)
    "$PYTHON" -m segcore sweep "$WORKDIR/spec.yaml" --tracking-uri "$TRACKING_URI" \
        --storage-path "$WORKDIR/ray_results" "${resume[@]}" 2>&1 | tee "$STUDY_OUT/sweep.log"
    sweep_s=$(( $(date +%s) - started ))
fi
if [[ " $STEPS " == *" study "* ]]; then
    step_start=$(date +%s)
    "$PYTHON" benchmarks/camvid_study.py --experiment "$EXPERIMENT" --tracking-uri "$TRACKING_URI" \
        --root "$CAMVID_ROOT" --out "$STUDY_OUT"
    study_s=$(( $(date +%s) - step_start ))
fi

# What ran where, and how long each step took.
SWEEP_S=$sweep_s STUDY_S=$study_s TOTAL_S=$(( $(date +%s) - started )) STEPS=$STEPS \
    "$PYTHON" - "$WORKDIR/spec.yaml" "$STUDY_OUT/gpu_run.json" <<'PY'
import json
import os
import platform
import sys

import torch
import yaml

spec = yaml.safe_load(open(sys.argv[1]))
cuda = torch.cuda.is_available()
record = {
    "spec": os.environ["SEGCORE_GPU_STUDY_SPEC"],
    "overrides": {k: os.environ[k] for k in ("EPOCHS", "IMAGE_SCALE", "MAX_CONCURRENT", "NETWORKS", "SEEDS",
                                             "RESOURCES", "DEVICE", "LIMIT") if os.environ.get(k)},
    "steps": os.environ["STEPS"].split(),
    "networks": spec["networks"], "epochs": spec["epochs"], "image_scale": spec["dataset"].get("image_scale"),
    "resources": spec.get("resources"), "max_concurrent": spec.get("max_concurrent"),
    "wall_s": {"sweep": int(os.environ["SWEEP_S"]), "study": int(os.environ["STUDY_S"]),
               "total": int(os.environ["TOTAL_S"])},
    "cuda": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None,
    "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
}
with open(sys.argv[2], "w") as f:
    json.dump(record, f, indent=2)
    f.write("\n")
print(f"gpu_study: {record['wall_s']['total']} s ({'GPU ' + record['gpu'] if cuda else 'no GPU'}); "
      f"files in {os.path.dirname(sys.argv[2])}")
PY
