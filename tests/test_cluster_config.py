"""cluster.yaml / cluster-onprem.yaml: Ray's own config preparation and schema, offline.

The launcher's `ray up` first runs ``prepare_config`` (merge with the provider's defaults, merge
setup commands, fill min/max workers; for ``local``, build the single on-premise node type) and
then checks the result against ``ray-schema.json`` (``validate_config``). Both run here exactly
as `ray up` runs them, with no cloud call (the AWS bootstrap that talks to EC2 comes after).
The other tests check what the launcher cannot: the scripts the YAML calls exist and accept the
options it passes, the head's services are not exposed, the pins are the tested ones, and the
paths a sweep spec names are provided on every node.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")
autoscaler_util = pytest.importorskip("ray.autoscaler._private.util")

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["cluster.yaml", "cluster-onprem.yaml"]
SCRIPT_RE = re.compile(r"~/segcore/(scripts/[\w.-]+\.sh)")
ALL_INTERFACES = {"0.0.0.0", "::", "[::]", "*", ""}
HEAD_IP = "10.0.0.10"


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


def prepared(name: str) -> dict:
    """What `ray up` works with: prepare_config, then the schema and semantic checks."""
    config = autoscaler_util.prepare_config(copy.deepcopy(load(name)))
    autoscaler_util.validate_config(config)
    return config


def script_argv(command: str) -> list[str] | None:
    """``[script path in this repo, args...]`` for a YAML command that runs one of our scripts."""
    words = shlex.split(command)
    for i, word in enumerate(words):
        m = SCRIPT_RE.fullmatch(word)
        if m:
            return [str(REPO / m.group(1)), *words[i + 1 :]]
    return None


def mlflow_server_argv(config: dict) -> list[list[str]]:
    """The ``mlflow server`` command lines the head starts, as start_mlflow.sh builds them."""
    out = []
    for command in config["head_start_ray_commands"]:
        argv = script_argv(command)
        if argv and argv[0].endswith("start_mlflow.sh"):
            printed = subprocess.run(
                # A fixed private address keeps the check independent of this machine's network.
                ["bash", *argv, "--advertise", HEAD_IP, "--print-command"],
                capture_output=True, text=True, check=True,
            ).stdout
            out.append(shlex.split(printed))
        elif re.search(r"(^|[\s;&|])mlflow\s+server\b", command):
            out.append(shlex.split(command[command.index("mlflow") :]))
    return out


def option(argv: list[str], name: str) -> str | None:
    """Value of ``--name VALUE`` or ``--name=VALUE`` (the last one wins, as with click/argparse)."""
    value = None
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif word.startswith(name + "="):
            value = word.split("=", 1)[1]
    return value


def exposure_problems(config: dict) -> list[str]:
    """Head services bound to every interface without a host allow-list, or a public dashboard."""
    problems = []
    for argv in mlflow_server_argv(config):
        host = option(argv, "--host")
        host = "127.0.0.1" if host is None else host  # mlflow server's default
        allowed = option(argv, "--allowed-hosts")
        if host in ALL_INTERFACES and not allowed:
            problems.append(f"mlflow server binds {host!r} without --allowed-hosts")
        if allowed is not None and any("*" in h for h in allowed.split(",")):
            problems.append(f"mlflow --allowed-hosts has a wildcard: {allowed!r}")
        if "--disable-security-middleware" in argv:
            problems.append("mlflow --disable-security-middleware")
    for command in config["head_start_ray_commands"]:
        for part in re.split(r"[;&|]+", command):
            words = shlex.split(part)
            if words[:2] == ["ray", "start"]:
                dashboard = option(words, "--dashboard-host")
                if dashboard is None or dashboard in ALL_INTERFACES:
                    problems.append(f"ray start --dashboard-host={dashboard} (public dashboard)")
    for rule in config["provider"].get("security_group", {}).get("IpPermissions", []):
        for ip_range in rule.get("IpRanges", []) + rule.get("Ipv6Ranges", []):
            cidr = ip_range.get("CidrIp") or ip_range.get("CidrIpv6")
            if not ipaddress.ip_network(cidr, strict=False).is_private:
                problems.append(f"security group opens port {rule.get('FromPort')} to {cidr}")
    return problems


@pytest.mark.parametrize("name", CONFIGS)
def test_cluster_config_passes_ray_preparation_and_schema(name):
    config = prepared(name)
    raw = load(name)
    # Our commands, not the provider defaults' (AWS defaults install a nightly Ray wheel).
    assert config["setup_commands"] == raw["setup_commands"]
    assert config["head_setup_commands"] == raw["setup_commands"] + raw["head_setup_commands"]
    assert config["worker_setup_commands"] == raw["setup_commands"]
    assert config["head_start_ray_commands"] == raw["head_start_ray_commands"]
    every_command = [c for key, v in config.items() if key.endswith("_commands") for c in v]
    assert not [c for c in every_command if "ray-wheels" in c or "ray-3.0.0.dev0" in c]
    assert config["file_mounts"]["~/segcore"] == "."
    assert ".gitignore" in config["rsync_filter"]  # .venv, mlflow.db, ... stay behind


def test_aws_config_has_cpu_head_and_autoscaling_gpu_workers():
    config = prepared("cluster.yaml")
    assert config["provider"]["type"] == "aws"
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["max_workers"] == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert len(workers) == 1
    gpu = workers[0]
    assert gpu["resources"]["GPU"] == 1
    assert gpu["min_workers"] == 0 < gpu["max_workers"] <= config["max_workers"]
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))  # a GPU instance family


def test_onprem_config_becomes_one_local_node_type_over_the_given_ips():
    from ray.autoscaler._private.commands import _bootstrap_config

    raw = load("cluster-onprem.yaml")
    # For the local provider, all that `ray up` does before its first SSH connection is offline:
    # preparation, validation and the provider's bootstrap.
    config = _bootstrap_config(copy.deepcopy(raw), no_config_cache=True)
    assert list(config["available_node_types"]) == ["local.cluster.node"]
    node = config["available_node_types"]["local.cluster.node"]
    assert node["max_workers"] == min(raw["max_workers"], len(raw["provider"]["worker_ips"]))
    ips = [raw["provider"]["head_ip"], *raw["provider"]["worker_ips"]]
    assert all(ipaddress.ip_address(ip).is_private for ip in ips)


@pytest.mark.parametrize(
    "path, key, typo",
    [
        ((), "setup_commands", "setup_comands"),  # top level
        ((), "head_start_ray_commands", "head_start_ray_command"),
        ((), "idle_timeout_minutes", "idle_timeout_minute"),
        (("available_node_types", "gpu_worker"), "max_workers", "max_worker"),  # a node type
        (("available_node_types", "gpu_worker"), "min_workers", "min_worker"),
        (("provider", "security_group"), "GroupName", "GroupNme"),
        (("docker",), "image", "imgae"),
    ],
)
def test_a_typo_in_a_key_is_caught_by_rays_schema(path, key, typo):
    config = load("cluster.yaml")
    node = config
    for name in path:
        node = node.setdefault(name, {})
    node[typo] = node.pop(key, "segcore")  # the key as a user would misspell it
    with pytest.raises(jsonschema.ValidationError, match=f"'{re.escape(typo)}' was unexpected"):
        autoscaler_util.validate_config(autoscaler_util.prepare_config(config))


def test_onprem_typo_is_caught_too():
    config = load("cluster-onprem.yaml")
    config["worker_start_ray_comands"] = config.pop("worker_start_ray_commands")
    with pytest.raises(jsonschema.ValidationError, match="'worker_start_ray_comands' was unexpected"):
        autoscaler_util.validate_config(autoscaler_util.prepare_config(config))


@pytest.mark.parametrize("name", CONFIGS)
def test_yaml_commands_run_our_scripts_with_options_they_accept(name):
    config = load(name)
    commands = [c for key, v in config.items() if key.endswith("_commands") for c in v]
    called = {Path(a[0]).name: a for c in commands if (a := script_argv(c))}
    assert set(called) == {"setup_node.sh", "setup_head.sh", "start_mlflow.sh"}
    for script in (REPO / "scripts").glob("*.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True)  # syntax
    # start_mlflow.sh parses every option the YAML passes (an unknown one exits 2).
    (argv,) = mlflow_server_argv(config)
    assert argv[:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in argv and option(argv, "--artifacts-destination")
    assert option(argv, "--backend-store-uri").startswith("postgresql+psycopg2://")
    assert option(argv, "--port") == "5000"
    # MLflow's database is the one setup_head.sh creates.
    db = called["setup_head.sh"][called["setup_head.sh"].index("--db") + 1]
    assert re.fullmatch(rf"postgresql\+psycopg2:///{db}\?host=/var/run/postgresql",
                        option(argv, "--backend-store-uri"))


def ray_start_words(commands: list[str]) -> list[list[str]]:
    """The arguments of every ``ray start`` in a list of shell command lines."""
    out = []
    for command in commands:
        for part in re.split(r"[;&|]+", command):
            words = shlex.split(part)
            if words[:2] == ["ray", "start"]:
                out.append(words[2:])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_start_commands_parse_with_rays_and_mlflows_own_cli(name):
    """A misspelt option of `ray start` or `mlflow server` would only fail on the head."""
    import click
    from mlflow.cli import server as mlflow_server_cli
    from ray.scripts.scripts import start as ray_start_cli

    config = load(name)
    head = ray_start_words(config["head_start_ray_commands"])
    workers = ray_start_words(config["worker_start_ray_commands"])
    assert len(head) == 1 and len(workers) == 1
    head_params = ray_start_cli.make_context("ray start", list(head[0])).params
    assert head_params["head"] and head_params["dashboard_host"] == "127.0.0.1"
    # Without it the head's autoscaler never launches workers (Ray only warns at `ray up`).
    assert head_params["autoscaling_config"] == "~/ray_bootstrap_config.yaml"
    worker_params = ray_start_cli.make_context("ray start", list(workers[0])).params
    assert worker_params["address"] == "$RAY_HEAD_IP:6379" and not worker_params["head"]
    (argv,) = mlflow_server_argv(config)
    params = mlflow_server_cli.make_context("mlflow server", argv[2:]).params
    assert params["serve_artifacts"] and params["allowed_hosts"] == option(argv, "--allowed-hosts")
    with pytest.raises(click.NoSuchOption):  # the check itself can fail
        ray_start_cli.make_context("ray start", ["--head", "--dashbord-host=127.0.0.1"])


def test_start_script_rejects_unknown_options_and_non_postgres_backends():
    script = str(REPO / "scripts" / "start_mlflow.sh")
    bad = subprocess.run(["bash", script, "--hots", "x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown option '--hots'" in bad.stderr
    sqlite = subprocess.run(
        ["bash", script, "--backend-store-uri", "sqlite:///x.db", "--artifacts-destination", "/tmp/a",
         "--print-command"],
        capture_output=True, text=True,
    )
    assert sqlite.returncode == 2 and "postgresql+psycopg2://" in sqlite.stderr


@pytest.mark.parametrize("name", CONFIGS)
def test_head_services_are_not_bound_to_all_interfaces_without_allowed_hosts(name):
    config = load(name)
    assert exposure_problems(config) == []
    (argv,) = mlflow_server_argv(config)
    allowed = option(argv, "--allowed-hosts").split(",")
    # Workers reach the server by the head's private address, the laptop through the tunnel.
    assert {f"{HEAD_IP}:5000", "localhost:5000", "127.0.0.1:5000"} <= set(allowed)
    if name == "cluster-onprem.yaml":
        # On premise a host may have public interfaces: bind the private address only.
        assert option(argv, "--host") == HEAD_IP


@pytest.mark.parametrize(
    "command, problem",
    [
        ("mlflow server --host 0.0.0.0 --port 5000", "without --allowed-hosts"),
        ("mlflow server --host=0.0.0.0 --allowed-hosts '*'", "wildcard"),
        ("mlflow server --host 10.0.0.1 --allowed-hosts 10.0.0.1:5000 --disable-security-middleware",
         "disable-security-middleware"),
        ("ulimit -n 65536; ray start --head --dashboard-host=0.0.0.0", "public dashboard"),
        ("ray start --head --port=6379", "public dashboard"),  # Ray's own launcher default
    ],
)
def test_exposure_check_catches_exposed_services(command, problem):
    config = load("cluster.yaml")
    config["head_start_ray_commands"] = [command]
    assert any(problem in p for p in exposure_problems(config))


def test_exposure_check_catches_a_public_security_group_rule():
    config = load("cluster.yaml")
    config["provider"]["security_group"] = {
        "GroupName": "segcore",
        "IpPermissions": [{"FromPort": 5000, "ToPort": 5000, "IpProtocol": "TCP",
                           "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    }
    assert any("opens port 5000" in p for p in exposure_problems(config))


@pytest.mark.parametrize("name", CONFIGS)
def test_no_secrets_in_cluster_files(name):
    text = (REPO / name).read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)  # AWS access key ids
    assert not re.search(r"(?i)(password|secret|token|aws_access_key|aws_secret)\s*[:=]", text)
    assert not re.search(r"BEGIN [A-Z ]*PRIVATE KEY", text)
    for uri in re.findall(r"postgresql\S*://\S+", text):
        assert not re.search(r"//[^/@]*:[^/@]*@", uri), f"credentials in {uri}"


def test_setup_installs_segcore_at_the_tested_pins():
    import mlflow
    import optuna
    import pandas
    import ray

    setup = (REPO / "scripts" / "setup_node.sh").read_text()
    assert '"${repo}[cluster]"' in setup  # installs this tree with the "cluster" extra
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "segcore[sweep]" in extras["cluster"]
    pins = {}
    for req in extras["sweep"] + extras["cluster"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([\w.]+)", req)
        if m:
            pins.setdefault(m.group(1).lower(), set()).add(m.group(3))
    # One version per package, and it is the one this test suite runs against.
    assert pins["ray"] == {ray.__version__}
    assert pins["mlflow"] == {mlflow.__version__}
    assert pins["optuna"] == {optuna.__version__}
    assert pins["pandas"] == {pandas.__version__}


def setup_node_dirs(config: dict) -> set[str]:
    """Directories scripts/setup_node.sh provides on every node (``--dir`` and ``--nfs`` mounts)."""
    dirs = set()
    for command in config["setup_commands"]:
        argv = script_argv(command)
        if argv and argv[0].endswith("setup_node.sh"):
            for flag, value in zip(argv[1:], argv[2:]):
                if flag == "--dir":
                    dirs.add(value)
                elif flag == "--nfs":
                    dirs.add(value.split("=", 1)[0])
    return dirs


@pytest.mark.parametrize("name", CONFIGS)
def test_cluster_provides_the_paths_the_cityscapes_sweep_names(name):
    spec_path = REPO / "sweeps" / "cityscapes.yaml"
    spec = yaml.safe_load(spec_path.read_text())  # field names: segcore.config.sweep.SweepSpec
    dirs = setup_node_dirs(load(name))
    for field, path in (("dataset.root", spec["dataset"]["root"]), ("storage_path", spec["storage_path"])):
        assert Path(path).is_absolute(), f"{field}: {path} must be absolute on a cluster"
        assert any(Path(path).is_relative_to(d) for d in dirs), (
            f"{field}: {path} (sweeps/cityscapes.yaml) is not under a directory that {name}'s "
            f"setup provides on every node: {sorted(dirs)}"
        )


def test_aws_gpu_worker_fits_the_cityscapes_trials_it_is_sized_for():
    """A worker must hold as many trials as its GPU takes: CPUs must not be what limits it."""
    spec_path = REPO / "sweeps" / "cityscapes.yaml"
    per_trial = yaml.safe_load(spec_path.read_text())["resources"]
    config = prepared("cluster.yaml")
    worker = config["available_node_types"]["gpu_worker"]["resources"]
    by_gpu = worker["GPU"] / per_trial["gpu"]
    by_cpu = worker["CPU"] // per_trial["cpu"]
    assert by_gpu >= 1 and by_cpu >= by_gpu, (
        f"gpu_worker {worker} runs {min(by_gpu, by_cpu):g} cityscapes trials "
        f"({per_trial} each); its GPU could take {by_gpu:g}"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_setup_node_refuses_bad_input_before_changing_anything(tmp_path):
    script = REPO / "scripts" / "setup_node.sh"

    def run(*args, script=script):
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=30)

    bad = run("--data-dir", "/data")
    assert bad.returncode == 2 and "unknown option '--data-dir'" in bad.stderr
    bad = run("--nfs", "fs-0abc.efs.us-west-2.amazonaws.com:/data")
    assert bad.returncode == 2 and "--nfs takes DIR=SOURCE" in bad.stderr
    # `ray up` run from another directory syncs that directory to ~/segcore instead.
    (tmp_path / "scripts").mkdir()
    elsewhere = tmp_path / "scripts" / "setup_node.sh"
    elsewhere.write_text(script.read_text())
    bad = run(script=elsewhere)
    assert bad.returncode == 1 and "run `ray up` from the repository root" in bad.stderr
    old = tmp_path / "python3.9"
    old.write_text('#!/bin/sh\n[ "$1" = -V ] && echo "Python 3.9.18"\nexit 1\n')
    old.chmod(0o755)
    bad = run("--python", str(old), "--venv", str(tmp_path / "venv"))
    assert bad.returncode == 1 and "needs Python >= 3.10" in bad.stderr
    assert not (tmp_path / "venv").exists()


def readme_cluster_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## Running on a cluster")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


@pytest.mark.slow
def test_readme_job_commands_are_valid_sweeps(capsys):
    """The entrypoints the README submits with `ray job submit ... --` validate as written."""
    from segcore.cli import main

    section = readme_cluster_section()
    entrypoints = re.findall(r"^\s+(segcore sweep .+)$", section, flags=re.M)
    assert len(entrypoints) == 2  # AWS and on premise: the same but for the head's address
    aws, onprem = (shlex.split(e) for e in entrypoints)
    assert "http://<head-private-ip>:5000" in aws and "http://<head_ip>:5000" in onprem
    argv = [w.replace("<head-private-ip>", "10.0.0.10") for w in aws]
    assert argv == [w.replace("<head_ip>", "10.0.0.10") for w in onprem]
    assert argv[:2] == ["segcore", "sweep"] and option(argv, "--address") == "auto"
    assert main(["sweep", str(REPO / argv[2]), *argv[3:], "--dry-run"]) == 0
    assert "tracking:   http://10.0.0.10:5000" in capsys.readouterr().out
    assert "ray up cluster.yaml" in section and "ray up cluster-onprem.yaml" in section
    assert "ray attach cluster.yaml -p 5000" in section and "ray dashboard cluster.yaml" in section
