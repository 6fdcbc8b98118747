#!/usr/bin/env bash
# Set up the head node's PostgreSQL for the MLflow tracking server (cluster.yaml and
# cluster-onprem.yaml call this from head_setup_commands).
#
# Debian/Ubuntu's postgresql package listens on localhost only. MLflow, on the same machine,
# connects over the local Unix socket with peer authentication as the login user, so there is
# no password anywhere: the backend store URI is
#     postgresql+psycopg2:///mlflow?host=/var/run/postgresql
# Safe to run again.
set -euo pipefail

db=mlflow
while [[ $# -gt 0 ]]; do
    case "$1" in
        --db) db="$2"; shift 2 ;;
        *) echo "setup_head.sh: unknown option '$1' (valid: --db)" >&2; exit 2 ;;
    esac
done

[[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || { echo "setup_head.sh: --db must be a plain lower-case name, got '$db'" >&2; exit 2; }

# The launcher logs in as a sudoer; as root (a container, the tests' machine) no sudo is needed.
as_root() { if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo -n "$@"; fi; }
as_postgres() {
    if [[ "$(id -u)" == 0 ]]; then (cd / && runuser -u postgres -- "$@"); else (cd / && sudo -n -u postgres "$@"); fi
}

if ! command -v pg_lsclusters >/dev/null; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
if ! pg_isready -q; then
    as_root systemctl enable --now postgresql 2>/dev/null || as_root service postgresql start
    for _ in $(seq 1 30); do pg_isready -q && break; sleep 1; done
fi

user="$(id -un)"
if [[ "$(as_postgres psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = '${user}'")" != 1 ]]; then
    as_postgres createuser "$user"
fi
if [[ "$(as_postgres psql -tAc "SELECT 1 FROM pg_database WHERE datname = '${db}'")" != 1 ]]; then
    as_postgres createdb --owner "$user" "$db"
fi
echo "setup_head.sh: PostgreSQL database '$db' owned by '$user' (local socket, peer auth)"
