"""The numpy backend: the lookups written as a user would write them in numpy,
in the table's dtype. Readable, and the baseline every kernel must beat."""

import numpy as np

from ._quantize import CompactTable


def _take(table, ids):
    """table[ids], dequantized to float32 for a compact table."""
    return table.take(ids) if isinstance(table, CompactTable) else table[ids]


def factorized(ids, table, proj, scale, bias, pos_table, pos_rows, out):
    """out = table[ids] @ proj * scale + bias + pos[pos_rows] (N x d)."""
    return _finish(_take(table, ids) @ proj, scale, bias, pos_table, pos_rows, out)


def dense(ids, table, scale, bias, pos_table, pos_rows, out):
    """out = table[ids] * scale + bias + pos[pos_rows] (N x d)."""
    return _finish(_take(table, ids), scale, bias, pos_table, pos_rows, out)


def _finish(rows, scale, bias, pos_table, pos_rows, out):
    np.multiply(rows, rows.dtype.type(scale), out=out)
    if bias is not None:
        out += bias
    if pos_table is not None:
        out += pos_table[pos_rows]
    return out


def pooled(tables, bags, mode, scale, bias, normalize, out, n_threads):
    """A pooled lookup (fastembed._pooled) in numpy: gather the kept tokens' rows, weight them,
    reduce each bag with ``reduceat``, divide, project, finish; no loop over bags."""
    from ._threads import blas_limit

    ids, offsets = bags.ids, bags.offsets
    keep = ids != tables.padding_idx
    kept_before = np.concatenate(([0], np.cumsum(keep)))[offsets]  # offsets among the kept tokens
    counts = np.diff(kept_before)
    ids = ids[keep]
    rows = ids if tables.token_map is None else tables.token_map[ids]
    weights = None if bags.weights is None else bags.weights[keep]
    if tables.token_weights is not None:
        weights = tables.token_weights[ids] if weights is None else weights * tables.token_weights[ids]
    with blas_limit(n_threads):
        values = _take(tables.table, rows)
        if tables.proj is not None and mode == 3:
            values = values @ tables.proj  # max: project every token, then pool
        if weights is not None:
            values = values * weights[:, None]
        pooled = np.zeros((out.shape[0], values.shape[1]), dtype=out.dtype)
        filled = counts > 0
        if values.shape[0]:
            reduce = np.maximum if mode == 3 else np.add
            pooled[filled] = reduce.reduceat(values, kept_before[:-1][filled], axis=0)
        if mode in (1, 2):
            divide = counts[filled].astype(out.dtype)
            pooled[filled] /= (divide if mode == 1 else np.sqrt(divide))[:, None]
        if tables.proj is not None and mode != 3:
            pooled = pooled @ tables.proj
    np.multiply(pooled, out.dtype.type(scale), out=out)
    if bias is not None:
        out += bias
    if normalize:
        norms = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64))
        nonzero = norms > 0
        out[nonzero] = out[nonzero] / norms[nonzero, None]
    return out
