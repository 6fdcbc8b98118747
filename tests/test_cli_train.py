"""``segcore train``: flags over a config file, progress within epochs, the result JSON and panel."""

from __future__ import annotations

import io
import json

from segcore.cli import build_parser, main
from segcore.cli.train import TrainingProgress, build_config
from segcore.names import COST_METRICS
from segcore.train import validate_config

METRICS = {"epoch": 1.0, "train_loss": 0.5, "miou": 0.25, "pixel_accuracy": 0.75, "epoch_seconds": 2.0}


class FlushCounter(io.StringIO):
    """A file-like output that is not a terminal and remembers what was written before each flush."""

    def __init__(self):
        super().__init__()
        self.flushed: list[str] = []

    def flush(self):
        self.flushed.append(self.getvalue())
        super().flush()


def test_a_file_gets_plain_epoch_lines_each_flushed_at_once():
    out, bar = FlushCounter(), io.StringIO()
    progress = TrainingProgress(2, out=out, bar_stream=bar)
    assert progress.show_bar is False  # neither stream is a terminal
    for epoch in (1, 2):
        for batch in (1, 2, 3):
            progress.batch(epoch, batch, 3, 0.5)
        progress.epoch(dict(METRICS, epoch=float(epoch)))
    progress.close()
    lines = out.getvalue().splitlines()
    assert lines == [
        "epoch 1/2  loss 0.5000  mIoU 0.2500  pixel acc 0.7500  2.0s",
        "epoch 2/2  loss 0.5000  mIoU 0.2500  pixel acc 0.7500  2.0s",
    ]
    assert out.flushed[0] == lines[0] + "\n"  # flushed right after the first epoch's line
    assert bar.getvalue() == "" and "\r" not in out.getvalue()


def test_a_terminal_gets_a_bar_over_the_batches():
    out, bar = io.StringIO(), io.StringIO()
    progress = TrainingProgress(2, out=out, bar_stream=bar, show_bar=True)
    for batch in (1, 2, 3):
        progress.batch(1, batch, 3, 0.4321)
    shown = bar.getvalue()
    assert "epoch 1/2" in shown and "3/3" in shown and "loss=0.4321" in shown
    progress.epoch(METRICS)
    assert out.getvalue().startswith("epoch 1/2  loss 0.5000")


def test_cli_writes_result_json_and_panel(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main([
        "train", "--network", "dan_tiny", "--grid-stride", "4", "--keep", "0.5", "--block", "4",
        "--epochs", "1", "--batch-size", "4", "--dataset-option", "num_samples=8",
        "--dataset-option", "size=[32, 32]", "--max-val-batches", "1", "--out", str(out),
        "--samples", str(tmp_path / "s.png"),
    ])
    assert code == 0
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.out and "mIoU" in captured.out
    assert "relative annotation units 0.0625" in captured.out  # block 4: 1/16 of the dense units
    assert "\r" not in captured.out + captured.err  # not a terminal: no bar
    payload = json.loads(out.read_text())
    assert payload["config"]["network"] == "dan_tiny" and payload["config"]["backbone"] == "resnet_tiny"
    assert payload["config"]["keep"] == 0.5 and payload["config"]["block"] == 4
    assert set(COST_METRICS) <= set(payload["metrics"]) and set(payload["cost"]) == set(COST_METRICS)
    assert payload["cost"]["annotation_units"] == 64
    assert (tmp_path / "s.png").is_file()
    assert main(["train", "--network", "unet_tiny", "--grid-stride", "32"]) == 2
    assert "valid grid strides: 1, 2, 4, 8" in capsys.readouterr().err


def test_cli_config_file_overridden_by_flags(tmp_path):
    path = tmp_path / "trial.yaml"
    path.write_text("network: dan_tiny\nkeep: 0.5\nmodel_options: {level_channels: 8}\n")
    args = build_parser().parse_args(["train", "--config", str(path), "--keep", "0.25", "--crop", "16", "24",
                                      "--option", "decoder_channels=16", "--no-amp"])
    config = build_config(args)
    assert config["network"] == "dan_tiny" and config["keep"] == 0.25 and config["crop"] == [16, 24]
    assert config["model_options"] == {"level_channels": 8, "decoder_channels": 16} and config["amp"] is False
    assert validate_config(config).crop == (16, 24)


def test_cli_bad_option_names_the_flag(capsys):
    assert main(["train", "--network", "dan_tiny", "--option", "no_equals_sign"]) == 2
    assert "--option expects KEY=VALUE, got 'no_equals_sign'" in capsys.readouterr().err
