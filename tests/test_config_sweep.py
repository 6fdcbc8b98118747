"""The sweep spec (segcore.config.sweep, .knobs, .checks): a catalogue of bad specs, each rejected
naming its field, and what a good spec resolves to. The checks that need models or data are in
tests/test_tune_validate.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from segcore.config.knobs import Knob, knob_from_space
from segcore.config.sweep import SweepSpecError, load_sweep_spec

from _sweep_specs import good, with_

REPO = Path(__file__).resolve().parents[1]


# (case id, spec, field named in the message, a fragment of the message)
CATALOGUE = [
    ("unknown top-level key", with_("epoch", 3), "epoch", "valid fields: name, dataset"),
    ("missing name", {k: v for k, v in good().items() if k != "name"}, "name", "Field required"),
    ("no networks", with_("networks", []), "networks", "at least 1"),
    ("keep above 1", with_("space.keep", [0.5, 1.5]), "space.keep[1]", "1.5"),
    ("keep range low 0", with_("space.keep", {"low": 0.0, "high": 1.0}), "space.keep.low", "greater than 0"),
    ("grid stride 0", with_("space.grid_stride", [0, 2]), "space.grid_stride[0]", "greater than or equal to 1"),
    ("block not int", with_("space.block", {"low": 1, "high": 8, "step": 0.5}), "space.block.step", "whole number"),
    ("unknown knob", with_("space.stride", [2]), "space.stride", "valid knobs: backbone, grid_stride"),
    ("range of a categorical", with_("space.truncation", {"low": 0, "high": 1}), "space.truncation", "fft, resize"),
    ("bad truncation", with_("space.truncation", ["fft", "dct"]), "space.truncation[1]", "'fft' or 'resize'"),
    ("empty choices", with_("space.block_mode", []), "space.block_mode", "at least one value"),
    ("low >= high", with_("space.lr", {"low": 0.1, "high": 0.01}), "space.lr", "low must be < high"),
    ("network in space", with_("space.network", ["unet_tiny"]), "space.network", "`networks`"),
    ("unknown objective", with_("objectives", {"iou": "max"}), "objectives.iou", "valid metrics: miou"),
    ("bad objective mode", with_("objectives", {"miou": "maximise"}), "objectives.miou", "'max' or 'min'"),
    ("unknown algorithm", with_("search.algorithm", "bayes"), "search.algorithm", "'optuna', 'grid', 'random' or 'spectral'"),
    ("unknown sampler", with_("search.sampler", "cmaes"), "search.sampler", "'nsga2' or 'tpe'"),
    ("sampler with grid", with_("search", {"algorithm": "grid", "sampler": "tpe"}), "search.sampler", "only used by"),
    ("grid over a continuous range", with_("search.algorithm", "grid"), "space.keep", "needs a list or a range with `step`"),
    ("asha unknown metric", with_("scheduler", {"name": "asha", "metric": "accuracy"}), "scheduler.metric",
     "valid metrics"),
    ("scheduler grace >= epochs", with_("scheduler", {"name": "mo_asha", "grace_period": 2}),
     "scheduler.grace_period", "< epochs (2)"),
    ("unknown scheduler", with_("scheduler", {"name": "hyperband"}), "scheduler.name", "'asha' or 'mo_asha'"),
    ("scheduler without a name", with_("scheduler", {"grace_period": 1}), "scheduler.name", "Field required"),
    ("mo_asha with a metric", with_("scheduler", {"name": "mo_asha", "metric": "miou"}), "scheduler.metric",
     "only used by scheduler asha; mo_asha ranks by every objective (miou, gflops)"),
    ("the old asha key", with_("asha", {"metric": "miou"}), "asha", "scheduler"),
    ("constraint on a non-cost metric", with_("constraints", {"miou": {"min": 0.5}}), "constraints.miou",
     "unknown cost metric 'miou'; valid cost metrics: gflops, decoder_gflops"),
    ("constraint without a bound", with_("constraints", {"gflops": {}}), "constraints.gflops", "no bound"),
    ("constraint min above max", with_("constraints", {"gflops": {"min": 3, "max": 1}}), "constraints.gflops",
     "min must be <= max"),
    ("constraint with an unknown bound", with_("constraints", {"gflops": {"below": 1}}), "constraints.gflops.below",
     "valid fields: min, max"),
    ("gpu 1.5", with_("resources.gpu", 1.5), "resources.gpu", "whole GPUs"),
    ("negative gpu", with_("resources.gpu", -0.5), "resources.gpu", "greater than or equal to 0"),
    ("zero cpu", with_("resources.cpu", 0), "resources.cpu", "greater than 0"),
    ("zero concurrency", with_("max_concurrent", 0), "max_concurrent", "greater than or equal to 1"),
    ("zero epochs", with_("epochs", 0), "epochs", "greater than or equal to 1"),
    ("file tracking store", with_("tracking_uri", "file:///tmp/mlruns"), "tracking_uri", "sqlite:///mlflow.db"),
    ("epochs in train", with_("train", {"epochs": 3}), "train.epochs", "set epochs in `epochs`"),
    ("unknown train field", with_("train", {"batchsize": 3}), "train.batchsize", "batch_size"),
    ("train and space both", with_("train", {"keep": 0.5}), "train.keep", "set it in one place"),
    ("bad name", with_("name", "my sweep/1"), "name", "letters, digits"),
    ("axes with optuna", with_("search.axes", [{"block": [2]}]), "search.axes", "only used by algorithm grid"),
    ("axis of an unknown knob", with_("search", {"algorithm": "grid", "axes": [{"stride": [2]}]},
                                       with_("space.keep", 1.0)), "search.axes[0].stride", "valid knobs"),
    ("axis value out of range", with_("search", {"algorithm": "grid", "axes": [{"keep": [0.5, 2.0]}]},
                                       with_("space.keep", 1.0)), "search.axes[0].keep[1]", "2.0"),
    ("empty axis", with_("search", {"algorithm": "grid", "axes": [{}]}, with_("space.keep", 1.0)),
     "search.axes[0]", "empty axis"),
    ("duplicate seeds", with_("search", {"algorithm": "grid", "seeds": [0, 0]}, with_("space.keep", 1.0)),
     "search.seeds", "duplicate"),
    ("network_config of another network", with_("network_config", {"dan": {"lr": 0.1}}), "network_config.dan", "unet_tiny"),
    ("network_config bad value", with_("network_config", {"unet_tiny": {"lr": -1}}), "network_config.unet_tiny.lr", "greater than 0"),
]


@pytest.mark.parametrize("case,spec,field,fragment", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_spec_is_rejected_naming_the_field(case, spec, field, fragment):
    with pytest.raises(SweepSpecError) as info:
        load_sweep_spec(spec)
    fields = [f for f, _ in info.value.errors]
    assert field in fields, f"{case}: expected {field!r} among {fields}\n{info.value}"
    message = dict(info.value.errors)[field]
    assert fragment in message, f"{case}: {fragment!r} not in {message!r}"
    assert f"  {field}: " in str(info.value)


def test_every_problem_is_reported_at_once():
    spec = with_("epochs", 5, with_("objectives", {"iou": "max"}, with_("space.stride", [1])))
    with pytest.raises(SweepSpecError) as info:
        load_sweep_spec(spec)
    assert {"objectives.iou", "space.stride"} <= {f for f, _ in info.value.errors}


def test_yaml_errors_name_the_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(with_("space.keep", [0.5, 2])))
    with pytest.raises(SweepSpecError) as info:
        load_sweep_spec(path)
    assert str(path) in str(info.value) and "space.keep[1]" in str(info.value)
    path.write_text("name: [unclosed\n")
    with pytest.raises(SweepSpecError, match="not valid YAML"):
        load_sweep_spec(path)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_sweep_spec(tmp_path / "missing.yaml")


def test_good_spec_resolves_space_defaults_and_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_sweep_spec(with_("search", {"algorithm": "optuna"}))
    assert spec.sampler == "nsga2"  # two objectives
    assert spec.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"  # absolute: workers run elsewhere
    assert spec.storage_path == str(tmp_path / "ray_results")
    assert spec.experiment_name == "t"
    knobs = spec.searched_knobs()
    assert set(knobs) == {"grid_stride", "keep", "block"}  # one network: not searched
    assert knobs["keep"].kind == "float" and knobs["block"].kind == "choice"
    base = spec.base_config()
    assert base["network"] == "unet_tiny" and base["epochs"] == 2 and base["dataset"] == "synthetic"
    assert spec.space_size() is None  # keep is continuous
    tuned = load_sweep_spec(with_("network_config", {"unet_tiny": {"lr": 0.05}}))
    assert tuned.trial_config({"grid_stride": 2})["lr"] == 0.05


def test_grid_enumerates_every_combination_times_num_samples():
    spec = load_sweep_spec(
        with_(
            "search",
            {"algorithm": "grid"},
            with_("space.keep", {"low": 0.25, "high": 1.0, "step": 0.25}, with_("num_samples", 2)),
        )
    )
    grid = spec.grid()
    assert len(grid) == 2 * 4 * 2 and spec.num_trials() == 32
    assert sorted({g["keep"] for g in grid}) == [0.25, 0.5, 0.75, 1.0]
    assert spec.space_size() == 16


def _axes_spec(**search) -> "SweepSpec":
    base = with_("space", {"grid_stride": 2, "keep": 1.0, "block": 1, "truncation": "fft"},
                 with_("networks", ["unet_tiny", "dan_tiny"], with_("num_samples", 1)))
    return load_sweep_spec(with_("search", {"algorithm": "grid", **search}, base))


def test_grid_axes_are_one_factor_at_a_time_around_the_baseline():
    spec = _axes_spec(axes=[{"grid_stride": [1, 2, 4]}, {"keep": [0.5], "truncation": ["fft", "resize"]}])
    grid = spec.grid()
    # per network: strides 1, 2, 4 (2 is the baseline) + keep 0.5 x {fft, resize} = 5
    assert len(grid) == 10 and spec.num_trials() == 10 and spec.space_size() == 10
    assert grid[:3] == [{"network": "unet_tiny", "grid_stride": s} for s in (1, 2, 4)]
    assert {"network": "dan_tiny", "keep": 0.5, "truncation": "resize"} in grid
    # the baseline shared by two axes runs once: the stride axis holds it, the keep axis does not repeat it
    with_baseline = _axes_spec(axes=[{"grid_stride": [1, 2]}, {"grid_stride": 2}])
    assert len(with_baseline.grid()) == 4


def test_grid_seeds_repeat_every_configuration_seed_major():
    spec = _axes_spec(axes=[{"grid_stride": [1, 2]}], seeds=[3, 7])
    grid = spec.grid()
    assert spec.num_trials() == 8
    assert [g["seed"] for g in grid] == [3, 3, 3, 3, 7, 7, 7, 7]
    assert grid[0] == {"network": "unet_tiny", "grid_stride": 1, "seed": 3}
    # without axes, seeds repeat the plain product
    plain = load_sweep_spec(with_("search", {"algorithm": "grid", "seeds": [0, 1]},
                                  with_("space.keep", 1.0, with_("num_samples", 1))))
    assert plain.num_trials() == 2 * 2 * 2


def test_scheduler_ranks_by_its_metric_or_by_every_objective():
    assert load_sweep_spec(good()).scheduler_objectives() == {}
    mo = load_sweep_spec(with_("scheduler", {"name": "mo_asha", "reduction_factor": 3}))
    assert mo.scheduler_objectives() == {"miou": "max", "gflops": "min"}
    assert mo.to_dict()["scheduler"] == {"name": "mo_asha", "metric": None, "mode": None, "grace_period": 1,
                                         "reduction_factor": 3.0}
    asha = load_sweep_spec(with_("scheduler", {"name": "asha"}))
    assert asha.scheduler_objectives() == {"miou": "max"}  # default metric, the objective's mode
    assert asha.to_dict()["scheduler"]["metric"] == "miou" and asha.to_dict()["scheduler"]["mode"] == "max"
    assert load_sweep_spec(with_("scheduler", {"name": "asha", "metric": "train_loss"})).scheduler_objectives() == {
        "train_loss": "min"}  # not an objective: its natural mode


def test_constraints_resolve_to_bounds():
    spec = load_sweep_spec(with_("constraints", {"gflops": {"max": 2.0}, "annotation_units": {"min": 4, "max": 64}}))
    assert spec.constraint_bounds() == {"gflops": {"min": None, "max": 2.0},
                                        "annotation_units": {"min": 4.0, "max": 64.0}}
    assert spec.to_dict()["constraints"] == spec.constraint_bounds()
    assert load_sweep_spec(good()).constraint_bounds() == {}


def test_optuna_dedupe_caps_trials_at_a_small_space():
    spec = load_sweep_spec(with_("space.keep", [0.5, 1.0], with_("num_samples", 50)))
    assert spec.space_size() == 8 and spec.num_trials() == 8


def test_loading_a_spec_imports_nothing_above_config():
    """config sits at the bottom of the dependency direction (docs/design.md, Dependency direction):
    no Ray, MLflow or Optuna, and none of segcore's upper layers."""
    upper = ("ray", "mlflow", "optuna", "segcore.models", "segcore.data", "segcore.train", "segcore.tune",
             "segcore.tracking", "segcore.spectral")
    code = (
        "import sys; from segcore.config.sweep import load_sweep_spec; "
        f"load_sweep_spec({good()!r}); "
        f"print(sorted(m for m in sys.modules if m.startswith({upper!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_extra_checks_join_the_same_error():
    def no_unet(spec, errors):
        errors.append(("networks[0]", "not today"))

    with pytest.raises(SweepSpecError) as info:
        load_sweep_spec(with_("objectives", {"iou": "max"}), checks=[no_unet])
    assert dict(info.value.errors) == {
        "objectives.iou": dict(info.value.errors)["objectives.iou"],
        "networks[0]": "not today",
    }
    assert "(2 problem(s))" in str(info.value)


def test_knob_from_space_known_values():
    assert knob_from_space("block", {"low": 2, "high": 8, "step": 2}).grid_values() == [2, 4, 6, 8]
    assert knob_from_space("keep", {"low": 0.25, "high": 1.0, "step": 0.25}).grid_values() == [0.25, 0.5, 0.75, 1.0]
    lr = knob_from_space("lr", {"low": 1e-4, "high": 1e-2, "log": True})
    assert (lr.kind, lr.searched, lr.describe()) == ("float", True, "float [0.0001, 0.01] log")
    assert knob_from_space("truncation", "fft") == Knob("truncation", "fixed", ("fft",))
    assert not knob_from_space("block", [4]).searched  # one choice: fixed
