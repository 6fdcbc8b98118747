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

if ! command -v pg_lsclusters >/dev/null; then
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
sudo systemctl enable --now postgresql 2>/dev/null || sudo service postgresql start

user="$(id -un)"
as_postgres() { (cd / && sudo -u postgres "$@"); }
if [[ "$(as_postgres psql -tAc "SELECT 1 FROM pg_roles WHERE rolname = '${user}'")" != 1 ]]; then
    as_postgres createuser "$user"
fi
if [[ "$(as_postgres psql -tAc "SELECT 1 FROM pg_database WHERE datname = '${db}'")" != 1 ]]; then
    as_postgres createdb --owner "$user" "$db"
fi
echo "setup_head.sh: PostgreSQL database '$db' owned by '$user' (local socket, peer auth)"
