"""`segcore sweep`: the dry run and the spec errors, before anything starts."""

from __future__ import annotations

import yaml

from segcore.cli import main

from _sweep_specs import with_


def test_dry_run_prints_every_grid_trial_and_starts_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(with_("search", {"algorithm": "grid"}, with_("space.keep", [0.5, 1.0]))))
    assert main(["sweep", str(path), "--dry-run", "--tracking-uri", "sqlite:///other.db"]) == 0
    out = capsys.readouterr().out
    assert "grid (8 point(s) x num_samples 8):" in out
    assert "\n       8  block=2 grid_stride=4 keep=1.0\n" in out  # YAML dump sorted the keys
    assert f"tracking:   sqlite:///{tmp_path}/other.db" in out  # the command line wins over the file
    assert "dry run: the spec is valid; nothing started" in out
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "other.db").exists()


def test_sweep_command_reports_spec_errors_in_one_message(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(with_("space.keep", [0.5, 1.5])))
    assert main(["sweep", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("segcore sweep: error: invalid sweep spec") and "space.keep[1]" in err
