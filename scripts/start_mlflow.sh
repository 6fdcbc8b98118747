#!/usr/bin/env bash
# Start the MLflow tracking server of a segcore cluster on the head node (cluster.yaml and
# cluster-onprem.yaml call this from head_start_ray_commands; tests/test_cluster_mlflow.py runs
# the very same line against a throw-away PostgreSQL database).
#
# The server keeps runs in PostgreSQL (--backend-store-uri) and proxies artifacts
# (--serve-artifacts --artifacts-destination), so trials on worker nodes upload artifacts over
# HTTP and need no bucket credentials. It runs detached in its own process group; its pid, log
# and the tracking URI for the cluster are written to --state-dir. A running server started by
# an earlier call is stopped first, so `ray up` can be repeated.
#
# Network exposure: --host is the address the server binds. Whatever it is, --allowed-hosts is
# always given (the private address and the loopback names, with the port), so requests that
# name any other host are refused (DNS rebinding), and nothing here opens a port to the outside:
# the launcher's security group (AWS) or your firewall (on-premise) decides who can connect.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: start_mlflow.sh --backend-store-uri URI --artifacts-destination DIR_OR_URI
                       [--host ADDR|private] [--port N] [--advertise ADDR] [--workers N]
                       [--state-dir DIR] [--wait SECONDS] [--print-command]
  --host           address to bind; "private" (default) = the --advertise address
  --advertise      address workers use to reach the server (default: this node's private IP)
  --print-command  print the mlflow server command line and exit (used by the tests)
USAGE
}

host=private
port=5000
advertise=""
workers=2
backend=""
artifacts=""
state_dir="${HOME}/.segcore"
wait_s=120
print_only=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        --host) host="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --advertise) advertise="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --backend-store-uri) backend="$2"; shift 2 ;;
        --artifacts-destination) artifacts="$2"; shift 2 ;;
        --state-dir) state_dir="$2"; shift 2 ;;
        --wait) wait_s="$2"; shift 2 ;;
        --print-command) print_only=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "start_mlflow.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
done

if [[ -z "$backend" || -z "$artifacts" ]]; then
    echo "start_mlflow.sh: --backend-store-uri and --artifacts-destination are required" >&2
    usage >&2
    exit 2
fi
case "$backend" in
    postgresql+psycopg2://*) ;;
    *) echo "start_mlflow.sh: --backend-store-uri must be a postgresql+psycopg2:// URI" \
            "(psycopg2 is the driver segcore installs), got '$backend'" >&2; exit 2 ;;
esac

# The first address of `hostname -I` is the node's private address on EC2 and on a typical LAN
# (EC2 public IPv4 addresses are NAT'ed and never appear on the instance's interfaces).
if [[ -z "$advertise" ]]; then
    advertise="$(hostname -I 2>/dev/null | awk '{print $1}')"
    [[ -n "$advertise" ]] || { echo "start_mlflow.sh: cannot find this node's private IP; pass --advertise" >&2; exit 2; }
fi
[[ "$host" != "private" ]] || host="$advertise"

allowed="${advertise}:${port},${advertise},localhost:${port},127.0.0.1:${port},localhost,127.0.0.1"
origins="http://${advertise}:${port},http://localhost:${port},http://127.0.0.1:${port}"

# Artifact destinations that are local paths are created here; URIs (s3://...) are used as is.
if [[ "$artifacts" != *://* ]]; then
    [[ "$print_only" == 1 ]] || mkdir -p "$artifacts"
fi

cmd=(mlflow server
     --backend-store-uri "$backend"
     --serve-artifacts --artifacts-destination "$artifacts"
     --host "$host" --port "$port" --workers "$workers"
     --allowed-hosts "$allowed"
     --cors-allowed-origins "$origins")

if [[ "$print_only" == 1 ]]; then
    printf '%q ' "${cmd[@]}"; echo
    exit 0
fi

command -v mlflow >/dev/null || { echo "start_mlflow.sh: mlflow not on PATH (run scripts/setup_node.sh)" >&2; exit 1; }
mkdir -p "$state_dir"
pid_file="$state_dir/mlflow.pid"
log_file="$state_dir/mlflow.log"

# A server from an earlier `ray up` would hold the port: stop it (its own process group only).
if [[ -s "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    "$(dirname "${BASH_SOURCE[0]}")/stop_mlflow.sh" --state-dir "$state_dir"
fi

rm -f "$pid_file"
# segcore needs tracking only: MLflow's GenAI job runner (7 huey worker processes) stays off.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
# setsid: the server and its uvicorn workers form one process group that stop_mlflow.sh ends
# as a whole, and that outlives the launcher's SSH session.
# The pid is written from inside the new session, which is right even where setsid must fork.
setsid bash -c 'echo $$ > "$0"; exec "$@"' "$pid_file" "${cmd[@]}" >"$log_file" 2>&1 < /dev/null &
for _ in $(seq 1 50); do [[ -s "$pid_file" ]] && break; sleep 0.1; done

# Health is probed on the address workers use; the Host header must be an allowed one.
probe_host="$host"
[[ "$host" != "0.0.0.0" && "$host" != "::" ]] || probe_host=127.0.0.1
deadline=$((SECONDS + wait_s))
until curl -fs -o /dev/null "http://${probe_host}:${port}/health"; do
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        echo "start_mlflow.sh: mlflow server exited; last lines of $log_file:" >&2
        tail -n 30 "$log_file" >&2
        exit 1
    fi
    if (( SECONDS > deadline )); then
        echo "start_mlflow.sh: mlflow server not healthy after ${wait_s}s; see $log_file" >&2
        exit 1
    fi
    sleep 0.5
done

echo "http://${advertise}:${port}" > "$state_dir/tracking_uri"
echo "MLflow tracking server up: http://${advertise}:${port} (pid $(cat "$pid_file"), log $log_file)"
