"""``segcore spectrum``: outputs, table, and bad input rejected before any output is written."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from segcore.cli import main

SYNTH = ["--dataset", "synthetic", "--dataset-option", "num_samples=3", "--dataset-option", "size=[40, 48]",
         "--dataset-option", "cutoff=0.0625", "--no-progress"]


def folder_tree(root, label, image_size=None, name="a"):
    (root / "masks" / "train").mkdir(parents=True, exist_ok=True)
    (root / "images" / "train").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(label, dtype=np.uint8)).save(root / "masks" / "train" / f"{name}.png")
    h, w = image_size or np.asarray(label).shape
    Image.fromarray(np.zeros((h, w, 3), dtype=np.uint8)).save(root / "images" / "train" / f"{name}.png")
    return root


def run_cli(args, capsys):
    code = main(["spectrum", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_synthetic_run_writes_json_csv_png_and_table(tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run_cli([*SYNTH, "--strides", "1", "2", "4", "8", "--blocks", "2", "16", "--out", str(out)],
                              capsys)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["spectrum.csv", "spectrum.json", "spectrum.png"]
    doc = json.loads((out / "spectrum.json").read_text())
    assert doc["dataset"] == "synthetic" and doc["split"] == "train" and doc["num_labels"] == 3
    assert doc["strides"] == [1, 2, 4, 8] and doc["blocks"] == [2, 16]
    assert doc["oracle_miou"]["soft"][0] == 1.0 and len(doc["block_oracle_miou"]["hard"]) == 2
    assert set(doc["efficient_grid"]) == {"by_miou", "by_energy"}
    rows = list(csv.DictReader((out / "spectrum.csv").open()))
    assert [int(r["size"]) for r in rows] == [1, 2, 4, 8, 16]
    assert rows[-1]["band_energy"] == "" and rows[-1]["block_oracle_miou_hard"] != ""
    assert "stride" in stdout and "efficient grid" in stdout and "oracle soft" in stdout
    assert (out / "spectrum.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "camvid", "--root", "{tmp}/missing"], "--root {tmp}/missing does not exist"),
        (["--dataset", "camvid", "--root", "{tmp}"], "does not exist"),  # no trainannot folder
        (["--dataset", "nope", "--root", "{tmp}"], "unknown dataset 'nope'; valid datasets: ade20k, camvid"),
        ([*SYNTH, "--strides", "0", "2"], "--strides: sizes must be integers >= 1, got 0"),
        ([*SYNTH, "--blocks", "64"], "--blocks: 64 is larger than a 40x48 label map; valid values are 1..48"),
        ([*SYNTH, "--tolerance", "2"], "--tolerance must be in [0, 1)"),
        ([*SYNTH, "--split", "dev"], "split must be one of ['train', 'val', 'test']"),
    ],
)
def test_bad_options_fail_before_work(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run_cli([*args, "--out", str(out)], capsys)
    assert code == 2
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert not out.exists()


def test_no_label_files(tmp_path, capsys):
    (tmp_path / "masks" / "train").mkdir(parents=True)
    (tmp_path / "images" / "train").mkdir(parents=True)
    code, _, err = run_cli(["--dataset", "folder", "--root", str(tmp_path), "--dataset-option", "num_classes=2",
                            "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "no label files (*.png) in" in err


def test_label_value_outside_classes_names_file_and_value(tmp_path, capsys):
    root = folder_tree(tmp_path / "data", [[0, 1, 7, 1]] * 4)
    out = tmp_path / "out"
    code, _, err = run_cli(["--dataset", "folder", "--root", str(root), "--dataset-option", "num_classes=2",
                            "--strides", "1", "2", "--blocks", "2", "--out", str(out), "--no-progress"], capsys)
    assert code == 2
    assert "masks/train/a.png: label value(s) [7] outside the classes (valid: 0..1 or ignore index 255)" in err
    assert not out.exists()


def test_image_label_size_mismatch(tmp_path, capsys):
    root = folder_tree(tmp_path / "data", [[0, 1, 1, 1]] * 4, image_size=(4, 5))
    code, _, err = run_cli(["--dataset", "folder", "--root", str(root), "--dataset-option", "num_classes=2",
                            "--strides", "1", "--blocks", "1", "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "a.png: label size 4x4 != image size 4x5" in err


def test_existing_out_is_replaced_only_on_success(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "spectrum.json").write_text("old")
    code, _, _ = run_cli([*SYNTH, "--strides", "0", "--out", str(out)], capsys)
    assert code == 2 and (out / "spectrum.json").read_text() == "old"
    code, _, _ = run_cli([*SYNTH, "--strides", "1", "2", "--blocks", "2", "--out", str(out)], capsys)
    assert code == 0 and json.loads((out / "spectrum.json").read_text())["strides"] == [1, 2]


def test_camvid_cli_on_real_labels(camvid_root, tmp_path, capsys):
    out = tmp_path / "camvid"
    code, stdout, _ = run_cli(["--dataset", "camvid", "--root", str(camvid_root), "--split", "val", "--limit", "4",
                               "--out", str(out), "--no-progress"], capsys)
    assert code == 0
    doc = json.loads((out / "spectrum.json").read_text())
    assert doc["num_labels"] == 4 and doc["num_classes"] == 11 and doc["ignore_index"] == 11
    soft = doc["oracle_miou"]["soft"]
    assert soft[0] == 1.0 and all(a >= b for a, b in zip(soft, soft[1:]))  # coarser grids lose
    assert all(a >= b for a, b in zip(doc["band_energy"], doc["band_energy"][1:]))
    assert "camvid / val: 4 labels" in stdout


def test_default_sizes_are_the_analysis_defaults(tmp_path, capsys):
    from segcore.spectral import DEFAULT_BLOCKS, DEFAULT_STRIDES

    with pytest.raises(SystemExit):
        main(["spectrum", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"grid strides (default: {' '.join(map(str, DEFAULT_STRIDES))})" in help_text
    assert f"annotation block sizes (default: {' '.join(map(str, DEFAULT_BLOCKS))})" in help_text
    out = tmp_path / "out"
    code, _, _ = run_cli([*SYNTH, "--out", str(out)], capsys)
    doc = json.loads((out / "spectrum.json").read_text())
    assert code == 0 and doc["strides"] == list(DEFAULT_STRIDES) and doc["blocks"] == list(DEFAULT_BLOCKS)


def test_constant_map_writes_null_for_undefined_energy_and_a_dash_in_the_table(tmp_path, capsys):
    # One class everywhere: all energy is DC, so E(s) without DC is 0/0 (NaN): null in the JSON.
    root = folder_tree(tmp_path / "data", [[1, 1, 1, 1]] * 4)
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["--dataset", "folder", "--root", str(root), "--dataset-option", "num_classes=2",
                               "--strides", "1", "2", "--blocks", "2", "--out", str(out), "--no-progress"], capsys)
    assert code == 0
    doc = json.loads((out / "spectrum.json").read_text())
    assert doc["band_energy_no_dc"] == [None, None] and doc["band_energy"] == [1.0, 1.0]
    header, rule, first, second = stdout.splitlines()[2:6]
    assert header.split() == ["stride", "E(s)", "E", "no", "DC", "oracle", "soft", "oracle", "major", "CE", "floor"]
    assert set(rule) <= {"-", " "} and first.split() == ["1", "1", "-", "1", "1", "0"]
    assert second.split()[:3] == ["2", "1", "-"]
