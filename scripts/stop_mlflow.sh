#!/usr/bin/env bash
# Stop the MLflow server that scripts/start_mlflow.sh started (its process group, by pid file).
set -euo pipefail
state_dir="${HOME}/.segcore"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --state-dir) state_dir="$2"; shift 2 ;;
        *) echo "stop_mlflow.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
pid_file="$state_dir/mlflow.pid"
[[ -s "$pid_file" ]] || { echo "stop_mlflow.sh: no $pid_file, nothing to stop"; exit 0; }
pid="$(cat "$pid_file")"
if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
fi
rm -f "$pid_file"
echo "stopped mlflow server (pid $pid)"
