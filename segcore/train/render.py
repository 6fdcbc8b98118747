"""The sample panel of a trial: image | labels | prediction, with column titles and a class legend.

Compute, then render: :func:`render_sample` predicts one validation sample; :func:`sample_panel`
only draws arrays, so it is testable with known inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from segcore.config.trial import TrialConfig
from segcore.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from segcore.labels import upsample_proportions

__all__ = ["palette", "sample_panel", "render_sample", "IGNORE_COLOUR", "COLUMN_TITLES"]

IGNORE_COLOUR = (0, 0, 0)  # void / ignore: black, a colour no class gets
COLUMN_TITLES = ("image", "labels", "prediction")
_QUALITATIVE_MAPS = ("tab20", "tab20b", "tab20c")  # matplotlib's qualitative colormaps, 60 colours
_MIN_COLUMN_WIDTH = 160  # small crops are up-scaled (nearest) to at least this width per column
_GAP = 4
_MARGIN = 6
_FONT_SIZE = 12
_WHITE = (255, 255, 255)


def _qualitative_colours() -> np.ndarray:
    """``(60, 3)`` uint8: tab20's ten dark colours, then its ten light ones (so a few classes get
    the most distinct hues), then tab20b and tab20c."""
    from matplotlib import colormaps

    tab20 = np.asarray(colormaps["tab20"].colors)
    ordered = [tab20[0::2], tab20[1::2]] + [np.asarray(colormaps[name].colors) for name in _QUALITATIVE_MAPS[1:]]
    return (np.concatenate(ordered) * 255).round().astype(np.uint8)


def palette(num_classes: int) -> np.ndarray:
    """Colours ``(C + 1, 3)`` uint8: class ``c`` in row ``c`` (matplotlib's qualitative tab20
    family; past 60 classes the colours repeat), the last row black for void / ignore."""
    colours = np.resize(_qualitative_colours(), (num_classes, 3))
    return np.concatenate([colours, np.array([IGNORE_COLOUR], dtype=np.uint8)])


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default(size=_FONT_SIZE)


def _legend_entries(truth: np.ndarray, prediction: np.ndarray, class_names: Sequence[str],
                    colours: np.ndarray) -> list[tuple[str, tuple[int, int, int]]]:
    """``(name, colour)`` of every class in the truth or the prediction, then ``ignore`` if the
    truth has void pixels."""
    num_classes = len(colours) - 1
    present = sorted(set(np.unique(truth).tolist()) | set(np.unique(prediction).tolist()))
    entries = [(class_names[c], tuple(int(v) for v in colours[c])) for c in present if c < num_classes]
    if (truth == num_classes).any():
        entries.append(("ignore", IGNORE_COLOUR))
    return entries


def _legend_rows(entries, font, width: int, swatch: int) -> list[list[tuple[str, tuple, int]]]:
    """Entries laid out left to right, wrapped at ``width``: rows of ``(name, colour, x)``."""
    rows: list[list[tuple[str, tuple, int]]] = [[]]
    x = _MARGIN
    for name, colour in entries:
        entry_width = swatch + 4 + math.ceil(font.getlength(name)) + 12
        if rows[-1] and x + entry_width > width - _MARGIN:
            rows.append([])
            x = _MARGIN
        rows[-1].append((name, colour, x))
        x += entry_width
    return rows


def sample_panel(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray, class_names: Sequence[str],
                 colours: np.ndarray) -> np.ndarray:
    """Draw the panel: three titled columns (image | labels | prediction) and a class legend.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        truth: ``(H, W)`` class ids, void / ignore already mapped to ``len(colours) - 1``.
        prediction: ``(H, W)`` class ids.
        class_names: one name per class.
        colours: :func:`palette` of the classes (last row: ignore).

    Returns:
        ``(rows, columns, 3)`` uint8 RGB on white; each column is the ``H x W`` map up-scaled by
        the same whole factor (nearest), so small crops stay readable.
    """
    height, width = truth.shape
    scale = max(1, math.ceil(_MIN_COLUMN_WIDTH / width))
    columns = [image, colours[truth], colours[prediction]]
    columns = [np.repeat(np.repeat(column, scale, axis=0), scale, axis=1) for column in columns]
    column_height, column_width = height * scale, width * scale
    font = _font()
    title_height = _FONT_SIZE + 2 * _MARGIN
    panel_width = 3 * column_width + 2 * _GAP
    swatch = _FONT_SIZE
    rows = _legend_rows(_legend_entries(truth, prediction, class_names, colours), font, panel_width, swatch)
    row_height = swatch + _MARGIN
    legend_top = title_height + column_height + _MARGIN
    canvas = Image.new("RGB", (panel_width, legend_top + len(rows) * row_height + _MARGIN), _WHITE)
    draw = ImageDraw.Draw(canvas)
    for index, (title, column) in enumerate(zip(COLUMN_TITLES, columns)):
        left = index * (column_width + _GAP)
        canvas.paste(Image.fromarray(np.ascontiguousarray(column)), (left, title_height))
        text_left = left + (column_width - font.getlength(title)) / 2
        draw.text((max(left, text_left), _MARGIN), title, fill=(0, 0, 0), font=font)
    for row_index, row in enumerate(rows):
        top = legend_top + row_index * row_height
        for name, colour, x in row:
            draw.rectangle([x, top, x + swatch - 1, top + swatch - 1], fill=colour, outline=(128, 128, 128))
            draw.text((x + swatch + 4, top), name, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


@torch.no_grad()
def render_sample(model, dataset, cfg: TrialConfig, num_classes: int, ignore_index: int | None,
                  device: torch.device, class_names: Sequence[str] | None = None, index: int = 0) -> np.ndarray:
    """The :func:`sample_panel` of validation sample ``index``: its image, its dense labels and the
    network's prediction (logits up-sampled bilinearly to the label size)."""
    image, label = dataset[index]
    model.eval()
    logits = model(image.unsqueeze(0).to(device)).float()
    model.train()
    prediction = upsample_proportions(logits, cfg.grid_stride, tuple(label.shape))[0].argmax(0).cpu().numpy()
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    rgb = ((image * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    truth = label.numpy().copy()
    truth[(truth < 0) | (truth >= num_classes)] = num_classes
    names = list(class_names) if class_names else [f"class_{c}" for c in range(num_classes)]
    return sample_panel(rgb, truth, prediction, names, palette(num_classes))
