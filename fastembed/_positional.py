"""Sinusoidal position tables in every public layout, and learned-table positions
(fairseq's make_positions, positions from an attention mask).

Conventions of ``sinusoidal`` (w_i the frequency of pair i, h = d // 2):

=========================  ==============================  =====================================
layout / endpoint          columns                         w_i
=========================  ==============================  =====================================
"interleaved"              2i: sin(p w_i), 2i+1: cos        base^(-2i/d)      (Vaswani, BERT-style,
                                                                              DistilBERT)
"concat", endpoint=False   [sin(p w) | cos(p w)]           base^(-i/(d/2))   (GPT-J, Marian)
"concat", endpoint=True    [sin(p w) | cos(p w)]           base^(-i/(h-1))   (tensor2tensor, fairseq)
=========================  ==============================  =====================================

Odd d: "interleaved" and "concat" without endpoint give sin the extra column
(its frequency continues the formula, as DistilBERT's and Marian's code do);
"concat" with endpoint=True keeps h = d // 2 frequencies and pads a zero
column, as fairseq and tensor2tensor do. With endpoint=True and h == 1 the only
frequency is 1 (fairseq divides by zero there).

Angles are exact in float64 at any position: values come from angle addition
over small float64 tables (see kernels/_positional.pyx), never from float32
angles.
"""

import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _validation as v
from . import backends
from ._threads import resolve

ANGLE_BLOCK = 1024
MAX_POSITION = 2**40
CACHE_BYTES = 64 * 2**20


class _TableCache:
    """Least-recently-used tables, bounded by their total bytes; entries are read-only."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self._entries = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()  # re-entrant: a signal handler on this thread may call in while it is held

    def get(self, key):
        with self._lock:
            table = self._entries.get(key)
            if table is not None:
                self._entries.move_to_end(key)
            return table

    def put(self, key, table):
        if table.nbytes > self.max_bytes:
            return
        table.flags.writeable = False
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = table
            self._bytes += table.nbytes
            while self._bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.nbytes

    def clear(self):
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    @property
    def nbytes(self):
        return self._bytes


table_cache = _TableCache(CACHE_BYTES)


FILL_CHUNK_ROWS = 1 << 20


class PositionSource(NamedTuple):
    """Positions given as a count n (0..n-1, never materialised whole) or as an array."""

    count: int | None
    array: np.ndarray | None  # flat int64 when given as an array
    shape: tuple

    @property
    def size(self):
        return self.count if self.count is not None else self.array.size

    def chunk(self, start, stop):
        if self.count is not None:
            return np.arange(start, stop, dtype=np.int64)
        return self.array[start:stop]

    def chunks(self):
        """(start, stop, positions) over blocks of at most FILL_CHUNK_ROWS rows."""
        for start in range(0, self.size, FILL_CHUNK_ROWS):
            stop = min(start + FILL_CHUNK_ROWS, self.size)
            yield start, stop, self.chunk(start, stop)


def _as_positions(positions, name="positions", limit=MAX_POSITION):
    """A PositionSource for a count n or an integer array of positions in [0, limit)."""
    if isinstance(positions, (int, np.integer)) and not isinstance(positions, (bool, np.bool_)):
        if positions < 0:
            raise ValueError(f"{name} count must be >= 0, got {positions}")
        if positions > limit:
            raise IndexError(f"{name} count {positions} reaches past [0, {limit})")
        return PositionSource(int(positions), None, (int(positions),))
    arr = v.integer_array(positions, name)
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= limit:
            raise IndexError(f"{name} contains {int(lo if lo < 0 else hi)}, outside [0, {limit})")
    return PositionSource(None, np.ascontiguousarray(arr, dtype=np.int64).reshape(-1), arr.shape)


def _frequencies(d, layout, base, endpoint):
    """(w, n_sin, n_cos, sin_col, cos_col, step, zero_last_column)."""
    half = d // 2
    if layout == "interleaved":
        if endpoint:
            raise ValueError("endpoint=True applies to layout='concat' only")
        n_sin = (d + 1) // 2
        return base ** (-2.0 * np.arange(n_sin) / d), n_sin, half, 0, 1, 2, False
    if layout == "concat":
        if endpoint:
            w = base ** (-np.arange(half) / (half - 1)) if half > 1 else np.ones(half)
            return w, half, half, 0, half, 1, d % 2 == 1
        n_sin = (d + 1) // 2
        return base ** (-2.0 * np.arange(n_sin) / d), n_sin, half, 0, n_sin, 1, False
    raise ValueError(f"unknown layout {layout!r}; choose 'interleaved' or 'concat'")


DIRECT_TABLE_ROWS = 64


def sincos_table(positions, w, k=None, n_threads=1):
    """(sin, cos) of positions[:, None] * w in float64, shape (n, h).

    Up to 64 positions (or without kernels) directly with np.sin/np.cos;
    beyond, by the angle-addition kernel over tables built the same way, so
    building tables for n positions costs O(sqrt(n)) sin/cos evaluations.
    """
    if positions.size <= DIRECT_TABLE_ROWS or k is None or k.positional is None:
        angles = positions.astype(np.float64)[:, None] * w[None, :]
        return np.sin(angles), np.cos(angles)
    h = w.size
    both = np.empty((positions.size, 2 * h))
    _kernel_fill(k, both, positions, w, h, h, 0, h, 1, n_threads)
    return both[:, :h], both[:, h:]


def _kernel_fill(k, out, positions, w, n_sin, n_cos, sin_col, cos_col, step, n_threads):
    """sin/cos columns of ``out`` by the angle-addition kernel of kernel set ``k``, on at most
    ``n_threads`` threads (fewer for a small fill)."""
    hi, lo, tables = angle_tables(positions, w, k, n_threads)
    threads = k.for_work(n_threads, positions.size * (n_sin + n_cos))
    k.sincos_rows(out, hi, lo, *tables, n_sin, n_cos, sin_col, cos_col, step, threads)


def angle_tables(positions, w, k=None, n_threads=1):
    """(hi, lo, (sin_hi, cos_hi, sin_lo, cos_lo)) for angle addition: p = hi_value * B + lo.

    B is a power of two near sqrt(span), so both tables have ~sqrt(n) rows;
    every table is float64 and exact to rounding.
    """
    span = int(positions.max() - positions.min()) + 1 if positions.size else 1
    block = 1 << max(4, min(ANGLE_BLOCK.bit_length() - 1, (span.bit_length() + 1) // 2))
    q, lo = np.divmod(positions, block)
    if q.size and q.max() - q.min() + 1 <= 2 * (q.size // block + 1) + 64:
        q0 = q.min()
        hi_values = np.arange(q0, q.max() + 1, dtype=np.int64)
        hi = q - q0
    else:
        hi_values, hi = np.unique(q, return_inverse=True)
    lo_span = int(lo.max()) + 1 if lo.size else 1
    # (hi * block) * w == hi * (block * w) exactly (block is a power of two): the
    # recursion sees small consecutive integers, so its span shrinks by block
    sin_hi, cos_hi = sincos_table(hi_values, w * block, k, n_threads)
    sin_lo, cos_lo = sincos_table(np.arange(lo_span, dtype=np.int64), w, k, n_threads)
    tables = tuple(np.ascontiguousarray(t) for t in (sin_hi, cos_hi, sin_lo, cos_lo))
    return np.ascontiguousarray(hi, dtype=np.int64), np.ascontiguousarray(lo, dtype=np.int64), tables


def fill_sincos(out, positions, w, n_sin, n_cos, sin_col, cos_col, step, backend="auto", n_threads=None):
    """Write sin(p w_i) / cos(p w_i) of flat ``positions`` into the columns of ``out`` (rows x width)."""
    if out.shape[0] == 0:
        return out
    k = backends.kernels(backend)
    if k is None or k.positional is None:
        sin, cos = sincos_table(positions, w)
        out[:, sin_col : sin_col + step * n_sin : step] = sin[:, :n_sin]
        out[:, cos_col : cos_col + step * n_cos : step] = cos[:, :n_cos]
        return out
    _kernel_fill(k, out, positions, w, n_sin, n_cos, sin_col, cos_col, step, resolve(n_threads))
    return out


def sinusoidal(
    positions: int | ArrayLike,
    d: int,
    *,
    layout: str = "interleaved",
    base: float = 10000.0,
    endpoint: bool = False,
    dtype: DTypeLike = np.float32,
    cache: bool = True,
    out: NDArray[np.floating] | None = None,
    backend: str = "auto",
    n_threads: int | None = None,
) -> NDArray[np.floating]:
    """Sinusoidal position table.

    ``interleaved``: PE[p, 2i] = sin(p w_i), PE[p, 2i+1] = cos(p w_i), w_i = base^(-2i/d).
    ``concat``: PE[p, :h'] = sin(p w), PE[p, h':] = cos(p w), w_i = base^(-i/(d/2))
    (``endpoint=True``: w_i = base^(-i/(h-1)), h = d // 2). See the module docstring
    for odd d and the models each convention comes from.

    Parameters
    ----------
    positions : int or array_like of int
        A count n (rows 0..n-1) or positions of any shape, each in [0, 2**40).
    d : int
        Width (>= 1); odd d as described in the module docstring.
    layout : {"interleaved", "concat"}
    base : float
    endpoint : bool
        ``concat`` only: the tensor2tensor / fairseq frequencies.
    dtype : float32 or float64
        Output dtype; angles and sin/cos are always float64.
    cache : bool
        For a count n, keep the table in a least-recently-used cache bounded to
        64 MiB and return it read-only; ``cache=False`` returns a fresh array.
    out : ndarray, optional
        Written in place and returned (no cache): for large tables this skips
        the operating system's cost of a fresh allocation.
    backend, n_threads
        As in :func:`fastembed.factorized_lookup`.

    Returns
    -------
    ndarray, shape (n, d) or positions.shape + (d,)
    """
    d = v.as_integer(d, "d", low=1)
    dtype = v.float_dtype(dtype)
    base = v.as_real(base, "base", above=0)
    w, n_sin, n_cos, sin_col, cos_col, step, zero_last = _frequencies(int(d), layout, float(base), endpoint)
    source = _as_positions(positions)
    is_count = source.count is not None
    shape = source.shape + (int(d),)
    if out is not None:
        v.output(out, shape, dtype, {"positions": positions})
        cache = False
    key = (source.size, int(d), layout, float(base), bool(endpoint), dtype.str)
    if is_count and cache:
        hit = table_cache.get(key)
        if hit is not None:
            return hit
    result = out if out is not None else np.empty(shape, dtype=dtype)  # a MemoryError comes first
    in_place = result.flags.c_contiguous
    work = result.reshape(source.size, int(d)) if in_place else np.empty((source.size, int(d)), dtype)
    for start, stop, chunk in source.chunks():
        fill_sincos(work[start:stop], chunk, w, n_sin, n_cos, sin_col, cos_col, step, backend, n_threads)
    if zero_last:
        work[:, -1] = 0
    if not in_place:
        result[...] = work.reshape(shape)
    if is_count and cache:
        table_cache.put(key, result)
    return result


def make_positions(ids: ArrayLike, padding_idx: int) -> NDArray[np.int64]:
    """fairseq's positions for a learned table: non-padding tokens are numbered
    padding_idx + 1, padding_idx + 2, ... along the last axis; padding tokens get padding_idx.

    ``positions = cumsum(ids != padding_idx) * (ids != padding_idx) + padding_idx``.
    Works for left- and right-padded batches alike.
    """
    ids = v.integer_array(ids, "ids")
    mask = (ids != padding_idx).astype(np.int64)
    return np.cumsum(mask, axis=-1) * mask + padding_idx


def positions_from_mask(attention_mask: ArrayLike, fill: int = 1) -> NDArray[np.int64]:
    """Positions of a (left-)padded batch from its attention mask, as Hugging Face models compute them:
    ``cumsum(mask) - 1`` along the last axis, with ``fill`` at masked-out tokens.
    """
    mask = np.asarray(attention_mask)
    if mask.dtype != np.bool_:
        mask = v.integer_array(mask, "attention_mask")
    mask = mask.astype(np.int64)
    positions = np.cumsum(mask, axis=-1) - 1
    return np.where(mask == 0, fill, positions)
