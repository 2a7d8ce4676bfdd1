"""Numba mirror of _pool.pyx: ``pool_rows`` and ``finish_pooled`` compute what their Cython twins
compute, in the same order of operations (tests/test_parity.py checks they agree bit for bit).

Arguments arrive validated, with the signatures of kernels/_protocol.py; ``scale`` is cast to the
output dtype here, as the Cython kernel casts it. The thread count is set by the caller with
numba.set_num_threads.
"""

import math

import numba as nb
import numpy as np

from ._numba_jit import given, jit
from ._rows_numba import _half_bits_to_float_bits

MODE_MEAN, MODE_SQRTN, MODE_MAX = 1, 2, 3
KIND_INT8, KIND_FLOAT16 = 0, 1


@jit(inline="always")
def _finish(o, divide, scale, bias, normalize):
    for j in range(o.shape[0]):
        o[j] = (o[j] / divide) * scale
    if bias is not None and given(bias):
        for j in range(o.shape[0]):
            o[j] = o[j] + bias[j]
    if normalize:
        norm = 0.0
        for j in range(o.shape[0]):
            norm = norm + np.float64(o[j]) * np.float64(o[j])
        if norm > 0:
            norm = math.sqrt(norm)
            for j in range(o.shape[0]):
                o[j] = o[j] / norm


@jit(inline="always")
def _dequantized(table, row, row_scale, row_offset, kind, bits):
    """table[row] as float32 (in ``bits``' memory): int8 codes * scale + offset, or half / bfloat16."""
    values = bits.view(np.float32)
    if kind == KIND_INT8:
        a = row_scale[row]
        b = row_offset[row]
        for j in range(values.shape[0]):
            values[j] = np.float32(table[row, j]) * a + b
    elif kind == KIND_FLOAT16:
        for j in range(values.shape[0]):
            bits[j] = _half_bits_to_float_bits(np.uint16(table[row, j]))
    else:
        for j in range(values.shape[0]):
            bits[j] = np.uint32(np.uint16(table[row, j])) << np.uint32(16)
    return values


@jit(inline="always")
def _add(o, src, w, take_max):
    # o = o + w * src, or o = max(o, w * src) with NaN propagating
    for j in range(o.shape[0]):
        v = w * src[j]
        if take_max:
            if v > o[j] or v != v:
                o[j] = v
        else:
            o[j] = o[j] + v


@jit(parallel=True)
def pool_rows(
    out,
    table,
    row_scale,
    row_offset,
    kind,
    ids,
    offsets,
    per_token_rows,
    weights,
    token_weights,
    token_map,
    padding_idx,
    mode,
    scale,
    bias,
    normalize,
    n_threads,
):
    """Pool each bag's rows into out[b]; mirrors _pool.pool_rows (same arguments; ``n_threads`` is set
    by the caller, see _rows_numba.py). ``row_scale`` and ``row_offset`` are float32 arrays, empty
    unless the table holds int8 codes: Numba types them even where ``kind`` never reads them."""
    sc = out.dtype.type(scale)
    n_bags, d = out.shape
    n_ids = ids.shape[0]
    n_rows = table.shape[0]
    has_weights = given(weights)
    has_map = given(token_map)
    has_token_weights = given(token_weights)
    if per_token_rows:
        n_vocab = np.iinfo(np.int64).max  # row n is table[n]: the ids only decide padding and token weights
    elif token_map is not None and has_map:
        n_vocab = token_map.shape[0]
    else:
        n_vocab = n_rows
    if token_weights is not None and has_token_weights and token_weights.shape[0] < n_vocab:
        n_vocab = token_weights.shape[0]
    take_max = mode == MODE_MAX
    one = np.ones(1, out.dtype)
    skipped = 0
    for b in nb.prange(n_bags):
        o = out[b]
        start = offsets[b]
        end = offsets[b + 1]
        bad = start < 0 or end < start or end > n_ids
        o[:] = -np.inf if take_max else 0
        bits = np.empty(d if kind >= 0 else 0, np.uint32)
        count = 0
        n = start
        while n < end and not bad:
            token = ids[n]
            if token == padding_idx:
                n += 1
                continue
            if token < 0 or token >= n_vocab:
                bad = True
                break
            if per_token_rows:
                row = n
            elif token_map is not None and has_map:
                row = token_map[token]
            else:
                row = token
            if row < 0 or row >= n_rows:
                bad = True
                break
            w = one[0]
            if weights is not None and has_weights:
                w = weights[n]
            if token_weights is not None and has_token_weights:
                w = w * token_weights[token]
            if kind < 0:
                _add(o, table[row], w, take_max)
            else:
                _add(o, _dequantized(table, row, row_scale, row_offset, kind, bits), w, take_max)
            count += 1
            n += 1
        if bad:
            skipped += 1
            o[:] = 0
            continue
        divide = np.ones(1, out.dtype)
        if count == 0:
            o[:] = 0
        elif mode == MODE_MEAN:
            divide[0] = count
        elif mode == MODE_SQRTN:
            divide[0] = math.sqrt(count)
        _finish(o, divide[0], sc, bias, normalize)
    return skipped


@jit(parallel=True)
def finish_pooled(out, scale, bias, normalize, n_threads):
    """In place: out[b] = out[b] * scale + bias, L2-normalized when ``normalize``; mirrors
    _pool.finish_pooled."""
    sc = out.dtype.type(scale)
    one = np.ones(1, out.dtype)
    for b in nb.prange(out.shape[0]):
        _finish(out[b], one[0], sc, bias, normalize)
