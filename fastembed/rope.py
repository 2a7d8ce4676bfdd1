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

import math

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _validation as v
from . import backends
from ._threads import for_work, resolve
from .positional import MAX_POSITION, _as_positions, sincos_table

STYLES = ("neox", "gptj")
SCALINGS = ("default", "linear", "dynamic", "yarn", "llama3")


def _check_dim(dim, name="rotary_dim"):
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)) or dim < 2 or dim % 2:
        raise ValueError(f"{name} must be an even integer >= 2, got {dim!r}")
    return int(dim)


def _param(scaling, key, default=None, required=False, above=None):
    """``scaling[key]`` as a finite float (> ``above`` when given); ``default`` when absent."""
    kind = scaling.get("rope_type", scaling.get("type"))
    if key in scaling and scaling[key] is not None:
        return v.as_real(scaling[key], f"rope scaling {kind!r} {key}", above=above)
    if required:
        raise ValueError(f"rope scaling {kind!r} needs {key!r}")
    return default


def rope_frequencies(
    dim: int, *, base: float = 10000.0, scaling: dict | None = None, seq_len: int | None = None
) -> tuple[NDArray[np.float64], float]:
    """(inv_freq, attention_factor) for ``dim`` rotary features, as transformers computes them.

    Parameters
    ----------
    dim : int
        Rotary dimensions (even); inv_freq has dim / 2 entries, base^(-2i/dim).
    base : float
        ``rope_theta``.
    scaling : dict, optional
        A config's ``rope_scaling`` / ``rope_parameters``: ``rope_type`` (or
        ``type``) one of "default", "linear" (factor), "dynamic" (factor,
        max_position_embeddings; uses ``seq_len``), "yarn" (factor,
        original_max_position_embeddings, beta_fast=32, beta_slow=1,
        attention_factor, mscale, mscale_all_dim, truncate=True), "llama3"
        (factor, low_freq_factor, high_freq_factor, original_max_position_embeddings).
    seq_len : int, optional
        Current sequence length, for "dynamic".

    Returns
    -------
    inv_freq : ndarray (dim / 2,), float64
    attention_factor : float
    """
    dim = _check_dim(dim)
    base = float(base)
    if not base > 1:
        raise ValueError(f"base must be > 1, got {base}")
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
    inv_freq = 1.0 / base**exponents
    if not scaling:
        return inv_freq, 1.0
    if not isinstance(scaling, dict):
        raise TypeError(f"scaling must be a dict like a config's rope_scaling, got {type(scaling).__name__}")
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in SCALINGS:
        raise ValueError(f"unknown rope scaling {kind!r}; supported: {SCALINGS}")
    if kind == "default":
        return inv_freq, 1.0
    implied = kind == "yarn" and "max_position_embeddings" in scaling and "factor" not in scaling
    factor = _param(scaling, "factor", required=not implied, above=0)
    if factor is None:  # yarn: the extension from the original context to max_position_embeddings
        factor = _param(scaling, "max_position_embeddings", above=0) / _param(
            scaling, "original_max_position_embeddings", required=True, above=0
        )
    if kind == "linear":
        return inv_freq / factor, 1.0
    if kind == "dynamic":
        max_pos = _param(scaling, "max_position_embeddings", required=True, above=0)
        length = max(int(seq_len or max_pos), max_pos)
        base = base * ((factor * length / max_pos) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / base**exponents, 1.0
    if kind == "yarn":
        return _yarn(scaling, dim, base, exponents, factor)
    return _llama3(scaling, inv_freq, factor), 1.0


def _yarn(scaling, dim, base, exponents, factor):
    original = _param(scaling, "original_max_position_embeddings", required=True, above=0)

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = _param(scaling, "attention_factor", above=0)
    if attention is None:
        m, m_all = _param(scaling, "mscale"), _param(scaling, "mscale_all_dim")
        attention = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)
        if not (math.isfinite(attention) and attention > 0):
            raise ValueError(
                f"rope scaling 'yarn' mscale {m} / mscale_all_dim {m_all} give attention factor {attention}"
            )
    beta_fast = _param(scaling, "beta_fast", above=0) or 32
    beta_slow = _param(scaling, "beta_slow", above=0) or 1

    def correction_dim(rotations):
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    extrapolation = 1 - ramp
    pos_freqs = base**exponents
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, float(attention)


def _llama3(scaling, inv_freq, factor):
    low = _param(scaling, "low_freq_factor", required=True, above=0)
    high = _param(scaling, "high_freq_factor", required=True, above=low)
    old = _param(scaling, "original_max_position_embeddings", required=True, above=0)
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > old / low, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    return np.where(medium, smoothed, scaled)


def rope_cos_sin(
    positions: int | ArrayLike,
    dim: int,
    *,
    base: float = 10000.0,
    scaling: dict | None = None,
    seq_len: int | None = None,
    dtype: DTypeLike = np.float64,
    backend: str = "auto",
    n_threads: int | None = None,
) -> tuple[NDArray[np.floating], NDArray[np.floating]]:
    """cos and sin of theta = p * inv_freq (angles in float64), times the attention factor.

    Parameters
    ----------
    positions : int or array_like of int
        A count n (positions 0..n-1) or positions of any shape, in [0, 2**40).
    dim : int
        Rotary dimensions (even).
    base, scaling, seq_len
        As in :func:`rope_frequencies`.
    dtype : float32 or float64

    Returns
    -------
    cos, sin : ndarray, shape positions.shape + (dim / 2,)
        Frequency i in column i. For transformers' (..., dim) layout use
        ``np.concatenate([cos, cos], -1)``; for the gptj layout ``np.repeat(cos, 2, -1)``.
    """
    inv_freq, attention = rope_frequencies(dim, base=base, scaling=scaling, seq_len=seq_len)
    source = _as_positions(positions)
    half = inv_freq.size
    cos = np.empty((source.size, half), dtype=dtype)  # a MemoryError comes first
    sin = np.empty((source.size, half), dtype=dtype)
    for start, stop, chunk in source.chunks():
        cos[start:stop], sin[start:stop] = _tables(chunk, inv_freq, attention, cos.dtype, backend, n_threads)
    return cos.reshape(source.shape + (half,)), sin.reshape(source.shape + (half,))


def _tables(flat, inv_freq, attention, dtype, backend, n_threads):
    """(cos, sin) in ``dtype``, (n, half), from float64 angles, times the attention factor."""
    sin, cos = sincos_table(
        flat, inv_freq, backends.kernels(backend), for_work(resolve(n_threads), flat.size * inv_freq.size)
    )
    if attention != 1.0:
        sin, cos = sin * attention, cos * attention
    return np.ascontiguousarray(cos, dtype=dtype), np.ascontiguousarray(sin, dtype=dtype)


def apply_rope(
    x: NDArray[np.floating],
    *,
    positions: ArrayLike | None = None,
    offset: int = 0,
    style: str = "neox",
    rotary_dim: int | None = None,
    base: float = 10000.0,
    scaling: dict | None = None,
    out: NDArray[np.floating] | None = None,
    backend: str = "auto",
    n_threads: int | None = None,
    max_position: int = MAX_POSITION,
) -> NDArray[np.floating]:
    """Rotary position embedding of x, fused: one read and one write per element.

    ``out[..., l, pair] = rotate(x[..., l, pair], theta = position(l) * inv_freq)`` (module docstring).

    Parameters
    ----------
    x : ndarray, shape (..., L, D), float32 or float64
    positions : array_like of int, optional
        Broadcast against x.shape[:-1]; default ``offset + arange(L)``.
    offset : int
        First position when ``positions`` is not given (decoding with a cache).
    style : {"neox", "gptj"}
    rotary_dim : int, optional
        Rotate only the first rotary_dim features (even, <= D); default D.
    base, scaling
        As in :func:`rope_frequencies`; "dynamic" scaling uses the largest position + 1 as seq_len.
    out : ndarray, optional
        Same shape and dtype as x; may be x itself (in place).
    backend, n_threads
        As in :func:`fastembed.factorized_lookup`.
    max_position : int
        Positions must be in [0, max_position) (IndexError otherwise).

    Returns
    -------
    ndarray, shape and dtype of x
    """
    name = backends.resolve(backend)
    x = np.asarray(v.as_numpy(x, "x"))  # a subclass (np.matrix) would change what * means
    if x.ndim < 2:
        raise ValueError(f"x must have shape (..., L, D), got {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"x must be float32 or float64, got {x.dtype}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of {STYLES}")
    L, D = x.shape[-2], x.shape[-1]
    rotary_dim = D if rotary_dim is None else rotary_dim
    rotary_dim = _check_dim(rotary_dim)
    if rotary_dim > D:
        raise ValueError(f"rotary_dim {rotary_dim} exceeds the feature size {D}")
    table_rows, table_positions = _rope_positions(x.shape[:-1], positions, offset, max_position)
    v.output(out, x.shape, x.dtype, {"x": x, "positions": positions}, in_place=x)
    seq_len = int(table_positions.max()) + 1 if table_positions.size else L
    inv_freq, attention = rope_frequencies(rotary_dim, base=base, scaling=scaling, seq_len=seq_len)
    result = out if out is not None else np.empty_like(x, order="C")
    if x.size == 0:
        return result
    n_threads = resolve(n_threads)
    cos, sin = _tables(table_positions, inv_freq, attention, x.dtype, name, n_threads)
    x2, result2 = _rows_view(x), _rows_view(result)
    work = result2 if result2 is not None else np.empty((x.size // D, D), x.dtype)
    source = x2 if x2 is not None else x.reshape(-1, D)
    k = backends.kernels(name)
    if k is None or k.positional is None:
        _rope_numpy(source, work, table_rows, cos, sin, rotary_dim // 2, style == "neox")
    else:
        skipped = k.rope_rows(source, work, table_rows, cos, sin, rotary_dim // 2, style == "neox", n_threads)
        if skipped:
            raise RuntimeError(f"rope_rows skipped {skipped} rows")
    if result2 is None:
        result[...] = work.reshape(x.shape)
    return result


def _rows_view(a):
    """a as a (rows, D) view without copying, or None when that needs a copy."""
    try:
        return a.reshape(-1, a.shape[-1], copy=False)
    except (ValueError, TypeError):
        if a.flags.c_contiguous:
            return a.reshape(-1, a.shape[-1])
        return None


def _rope_positions(lead_shape, positions, offset, max_position):
    """(table row per x row (int64, flat), the positions of the table rows)."""
    L = lead_shape[-1]
    n_rows = int(np.prod(lead_shape))
    if positions is None:
        offset = v.check_offset(offset, L, max_position)
        table_positions = np.arange(offset, offset + L, dtype=np.int64)
        rows = np.broadcast_to(np.arange(L, dtype=np.int64), lead_shape)
        return np.ascontiguousarray(rows).reshape(n_rows), table_positions
    if offset != 0:
        raise ValueError("give either offset or positions, not both")
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
    rotary_dim = head_dim if rotary_dim is None else _check_dim(rotary_dim)
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
