"""Multimodal RoPE (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): which position axis drives each frequency,
and the (temporal, height, width) positions of a text-and-vision token layout."""

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _validation as v

TEXT, IMAGE, VIDEO = 0, 1, 2


def mrope_axes(half: int, section, interleaved: bool = False) -> NDArray[np.intp]:
    """The position axis (0 temporal, 1 height, 2 width) of each of the ``half`` frequencies.

    Sectioned (Qwen2-VL, Qwen2.5-VL): the first ``section[0]`` frequencies follow the
    temporal positions, the next ``section[1]`` the height, the last ``section[2]`` the
    width. Interleaved (Qwen3-VL): frequency j follows height when j % 3 == 1 and
    j < 3 section[1], width when j % 3 == 2 and j < 3 section[2], else the temporal axis.
    """
    try:
        parts = [v.as_integer(s, "mrope_section entry") for s in section]
    except TypeError as error:
        raise TypeError(f"mrope_section must be three integers [t, h, w], got {section!r}") from error
    if len(parts) != 3 or min(parts) < 0:
        raise ValueError(f"mrope_section must be three integers [t, h, w] >= 0, got {section!r}")
    if sum(parts) != half:
        raise ValueError(f"mrope_section {parts} must add up to rotary_dim / 2 = {half}")
    if not interleaved:
        return np.repeat(np.arange(3), parts)
    t, h, w = parts
    if (h and 3 * h - 2 >= half) or (w and 3 * w - 1 >= half):
        raise ValueError(f"interleaved mrope_section {parts} does not fit {half} frequencies (3 x {max(h, w)})")
    axes = np.zeros(half, dtype=np.intp)
    axes[1 : 3 * h : 3] = 1
    axes[2 : 3 * w : 3] = 2
    return axes


def mrope_positions(
    token_types: ArrayLike,
    image_grid_thw: ArrayLike | None = None,
    video_grid_thw: ArrayLike | None = None,
    *,
    spatial_merge_size: int = 2,
    video_time_intervals: ArrayLike | None = None,
    attention_mask: ArrayLike | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(temporal, height, width) positions of a text-and-vision sequence, as Qwen-VL lays them out.

    Text tokens advance all three axes together, one step per token. A run of image (or
    video) tokens takes the next grid (t, h, w) of patches; with m = spatial_merge_size it
    holds t (h / m) (w / m) tokens, at temporal position ``start + floor(k * interval)``
    (k the frame, interval 1 for images), height ``start + row`` and width
    ``start + column``; the text after it starts at ``start + max(h, w) / m``.

    Parameters
    ----------
    token_types : array_like of int, shape (L,) or (B, L)
        0 text, 1 image, 2 video (transformers' ``mm_token_type_ids``).
    image_grid_thw, video_grid_thw : array_like of int, shape (n, 3), optional
        The patch grid of every image / video, in the order they appear in the batch.
    spatial_merge_size : int
        Patches merged per side into one token (``vision_config.spatial_merge_size``).
    video_time_intervals : array_like of float, shape (n_videos,), optional
        Temporal position step per frame of each video (Qwen2.5-VL: tokens_per_second x
        seconds per grid); default 1.
    attention_mask : array_like, shape of token_types, optional
        Padding tokens (0) are skipped and get position 0.

    Returns
    -------
    positions : ndarray (3,) + token_types.shape, int64
        For ``apply_rope(..., positions=positions[:, :, None, :], mrope_section=...)`` with
        x of shape (B, heads, L, D).
    deltas : ndarray (B,) or (), int64
        max position + 1 - number of tokens: the offset of every later (decoded) token.
    """
    types = v.integer_array(token_types, "token_types")
    if types.ndim not in (1, 2):
        raise ValueError(f"token_types must have shape (L,) or (B, L), got {types.shape}")
    batch = types.reshape(-1, types.shape[-1]) if types.size or types.ndim == 2 else types.reshape(1, -1)
    if batch.size and (batch.min() < TEXT or batch.max() > VIDEO):
        raise ValueError("token_types must be 0 (text), 1 (image) or 2 (video)")
    mask = _mask(attention_mask, types.shape).reshape(batch.shape)
    merge = v.as_integer(spatial_merge_size, "spatial_merge_size", low=1)
    videos = _grids(video_grid_thw, "video_grid_thw")
    grids = {IMAGE: iter(_grids(image_grid_thw, "image_grid_thw")), VIDEO: iter(videos)}
    intervals = iter(_intervals(video_time_intervals, len(videos)))
    positions = np.zeros((3,) + batch.shape, dtype=np.int64)
    deltas = np.zeros(batch.shape[0], dtype=np.int64)
    for row in range(batch.shape[0]):
        kept = np.flatnonzero(mask[row])
        row_positions = _row_positions(batch[row, kept], grids, intervals, merge)
        positions[:, row, kept] = row_positions
        deltas[row] = (int(row_positions.max()) + 1 if kept.size else 0) - kept.size
    for kind, name in ((IMAGE, "image_grid_thw"), (VIDEO, "video_grid_thw")):
        if next(grids[kind], None) is not None:
            raise ValueError(f"{name} has more grids than the token_types have {name[:5]} runs")
    if types.ndim == 1:
        return positions[:, 0], deltas[0]
    return positions, deltas


def _mask(attention_mask, shape):
    if attention_mask is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(attention_mask)
    if mask.shape != shape:
        raise ValueError(f"attention_mask of shape {mask.shape} does not match token_types {shape}")
    return mask.astype(bool)


def _grids(grid_thw, name):
    if grid_thw is None:
        return np.zeros((0, 3), dtype=np.int64)
    grid = v.integer_array(grid_thw, name)
    if grid.ndim != 2 or grid.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n, 3), got {grid.shape}")
    if grid.size and grid.min() < 1:
        raise ValueError(f"{name} entries must be >= 1")
    return grid.astype(np.int64)


def _intervals(video_time_intervals, n_videos):
    if video_time_intervals is None:
        return np.ones(n_videos)
    intervals = np.asarray(video_time_intervals, dtype=np.float64).reshape(-1)
    if intervals.shape != (n_videos,) or not np.isfinite(intervals).all() or (intervals < 0).any():
        raise ValueError(f"video_time_intervals must be {n_videos} finite values >= 0, got {intervals}")
    return intervals


def _row_positions(types, grids, intervals, merge):
    """(3, n) positions of one sequence's tokens (padding removed)."""
    out = np.empty((3, types.size), dtype=np.int64)
    starts = np.flatnonzero(np.diff(types, prepend=-1)) if types.size else np.zeros(0, np.intp)
    ends = np.append(starts[1:], types.size)
    current = 0
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        kind = int(types[start])
        if kind == TEXT:
            out[:, start:end] = np.arange(current, current + end - start)
            current += end - start
            continue
        grid = next(grids[kind], None)
        name = "image_grid_thw" if kind == IMAGE else "video_grid_thw"
        if grid is None:
            raise ValueError(f"the token_types have more {name[:5]} runs than {name} has grids")
        t, h, w = int(grid[0]), int(grid[1]) // merge, int(grid[2]) // merge
        if t * h * w != end - start:
            raise ValueError(
                f"a run of {end - start} {name[:5]} tokens at {start} does not match its grid {grid.tolist()} "
                f"({t} x {h} x {w} = {t * h * w} tokens with spatial_merge_size {merge})"
            )
        interval = next(intervals) if kind == VIDEO else 1.0
        frame = (np.arange(t) * interval).astype(np.int64)
        tt, hh, ww = np.meshgrid(frame, np.arange(h), np.arange(w), indexing="ij")
        out[:, start:end] = np.stack([tt.ravel(), hh.ravel(), ww.ravel()]) + current
        current += max(int(grid[1]), int(grid[2])) // merge
    return out
