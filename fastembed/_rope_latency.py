"""apply_rope's latency path: the commonest calls (a C-contiguous float32 or float64 ndarray,
positions counted from an int offset or given as an integer array within 64 of each other,
frequencies that do not depend on the positions), checked against scalars whose validation is
cached, then rotated by one kernel call.

Anything it cannot prove valid cheaply sends the call back to the general path (``None``), which
checks and reports it in its own order; both paths make the same kernel call on the same tables,
so they give the same bits. A decoding step (x of shape (1, 32, 1, 128), the offset advancing)
took 46 us on the general path, most of it validation, frequency setup and a fresh cos/sin row in
Python, against a 3 us kernel; it takes 7-8 us here (Zen 4).
"""

import functools

import numpy as np

from . import _rope, backends
from ._positional import DIRECT_TABLE_ROWS, MAX_POSITION
from ._rope_frequencies import rope_type
from ._threads import resolve

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_POSITION_DEPENDENT = ("dynamic", "longrope")  # their frequencies change with the sequence length
SETUPS = 64  # distinct (D, rotary_dim, base, scaling) setups kept
BLOCKS = 16  # blocks of cos/sin rows kept, 64 KB each at most
MAX_POSITIONS_GIVEN = 1 << 16  # larger position arrays: the general path (its checks cost little there)


def apply_rope_fast(x, positions, offset, style, rotary_dim, base, scaling, out, backend, n_threads, max_position):
    """``apply_rope(x, positions=positions, offset=offset, ...)`` (multimodal sections not given)
    when every argument is of the common kind, else None for the general path to run."""
    if (
        type(x) is not np.ndarray
        or x.ndim < 2
        or x.dtype not in _FLOATS
        or not x.flags.c_contiguous
        or x.size == 0
        or type(backend) is not str
        or backend not in ("auto", "cython")
        or type(style) is not str
        or style not in _rope.STYLES
        or type(max_position) is not int
    ):
        return None
    k = backends.cython_kernels()  # what "auto" and "cython" run where it loads
    if k is None or k.name != "cython" or k.positional is None:
        return None
    limit = min(max_position, MAX_POSITION)
    if positions is None:
        span = _sequence_span(offset, x.shape, x.size // x.shape[-1], limit)
    else:
        span = _positions_span(positions, offset, x.shape, limit)
    if span is None:
        return None
    first, end, rows = span
    D = x.shape[-1]
    try:
        setup = _setup(D, _typed(rotary_dim), _typed(base), _frozen(scaling))
        threads = resolve(n_threads)
    except (TypeError, ValueError, IndexError):  # unhashable, or invalid: the general path says which
        return None
    result = None if setup is None else _output(x, out)
    if result is None or (positions is not None and out is not None and np.may_share_memory(out, positions)):
        return None  # the general path reports the overlap
    start = first - first % DIRECT_TABLE_ROWS
    if end <= start + DIRECT_TABLE_ROWS:  # within one block of directly computed positions
        cos, sin = _block_tables(setup, start, x.dtype.char)
        cos, sin = cos[first - start : end - start], sin[first - start : end - start]
    else:
        table_positions = np.arange(first, end, dtype=np.int64)
        cos, sin = _rope._sequence_tables(table_positions, setup.inv_freq, setup.attention, x.dtype, k.name, threads)
    source, target = x.reshape(-1, D), result.reshape(-1, D)
    neox, L = style == "neox", x.shape[-2]
    k.rope_rows(source, target, rows, cos, sin, setup.rotary_dim // 2, neox, L, k.for_work(threads, x.size))
    return result


def _sequence_span(offset, shape, n_rows, limit):
    """(first position, end, table row of each x row) for positions offset + arange(L), or None."""
    if type(offset) is not int:
        if not isinstance(offset, np.integer):
            return None
        offset = int(offset)
    L = shape[-2]
    if offset < 0 or offset + L > limit:
        return None
    return offset, offset + L, _rope._sequence_rows(n_rows, L)


def _positions_span(positions, offset, shape, limit):
    """(first position, end, table row of each x row) for an integer array of positions that
    broadcasts to x.shape[:-1] and spans at most one block, or None."""
    if (
        type(offset) is not int
        or offset != 0
        or type(positions) is not np.ndarray
        or positions.dtype.kind not in "iu"
        or not 1 <= positions.ndim < len(shape)
        or not positions.size
        or positions.size > MAX_POSITIONS_GIVEN
    ):
        return None
    try:
        spread = np.broadcast_to(positions, shape[:-1])
    except ValueError:
        return None
    # checked on a private copy, which another thread writing to positions cannot change (values
    # from 2**63 on wrap to negative ones, which fail the check)
    rows = spread.astype(np.int64).reshape(-1)
    first, last = int(rows.min()), int(rows.max())
    if first < 0 or last >= limit or last - first >= DIRECT_TABLE_ROWS:
        return None
    rows -= first
    return first, last + 1, rows


def _output(x, out):
    """The array the call writes: a fresh one, x itself, or an ``out`` proven valid and apart
    from x; None when the general path must check ``out``."""
    if out is None:
        return np.empty_like(x)
    if out is x:
        return out if out.flags.writeable else None
    if (
        type(out) is np.ndarray
        and out.shape == x.shape
        and out.dtype == x.dtype
        and out.flags.c_contiguous
        and out.flags.writeable
        and not np.may_share_memory(out, x)
    ):
        return out
    return None


def _typed(value):
    """A cache key that tells 1, 1.0 and True apart (the general path accepts some, not all)."""
    return type(value), value


def _frozen(scaling):
    """A scaling dict of scalars as a hashable key (TypeError for anything else)."""
    if scaling is None:
        return None
    if type(scaling) is not dict:
        raise TypeError("not a plain dict")
    return tuple(sorted((key, type(value), value) for key, value in scaling.items()))


@functools.lru_cache(maxsize=BLOCKS)
def _block_tables(setup, start, dtype):
    """(cos, sin), read-only, of the DIRECT_TABLE_ROWS positions from ``start``, as the general path
    builds the tables of so few positions: np.sin and np.cos element by element, so the rows of
    any run of positions inside the block carry the bits that building that run alone gives. The
    steps of a decoding loop read one block 64 times over instead of building a table each."""
    positions = np.arange(start, start + DIRECT_TABLE_ROWS, dtype=np.int64)
    tables = _rope._kernel_tables(positions, setup.inv_freq, setup.attention, np.dtype(dtype), None, 1)
    return tuple(_rope._read_only(table) for table in tables)


class _Setup:
    """A call's rotary width and frequencies (inv_freq read-only), hashed by identity: the key of
    its blocks of tables."""

    __slots__ = ("rotary_dim", "inv_freq", "attention")

    def __init__(self, rotary_dim, inv_freq, attention):
        self.rotary_dim, self.inv_freq, self.attention = rotary_dim, _rope._read_only(inv_freq), attention


@functools.lru_cache(maxsize=SETUPS)
def _setup(D, rotary_dim, base, scaling):
    """The _Setup of these scalars by the general path's own checks, or None where the frequencies
    depend on the positions or the call is multimodal."""
    scaling = None if scaling is None else {key: value for key, _, value in scaling}
    if rope_type(scaling) in _POSITION_DEPENDENT:
        return None
    rotary = _rope._rotary_dim(rotary_dim[1], D, scaling)
    if _rope._mrope_axes(rotary // 2, scaling, None, None) is not None:
        return None
    inv_freq, attention = _rope.rope_frequencies(rotary, base=base[1], scaling=scaling)
    return _Setup(rotary, inv_freq, float(attention))
