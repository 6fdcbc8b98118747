"""The sweep report (segcore.analysis.report): the files it writes, and a light import."""

from __future__ import annotations

import base64
import json

import pandas as pd
import pytest

from _sweep_store import SPECTRUM
from _tradeoff_tables import calibrated_table
from segcore.analysis.fitting import CALIBRATED_ORACLE


def test_report_files(tmp_path):
    from segcore.analysis.report import build_report, write_report

    df = calibrated_table({"deeplabv3plus": (0.62, 2.0), "dan": (0.45, 0.7)})
    report = build_report(df, SPECTRUM, experiment="synthetic-sweep")
    files = write_report(report, tmp_path)
    for name in ("json", "csv", "front", "accuracy_vs_stride", "measured_vs_predicted", "html"):
        assert files[name].is_file() and files[name].stat().st_size > 0
    data = json.loads(files["json"].read_text())
    assert data["networks"] == ["dan", "deeplabv3plus"]
    assert data["hypervolume"]["all"] >= max(data["hypervolume"]["dan"], data["hypervolume"]["deeplabv3plus"])
    assert data["tradeoff"]["networks"]["dan"]["accuracy"]["kind"] == CALIBRATED_ORACLE
    assert {r["network"] for r in data["recommendations"]} == {"dan", "deeplabv3plus"}
    html = files["html"].read_text()
    # Self-contained: the PNGs are embedded, nothing is fetched.
    # front, accuracy vs stride, measured vs predicted, progress, parallel coordinates
    assert html.count("data:image/png;base64,") == 5 and "src=\"http" not in html
    png = html.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_spectrum_and_too_few_trials_are_said_loudly(tmp_path):
    from segcore.analysis.report import MISSING_SPECTRUM, build_report, write_report

    df = calibrated_table({"deeplabv3plus": (0.62, 2.0)})
    small = pd.DataFrame({"network": "dan", "grid_stride": [2, 4], "keep": 1.0, "block": 1,
                          "miou": [0.3, 0.29], "gflops": [2.0, 1.5]})
    report = build_report(pd.concat([df, small], ignore_index=True), None, experiment="no-spectrum")
    assert report.warnings() == [
        MISSING_SPECTRUM,
        "dan: too few trials to fit: 2 trial(s); the smallest model the data can identify, saturating, "
        "has 3 parameter(s) and needs at least 5"]
    files = write_report(report, tmp_path)
    assert json.loads(files["json"].read_text())["warnings"] == report.warnings()
    html = files["html"].read_text()
    assert html.index("NO SPECTRUM: this sweep has no spectrum.json") < html.index("<h2>Pareto front</h2>")
    assert "dan: too few trials to fit" in html
    # With the spectrum and enough trials there is nothing to warn about.
    assert build_report(df, SPECTRUM).warnings() == []


def test_import_stays_light():
    """segcore.analysis reaches MLflow only through tracking.query, when trials are loaded."""
    import subprocess
    import sys

    code = ("import sys, segcore.analysis, segcore.cli; segcore.cli.build_parser(); "
            "print(sorted(m for m in ('mlflow', 'ray', 'matplotlib', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "mlflow" not in out.stdout and "matplotlib" not in out.stdout and "ray" not in out.stdout


def test_report_marks_infeasible_trials_and_keeps_them_out_of_the_fronts(tmp_path):
    from segcore.analysis.report import build_report, write_report

    df = calibrated_table({"deeplabv3plus": (0.62, 2.0), "dan": (0.45, 0.7)})
    limit = float(df["gflops"].median())
    report = build_report(df, SPECTRUM, experiment="constrained", constraints={"gflops": {"max": limit}})
    assert report.trials["feasible"].tolist() == (df["gflops"] <= limit).tolist()
    assert (report.front["gflops"] <= limit).all() and (report.fronts["gflops"] <= limit).all()
    unconstrained = build_report(df, SPECTRUM, experiment="free")
    assert unconstrained.trials["feasible"].all()
    assert report.hypervolume["all"] < unconstrained.hypervolume["all"]
    assert report.reference == unconstrained.reference  # one reference: the volumes compare
    files = write_report(report, tmp_path)
    data = json.loads(files["json"].read_text())
    assert data["constraints"] == {"gflops": {"max": limit}}
    assert data["n_infeasible"] == int((df["gflops"] > limit).sum()) > 0
    assert f"gflops max {limit:g}" in files["html"].read_text()


def test_report_progress_hypervolume_after_each_trial_and_in_time(tmp_path):
    from segcore.analysis.report import build_report, write_report

    start = pd.Timestamp("2026-01-01T00:00:00Z")
    # t3 ends before t2, so the front grows t1 (0.5 x 6 = 3), t3 (dominated by t1: 3), t2 (+0.6).
    df = pd.DataFrame({
        "trial_id": ["t1", "t2", "t3"], "network": "dan", "grid_stride": [8, 2, 4], "keep": 1.0, "block": 1,
        "miou": [0.5, 0.8, 0.4], "gflops": [4.0, 8.0, 6.0], "start_time": start,
        "end_time": [start + pd.Timedelta(seconds=s) for s in (100, 300, 200)],
    })
    report = build_report(df, SPECTRUM, reference={"miou": 0.0, "gflops": 10.0})
    progress = report.progress
    assert progress["trial_id"].tolist() == ["t1", "t3", "t2"]
    assert progress["finished"].tolist() == [1, 2, 3]
    assert progress["hypervolume"].tolist() == pytest.approx([3.0, 3.0, 3.6])
    assert progress["elapsed_s"].tolist() == pytest.approx([100.0, 200.0, 300.0])
    assert report.hypervolume["all"] == pytest.approx(3.6)
    files = write_report(report, tmp_path)
    for name in ("progress", "parallel_coordinates"):
        assert files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(files["json"].read_text())
    assert [row["hypervolume"] for row in data["progress"]] == pytest.approx([3.0, 3.0, 3.6])
    assert "<h2>Progress of the sweep</h2>" in files["html"].read_text()


def test_report_progress_counts_infeasible_trials_without_volume():
    from segcore.analysis.report import build_report

    df = pd.DataFrame({"trial_id": ["a", "b"], "network": "dan", "grid_stride": [8, 2], "keep": 1.0, "block": 1,
                       "miou": [0.5, 0.8], "gflops": [4.0, 8.0]})
    report = build_report(df, SPECTRUM, reference={"miou": 0.0, "gflops": 10.0},
                          constraints={"gflops": {"max": 5.0}})
    # No end times: the table's order; b breaks the constraint and adds nothing.
    assert report.progress["hypervolume"].tolist() == pytest.approx([3.0, 3.0])
    assert report.progress["elapsed_s"].isna().all()


def test_parallel_axes_place_categories_evenly_and_scale_objectives():
    from segcore.analysis.plots import parallel_axes

    df = pd.DataFrame({"network": ["unet", "dan", "unet"], "grid_stride": [2, 8, 4],
                       "miou": [0.2, 0.6, 0.4], "gflops": [1.0, 3.0, 2.0]})
    axes = parallel_axes(df, ["network", "grid_stride"], {"miou": "max", "gflops": "min"})
    assert axes["network"]["positions"].tolist() == [1.0, 0.0, 1.0]  # dan, unet
    assert axes["grid_stride"]["positions"].tolist() == [0.0, 1.0, 0.5]  # 2, 4, 8 evenly spaced
    assert [label for _, label in axes["grid_stride"]["ticks"]] == ["2", "4", "8"]
    assert axes["miou"]["positions"].tolist() == pytest.approx([0.0, 1.0, 0.5])
