#!/usr/bin/env bash
# Set up one node of a segcore cluster (head and workers alike; cluster.yaml and
# cluster-onprem.yaml call this from setup_commands, after the launcher has synced the working
# tree to ~/segcore).
#
#   1. a Python venv (~/segcore-venv) holding segcore and the tested pins from pyproject.toml
#      (extra "cluster": torch, Ray 2.60.0 with its dashboard, MLflow 3.17.2, Optuna, pandas,
#      psycopg2, boto3 for the AWS autoscaler), put first on PATH for the launcher's shells;
#   2. the directories sweeps read and write at the same path on every node: the data sets
#      (`dataset.root` of a sweep spec, e.g. /data/cityscapes) and Ray Tune's `storage_path`
#      (e.g. /shared/ray_results). `--nfs DIR=SOURCE` mounts an NFS export (Amazon EFS, a NAS)
#      there, which a multi-node sweep needs: every node must read the same data and Tune must
#      find every trial's checkpoints. `--dir DIR` only creates a local directory (one node, or
#      data copied to every node with file_mounts).
# Safe to run again: every step checks what is already there.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${HOME}/segcore-venv"
python=python3
dirs=()
nfs_mounts=()

while [[ $# -gt 0 ]]; do
    case "$1" in
        --venv) venv="$2"; shift 2 ;;
        --python) python="$2"; shift 2 ;;
        --dir) dirs+=("$2"); shift 2 ;;
        --nfs)
            [[ "$2" == /*=?* ]] || { echo "setup_node.sh: --nfs takes DIR=SOURCE (e.g. /data=fs-0abc.efs.us-west-2.amazonaws.com:/data), got '$2'" >&2; exit 2; }
            nfs_mounts+=("$2"); shift 2 ;;
        *) echo "setup_node.sh: unknown option '$1' (valid: --venv --python --dir --nfs)" >&2; exit 2 ;;
    esac
done

# file_mounts syncs "." -- the directory `ray up` was run from -- to ~/segcore.
if ! grep -qs '^name = "segcore"' "$repo/pyproject.toml"; then
    echo "setup_node.sh: $repo holds no segcore checkout: run \`ray up\` from the repository root" >&2
    exit 1
fi

# The launcher logs in as a sudoer; as root no sudo is needed.
as_root() { if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo -n "$@"; fi; }
apt_install() {
    # Debian/Ubuntu images; on others install the named packages by hand beforehand.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# segcore needs Python >= 3.10 (pyproject.toml requires-python).
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "setup_node.sh: $python is $("$python" -V 2>&1); segcore needs Python >= 3.10." \
         "Use an Ubuntu 22.04+ image (ImageId in cluster.yaml) or pass --python." >&2
    exit 1
fi
if [[ ! -x "$venv/bin/python" ]]; then
    if ! "$python" -m venv "$venv" 2>/dev/null; then
        # Debian/Ubuntu ship venv's pip bootstrap in a separate package.
        rm -rf "$venv"
        apt_install "python$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"
        "$python" -m venv "$venv"
    fi
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
# The pins live in pyproject.toml only; the "cluster" extra adds what nodes need on top of the
# sweep service. A local path is rebuilt on every call, so `ray up` ships code changes.
"$venv/bin/python" -m pip install --progress-bar off "${repo}[cluster]"

# The launcher runs its commands in interactive login shells: this puts the venv first on PATH.
marker="# segcore-venv (scripts/setup_node.sh)"
if ! grep -qF "$marker" "${HOME}/.bashrc" 2>/dev/null; then
    printf '\n%s\nexport PATH="%s/bin:$PATH"\n' "$marker" "$venv" >> "${HOME}/.bashrc"
fi

# Data sets and Tune storage at the same path on every node.
for dir in "${dirs[@]}"; do
    as_root mkdir -p "$dir"
    as_root chown "$(id -un)" "$dir"
done
for spec in "${nfs_mounts[@]}"; do
    dir="${spec%%=*}"
    source="${spec#*=}"
    command -v mount.nfs4 >/dev/null || apt_install nfs-common
    as_root mkdir -p "$dir"
    if ! mountpoint -q "$dir"; then
        as_root mount -t nfs4 -o nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport \
            "$source" "$dir"
    fi
done

"$venv/bin/python" -c 'import segcore, ray, mlflow; print("segcore", segcore.__version__, "| ray", ray.__version__, "| mlflow", mlflow.__version__)'
echo "setup_node.sh: done (venv $venv; directories: ${dirs[*]:-none}; NFS: ${nfs_mounts[*]:-none})"
