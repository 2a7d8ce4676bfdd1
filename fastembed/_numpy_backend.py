"""The numpy backend: the lookups written as a user would write them in numpy,
in the table's dtype. Readable, and the baseline every kernel must beat."""

import numpy as np

from .quantize import CompactTable


def _take(table, ids):
    """table[ids], dequantized to float32 for a compact table."""
    return table.take(ids) if isinstance(table, CompactTable) else table[ids]


def factorized(ids, table, proj, scale, bias, pos, pos_rows, out):
    """out = table[ids] @ proj * scale + bias + pos[pos_rows] (N x d)."""
    return _finish(_take(table, ids) @ proj, scale, bias, pos, pos_rows, out)


def dense(ids, table, scale, bias, pos, pos_rows, out):
    """out = table[ids] * scale + bias + pos[pos_rows] (N x d)."""
    return _finish(_take(table, ids), scale, bias, pos, pos_rows, out)


def _finish(rows, scale, bias, pos, pos_rows, out):
    np.multiply(rows, rows.dtype.type(scale), out=out)
    if bias is not None:
        out += bias
    if pos is not None:
        out += pos[pos_rows]
    return out
