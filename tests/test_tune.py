"""Sweeps on Ray Tune recorded in MLflow: the searcher's bookkeeping, a real sweep on a local Ray
instance, resume, and a real multi-node Ray cluster (fake GPUs) on this machine."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("ray.tune", reason="the sweep extra (ray[tune]) is not installed")
pytest.importorskip("mlflow", reason="the sweep extra (mlflow) is not installed")

import optuna  # noqa: E402
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher  # noqa: E402

from segcore.tune.validate import load_sweep  # noqa: E402
from segcore.tracking import schema  # noqa: E402
from segcore.tune.callbacks import trial_status  # noqa: E402
from segcore.tune.search import DedupOptunaSearch, build_search, grid_points, optuna_space, param_space  # noqa: E402


def spec_dict(tmp_path, **overrides) -> dict:
    spec = {
        "name": "t-local",
        "dataset": {"name": "synthetic", "options": {"num_samples": 8, "size": [32, 32], "num_classes": 3, "cutoff": 0.0625}},
        "networks": ["unet_tiny", "dan_tiny"],
        "space": {"grid_stride": [2, 4], "keep": [0.5, 1.0]},
        "train": {"batch_size": 4, "max_train_batches": 2, "max_val_batches": 1, "lr": 0.01},
        "objectives": {"miou": "max", "gflops": "min"},
        "search": {"algorithm": "optuna", "sampler": "nsga2", "population_size": 2},
        "num_samples": 4,
        "max_concurrent": 2,
        "epochs": 2,
        "storage_path": str(tmp_path / "ray_results"),
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "experiment": "t",
        "spectral": {"strides": [1, 2, 4], "blocks": [1, 2]},
    }
    spec.update(overrides)
    return spec


# --- the searcher, without running Ray -----------------------------------------------------------


def _searcher(epochs: int = 2) -> DedupOptunaSearch:
    return DedupOptunaSearch(
        space={
            "network": optuna.distributions.CategoricalDistribution(["a", "b"]),
            "block": optuna.distributions.CategoricalDistribution([1, 8]),
        },
        metric=["miou", "gflops"],
        mode=["max", "min"],
        sampler=optuna.samplers.NSGAIISampler(seed=0, population_size=2),
        epochs=epochs,
        space_size=4,
    )


def test_dedupe_runs_each_configuration_once_then_finishes():
    searcher = _searcher()
    seen = []
    for i in range(12):
        config = searcher.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            break
        seen.append((config["network"], config["block"]))
        searcher.on_trial_complete(f"t{i}", {"miou": 0.1 * i, "gflops": 1.0 + i, "epoch": 2})
    assert sorted(seen) == sorted({("a", 1), ("a", 8), ("b", 1), ("b", 8)})  # all four, each once
    assert config == Searcher.FINISHED
    complete = [t for t in searcher._ot_study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # Repeats were answered from the earlier results, so Optuna saw more points than trials ran.
    assert len(complete) == 4 + searcher.skipped_repeats


def test_early_stopped_trial_is_pruned_not_a_front_point():
    searcher = _searcher(epochs=3)
    searcher.suggest("stopped")
    searcher.on_trial_complete("stopped", {"miou": 0.9, "gflops": 0.1, "epoch": 1})  # ASHA stopped it
    searcher.suggest("full")
    searcher.on_trial_complete("full", {"miou": 0.5, "gflops": 1.0, "epoch": 3})
    states = {t.number: t.state for t in searcher._ot_study.trials}
    assert states == {0: optuna.trial.TrialState.PRUNED, 1: optuna.trial.TrialState.COMPLETE}
    assert [t.values for t in searcher._ot_study.best_trials] == [[0.5, 1.0]]


def test_trial_status_from_last_result():
    assert trial_status({"epoch": 3}, 3, errored=False) == schema.STATUS_COMPLETED
    assert trial_status({"epoch": 1}, 3, errored=False) == schema.STATUS_EARLY_STOPPED
    assert trial_status({"epoch": 3}, 3, errored=True) == schema.STATUS_FAILED


def test_progress_lines_number_each_trial_by_its_place_in_tune(capsys):
    """The same number in every line about a trial, whatever order its events come in."""
    from types import SimpleNamespace

    from segcore.tune.callbacks import ProgressCallback

    def fake(trial_id, network, stride):
        return SimpleNamespace(trial_id=trial_id, config={"network": network, "grid_stride": stride},
                               last_result={"epoch": 2, "miou": 0.5}, error_file=None)

    trials = [fake("a_00000", "unet_tiny", 2), fake("a_00001", "dan_tiny", 4), fake("a_00002", "unet_tiny", 8)]
    progress = ProgressCallback(3, 2, {"miou": "max"}, ["network", "grid_stride"])
    progress.on_trial_start(0, trials, trials[1])  # the second trial starts first
    progress.on_trial_start(0, trials, trials[0])
    progress.on_trial_result(0, trials, trials[1], {"epoch": 1, "miou": 0.25, "node": "n1"})
    progress.on_trial_complete(0, trials, trials[0])
    progress.on_trial_error(0, trials, trials[2])
    lines = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        "start trial  2/3 a_00001 dan_tiny s4",
        "start trial  1/3 a_00000 unet_tiny s2",
        "epoch trial  2/3 a_00001 dan_tiny s4 1/2 miou=0.25 [n1]",
        "completed trial  1/3 a_00000 unet_tiny s2 miou=0.5",
        "FAILED trial  3/3 a_00002 unet_tiny s8: trial failed (no error file)",
    ]


def test_spec_to_search_and_space(tmp_path):
    spec = load_sweep(spec_dict(tmp_path), check_paths=False)
    search = build_search(spec)
    assert isinstance(search, ConcurrencyLimiter) and search.max_concurrent == 2
    assert search.searcher.metric == ["miou", "gflops"] and search.searcher.mode == ["max", "min"]
    assert set(optuna_space(spec)) == {"network", "grid_stride", "keep"}
    space = param_space(spec)
    assert "keep" not in space and space["epochs"] == 2 and space["dataset"] == "synthetic"

    grid = load_sweep(spec_dict(tmp_path, search={"algorithm": "grid"}), check_paths=False)
    assert isinstance(build_search(grid), BasicVariantGenerator)
    assert param_space(grid)["keep"] == {"grid_search": [0.5, 1.0]}


def test_grid_axes_become_complete_points_to_evaluate(tmp_path):
    search = {"algorithm": "grid", "axes": [{"grid_stride": [2, 4]}, {"block": [2]}], "seeds": [0, 1]}
    spec = load_sweep(spec_dict(tmp_path, networks=["unet_tiny"], search=search, num_samples=1,
                                space={"grid_stride": 2, "keep": 1.0, "block": 1}), check_paths=False)
    points = grid_points(spec)
    # 3 configurations (stride 2 and 4 at block 1, block 2 at stride 2) x 2 seeds, each naming every varied key
    assert points == [
        {"grid_stride": g, "block": b, "seed": seed} for seed in (0, 1) for g, b in ((2, 1), (4, 1), (2, 2))
    ]
    space = param_space(spec)
    assert space["seed"].categories == [0, 1] and space["grid_stride"].categories == [2, 4]
    assert space["keep"] == 1.0 and space["network"] == "unet_tiny"
    searcher = build_search(spec)
    assert isinstance(searcher, BasicVariantGenerator) and searcher._points_to_evaluate == points


# --- real sweeps --------------------------------------------------------------------------------


def _runs(tracking_uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_SWEEP]
    children = [r for r in runs if r.data.tags.get(schema.TAG_ROLE) == schema.ROLE_TRIAL]
    return client, parents, children


@pytest.mark.slow
def test_local_sweep_records_one_child_run_per_trial(tmp_path):
    from segcore.tune import run_sweep

    spec = load_sweep(
        spec_dict(tmp_path, scheduler={"name": "mo_asha", "grace_period": 1}, network_config={"dan_tiny": {"lr": 0.02}})
    )
    outcome = run_sweep(spec, address="local", num_cpus=2, progress=True)
    df = outcome.trials
    assert len(df) == 4
    assert not df.duplicated(["network", "grid_stride", "keep"]).any()  # dedupe: no config twice
    assert set(df["status"]) <= {schema.STATUS_COMPLETED, schema.STATUS_EARLY_STOPPED}
    assert (df["status"] == schema.STATUS_COMPLETED).any()

    client, parents, children = _runs(spec.tracking_uri, "t")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.info.run_id == outcome.parent_run_id
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id, "spectrum")}
    assert {schema.ARTIFACT_SPECTRUM_JSON, schema.ARTIFACT_SPECTRUM_PLOT} <= parent_files

    assert sorted(r.data.tags[schema.TAG_TRIAL_ID] for r in children) == sorted(df["trial_id"])
    rows = df.set_index("trial_id")
    for run in children:
        tags, params = run.data.tags, run.data.params
        row = rows.loc[tags[schema.TAG_TRIAL_ID]]
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        assert set(schema.KNOB_PARAMS) <= set(params)
        assert (params["network"], int(params["grid_stride"]), float(params["keep"])) == (
            row["network"], row["grid_stride"], row["keep"],
        )
        assert float(params["lr"]) == (0.02 if row["network"] == "dan_tiny" else 0.01)  # network_config
        assert tags[schema.TAG_NODE] and tags[schema.TAG_STATUS] == row["status"]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "miou")]
        assert run.info.status == "FINISHED"
        if row["status"] == schema.STATUS_COMPLETED:
            assert steps == [1, 2]
            assert schema.ARTIFACT_PER_CLASS_IOU in {a.path for a in client.list_artifacts(run.info.run_id)}
        else:  # stopped by MO-ASHA after its first epoch: tagged, never "completed"
            assert steps == [1] and tags.get(schema.TAG_EARLY_STOPPED) == "true"
        assert "lr" not in run.data.metrics  # a param never doubles as a metric

    # The same name again without --resume is refused before anything is recorded ...
    with pytest.raises(ValueError, match="name: sweep 't-local' already has results"):
        run_sweep(spec, address="local", num_cpus=2, progress=False)
    # ... and --resume of a finished sweep runs nothing new and opens no duplicate run.
    again = run_sweep(spec, address="local", num_cpus=2, progress=False, resume=True)
    assert sorted(again.trials["trial_id"]) == sorted(df["trial_id"])
    _, parents2, children2 = _runs(spec.tracking_uri, "t")
    assert len(parents2) == 1 and len(children2) == len(children)
    assert all(r.info.status != "RUNNING" for r in children2)
    steps = [m.step for m in client.get_metric_history(parent.info.run_id, "spectrum.band_energy")]
    assert steps == [1, 2, 4]  # the spectral curve once, by stride, not again on resume


def test_resume_computes_a_missing_spectrum_once(tmp_path):
    """A sweep whose first start logged no spectrum gets it on --resume; a second resume reads it
    back and logs nothing twice."""
    from segcore.tracking import SweepRecorder, query
    from segcore.tune.runner import start_parent_run

    spec = load_sweep(spec_dict(tmp_path))
    recorder = SweepRecorder(spec.tracking_uri, spec.experiment_name, spec.name)
    try:
        parent = recorder.start_sweep(spec.to_dict())  # the first start: no spectrum logged
        assert recorder.flush(timeout=60)
        assert query.load_spectrum("t", spec.tracking_uri, sweep=spec.name) is None
        lines: list[str] = []
        again, spectrum = start_parent_run(spec, recorder, resuming=True, progress=False, log=lines.append)
        assert recorder.flush(timeout=60) and again == parent
        assert f"sweep {spec.name!r} has no spectrum on its parent run: computing it again" in lines
        assert spectrum["strides"] == [1, 2, 4]
        logged = query.load_spectrum("t", spec.tracking_uri, sweep=spec.name)
        assert logged["band_energy"] == pytest.approx(spectrum["band_energy"])
        lines.clear()
        _, read_back = start_parent_run(spec, recorder, resuming=True, progress=False, log=lines.append)
        assert recorder.flush(timeout=60)
        assert read_back == logged and not any("spectral analysis" in line for line in lines)
        client, _, _ = _runs(spec.tracking_uri, "t")
        assert [m.step for m in client.get_metric_history(parent, "spectrum.band_energy")] == [1, 2, 4]
    finally:
        recorder.close(timeout=60)


@pytest.mark.slow
def test_local_constrained_sweep_runs_only_feasible_configurations(tmp_path):
    """Blocks 1, 2 and 4 of 32 x 32 images cost 1024, 256 and 64 annotation units: under a bound
    of 256 block 1 never runs, and the report reads the bound back from the logged spec."""
    from segcore.analysis import load_trials
    from segcore.analysis.pareto import feasible_mask
    from segcore.analysis.report import sweep_constraints
    from segcore.tune import run_sweep

    spec = load_sweep(spec_dict(
        tmp_path, networks=["unet_tiny"], space={"grid_stride": [4], "block": [1, 2, 4]}, epochs=1,
        objectives={"miou": "max", "annotation_units": "min"}, search={"algorithm": "optuna", "sampler": "tpe"},
        num_samples=3, constraints={"annotation_units": {"max": 256}}, spectral={"enabled": False},
    ))
    outcome = run_sweep(spec, address="local", num_cpus=2, progress=False)
    assert sorted(outcome.trials["block"]) == [2, 4]
    df = load_trials("t", spec.tracking_uri)
    assert sorted(df["annotation_units"]) == [64.0, 256.0]
    constraints = sweep_constraints("t", spec.tracking_uri)
    assert constraints == {"annotation_units": {"min": None, "max": 256.0}}
    assert feasible_mask(df, constraints).all()
    assert not feasible_mask(df, {"annotation_units": {"max": 100}}).all()  # the block-2 trial breaks it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.cluster
def test_gpu_fraction_trials_spread_over_a_multi_node_cluster(tmp_path):
    """Head + two worker nodes, each worker declaring one (fake) GPU: four trials of half a GPU
    must use both workers, run on the CPU inside the trial, and land in MLflow with their node."""
    from ray.cluster_utils import Cluster

    from segcore.tune import run_sweep

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 0, "gcs_server_port": _free_port(), "include_dashboard": False},
    )
    try:
        workers = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        spec = load_sweep(
            spec_dict(
                tmp_path,
                name="t-cluster",
                networks=["unet_tiny"],
                search={"algorithm": "grid"},
                num_samples=1,
                max_concurrent=4,
                epochs=1,
                resources={"cpu": 0.5, "gpu": 0.5},
                experiment="t-cluster",
                spectral={"enabled": False},
            )
        )
        outcome = run_sweep(spec, address=cluster.address, progress=True)
    finally:
        cluster.shutdown()

    df = outcome.trials
    assert len(df) == 4 and set(df["status"]) == {schema.STATUS_COMPLETED}
    assert set(df["device"]) == {"cpu"}  # granted a GPU, no CUDA here: fell back inside the trial
    worker_ids = {w.node_id[:8] for w in workers}
    trial_nodes = {node.rsplit("/", 1)[-1] for node in df["node"]}
    assert trial_nodes == worker_ids  # spread over both GPU nodes, none on the GPU-less head

    _, parents, children = _runs(spec.tracking_uri, "t-cluster")
    assert len(parents) == 1 and len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    by_trial = dict(zip(df["trial_id"], df["node"]))
    for run in children:
        assert run.data.tags[schema.TAG_NODE] == by_trial[run.data.tags[schema.TAG_TRIAL_ID]]
        assert run.data.params["device"] == "cpu"


def test_local_run_refuses_trials_the_machine_cannot_hold(tmp_path, monkeypatch):
    import ray

    from segcore.tune.runner import _check_capacity

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    spec = load_sweep(spec_dict(tmp_path, resources={"cpu": 1, "gpu": 0.5}), check_paths=False)
    with pytest.raises(ValueError, match=r"resources.gpu: each trial asks for 0.5 GPU, but the Ray cluster has 0"):
        _check_capacity(spec, "local")
    # A joined (autoscaling) cluster may still add GPU nodes: a note, not an error.
    assert _check_capacity(spec, "auto") == [
        "resources.gpu: each trial asks for 0.5 GPU, but the Ray cluster has 0; waiting for the autoscaler to add nodes"
    ]
