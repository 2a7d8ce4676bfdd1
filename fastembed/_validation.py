"""Input checks shared by every public function and every backend.

Each check raises before anything is written, with one message whatever the
backend: IndexError for an index outside its table, TypeError for ids that
are not integers, ValueError for shape, rank, dtype and ``out`` mismatches.
"""

import functools
import math
import numbers
from typing import NamedTuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INDEX_DTYPES = (np.dtype(np.int64), np.dtype(np.int32))
_UNSIGNED = {np.dtype(f"{k}{n}"): np.dtype(f"u{n}") for k in "iu" for n in (1, 2, 4, 8)}


def as_lookup_table(table, name="table"):
    """(table, output dtype): a float32/float64 matrix, or a CompactTable (float16, bfloat16,
    int8 rows) whose lookups produce float32."""
    if type(table) is np.ndarray and table.ndim == 2 and table.dtype in FLOAT_DTYPES:
        return usable_strides(table), table.dtype  # the common case, without the general checks
    from .quantize import as_compact

    compact = as_compact(table) if isinstance(table, np.ndarray) or not hasattr(table, "__array__") else None
    if compact is not None:
        return compact, np.dtype(np.float32)
    table = as_float_matrix(table, name)
    return table, table.dtype


def as_float_matrix(x, name, dtype=None):
    """A 2-D float32/float64 array (any strides) whose dtype is ``dtype`` when given."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {x.shape}")
    check_float_dtype(x, name, dtype)
    return usable_strides(x)


def check_float_dtype(x, name, dtype=None):
    if dtype is None:
        if x.dtype not in FLOAT_DTYPES:
            raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
    elif x.dtype != dtype:
        raise ValueError(f"{name} must have the table's dtype {dtype}, got {x.dtype}")


def usable_strides(x):
    """``x`` itself, or a copy when its strides are not whole elements (kernels step by elements)."""
    flags = x.flags
    if flags.aligned and (flags.c_contiguous or flags.f_contiguous):
        return x
    size = x.itemsize
    if not flags.aligned or any(s % size for s in x.strides):
        return np.ascontiguousarray(x)
    return x


def as_vector(x, name, length, dtype):
    if x is None:
        return None
    x = np.asarray(x)
    if x.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {x.shape}")
    check_float_dtype(x, name, dtype)
    return np.ascontiguousarray(x)


def as_scale(scale):
    if type(scale) is float:
        return scale
    if isinstance(scale, np.ndarray) and scale.ndim == 0:
        scale = scale.item()
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be a real number, got {scale!r}")
    return float(scale)


def as_index_array(x, name, bound, what="table"):
    """Integer indices checked against [0, bound): returns a contiguous int32/int64 array.

    The shape is kept; int8/int16/uint8/uint16 become int32, wider unsigned
    types int64 (after the range check, so 2**64 - 1 is an IndexError, not -1).
    """
    ready = type(x) is np.ndarray and x.dtype in INDEX_DTYPES and x.flags.c_contiguous
    arr = x if ready else _integer_array(x, name)  # the common case needs no conversion
    # One reduction over the ids seen as unsigned, where that maps every negative id above the bound.
    unsigned = _UNSIGNED.get(arr.dtype) if bound <= 1 << (8 * arr.itemsize - 1) else None
    if arr.size and (unsigned is None or arr.view(unsigned).max() >= bound):
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= bound:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{name} contains {int(bad)}, outside [0, {bound}) of the {what}")
    if ready:
        return arr
    target = np.int32 if arr.dtype.itemsize < 4 or arr.dtype == np.int32 else np.int64
    return np.asarray(arr, dtype=target, order="C")


def _integer_array(x, name):
    was_array = isinstance(x, np.ndarray)
    arr = np.asarray(x)
    if arr.dtype == object:
        flat = arr.reshape(-1)
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in flat):
            raise TypeError(f"{name} must be integers, got objects that are not")
        if flat.size:
            lo, hi = min(flat), max(flat)
            if lo < np.iinfo(np.int64).min or hi > np.iinfo(np.int64).max:
                raise IndexError(f"{name} contains {lo if lo < 0 else hi}, outside the int64 range")
        return arr.astype(np.int64)
    if arr.dtype.kind in "iu":
        return arr
    if arr.size == 0 and not was_array and arr.dtype.kind == "f":
        return arr.astype(np.int64)  # [] parses as float64: an empty list of ids is fine
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must be integers, got booleans")
    raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")


def check_offset(offset, length, limit, where=""):
    """Positions offset .. offset + length - 1 along a sequence must be integers in [0, limit)."""
    if isinstance(offset, (bool, np.bool_)) or not isinstance(offset, (int, np.integer)):
        raise TypeError(f"offset must be an integer, got {offset!r}")
    if offset < 0 or offset + length > limit:
        raise IndexError(f"positions {offset}..{offset + length - 1} are outside [0, {limit}){where}")


class Positions(NamedTuple):
    table: np.ndarray | None
    rows: np.ndarray | None  # int64, one per output row (flattened ids order)


def positions(ids_shape, pos_table, offset, position_ids, d, dtype):
    """Rows of ``pos_table`` added at each id: ``offset + l`` along the last axis, or ``position_ids``."""
    if pos_table is None:
        if position_ids is not None:
            raise ValueError("position_ids given without a pos_table")
        if offset != 0:
            raise ValueError("offset given without a pos_table")
        return Positions(None, None)
    table = np.asarray(pos_table)
    if table.ndim != 2 or table.shape[1] != d:
        raise ValueError(f"pos_table must have shape (n_positions, {d}), got {table.shape}")
    check_float_dtype(table, "pos_table", dtype)
    table = usable_strides(table)
    n_pos = table.shape[0]
    if position_ids is not None:
        if offset != 0:
            raise ValueError("give either offset or position_ids, not both")
        rows = as_index_array(position_ids, "position_ids", n_pos, what="pos_table")
        try:
            rows = np.broadcast_to(rows, ids_shape)
        except ValueError:
            raise ValueError(
                f"position_ids of shape {rows.shape} do not broadcast to ids of shape {ids_shape}"
            ) from None
    else:
        check_offset(offset, ids_shape[-1] if ids_shape else 1, n_pos, " of the pos_table")
        return Positions(table, _sequence_rows(ids_shape, int(offset)))
    return Positions(table, np.ascontiguousarray(rows, dtype=np.int64).reshape(-1))


SEQUENCE_CACHE_MAX_IDS = 1 << 16


def _sequence_rows(ids_shape, offset):
    """offset + l for every id, flat and read-only; cached for shapes of up to 65536 ids
    (serving repeats a few shapes; 64 entries of at most 512 KiB)."""
    if math.prod(ids_shape) <= SEQUENCE_CACHE_MAX_IDS:
        return _cached_sequence_rows(ids_shape, offset)
    return _build_sequence_rows(ids_shape, offset)


def _build_sequence_rows(ids_shape, offset):
    length = ids_shape[-1] if ids_shape else 1
    sequence = np.arange(offset, offset + length, dtype=np.int64)
    rows = np.ascontiguousarray(np.broadcast_to(sequence if ids_shape else sequence[0], ids_shape)).reshape(-1)
    rows.flags.writeable = False
    return rows


_cached_sequence_rows = functools.lru_cache(maxsize=64)(_build_sequence_rows)


def output(out, shape, dtype, inputs):
    """Check a caller's ``out`` (shape, dtype, writable, no overlap with an input)."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    if out.dtype != dtype:
        raise ValueError(f"out must have dtype {dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    for name, x in inputs.items():
        if x is not None and np.may_share_memory(out, x):
            raise ValueError(f"out overlaps {name}")
    return out
