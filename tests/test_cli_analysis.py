"""``segcore pareto`` and ``segcore report`` on a small MLflow store."""

from __future__ import annotations

import json

import pytest

from _sweep_store import artifact_text, sqlite_uri, trial, write_sweep
from segcore.cli import main

pytest.importorskip("mlflow")

TRIALS = [
    trial("a2", "deeplabv3plus", 2, 0.62, 10.0),
    trial("a4", "deeplabv3plus", 4, 0.60, 9.0),
    trial("a8", "deeplabv3plus", 8, 0.50, 8.9),
    trial("a8b", "deeplabv3plus", 8, 0.45, 9.5),       # dominated by a8 and a4
    trial("d2", "dan", 2, 0.55, 6.0),
    trial("d4", "dan", 4, 0.56, 5.5),
    trial("d8", "dan", 8, 0.40, 5.4),
    trial("u4", "unet", 4, None, 3.0, status="failed"),
    trial("u8", "unet", 8, 0.3, 1.0, status="early_stopped", epochs_run=1),  # cheapest, but partial
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    uri = sqlite_uri(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        parent = write_sweep(uri, "camvid", TRIALS)
        blocks = [trial(f"b{b}", "dan", 4, 0.6 - 0.02 * b, 5.0, block=b, annotation_units=100.0 / b ** 2)
                  for b in (1, 2, 4)]
        write_sweep(uri, "blocks", blocks, sweep="blocks", objectives={"miou": "max", "annotation_units": "min"})
        yield {"uri": uri, "parent": parent, "root": root}


def test_pareto_table_and_plot(store, capsys, tmp_path):
    rc = main(["pareto", "camvid", "--tracking-uri", store["uri"], "--plot", str(tmp_path / "f.png")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "9 trials (completed 7, early_stopped 1, failed 1), 7 completed full-length" in out
    front = out.split("Pareto front")[1].split("hypervolume")[0]
    # Global front: a2 (best), a4, d4 (0.56 at 5.5), d8 (cheapest); not a8 (0.50 at 8.9 < d4).
    assert "4 of 7 trials" in front
    for tid in ("a2", "a4", "d4", "d8"):
        assert f" {tid} " in front
    for tid in ("a8b", "a8", "d2", "u8", "u4"):
        assert f" {tid} " not in front
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_pareto_by_network_and_objectives(store, capsys):
    rc = main(["pareto", "camvid", "--tracking-uri", store["uri"], "--by", "network",
               "--objective", "miou:max", "--objective", "gflops:min", "--reference", "miou=0",
               "--reference", "gflops=10"])
    out = capsys.readouterr().out
    assert rc == 0
    front = out.split("Pareto front")[1].split("hypervolume")[0]
    assert " a8 " in front and " a8b " not in front and " d2 " not in front
    # deeplabv3plus: 0.62*(10-10) + 0.60*(10-9) ... = strips of a4 and a8: 0.60*1 + 0.50*0.1
    assert "deeplabv3plus: 0.65" in out


def test_partial_trials_only_on_request(store, capsys):
    assert main(["pareto", "camvid", "--tracking-uri", store["uri"], "--include-partial"]) == 0
    front = capsys.readouterr().out.split("Pareto front")[1].split("hypervolume")[0]
    # Admitted, the early-stopped u8 (the cheapest) joins the four full-length front trials.
    assert "5 of 9 trials" in front and " u8 " in front and "early_stopped" in front


def test_default_objectives_are_the_sweeps(store, capsys, tmp_path):
    assert main(["pareto", "blocks", "--tracking-uri", store["uri"], "--plot", str(tmp_path / "b.png")]) == 0
    out = capsys.readouterr().out
    # Every block size trades accuracy for labelling: all three are on the front.
    assert "Pareto front (miou max, annotation_units min): 3 of 3 trials" in out
    assert (tmp_path / "b.png").is_file()


def test_bad_input(store, capsys):
    assert main(["pareto", "camvd", "--tracking-uri", store["uri"]]) == 2
    assert "unknown experiment 'camvd'" in capsys.readouterr().err
    assert main(["pareto", "camvid", "--tracking-uri", store["uri"], "--objective", "lat:min"]) == 2
    err = capsys.readouterr().err
    assert "unknown objective 'lat'" in err and "gflops" in err and "grid_stride" in err
    assert main(["pareto", "camvid", "--tracking-uri", store["uri"], "--objective", "miou:up"]) == 2
    assert "direction 'up'" in capsys.readouterr().err
    for bad in ("miou", "miou=high", "=3"):
        assert main(["pareto", "camvid", "--tracking-uri", store["uri"], "--reference", bad]) == 2
        assert f"--reference {bad!r}: expected COLUMN=NUMBER" in capsys.readouterr().err


def test_report_writes_files_and_logs_them(store, capsys, tmp_path):
    out_dir = tmp_path / "report"
    rc = main(["report", "camvid", "--tracking-uri", store["uri"], "--out", str(out_dir)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "recommended configurations" in out and "calibrated_oracle" in out
    data = json.loads((out_dir / "report.json").read_text())
    assert data["networks"] == ["dan", "deeplabv3plus"] and data["n_trials"] == 7
    html = artifact_text(store["uri"], store["parent"], "report/report.html")
    assert html == (out_dir / "report.html").read_text()


def test_pareto_leaves_out_trials_that_break_the_sweeps_constraints(store, capsys, monkeypatch):
    from segcore.analysis import report

    # As if the sweep had run under gflops <= 9.0: a2 (10.0) and a8b (9.5) break it.
    monkeypatch.setattr(report, "sweep_constraints", lambda *args, **kwargs: {"gflops": {"max": 9.0}})
    assert main(["pareto", "camvid", "--tracking-uri", store["uri"]]) == 0
    out = capsys.readouterr().out
    assert "2 trial(s) break the sweep's cost constraints: left out" in out
    front = out.split("Pareto front")[1].split("hypervolume")[0]
    assert "3 of 5 trials" in front and " a2 " not in front
    for tid in ("a4", "d4", "d8"):
        assert f" {tid} " in front
