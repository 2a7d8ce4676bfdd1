"""Rotary position embeddings (RoPE): frequencies with the rope-scaling schemes
of the transformers configs, the cos/sin tables, the fused rotation, and
weight conversion between the two rotary conventions.

For pair i of the rotary dimensions (i < rotary_dim / 2) at position p, with
theta = p * inv_freq[i] computed in float64:

- style "neox" (Llama, GPT-NeoX; transformers' rotate_half): the pair is
  (x[i], x[i + rotary_dim/2]);
- style "gptj" (GPT-J, Meta's original Llama): the pair is (x[2i], x[2i+1]);

and each pair (a, b) becomes (a cos - b sin, b cos + a sin), with cos and sin
multiplied by the scheme's attention factor (YaRN). Features from
``rotary_dim`` on pass through unchanged.
"""

import functools

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _rope_frequencies as _frequencies
from . import _validation as v
from . import backends
from ._mrope import mrope_axes
from ._positional import MAX_POSITION, _as_positions, fill_sincos, sincos_table
from ._rope_frequencies import check_rotary_dim
from ._rope_latency import apply_rope_fast
from ._threads import resolve

STYLES = ("neox", "gptj")
DEFAULT_BASE = 10000.0


def rope_frequencies(
    dim: int, *, base: float = DEFAULT_BASE, scaling: dict | None = None, seq_len: int | None = None
) -> tuple[NDArray[np.float64], float]:
    """(inv_freq, attention_factor) for ``dim`` rotary features, as transformers computes them.

    Without scaling, ``inv_freq[i] = base^(-2i / dim)`` for i < dim / 2.

    Parameters
    ----------
    dim : int
        Rotary dimensions (even); inv_freq has dim / 2 entries.
    base : float
        ``rope_theta``; a ``rope_theta`` in ``scaling`` is used when base is left at 10000.
    scaling : dict, optional
        A config's ``rope_parameters`` / ``rope_scaling`` (see :func:`fastembed.rope_config`
        to read one from a whole config.json): ``rope_type`` (or ``type``) one of

        - "default";
        - "linear": inv_freq / factor;
        - "dynamic" (dynamic NTK): base x (factor s / m - (factor - 1))^(dim / (dim - 2)),
          s = max(seq_len, m), m = max_position_embeddings;
        - "yarn": factor (or max_position_embeddings / original_max_position_embeddings),
          original_max_position_embeddings, beta_fast=32, beta_slow=1, truncate=True,
          attention_factor (default 0.1 ln(factor) + 1, or the mscale / mscale_all_dim ratio);
        - "llama3": factor, low_freq_factor, high_freq_factor, original_max_position_embeddings;
        - "longrope" (Phi-3): inv_freq[i] / long_factor[i] when seq_len >
          original_max_position_embeddings, else / short_factor[i]; attention_factor
          default sqrt(1 + ln(factor) / ln(original)), factor default
          max_position_embeddings / original_max_position_embeddings;
        - "proportional" (Gemma 4): ``dim`` is the whole head; the first
          int(partial_rotary_factor x dim / 2) pairs rotate with base^(-2i / dim), the rest
          keep frequency 0; divided by factor (default 1);
        - "ntk" (static NTK-aware, vLLM's definition): base x factor and every frequency
          divided by factor^(2 / dim); with ``mixed_b``, frequency i (from 1) divided by
          exp(a i^b), a = ln(factor) / (dim / 2)^b.

        Any other type is a ValueError naming the supported ones.
    seq_len : int, optional
        Current sequence length (largest position + 1), for "dynamic" and "longrope".

    Returns
    -------
    inv_freq : ndarray (dim / 2,), float64
    attention_factor : float
        The factor cos and sin are multiplied by.
    """
    return _frequencies.rope_frequencies(dim, _base(base, scaling), scaling, seq_len)


def _base(base, scaling):
    """``base``, or the ``rope_theta`` a scaling dict carries when base was left at its default."""
    theta = scaling.get("rope_theta") if isinstance(scaling, dict) else None
    if theta is None:
        return base
    theta = v.as_real(theta, "scaling rope_theta")
    if base != DEFAULT_BASE and base != theta:
        raise ValueError(f"base {base} and the scaling's rope_theta {theta} disagree; give one")
    return theta


def rope_cos_sin(
    positions: int | ArrayLike,
    dim: int,
    *,
    base: float = DEFAULT_BASE,
    scaling: dict | None = None,
    seq_len: int | None = None,
    dtype: DTypeLike = np.float64,
    backend: str = "auto",
    n_threads: int | None = None,
    mrope_section: ArrayLike | None = None,
    mrope_interleaved: bool | None = None,
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """cos and sin of theta = p * inv_freq (angles in float64), times the attention factor.

    Parameters
    ----------
    positions : int or array_like of int
        A count n (positions 0..n-1) or positions of any shape, in [0, 2**40). With an
        mrope section, shape (3, ...): temporal, height and width positions.
    dim : int
        Rotary dimensions (even).
    base, scaling, seq_len
        As in :func:`rope_frequencies`.
    dtype : float32 or float64
    mrope_section, mrope_interleaved
        As in :func:`apply_rope`: frequency i takes its angle from the position axis
        :func:`fastembed.mrope_positions` assigns it.

    Returns
    -------
    cos, sin : ndarray, shape positions.shape + (dim / 2,) (without the leading 3 for mrope)
        Frequency i in column i. For transformers' (..., dim) layout use
        ``np.concatenate([cos, cos], -1)``; for the gptj layout ``np.repeat(cos, 2, -1)``.
    """
    dim = check_rotary_dim(dim, "dim")
    dtype = v.float_dtype(dtype)
    axes = _mrope_axes(dim // 2, scaling, mrope_section, mrope_interleaved)
    inv_freq, attention = rope_frequencies(dim, base=base, scaling=scaling, seq_len=seq_len)
    half = inv_freq.size
    if axes is not None:
        grid = _mrope_grid(positions, MAX_POSITION)
        cos, sin = _mrope_tables(grid.reshape(3, -1), inv_freq, attention, axes, dtype, backend, n_threads)
        return cos.reshape(grid.shape[1:] + (half,)), sin.reshape(grid.shape[1:] + (half,))
    source = _as_positions(positions)
    cos = np.empty((source.size, half), dtype=dtype)  # a MemoryError comes first
    sin = np.empty((source.size, half), dtype=dtype)
    for start, stop, chunk in source.chunks():
        cos[start:stop], sin[start:stop] = _tables(chunk, inv_freq, attention, cos.dtype, backend, n_threads)
    return cos.reshape(source.shape + (half,)), sin.reshape(source.shape + (half,))


def _tables(flat, inv_freq, attention, dtype, backend, n_threads):
    """(cos, sin) in ``dtype``, (n, half), from float64 angles, times the attention factor."""
    return _kernel_tables(flat, inv_freq, attention, dtype, backends.kernels(backend), resolve(n_threads))


def _kernel_tables(flat, inv_freq, attention, dtype, k, n_threads):
    """``_tables`` by kernel set ``k`` (None: numpy) on ``n_threads`` (resolved) threads."""
    sin, cos = sincos_table(flat, inv_freq, k, n_threads)
    if attention != 1.0:
        sin, cos = sin * attention, cos * attention
    return np.ascontiguousarray(cos, dtype=dtype), np.ascontiguousarray(sin, dtype=dtype)


def _mrope_tables(grid, inv_freq, attention, axes, dtype, backend, n_threads):
    """(cos, sin), (n, half): frequency i at position grid[axes[i], token], written per token by
    the angle-addition kernel, one call per evenly spaced run of an axis's frequencies."""
    n, half = grid.shape[1], inv_freq.size
    both = np.empty((n, 2 * half))  # sin | cos, float64
    for axis in range(3):
        for columns in _evenly_spaced_runs(np.flatnonzero(axes == axis)):
            count = len(range(half)[columns])
            fill_sincos(
                both,
                grid[axis],
                inv_freq[columns],
                count,
                count,
                columns.start,
                half + columns.start,
                columns.step,
                backend,
                n_threads,
            )
    sin, cos = both[:, :half], both[:, half:]
    if attention != 1.0:
        sin, cos = sin * attention, cos * attention
    return np.ascontiguousarray(cos, dtype=dtype), np.ascontiguousarray(sin, dtype=dtype)


def _evenly_spaced_runs(columns):
    """``columns`` (sorted) as the fewest slices start:stop:step that cover it in order."""
    runs, i = [], 0
    while i < len(columns):
        step = int(columns[i + 1] - columns[i]) if i + 1 < len(columns) else 1
        j = i + 1
        while j + 1 < len(columns) and columns[j + 1] - columns[j] == step:
            j += 1
        j = min(j, len(columns) - 1)
        runs.append(slice(int(columns[i]), int(columns[j]) + 1, step))
        i = j + 1
    return runs


def _mrope_axes(half, scaling, mrope_section, mrope_interleaved):
    """The position axis of every frequency, or None without multimodal sections."""
    from_config = scaling if isinstance(scaling, dict) else {}
    section = mrope_section if mrope_section is not None else from_config.get("mrope_section")
    interleaved = mrope_interleaved if mrope_interleaved is not None else from_config.get("mrope_interleaved", False)
    if section is None:
        if mrope_interleaved:
            raise ValueError("mrope_interleaved needs an mrope_section")
        return None
    return mrope_axes(half, section, bool(interleaved))


def _mrope_grid(positions, limit):
    """Multimodal positions as an int64 array of shape (3, ...), each in [0, limit)."""
    if positions is None or isinstance(positions, (int, np.integer)):
        raise ValueError("multimodal rope needs positions of shape (3, ...) (see fastembed.mrope_positions)")
    source = _as_positions(positions, limit=limit)
    if not source.shape or source.shape[0] != 3:
        raise ValueError(
            f"multimodal rope positions must have shape (3, ...) for temporal, height and width, got {source.shape}"
        )
    return source.array.reshape(source.shape)


def apply_rope(
    x: NDArray[np.floating],
    *,
    positions: ArrayLike | None = None,
    offset: int | ArrayLike = 0,
    style: str = "neox",
    rotary_dim: int | None = None,
    base: float = DEFAULT_BASE,
    scaling: dict | None = None,
    out: NDArray[np.floating] | None = None,
    backend: str = "auto",
    n_threads: int | None = None,
    max_position: int = MAX_POSITION,
    mrope_section: ArrayLike | None = None,
    mrope_interleaved: bool | None = None,
) -> NDArray[np.floating]:
    """Rotary position embedding of x, fused: one read and one write per element.

    ``out[..., l, pair] = rotate(x[..., l, pair], theta = position(l) * inv_freq)`` (module docstring).

    Parameters
    ----------
    x : ndarray, shape (..., L, D), float32 or float64
    positions : array_like of int, optional
        Broadcast against x.shape[:-1] (for x of shape (B, heads, L, D), positions of shape
        (B, 1, L)); default ``offset + arange(L)``. With an mrope section, shape (3, ...)
        (temporal, height, width), each broadcast the same way.
    offset : int or array_like of int
        First position when ``positions`` is not given (decoding with a cache): one int, or
        one per batch row (shape (x.shape[0],), x at least 3-D; left-padded batches where
        every sequence has its own cache length).
    style : {"neox", "gptj"}
    rotary_dim : int, optional
        Rotate only the first rotary_dim features (even, <= D); default D, or
        int(D x partial_rotary_factor) when ``scaling`` carries one.
    base, scaling
        As in :func:`rope_frequencies`; "dynamic" and "longrope" use the largest position + 1
        as seq_len. ``apply_rope(x, **fastembed.rope_config(config_json))`` sets them from a
        model's config.
    out : ndarray, optional
        Same shape and dtype as x; may be x itself (in place).
    backend, n_threads
        As in :func:`fastembed.factorized_lookup`.
    max_position : int
        Positions must be in [0, max_position) (IndexError otherwise).
    mrope_section : sequence of 3 int, optional
        Multimodal RoPE (Qwen2-VL): [t, h, w] frequencies (adding up to rotary_dim / 2) take
        their angles from the temporal, height and width positions; default the scaling's
        ``mrope_section``.
    mrope_interleaved : bool, optional
        Qwen3-VL's interleaved layout of the sections (see :func:`fastembed.mrope_positions`
        and ``fastembed._mrope.mrope_axes``); default the scaling's ``mrope_interleaved``.

    Returns
    -------
    ndarray, shape and dtype of x
    """
    # mrope_interleaved=False is what apply_rope(x, **rope_config(config)) passes for a text model
    if mrope_section is None and (mrope_interleaved is None or mrope_interleaved is False):
        result = apply_rope_fast(
            x, positions, offset, style, rotary_dim, base, scaling, out, backend, n_threads, max_position
        )
        if result is not None:
            return result
    name = backends.resolve(backend)
    x = np.asarray(v.as_numpy(x, "x"))  # a subclass (np.matrix) would change what * means
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., L, D), got {x.shape}")
    v.check_float_dtype(x, "x")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {STYLES}")
    L, D = x.shape[-2], x.shape[-1]
    rotary_dim = _rotary_dim(rotary_dim, D, scaling)
    axes = _mrope_axes(rotary_dim // 2, scaling, mrope_section, mrope_interleaved)
    table_rows, table_positions = _rope_positions(x.shape[:-1], positions, offset, max_position, axes is not None)
    v.output(out, x.shape, x.dtype, {"x": x, "positions": positions, "offset": offset}, in_place=x)
    seq_len = int(table_positions.max()) + 1 if table_positions.size else L
    inv_freq, attention = rope_frequencies(rotary_dim, base=base, scaling=scaling, seq_len=seq_len)
    result = out if out is not None else np.empty_like(x, order="C")
    if x.size == 0:
        return result
    n_threads = resolve(n_threads)
    if table_positions.ndim == 2:
        cos, sin = _mrope_tables(table_positions, inv_freq, attention, axes, x.dtype, name, n_threads)
    elif positions is None and np.ndim(offset) == 0:
        cos, sin = _sequence_tables(table_positions, inv_freq, attention, x.dtype, name, n_threads)
    else:
        cos, sin = _tables(table_positions, inv_freq, attention, x.dtype, name, n_threads)
    x2, result2 = _rows_view(x), _rows_view(result)
    work = result2 if result2 is not None else np.empty((x.size // D, D), x.dtype)
    source = x2 if x2 is not None else x.reshape(-1, D)
    k = backends.kernels(name)
    if k is None or k.positional is None:
        _rope_numpy(source, work, table_rows, cos, sin, rotary_dim // 2, style == "neox")
    else:
        threads = k.for_work(n_threads, x.size)  # a small call on one thread: waking a second costs more
        k.rope_rows(source, work, table_rows, cos, sin, rotary_dim // 2, style == "neox", L, threads)
    if result2 is None:
        result[...] = work.reshape(x.shape)
    return result


def _rotary_dim(rotary_dim, D, scaling):
    """The rotated width: given, or from the scaling's partial_rotary_factor, else D; even and <= D.
    A given width must agree with the factor, unless x holds only the rotated features."""
    scaling = scaling if isinstance(scaling, dict) else {}
    factor = scaling.get("partial_rotary_factor")
    proportional = scaling.get("rope_type", scaling.get("type")) == "proportional"
    implied = None if factor is None or proportional else int(D * v.as_real(factor, "partial_rotary_factor", above=0))
    if rotary_dim is None:
        rotary_dim = D if implied is None else implied
    elif implied is not None and implied != rotary_dim and rotary_dim != D:  # D == rotary_dim: x is the rotary part
        raise ValueError(
            f"rotary_dim {rotary_dim} disagrees with the scaling's partial_rotary_factor {factor} "
            f"(int({D} x {factor}) = {implied})"
        )
    rotary_dim = check_rotary_dim(rotary_dim)
    if rotary_dim > D:
        raise ValueError(f"rotary_dim {rotary_dim} exceeds the feature size {D}")
    return rotary_dim


def _rows_view(a):
    """a as a (rows, D) view without copying, or None when that needs a copy."""
    try:
        return a.reshape(-1, a.shape[-1], copy=False)
    except (ValueError, TypeError):
        if a.flags.c_contiguous:
            return a.reshape(-1, a.shape[-1])
        return None


def _rope_positions(lead_shape, positions, offset, max_position, multimodal):
    """(table row per x row (int64, flat), the positions of the table rows: (n,), or (3, n)
    for multimodal positions)."""
    L = lead_shape[-1]
    n_rows = int(np.prod(lead_shape))
    if positions is not None and not _is_zero(offset):
        raise ValueError("give either offset or positions, not both")
    if positions is None and np.ndim(offset) == 0:
        offset = v.check_offset(offset, L, max_position)
        table_positions = np.arange(offset, offset + L, dtype=np.int64)
        return _sequence_rows(n_rows, L), table_positions
    if positions is None:
        positions = _row_offsets(offset, lead_shape, max_position)
    elif multimodal:
        grid = _mrope_grid(positions, max_position)
        shape = grid.shape[1:]
        try:
            rows = np.broadcast_to(np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape), lead_shape)
        except ValueError:
            raise ValueError(
                f"positions of shape {grid.shape} (3 axes of {shape}) do not broadcast to x.shape[:-1] = {lead_shape}"
            ) from None
        return np.ascontiguousarray(rows).reshape(n_rows), grid.reshape(3, -1)
    source = _as_positions(positions, limit=max_position)
    if source.count is None:
        flat, shape = source.array, source.shape
    else:
        flat, shape = source.chunk(0, source.count), (source.count,)
    try:
        pos = np.broadcast_to(flat.reshape(shape), lead_shape)
    except ValueError:
        raise ValueError(f"positions of shape {shape} do not broadcast to x.shape[:-1] = {lead_shape}") from None
    lo, hi = (int(flat.min()), int(flat.max())) if flat.size else (0, -1)
    if flat.size <= L * 4 or flat.size < 4096 or hi - lo + 1 > 2 * flat.size:
        # few positions, or positions spread far apart: one table row per distinct position
        table_positions, inverse = np.unique(flat, return_inverse=True)
        rows = np.broadcast_to(inverse.reshape(shape), lead_shape)
    else:
        table_positions = np.arange(lo, hi + 1, dtype=np.int64)
        rows = pos - lo
    return np.ascontiguousarray(rows, dtype=np.int64).reshape(n_rows), table_positions


# Tables derived from a call's shape and scalars alone (never from an array the caller could change)
# are kept, read-only, the KEPT_TABLES most recent of each kind up to KEPT_TABLE_BYTES each (at most
# 64 MB in all): built afresh, the 1 MB row index and the cos/sin tables of RoPE (4, 32, 1024, 128)
# took 1.3 of its 3.8 ms on an Intel Xeon.
KEPT_TABLES = 4
KEPT_TABLE_BYTES = 8 << 20


def _read_only(a):
    a.flags.writeable = False
    return a


@functools.lru_cache(maxsize=KEPT_TABLES)
def _kept_sequence_rows(n_rows, L):
    return _read_only(_tiled_arange(n_rows, L))


def _sequence_rows(n_rows, L):
    """The table row of each x row when every sequence takes positions offset + arange(L): l."""
    if 8 * n_rows <= KEPT_TABLE_BYTES:
        return _kept_sequence_rows(n_rows, L)
    return _tiled_arange(n_rows, L)


def _tiled_arange(n_rows, L):
    return np.tile(np.arange(L, dtype=np.int64), n_rows // L if L else 0)


@functools.lru_cache(maxsize=KEPT_TABLES)
def _kept_tables(start, stop, inv_freq_bytes, attention, dtype, backend):
    inv_freq = np.frombuffer(inv_freq_bytes)
    positions = np.arange(start, stop, dtype=np.int64)
    return tuple(_read_only(t) for t in _tables(positions, inv_freq, attention, np.dtype(dtype), backend, None))


def _sequence_tables(positions, inv_freq, attention, dtype, backend, n_threads):
    """_tables of consecutive positions (an arange), kept when small."""
    if 2 * positions.size * inv_freq.size * np.dtype(dtype).itemsize <= KEPT_TABLE_BYTES and positions.size:
        key = (int(positions[0]), int(positions[-1]) + 1, inv_freq.astype(np.float64).tobytes(), float(attention))
        return _kept_tables(*key, np.dtype(dtype).str, backend)
    return _tables(positions, inv_freq, attention, dtype, backend, n_threads)


def _is_zero(offset):
    return np.ndim(offset) == 0 and not isinstance(offset, (bool, np.bool_)) and offset == 0


def _row_offsets(offset, lead_shape, max_position):
    """Positions offset[b] + l, shape (B, 1, ..., 1, L), from one offset per batch row."""
    offsets = v.integer_array(offset, "offset")
    if len(lead_shape) < 2 or offsets.shape != (lead_shape[0],):
        raise ValueError(
            f"an offset array holds one offset per batch row: shape ({lead_shape[0] if len(lead_shape) > 1 else 'B'},) "
            f"for x of shape {lead_shape + ('D',)} (at least 3-D), got {offsets.shape}"
        )
    L = lead_shape[-1]
    if offsets.size and (offsets.min() < 0 or int(offsets.max()) + L > max_position):
        bad = int(offsets.min()) if offsets.min() < 0 else int(offsets.max())
        raise IndexError(f"positions {bad}..{bad + L - 1} are outside [0, {max_position})")
    sequence = np.arange(L, dtype=np.int64)
    return offsets.astype(np.int64).reshape((-1,) + (1,) * (len(lead_shape) - 1)) + sequence


def _rope_numpy(x, out, rows, cos, sin, half, neox):
    c, s = cos[rows], sin[rows]
    if neox:
        a, b = x[:, :half], x[:, half : 2 * half]
        first, second = slice(0, half), slice(half, 2 * half)
    else:
        a, b = x[:, 0 : 2 * half : 2], x[:, 1 : 2 * half : 2]
        first, second = slice(0, 2 * half, 2), slice(1, 2 * half, 2)
    rotated_a = a * c - b * s
    rotated_b = b * c + a * s
    out[:, first] = rotated_a
    out[:, second] = rotated_b
    if out is not x and 2 * half < x.shape[1]:
        out[:, 2 * half :] = x[:, 2 * half :]


def rope_permutation(
    head_dim: int, from_style: str = "gptj", to_style: str = "neox", rotary_dim: int | None = None
) -> NDArray[np.intp]:
    """Feature order that turns one rotary convention into the other within a head.

    ``perm[j]`` is the source feature placed at j: taking the rows of a q/k
    projection weight in this order (per head) makes a checkpoint trained with
    ``from_style`` give identical attention scores with ``to_style``. Features
    from rotary_dim on keep their place.
    """
    head_dim = int(head_dim)
    rotary_dim = head_dim if rotary_dim is None else check_rotary_dim(rotary_dim)
    if from_style not in STYLES or to_style not in STYLES:
        raise ValueError(f"styles must be in {STYLES}")
    if rotary_dim > head_dim:
        raise ValueError(f"rotary_dim {rotary_dim} exceeds head_dim {head_dim}")
    half = rotary_dim // 2
    perm = np.arange(head_dim)
    if from_style == to_style:
        return perm
    pairs = np.arange(half)
    gptj_to_neox = np.concatenate([2 * pairs, 2 * pairs + 1])  # neox slot j takes gptj feature perm[j]
    perm[:rotary_dim] = gptj_to_neox if from_style == "gptj" else np.argsort(gptj_to_neox)
    return perm


def convert_rope_weight(
    weight: ArrayLike, n_heads: int, from_style: str = "gptj", to_style: str = "neox", rotary_dim: int | None = None
) -> np.ndarray:
    """Permute the output rows of a q or k projection weight (n_heads * head_dim, in_features)
    from one rotary convention to the other (the Llama checkpoint conversion).

    Returns a new array; a bias of shape (n_heads * head_dim,) converts the same way.
    """
    weight = np.asarray(weight)
    rows = weight.shape[0]
    if rows % n_heads:
        raise ValueError(f"{rows} rows do not split into {n_heads} heads")
    head_dim = rows // n_heads
    perm = rope_permutation(head_dim, from_style, to_style, rotary_dim)
    order = (np.arange(n_heads)[:, None] * head_dim + perm[None, :]).reshape(-1)
    return weight[order]
