"""The CamVid study's findings, from the MLflow record of ``segcore sweep sweeps/camvid-study.yaml``.

Writes into ``--out`` (default ``benchmarks/results/camvid_study``):

* ``trials.csv``: one row per full-length trial (knobs, seed, accuracy, cost);
* ``curves.csv``: one row per trial and epoch (trial_id, network, knobs, seed, epoch, miou,
  train_loss, gflops): the table ``segcore replay`` and ``benchmarks/search_efficiency.py`` replay;
* ``spectrum.json``: the training-free analysis of the training labels *at the study's image
  scale* (the labels the trials were scored against), so strides and blocks are in trial pixels;
* ``study.json``: the claims put to the test (see :func:`study_summary`);
* ``study.png``: learning curves, accuracy against grid stride beside the calibrated oracle, the
  decoder cutoff (fft vs resize) against GFLOPs, accuracy against block size beside the block oracle;
* ``report/``: segcore's own sweep report (fronts, fit, recommendations) of the same trials.

Definitions used below (also written into ``study.json``):

* measured knee: the coarsest trial grid stride whose mean mIoU over seeds, and that of every finer
  stride, stays within the knee tolerance of the dense (stride 1) mean; the tolerance is the
  larger of ``--tolerance`` (relative, default 1%) of the dense mean and the seeds' pooled standard
  deviation (differences smaller than the seed noise are not a measured drop);
* spectral grid: the same rule applied to the soft oracle mIoU of the labels at the study's scale
  (relative to its dense value, tolerance ``--tolerance``), read at the trials' strides;
* oracle sensitivity ``g``: ``miou = c * O(s) ** g`` fitted by least squares on the stride axis;
* knee predicted with trials: ``c`` and ``g`` solved from two trials (dense and one coarse stride,
  one seed), then the knee rule applied to the prediction ``(O(s) / O(1)) ** g``;
* fit error: leave-one-out mean absolute error, in mIoU points, of segcore's trade-off fit
  (:func:`segcore.analysis.fit_tradeoff`) on each network's trials, anchored on ``spectrum.json``.

Run: ``python benchmarks/camvid_study.py --experiment camvid-study --tracking-uri sqlite:///mlflow.db
--root ../shared/data/camvid``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segcore.formatting import format_table, jsonable
from segcore.spectral.curves import oracle_curves
from segcore.spectral.result import efficient_size

KNOBS = ["network", "grid_stride", "keep", "truncation", "block", "block_mode"]
CURVE_COLUMNS = ["trial_id", *KNOBS, "seed", "epoch", "miou", "train_loss", "gflops"]
TRIAL_COLUMNS = ["trial_id", *KNOBS, "seed", "epochs", "miou", "pixel_accuracy", "train_loss", "gflops",
                 "decoder_gflops", "fft_gflops", "params_m", "annotation_units", "relative_annotation_units"]


# ----------------------------------------------------------------------------- inputs


class ScaledLabels:
    """A dataset's label maps resized by ``scale`` exactly as the trials saw them (nearest
    neighbour, ``round(H * scale) x round(W * scale)``), for :func:`segcore.spectral.analyze`."""

    def __init__(self, dataset, scale: float):
        self.dataset, self.scale = dataset, float(scale)
        self.num_classes, self.ignore_index = dataset.num_classes, dataset.ignore_index
        self.name = getattr(dataset, "name", "labels")
        self.split = getattr(dataset, "split", None)
        self.class_names = getattr(dataset, "class_names", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def load_label(self, index: int):
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        label = self.dataset.load_label(index)
        height, width = label.shape[-2:]
        size = [max(1, round(height * self.scale)), max(1, round(width * self.scale))]
        return v2.functional.resize(tv_tensors.Mask(label[None]), size)[0].as_subclass(type(label))


def study_spectrum(root: str, scale: float, strides: list[int], blocks: list[int], tolerance: float) -> dict:
    from segcore.data import build_dataset
    from segcore.spectral import analyze

    labels = ScaledLabels(build_dataset("camvid", root, "train", labels_only=True), scale)
    result = analyze(labels, strides=tuple(strides), blocks=tuple(blocks), tolerance=tolerance, progress=True)
    return result.to_dict()


def load_record(experiment: str, tracking_uri: str) -> tuple[pd.DataFrame, pd.DataFrame, dict | None]:
    from segcore.tracking import query

    trials = query.load_trials(experiment, tracking_uri)
    curves = query.load_curves(experiment, tracking_uri)
    spectrum = query.load_spectrum(experiment, tracking_uri)
    return trials, curves, spectrum


# ----------------------------------------------------------------------------- the claims


def _oracle(spectrum: dict, strides) -> np.ndarray:
    """Soft oracle mIoU at ``strides`` (the study's strides are in the table)."""
    return oracle_curves(spectrum, "soft").at_stride(np.asarray(strides, float))


def knee(strides: list[int], relative: list[float], tolerance: float) -> int:
    """Coarsest stride such that it and every finer one keep ``relative >= 1 - tolerance``
    (:func:`segcore.spectral.result.efficient_size`; the finest when even it misses)."""
    return efficient_size(strides, relative, 1.0 - tolerance - 1e-12) or strides[0]


def _steps_apart(a: int, b: int) -> float:
    return abs(math.log2(a) - math.log2(b))


def _fit_power(oracle: np.ndarray, miou: np.ndarray) -> tuple[float, float]:
    """Least-squares ``c, g`` of ``miou = c * oracle ** g``."""
    from scipy.optimize import least_squares

    res = least_squares(lambda t: t[0] * oracle ** t[1] - miou, x0=[float(np.max(miou)), 1.0],
                        bounds=([0.0, 0.0], [2.0, 50.0]))
    return float(res.x[0]), float(res.x[1])


def stride_axis(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[(trials["keep"] == 1.0) & (trials["block"] == 1)]


def network_summary(name: str, sub: pd.DataFrame, spectrum: dict, tolerance: float) -> dict[str, Any]:
    axis = stride_axis(sub)
    by_stride = axis.groupby("grid_stride")["miou"].agg(["mean", "std", "count"]).sort_index()
    strides = [int(s) for s in by_stride.index]
    dense = by_stride.iloc[0]  # the finest stride that finished (1 once the study is complete)
    variances = axis.groupby("grid_stride")["miou"].var(ddof=1).dropna()
    noise = float(np.sqrt(variances.mean())) if len(variances) else float("nan")
    tol_rel = max(tolerance, noise / dense["mean"]) if np.isfinite(noise) else tolerance
    measured = knee(strides, list(by_stride["mean"] / dense["mean"]), tol_rel)
    oracle = _oracle(spectrum, strides)
    spectral = knee(strides, list(oracle / oracle[0]), tolerance)
    c, g = _fit_power(_oracle(spectrum, axis["grid_stride"]), axis["miou"].to_numpy(float))
    with_trials = predicted_with_two_trials(axis, spectrum, strides, tol_rel, measured)
    return {
        "network": name,
        "dense_stride": strides[0],
        "dense_miou": float(dense["mean"]),
        "dense_miou_std": float(dense["std"]) if dense["count"] > 1 else None,
        "seeds": int(dense["count"]),
        "miou_by_stride": {int(s): {"mean": float(r["mean"]), "std": float(r["std"]), "n": int(r["count"])}
                           for s, r in by_stride.iterrows()},
        "oracle_by_stride": {int(s): float(o) for s, o in zip(strides, oracle)},
        "knee_tolerance_relative": tol_rel,
        "seed_noise_points": 100 * noise,
        "measured_knee_stride": measured,
        "spectral_grid_stride": spectral,
        "knee_within_one_step": bool(_steps_apart(measured, spectral) <= 1),
        "oracle_sensitivity": g,
        "oracle_ceiling": c,
        **with_trials,
    }


def predicted_with_two_trials(axis: pd.DataFrame, spectrum: dict, strides: list[int], tol_rel: float,
                              measured: int) -> dict[str, Any]:
    """The calibrated oracle from the dense trial and one coarse one (per seed and coarse stride):
    ``g = log(y_k / y_1) / log(O_k / O_1)``; the headline uses the coarsest stride and seed 0."""
    oracle = dict(zip(strides, _oracle(spectrum, strides)))
    cases = []
    for seed, runs in axis.groupby("seed"):
        miou = dict(zip(runs["grid_stride"].astype(int), runs["miou"].astype(float)))
        finest = strides[0]
        if finest not in miou:
            continue
        for coarse in strides[1:]:
            if coarse not in miou or oracle[coarse] >= oracle[finest] or miou[coarse] <= 0:
                continue
            # g < 0 (accuracy rising with the stride) is read as g = 0: no loss predicted
            g = max(0.0, math.log(miou[coarse] / miou[finest]) / math.log(oracle[coarse] / oracle[finest]))
            relative = [(oracle[s] / oracle[finest]) ** g for s in strides]
            predicted = knee(strides, relative, tol_rel)
            cases.append({"seed": int(seed), "coarse_stride": coarse, "g": g, "knee": predicted,
                          "within_one_step": bool(_steps_apart(predicted, measured) <= 1)})
    headline = next((c for c in cases if c["coarse_stride"] == strides[-1]), cases[0] if cases else None)
    return {
        "knee_predicted_with_trials": headline["knee"] if headline else None,
        "knee_predicted_with_trials_n": 2 if headline else 0,
        "knee_predicted_with_trials_within_one_step": headline["within_one_step"] if headline else None,
        "knee_predicted_with_trials_cases": cases,
        "knee_predicted_with_trials_hit_rate": (sum(c["within_one_step"] for c in cases) / len(cases)) if cases else None,
    }


def loo_fit_error(trials: pd.DataFrame, spectrum: dict) -> dict[str, Any]:
    """Leave-one-out absolute error of segcore's trade-off fit (the accuracy model it chooses per
    network, :func:`segcore.analysis.fit_tradeoff`), in mIoU points, pooled over the networks'
    trials. The model kind is chosen on all trials (by leave-one-out RMSE), then each trial is
    predicted by that kind fitted without it."""
    from segcore.analysis import fit_tradeoff

    data = trials.assign(image_scale=1.0)  # the spectrum is at the study's scale: strides are trial pixels
    model = fit_tradeoff(data, spectrum)
    by_network = {name: fit.accuracy for name, fit in model.networks.items() if fit.accuracy is not None}
    if not by_network:
        return {"fit_loo_mae_points": None, "fit_note": "too few trials to fit any network"}
    pooled = sum(f.loo_mae * f.n for f in by_network.values()) / sum(f.n for f in by_network.values())
    return {
        "fit_loo_mae_points": 100 * pooled,
        "fit_loo_mae_points_by_network": {k: 100 * f.loo_mae for k, f in by_network.items()},
        "fit_models": {k: {"kind": f.kind, "params": f.params, "r2": f.r2, "n": f.n} for k, f in by_network.items()},
        "fit_candidates_loo_mae_points": {
            k: {kind: 100 * c.loo_mae for kind, c in fit.candidates.items()} for k, fit in model.networks.items()
        },
    }


def fft_vs_resize(trials: pd.DataFrame) -> dict[str, Any]:
    """Per network at the cutoff axis' stride: accuracy and GFLOPs of each keep for fft and resize,
    and each one's accuracy interpolated (in log GFLOPs) at the other's GFLOPs."""
    cutoff = trials[(trials["keep"] < 1.0)]
    out: dict[str, Any] = {}
    if cutoff.empty:
        return out
    stride = int(cutoff["grid_stride"].mode().iloc[0])
    at_stride = trials[(trials["grid_stride"] == stride) & (trials["block"] == 1)]
    for network, sub in at_stride.groupby("network"):
        table = {}
        for mode in ("fft", "resize"):
            rows = sub[(sub["truncation"] == mode) | (sub["keep"] == 1.0)]
            agg = rows.groupby("keep").agg(miou=("miou", "mean"), miou_std=("miou", "std"), gflops=("gflops", "mean"))
            table[mode] = [{"keep": float(k), **{c: float(v) for c, v in r.items()}} for k, r in agg.iterrows()]
        equal = []
        for mode, other in (("fft", "resize"), ("resize", "fft")):
            ref = sorted(table[other], key=lambda r: r["gflops"])
            for point in table[mode]:
                if point["keep"] == 1.0:
                    continue
                x = [math.log(r["gflops"]) for r in ref]
                if not x[0] <= math.log(point["gflops"]) <= x[-1]:
                    continue
                other_miou = float(np.interp(math.log(point["gflops"]), x, [r["miou"] for r in ref]))
                equal.append({"gflops": point["gflops"], "measured": mode, "keep": point["keep"],
                              f"{mode}_miou": point["miou"], f"{other}_miou_interpolated": other_miou,
                              "difference_points": 100 * (point["miou"] - other_miou)})
        out[str(network)] = {"grid_stride": stride, **table, "at_equal_gflops": equal}
    return out


def block_summary(trials: pd.DataFrame, spectrum: dict) -> dict[str, Any]:
    """Per network: measured accuracy per block size and mode (mean over seeds) beside the block
    oracle of the labels, with the annotation units kept and saved."""
    blocky = trials[trials["block"] > 1]
    out: dict[str, Any] = {}
    if blocky.empty:
        return out
    stride = int(blocky["grid_stride"].mode().iloc[0])
    base = trials[(trials["grid_stride"] == stride) & (trials["keep"] == 1.0)]
    for network, sub in base.groupby("network"):
        dense = sub[sub["block"] == 1]["miou"]
        rows = []
        for (block, mode), runs in sub[sub["block"] > 1].groupby(["block", "block_mode"]):
            oracle = float(oracle_curves(spectrum).at_block([block], mode)[0])
            relative_units = float(runs["relative_annotation_units"].mean())
            rows.append({"block": int(block), "mode": str(mode), "miou": float(runs["miou"].mean()),
                         "miou_std": float(runs["miou"].std()) if len(runs) > 1 else None,
                         "relative_to_dense": float(runs["miou"].mean() / dense.mean()),
                         "block_oracle_miou": oracle, "relative_annotation_units": relative_units,
                         "annotation_units_saved": 1.0 - relative_units})
        out[str(network)] = {"grid_stride": stride, "dense_miou": float(dense.mean()), "blocks": rows}
    return out


def convergence(curves: pd.DataFrame, epochs: int) -> dict[str, Any]:
    """mIoU points gained over the last fifth of the epochs, per trial (median and max per network)."""
    start = epochs - max(1, round(epochs / 5))
    gains = []
    for (trial, network), rows in curves.groupby(["trial_id", "network"]):
        by_epoch = rows.set_index("epoch")["miou"]
        if start in by_epoch and epochs in by_epoch:
            gains.append((str(network), 100 * float(by_epoch[epochs] - by_epoch[start])))
    frame = pd.DataFrame(gains, columns=["network", "gain"])
    return {
        "epochs": epochs, "from_epoch": start,
        "last_fifth_gain_points": {
            str(k): {"median": float(v.median()), "max": float(v.max()), "share_under_1_point": float((v < 1).mean())}
            for k, v in frame.groupby("network")["gain"]
        },
    }


def study_summary(trials: pd.DataFrame, curves: pd.DataFrame, spectrum: dict, tolerance: float,
                  epochs: int) -> dict[str, Any]:
    networks = {str(n): network_summary(str(n), sub, spectrum, tolerance) for n, sub in trials.groupby("network")}
    summary = {
        "networks": networks,
        **loo_fit_error(trials, spectrum),
        "fft_vs_resize": fft_vs_resize(trials),
        "block": block_summary(trials, spectrum),
        "convergence": convergence(curves, epochs),
        "tolerance": tolerance,
        "trials": int(len(trials)),
        "best_dense_miou": max(n["dense_miou"] for n in networks.values()),
        "knee_within_one_step_all": all(n["knee_within_one_step"] for n in networks.values()),
        "spectrum": {"split": spectrum.get("split"), "strides": spectrum["strides"],
                     "oracle_miou_soft": spectrum["oracle_miou"]["soft"],
                     "efficient_grid": spectrum["efficient_grid"]},
    }
    return summary


# ----------------------------------------------------------------------------- outputs


def plot_study(trials: pd.DataFrame, curves: pd.DataFrame, spectrum: dict, summary: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(16, 4.2), layout="constrained")
    axes = fig.subplots(1, 4)
    colours = dict(zip(sorted(summary["networks"]), ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    dense = curves[(curves["grid_stride"] == 1) & (curves["keep"] == 1.0) & (curves["block"] == 1)]
    for network, rows in dense.groupby("network"):
        for number, (_, run) in enumerate(rows.groupby("trial_id")):
            axes[0].plot(run["epoch"], run["miou"], color=colours[network], alpha=0.7,
                         label=network if number == 0 else None)
    axes[0].set(title="learning curves (dense grid)", xlabel="epoch", ylabel="val mIoU")
    for network, info in summary["networks"].items():
        strides = sorted(info["miou_by_stride"])
        mean = [info["miou_by_stride"][s]["mean"] for s in strides]
        std = [info["miou_by_stride"][s]["std"] or 0 for s in strides]
        axes[1].errorbar(strides, mean, yerr=std, color=colours[network], marker="o", capsize=3, label=network)
        oracle = np.array([info["oracle_by_stride"][s] for s in strides])
        axes[1].plot(strides, info["oracle_ceiling"] * oracle ** info["oracle_sensitivity"], color=colours[network],
                     linestyle=":", label=f"{network}: c·O(s)^g, g={info['oracle_sensitivity']:.2f}")
        axes[1].axvline(info["measured_knee_stride"], color=colours[network], alpha=0.3)
    axes[1].set_xscale("log", base=2)
    axes[1].set_xticks(sorted({s for i in summary["networks"].values() for s in i["miou_by_stride"]}))
    axes[1].xaxis.set_major_formatter("{x:g}")
    axes[1].set(title="accuracy vs grid stride (keep 1, dense labels)", xlabel="grid stride", ylabel="val mIoU")
    for network, info in summary["fft_vs_resize"].items():
        for mode, marker in (("fft", "o"), ("resize", "s")):
            pts = sorted(info[mode], key=lambda r: r["gflops"])
            axes[2].plot([p["gflops"] for p in pts], [p["miou"] for p in pts], marker=marker, color=colours[network],
                         linestyle="-" if mode == "fft" else "--", label=f"{network} {mode}")
    axes[2].set(title="decoder cutoff: keep 1, .5, .25", xlabel="GFLOPs per image (FFTs counted)",
                ylabel="val mIoU")
    for network, info in summary["block"].items():
        for mode, style in (("hard", "-"), ("soft", "--")):
            pts = [r for r in info["blocks"] if r["mode"] == mode]
            axes[3].plot([1] + [p["block"] for p in pts], [1.0] + [p["relative_to_dense"] for p in pts],
                         marker="o", linestyle=style, color=colours[network], label=f"{network} {mode}")
    blocks = spectrum["blocks"]
    for mode, style in (("hard", "-"), ("soft", "--")):
        oracle = np.asarray(spectrum["block_oracle_miou"][mode], float)
        axes[3].plot(blocks, oracle / oracle[0], color="black", linestyle=style, alpha=0.6, label=f"block oracle {mode}")
    axes[3].set_xscale("log", base=2)
    axes[3].set_xticks(blocks)
    axes[3].xaxis.set_major_formatter("{x:g}")
    axes[3].set(title="annotation block (relative to dense labels)", xlabel="block size", ylabel="mIoU / dense mIoU")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.savefig(path, dpi=110)


def _atomic_write(path: Path, text: str) -> None:
    tmp = Path(tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)[1])
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default="camvid-study")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--root", default=os.environ.get("SEGCORE_CAMVID", "../shared/data/camvid"),
                        help="CamVid folder (for the spectrum at the study's scale)")
    parser.add_argument("--out", default="benchmarks/results/camvid_study")
    parser.add_argument("--tolerance", type=float, default=0.01, help="relative mIoU loss of a knee (0.01 = 1%%)")
    parser.add_argument("--no-report", action="store_true", help="skip segcore's HTML report")
    args = parser.parse_args(argv)
    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    trials, curves, native_spectrum = load_record(args.experiment, args.tracking_uri)
    trials = trials[trials["status"] == "completed"].copy() if "status" in trials else trials
    if trials.empty:
        raise SystemExit(f"experiment {args.experiment!r} has no completed trial yet")
    scale = float(trials["image_scale"].dropna().iloc[0]) if "image_scale" in trials and trials["image_scale"].notna().any() else 1.0
    epochs = int(trials["epochs"].max())
    strides = sorted({1, *trials["grid_stride"].astype(int), 16})
    blocks = sorted({1, 2, *trials["block"].astype(int)})
    print(f"{len(trials)} completed trial(s), {curves['trial_id'].nunique()} with curves; image scale {scale}; "
          f"spectrum of the training labels at that scale ...", flush=True)
    spectrum = study_spectrum(args.root, scale, strides, blocks, args.tolerance)
    _atomic_write(out / "spectrum.json", json.dumps(jsonable(spectrum), indent=1))

    trials[[c for c in TRIAL_COLUMNS if c in trials]].to_csv(out / "trials.csv", index=False)
    curves = curves[curves["trial_id"].isin(trials["trial_id"])]
    curves[[c for c in CURVE_COLUMNS if c in curves]].sort_values(["trial_id", "epoch"]).to_csv(
        out / "curves.csv", index=False)

    summary = study_summary(trials, curves, spectrum, args.tolerance, epochs)
    summary["image_scale"] = scale
    summary["native_spectrum_efficient_grid"] = (native_spectrum or {}).get("efficient_grid")
    summary["elapsed_s"] = time.monotonic() - started
    _atomic_write(out / "study.json", json.dumps(jsonable(summary), indent=1))
    plot_study(trials, curves, spectrum, summary, out / "study.png")

    rows = [[n, i["seeds"], 100 * i["dense_miou"], 100 * (i["dense_miou_std"] or float("nan")),
             i["measured_knee_stride"], i["spectral_grid_stride"], i["knee_within_one_step"],
             i["knee_predicted_with_trials"], i["oracle_sensitivity"]]
            for n, i in summary["networks"].items()]
    print(format_table(["network", "seeds", "dense mIoU", "std", "knee", "spectral", "within 1",
                        "knee (2 trials)", "g"], rows))
    print(f"fit leave-one-out MAE: {summary['fit_loo_mae_points']:.2f} mIoU points")
    if not args.no_report:
        from segcore.analysis import write_report
        from segcore.analysis.report import build_report

        report = build_report(trials, native_spectrum, experiment=args.experiment,
                              objectives={"miou": "max", "gflops": "min", "annotation_units": "min"})
        write_report(report, out / "report")
    print(f"wrote {out}/{{trials.csv, curves.csv, spectrum.json, study.json, study.png}} "
          f"in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
