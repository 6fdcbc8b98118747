"""The soft oracle (class proportions per cell, bilinear up-sampling, arg-max) in exact integers.

Pixels are grouped by the 2 x 2 cells ("quads") whose proportions the bilinear up-sampling blends:
a quad whose cells hold one class (or nothing) predicts that class everywhere, so only quads
touching a mixed cell or a class change are evaluated per pixel, and then only over the classes
present in their four cells (the candidates). Quad ``(a, b)`` blends cells ``a - 1, a`` (rows) and
``b - 1, b`` (columns), clamped to the grid as :func:`segcore.labels.upsample_proportions` clamps.

The blend is computed on integers: the proportions of the four cells are put on their common
denominator and the bilinear weights scaled to integers, so every blended value is an integer held
exactly in floating point and the arg-max (ties to the lower class) is the exact one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from segcore.spectral.cells import Cells

__all__ = ["bilinear_weights", "soft_oracle_quads"]

# Strides up to this keep the blended integer values below 2**53 (see _blend).
EXACT_MAX_STRIDE = 32

# Elements per chunk of the per-pixel evaluation (quads x pixels x candidate classes).
_QUAD_CHUNK = 4 * 1024 * 1024


@lru_cache(maxsize=64)
def bilinear_weights(stride: int, device: str) -> torch.Tensor:
    """``(s*s, 4)`` integer weights, ``(2s)^2`` times the bilinear weights of the quad corners
    (00, 01, 10, 11) at each pixel of the quad.

    Pixel ``y`` lies between the centres of cells ``a - 1`` and ``a`` at fraction
    ``(2 dy - 2 o + 1 + s) / (2 s)`` (``dy = y + o - a s``, ``o = (s + 1) // 2``), exactly the
    ``align_corners=False`` weights of :func:`segcore.labels.upsample_proportions`. Integers keep
    the arg-max exact, so a tie always goes to the lower class whatever the stride.
    """
    offset = (stride + 1) // 2
    position = torch.arange(stride, dtype=torch.int64, device=torch.device(device))
    scaled_fraction = 2 * position - 2 * offset + 1 + stride  # 2s * fraction, in [0, 2s)
    frac_y, frac_x = scaled_fraction[:, None], scaled_fraction[None, :]
    full = 2 * stride
    weights = torch.stack(
        [(full - frac_y) * (full - frac_x), (full - frac_y) * frac_x, frac_y * (full - frac_x), frac_y * frac_x],
        dim=-1,
    )
    return weights.reshape(stride * stride, 4)


@dataclass
class _Quads:
    """The quads that need per-pixel evaluation and what their four corner cells hold."""

    flat: torch.Tensor  # (Q,) flat index over the (N, h + 1, w + 1) quads
    image: torch.Tensor  # (Q,) image of each quad
    row: torch.Tensor  # (Q,) quad row a: blends cell rows a - 1 and a
    col: torch.Tensor  # (Q,) quad column b
    corner_code: torch.Tensor  # (Q, 4) code of the corner cells (00, 01, 10, 11): class, C or -1
    count_row: torch.Tensor  # (Q, 4) row of count_table for each corner
    count_table: torch.Tensor  # (M + 1, C) class counts of the mixed cells, then an all-zero row
    corner_total: torch.Tensor  # (Q, 4) valid pixels a corner's proportions are counted over

    def __len__(self) -> int:
        return self.flat.numel()


def _quads_to_evaluate(code: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Flat indices of the quads touching a mixed cell or holding more than one class."""
    void = num_classes
    _, height, width = code.shape
    rows = torch.arange(-1, height + 1, device=code.device).clamp(0, height - 1)
    cols = torch.arange(-1, width + 1, device=code.device).clamp(0, width - 1)
    padded = code[:, rows][:, :, cols]  # replicate-padded (N, h+2, w+2), as the up-sampling clamps
    corners = (padded[:, :-1, :-1], padded[:, :-1, 1:], padded[:, 1:, :-1], padded[:, 1:, 1:])
    # Void must not count as a class: map it above every class for the minimum, below for the maximum.
    above = [torch.where(corner == void, void + 1, corner) for corner in corners]
    below = [torch.where(corner == void, -1, corner) for corner in corners]
    class_min = torch.minimum(torch.minimum(above[0], above[1]), torch.minimum(above[2], above[3]))
    class_max = torch.maximum(torch.maximum(below[0], below[1]), torch.maximum(below[2], below[3]))
    any_mixed = torch.minimum(torch.minimum(corners[0], corners[1]), torch.minimum(corners[2], corners[3])) < 0
    # A quad whose cells hold one class (void cells allowed) predicts it on all its valid pixels.
    evaluate = any_mixed | ((class_min != class_max) & (class_min <= void))
    return evaluate.reshape(-1).nonzero().squeeze(1)


def _quad_corners(cells: Cells, flat: torch.Tensor, num_classes: int) -> _Quads:
    code = cells.code
    _, height, width = code.shape
    device = code.device
    num_quads = flat.numel()
    image = flat // ((height + 1) * (width + 1))
    within = flat % ((height + 1) * (width + 1))
    row, col = within // (width + 1), within % (width + 1)
    cell_rows = torch.stack([(row - 1).clamp_min(0), row.clamp_max(height - 1)], dim=1)
    cell_cols = torch.stack([(col - 1).clamp_min(0), col.clamp_max(width - 1)], dim=1)
    corner_flat = ((image[:, None, None] * height + cell_rows[:, :, None]) * width + cell_cols[:, None, :])
    corner_flat = corner_flat.reshape(num_quads, 4)
    corner_code = code.reshape(-1)[corner_flat].long()
    mixed = corner_code < 0
    # Count rows: a mixed corner points at its counts, every other corner at the all-zero row.
    num_mixed = cells.index.numel()
    count_table = torch.cat([cells.counts[:, :num_classes], torch.zeros(1, num_classes, dtype=torch.int64, device=device)])
    count_row = torch.full((num_quads, 4), num_mixed, dtype=torch.int64, device=device)
    if num_mixed:
        count_row[mixed] = torch.searchsorted(cells.index, corner_flat[mixed])
    # A pure corner counts as one pixel of its class (proportions do not depend on the scale).
    pure_total = (corner_code < num_classes).long() * (corner_code >= 0)
    corner_total = torch.where(mixed, count_table.sum(dim=1)[count_row], pure_total)
    return _Quads(flat, image, row, col, corner_code, count_row, count_table, corner_total)


def _candidate_classes(quads: _Quads, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The classes present in each quad's four cells: ``(classes, per_quad, first)`` where quad
    ``q``'s candidates are ``classes[first[q] : first[q] + per_quad[q]]``, ascending."""
    corner_code = quads.corner_code
    num_quads = len(quads)
    mixed = corner_code < 0
    quad_id = torch.arange(num_quads, device=corner_code.device)[:, None].expand(num_quads, 4)
    pure_class = (corner_code >= 0) & (corner_code < num_classes)
    keys = [quad_id[pure_class] * num_classes + corner_code[pure_class]]
    if quads.count_table.shape[0] > 1:  # some cell is mixed
        mixed_corner, present_class = (quads.count_table[quads.count_row[mixed]] > 0).nonzero().unbind(1)
        keys.append(quad_id[mixed][mixed_corner] * num_classes + present_class)
    keys = torch.unique(torch.cat(keys))  # sorted: by quad, then class
    key_quad, key_class = keys // num_classes, keys % num_classes
    per_quad = torch.bincount(key_quad, minlength=num_quads)
    return key_class, per_quad, per_quad.cumsum(0) - per_quad


class _TruthPixels:
    """The dense labels (void = C) of the ``s x s`` pixels of selected quads, shape ``(G, s*s)``.

    Quad ``(a, b)`` covers pixels ``[a s - o, (a + 1) s - o)`` with ``o = (s + 1) // 2``. Read by
    coordinates when few quads are evaluated, else from a quad-major copy of the map shifted by
    ``o`` (quad ``(a, b)`` is then the ``s x s`` block ``(a, b)``, margin void).
    """

    def __init__(self, small_codes: torch.Tensor, quads: _Quads, stride: int, num_classes: int, grid_shape):
        self.quads = quads
        self.stride = stride
        self.void = num_classes
        num_images, self.height, self.width = small_codes.shape
        grid_h, grid_w = grid_shape
        offset = (stride + 1) // 2
        self.quad_major = len(quads) * stride * stride > small_codes.numel() // 4
        if self.quad_major:
            pad = (offset, (grid_w + 1) * stride - offset - self.width, offset, (grid_h + 1) * stride - offset - self.height)
            shifted = F.pad(small_codes, pad, value=num_classes)
            blocks = shifted.view(num_images, grid_h + 1, stride, grid_w + 1, stride).permute(0, 1, 3, 2, 4)
            self.quad_pixels = blocks.reshape(-1, stride * stride)
        else:
            position = torch.arange(stride, device=small_codes.device)
            self.dy = position.repeat_interleave(stride) - offset
            self.dx = position.repeat(stride) - offset
            self.flat_codes = small_codes.reshape(-1)

    def __call__(self, selected: torch.Tensor) -> torch.Tensor:
        if self.quad_major:
            return self.quad_pixels.index_select(0, self.quads.flat[selected]).long()
        y = self.quads.row[selected, None] * self.stride + self.dy
        x = self.quads.col[selected, None] * self.stride + self.dx
        inside = (y >= 0) & (y < self.height) & (x >= 0) & (x < self.width)
        image = self.quads.image[selected, None]
        at = (image * self.height + y.clamp(0, self.height - 1)) * self.width + x.clamp(0, self.width - 1)
        return torch.where(inside, self.flat_codes[at].long(), self.void)


def _blend(
    quads: _Quads, selected: torch.Tensor, candidates: torch.Tensor, stride: int, integer_weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blended (bilinearly up-sampled) proportions of the candidates at every pixel of the quads.

    Returns ``(blended (s*s, G, K), weights, common)``: ``blended / common`` is the bilinear value
    (``common`` per quad, the weights scaled by ``(2s)^2``). Up to :data:`EXACT_MAX_STRIDE` the
    proportions sit on the common denominator ``L = lcm_j total_j``: ``counts_j * L / total_j`` is
    an integer ``<= L <= 2**40`` and the weights sum to ``(2s)**2 <= 2**12``, so every blended value
    is an integer below ``2**53``: exact in float64, and so is the arg-max. When the cells are
    equally full (the usual case) ``L`` is small and the values stay below ``2**24``: exact in
    float32, at half the cost. Beyond, float64 proportions are blended.
    """
    num_selected, num_candidates = candidates.shape
    corner_counts = quads.count_table[quads.count_row[selected][:, :, None], candidates[:, None, :]]
    corner_counts += quads.corner_code[selected][:, :, None] == candidates[:, None, :]  # pure corners: one pixel
    totals = quads.corner_total[selected].clamp_min(1)
    if stride <= EXACT_MAX_STRIDE:
        common = torch.lcm(torch.lcm(totals[:, 0], totals[:, 1]), torch.lcm(totals[:, 2], totals[:, 3]))
        dtype = torch.float32 if int(common.max()) * (2 * stride) ** 2 < 2**24 else torch.float64
        corner_values = (corner_counts * (common[:, None] // totals)[:, :, None]).to(dtype)
        common = common.to(dtype)
    else:
        dtype = torch.float64
        corner_values = corner_counts.to(dtype) / totals[:, :, None]
        common = torch.ones(num_selected, dtype=dtype, device=candidates.device)
    weights = integer_weights.to(dtype)
    # One GEMM for all quads of the chunk: (s*s, 4) @ (4, G*K).
    flat_values = corner_values.permute(1, 0, 2).reshape(4, num_selected * num_candidates)
    blended = (weights @ flat_values).view(stride * stride, num_selected, num_candidates)
    return blended, weights, common


def _arg_max_class(blended: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Predicted class ``(G, s*s)``: the candidate of the largest blended value, ties to the lower."""
    num_selected, num_candidates = candidates.shape
    if num_candidates == 1:
        return candidates.expand(num_selected, blended.shape[0])
    if num_candidates == 2:  # the common case (one boundary): a comparison instead of an arg-max
        return torch.where(blended[:, :, 1] > blended[:, :, 0], candidates[:, 1], candidates[:, 0]).t()
    return candidates.t().gather(0, blended.argmax(dim=2)).t()  # first maximum: the lower class


def _cross_entropy_sum(
    blended: torch.Tensor,
    weights: torch.Tensor,
    common: torch.Tensor,
    corner_mass: torch.Tensor,
    candidates: torch.Tensor,
    truth: torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """CE floor summed over the valid pixels: ``-log`` of the true class's blended value over the
    blended mass (float32 logs summed in float64: ample for a floor, half the cost of float64)."""
    num_selected, num_candidates = candidates.shape
    device = candidates.device
    slot = torch.zeros(num_selected, num_classes + 1, dtype=torch.int64, device=device)
    slot.scatter_(1, candidates, torch.arange(num_candidates, device=device).expand(num_selected, num_candidates))
    true_position = slot.gather(1, truth).t()  # (s*s, G)
    true_value = blended.gather(2, true_position.unsqueeze(2)).squeeze(2)  # (s*s, G)
    mass = (weights @ corner_mass.t().to(weights.dtype)) * common[None, :]
    ratio = torch.where((truth < num_classes).t(), true_value / mass, torch.ones_like(true_value))
    return torch.log(ratio.float()).sum(dtype=torch.float64)


def soft_oracle_quads(cells: Cells, small_codes: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, float]:
    """Confusion ``(C, C)`` and CE sum of the soft oracle over the quads that need per-pixel
    evaluation; every valid pixel of the other quads is predicted right (see the module notes).

    ``small_codes (N, H, W)``: the dense labels, void = C, in a narrow integer type.
    """
    stride = cells.size
    device = cells.code.device
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    flat = _quads_to_evaluate(cells.code, num_classes)
    if flat.numel() == 0:
        return conf, 0.0
    quads = _quad_corners(cells, flat, num_classes)
    candidate_class, candidates_per_quad, first_candidate = _candidate_classes(quads, num_classes)
    integer_weights = bilinear_weights(stride, str(device))
    corner_mass = (quads.corner_total > 0).to(torch.float64)  # the proportions of a cell sum to this
    truth_of = _TruthPixels(small_codes, quads, stride, num_classes, cells.code.shape[1:])
    # Void pixels land in an extra confusion row that is dropped (no boolean indexing).
    conf_with_void = torch.zeros((num_classes + 1) * num_classes, dtype=torch.int64, device=device)
    ce = torch.zeros((), dtype=torch.float64, device=device)
    for num_candidates in candidates_per_quad.unique().tolist():
        group = (candidates_per_quad == num_candidates).nonzero().squeeze(1)
        step = max(1, _QUAD_CHUNK // (stride * stride * num_candidates))
        for start in range(0, group.numel(), step):
            selected = group[start : start + step]
            truth = truth_of(selected)  # (G, s*s), void = C
            candidate_offsets = torch.arange(num_candidates, device=device)
            candidates = candidate_class[first_candidate[selected, None] + candidate_offsets]  # (G, K)
            blended, weights, common = _blend(quads, selected, candidates, stride, integer_weights)
            predicted = _arg_max_class(blended, candidates)
            conf_with_void += torch.bincount((truth * num_classes + predicted).reshape(-1),
                                             minlength=(num_classes + 1) * num_classes)
            if num_candidates == 1:
                continue  # one class: its blended share is 1 wherever a pixel is valid, CE 0
            ce -= _cross_entropy_sum(blended, weights, common, corner_mass[selected], candidates, truth, num_classes)
    conf += conf_with_void[: num_classes * num_classes].view(num_classes, num_classes)
    return conf, float(ce)
