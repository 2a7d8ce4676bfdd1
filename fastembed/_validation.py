"""Input checks shared by every public function and every backend.

Each check raises before anything is written, with one message whatever the
backend: IndexError for an index outside its table, TypeError for ids that
are not integers, ValueError for shape, rank, dtype and ``out`` mismatches.
"""

import functools
import math
import numbers
import operator
from typing import NamedTuple

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_UNSIGNED = {np.dtype(f"{k}{n}"): np.dtype(f"u{n}") for k in "iu" for n in (1, 2, 4, 8)}


def as_numpy(x, name):
    """``x`` itself, or a CPU torch tensor as the numpy array sharing its memory (bfloat16 as its
    uint16 bit patterns, which tables and projections read as bfloat16). A tensor that requires
    grad, lives on another device or has a dtype numpy lacks, and a torch module or a
    fastembed Factorization where an array belongs, is a TypeError saying what to pass instead."""
    module = type(x).__module__
    if type(x) is np.ndarray or not module.startswith(("torch", "fastembed")):
        return x
    if module.startswith("fastembed"):
        if hasattr(x, "table") and hasattr(x, "proj") and hasattr(x, "singular_values"):
            raise TypeError(f"{name} is a Factorization: pass its factors, factorized_lookup(ids, f.table, f.proj)")
        return x
    import torch  # only for objects of torch's own types: it is imported already

    if isinstance(x, torch.nn.Module):
        hint = f"its weight, {name}=module.weight.detach()" if hasattr(x, "weight") else "an array"
        raise TypeError(f"{name} is a torch {type(x).__name__}: pass {hint}")
    if not isinstance(x, torch.Tensor):
        return x
    if x.requires_grad:
        raise TypeError(f"{name} requires grad: pass {name}.detach() (fastembed computes no gradients)")
    if x.device.type != "cpu":
        raise TypeError(f"{name} is on {x.device}: pass {name}.cpu()")
    if x.dtype == torch.bfloat16:
        return x.view(torch.int16).numpy().view(np.uint16)
    try:
        return x.numpy()
    except TypeError:
        raise TypeError(
            f"{name} has dtype {x.dtype}, which numpy cannot hold: convert it, e.g. {name}.float()"
        ) from None


def as_lookup_table(table, name="table"):
    """(table, output dtype): a float32/float64 matrix, or a CompactTable (float16, bfloat16,
    int8 rows) whose lookups produce float32."""
    if type(table) is np.ndarray and table.ndim == 2 and table.dtype in FLOAT_DTYPES:
        return usable_strides(table), table.dtype  # the common case, without the general checks
    from ._quantize import as_compact

    table = as_numpy(table, name)

    compact = as_compact(table) if isinstance(table, np.ndarray) or not hasattr(table, "__array__") else None
    if compact is not None:
        return compact, np.dtype(np.float32)
    table = as_float_matrix(table, name)
    return table, table.dtype


def lookup_tables(table, proj=None):
    """(table, proj, dtype, d) of a lookup: ``table`` as :func:`as_lookup_table` takes it, ``proj``
    (r, d) in the output dtype (float32 for a compact table), d the output width."""
    table, dtype = as_lookup_table(table)
    if proj is not None:
        from ._quantize import CompactTable, proj_float32

        if isinstance(table, CompactTable):
            proj = proj_float32(proj)
        proj = as_float_matrix(proj, "proj", dtype)
        if proj.shape[0] != table.shape[1]:
            raise ValueError(f"proj must have {table.shape[1]} rows to match table {table.shape}, got {proj.shape}")
    return table, proj, dtype, table.shape[1] if proj is None else proj.shape[1]


def as_pos_table(pos_table, d, dtype):
    """A (n_positions, d) position table of the output dtype, any strides."""
    table = np.asarray(as_numpy(pos_table, "pos_table"))
    if table.ndim != 2 or table.shape[1] != d:
        raise ValueError(f"pos_table must have shape (n_positions, {d}), got {table.shape}")
    check_float_dtype(table, "pos_table", dtype)
    return usable_strides(table)


def as_float_matrix(x, name, dtype=None):
    """A 2-D float32/float64 array (any strides) whose dtype is ``dtype`` when given."""
    given = as_numpy(x, name)
    x = np.asarray(given)
    if x.ndim != 2:
        what = "" if isinstance(given, np.ndarray) else f"{type(given).__name__} as "
        raise ValueError(f"{name} must be 2-D, got {what}shape {x.shape}")
    check_float_dtype(x, name, dtype)
    return usable_strides(x)


def float_dtype(dtype, name="dtype"):
    """``np.dtype(dtype)``: TypeError unless it names a dtype, ValueError unless float32 or float64."""
    try:
        found = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be a numpy dtype, got {dtype!r}") from None
    if found not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got {found}")
    return found


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
    x = np.asarray(as_numpy(x, name))
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
    """Integer indices checked against [0, bound): a private, C-contiguous int32/int64 copy.

    The shape is kept; int8/int16/uint8/uint16 become int32, wider unsigned types int64 (checked
    first, so 2**64 - 1 is an IndexError, not -1). The range is checked on the copy, so another
    thread writing to ``x`` during the call cannot put an unchecked index in front of a kernel.
    """
    arr = integer_array(x, name)
    if arr.dtype.kind == "u" and arr.itemsize == 8 and arr.size:
        _check_range(arr, name, bound, what)  # before int64 would wrap values >= 2**63
    target = np.int32 if arr.dtype.itemsize < 4 or arr.dtype == np.int32 else np.int64
    ids = np.array(arr, dtype=target, order="C", copy=True)
    _check_range(ids, name, bound, what)
    return ids


def check_index_range(x, name, bound, what="table"):
    """IndexError unless the integer array ``x`` (any layout, broadcast views read once) is in [0, bound)."""
    core = x[tuple(slice(0, 1) if step == 0 else slice(None) for step in x.strides)] if x.ndim else x
    _check_range(core, name, bound, what)


def _check_range(arr, name, bound, what):
    """IndexError unless every value of the integer array ``arr`` is in [0, bound)."""
    if not arr.size:
        return
    # One reduction over the ids seen as unsigned, where that maps every negative id above the bound.
    unsigned = _UNSIGNED.get(arr.dtype) if bound <= 1 << (8 * arr.itemsize - 1) and arr.flags.c_contiguous else None
    if unsigned is None or arr.view(unsigned).max() >= bound:
        lo, hi = arr.min(), arr.max()
        if lo < 0 or hi >= bound:
            bad = lo if lo < 0 else hi
            raise IndexError(f"{name} contains {int(bad)}, outside [0, {bound}) of the {what}")


def integer_array(x, name):
    x = as_numpy(x, name)
    was_array = isinstance(x, np.ndarray)
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # numpy's "inhomogeneous shape" for rows of different lengths
        raise ValueError(
            f"{name} must be a rectangular array of integers; got a ragged sequence (rows of different "
            "lengths): pad the rows to one length, or pool them with fastembed.pooled_lookup (ragged ids, "
            "see fastembed.as_ragged)"
        ) from exc
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
    """Positions offset .. offset + length - 1 along a sequence must be integers in [0, limit);
    returns ``offset`` as a Python int (numpy integers near 2**63 would overflow the sum)."""
    offset = as_integer(offset, "offset")
    if offset < 0 or offset + length > limit:
        raise IndexError(f"positions {offset}..{offset + length - 1} are outside [0, {limit}){where}")
    return offset


def as_integer(value, name, *, low=None, high=None, high_name=None, even=False):
    """``value`` as a Python int: TypeError unless it is an integer (bool is not); ValueError
    below ``low``, above ``high`` (written ``high_name`` in the message when given) or, with
    ``even``, when odd. The one integer check of the package: every integer argument goes here."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = operator.index(value)
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            bounds = f">= {low}"
        elif high_name is None:
            bounds = f"in [{low}, {high}]"
        else:
            bounds = f"in [{low}, {high_name}] = [{low}, {high}]"
        raise ValueError(f"{name} must be {'an even integer ' if even else ''}{bounds}, got {value}")
    if even and value % 2:
        raise ValueError(f"{name} must be an even integer, got {value}")
    return value


def as_real(value, name, *, above=None):
    """``value`` as a finite Python float: TypeError unless it is a real number (bool is not),
    ValueError unless it is finite and, when ``above`` is given, greater than it."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if above is not None and not value > above:
        raise ValueError(f"{name} must be > {above}, got {value}")
    return value


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
    table = as_pos_table(pos_table, d, dtype)
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
        offset = check_offset(offset, ids_shape[-1] if ids_shape else 1, n_pos, " of the pos_table")
        return Positions(table, _sequence_rows(ids_shape, offset))
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


def output(out, shape, dtype, inputs, in_place=None):
    """Check a caller's ``out``: an ndarray of ``shape`` and ``dtype``, writable, and sharing no
    memory with any input (the overlap rule, the same for every function). ``inputs`` maps names
    to arrays, compact tables or None; ``in_place`` is the one input ``out`` may be itself."""
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
    check_no_overlap(out, inputs, in_place)
    return out


def check_no_overlap(out, inputs, in_place=None):
    """ValueError when ``out`` may share memory with an input (every array of a compact table
    included), unless that input is ``in_place`` and ``out`` is exactly it."""
    for name, x in inputs.items():
        for part in _arrays_of(x):
            if part is in_place and _same_view(out, part):
                continue
            if np.may_share_memory(out, part):
                raise ValueError(f"out overlaps {name}" + (" without being it" if part is in_place else ""))


def _same_view(a, b):
    return (
        a.shape == b.shape
        and a.strides == b.strides
        and a.dtype == b.dtype
        and a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    )


def _arrays_of(x):
    if x is None:
        return ()
    if isinstance(x, np.ndarray):
        return (x,)
    parts = [getattr(x, name, None) for name in ("data", "codes", "scale", "offset")]
    found = tuple(p for p in parts if isinstance(p, np.ndarray))
    return found if found else ((x,) if hasattr(x, "__array_interface__") else ())


def as_offsets(offsets, n_ids, name="offsets"):
    """CSR offsets of ``n_ids`` flat ids as a private C-contiguous int64 copy: 1-D, at least one
    entry, ``offsets[0] == 0``, non-decreasing, ``offsets[-1] == n_ids``. TypeError unless they are
    integers; ValueError naming the rule they break."""
    arr = integer_array(offsets, name)
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"{name} must be 1-D with one entry per bag plus one (B + 1), got shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.itemsize == 8 and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name}[-1] must equal the number of ids, {n_ids}, got {int(arr.max())}")
    copy = np.array(arr, dtype=np.int64, order="C", copy=True)
    if copy[0] != 0:
        raise ValueError(f"{name}[0] must be 0, got {int(copy[0])}")
    if copy[-1] != n_ids:
        raise ValueError(f"{name}[-1] must equal the number of ids, {n_ids}, got {int(copy[-1])}")
    steps = np.diff(copy)
    if steps.size and steps.min() < 0:
        at = int(np.argmax(steps < 0))
        raise ValueError(
            f"{name} must be non-decreasing: {name}[{at + 1}] = {int(copy[at + 1])} < {name}[{at}] = {int(copy[at])}"
        )
    return copy


def as_choice(value, name, choices):
    """``value`` if it is one of ``choices`` (strings), else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def as_float_vector(x, name, length, dtype, what):
    """A private C-contiguous ``dtype`` copy of a real 1-D array of ``length`` entries (one per
    ``what``): TypeError for non-real values, ValueError for another shape or NaN/inf."""
    arr = np.asarray(as_numpy(x, name))
    if arr.dtype.kind not in "iuf" or arr.dtype.kind == "b":
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if arr.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), one per {what}, got {arr.shape}")
    copy = np.array(arr, dtype=dtype, order="C", copy=True)
    if copy.size and not np.isfinite(copy).all():
        raise ValueError(f"{name} contains NaN or inf")
    return copy


FACTORIZE_METHODS = ("svd", "randomized")


def factorize_arguments(shape, rank, energy, max_error, method):
    """The rank, energy, max_error and method of a factorization of a (V, d) table, checked as
    ``fastembed.factorize`` and ``fastembed.dask.factorize`` both check them: exactly one of the
    first three, rank an integer in [1, min(V, d)], energy in (0, 1], max_error in [0, 1).
    Returns ``rank`` as a Python int (or None)."""
    if sum(x is not None for x in (rank, energy, max_error)) != 1:
        raise ValueError("give exactly one of rank, energy, max_error")
    if rank is not None:
        rank = as_integer(rank, "rank", low=1, high=min(shape), high_name="min(V, d)")
    if energy is not None and not 0 < as_real(energy, "energy") <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}")
    if max_error is not None and not 0 <= as_real(max_error, "max_error") < 1:
        raise ValueError(f"max_error must be in [0, 1), got {max_error}")
    as_choice(method, "method", FACTORIZE_METHODS)
    return rank


def table_to_factorize(shape):
    """ValueError unless a table to factorize has shape (V, d) with V, d >= 1 (``fastembed.factorize``
    and ``fastembed.dask.factorize`` both check it)."""
    if len(shape) != 2:
        raise ValueError(f"W must be 2-D, got shape {tuple(shape)}")
    if 0 in shape:
        raise ValueError(f"W is empty (shape {tuple(shape)})")


def require_finite(all_finite, name="W"):
    """ValueError when a table holds NaN or inf (``all_finite``: the check's outcome)."""
    if not all_finite:
        raise ValueError(f"{name} contains NaN or inf")


def row_weights_values(smallest, any_positive):
    """ValueError unless the row weights are finite and >= 0 (``smallest``: their minimum, NaN when
    one is NaN) and not all zero (``any_positive``)."""
    if not np.isfinite(smallest) or smallest < 0:
        raise ValueError("row_weights must be finite and >= 0")
    if not any_positive:
        raise ValueError("row_weights are all zero")


def row_weights_shape(shape, n_rows):
    """ValueError unless the row weights have shape (n_rows,), one per table row."""
    if tuple(shape) != (n_rows,):
        raise ValueError(f"row_weights must have shape ({n_rows},), got {tuple(shape)}")
