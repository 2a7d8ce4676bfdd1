"""Numba mirror of _rows.pyx: each function here computes exactly what its
Cython twin of the same name computes, in the same order of operations
(tests/test_parity.py checks they agree bit for bit).

Each takes the arguments of its Cython twin (kernels/_protocol.py; stubs in _rows.pyi), scalars as
Python numbers, cast here to the output dtype as the Cython kernel casts them. ``n_threads`` is
the last argument for the shared signature only: the caller (fastembed.backends.NumbaKernelSet)
sets it with numba.set_num_threads, per calling thread, before entry.
"""

import numba as nb
import numpy as np

from ._numba_jit import given, jit


@jit(inline="always")
def _emit_row(o, s, sc, b, p):
    # One loop per set of terms, chosen outside it, so that each loop vectorizes (with the tests
    # inside, the rows of a real-text lookup took 25-35% longer); "is not None" first: Numba prunes
    # that branch for a None argument.
    n = o.shape[0]
    if b is not None and given(b) and p is not None and given(p):
        for j in range(n):
            o[j] = (s[j] * sc + b[j]) + p[j]
    elif b is not None and given(b):
        for j in range(n):
            o[j] = s[j] * sc + b[j]
    elif p is not None and given(p):
        for j in range(n):
            o[j] = s[j] * sc + p[j]
    else:
        for j in range(n):
            o[j] = s[j] * sc


@jit(parallel=True)
def gather_rows(src, rows, scale, bias, pos, pos_rows, out, n_threads):
    """out[n, :] = src[rows[n], :] * scale + bias + pos[pos_rows[n], :]; mirrors _rows.gather_rows."""
    sc = out.dtype.type(scale)
    n_out = out.shape[0]
    n_src = src.shape[0]
    skipped = 0
    for n in nb.prange(n_out):
        r = rows[n]
        if r < 0 or r >= n_src:
            skipped += 1
        elif pos is None or not given(pos):
            _emit_row(out[n], src[r], sc, bias, None)
        else:
            q = pos_rows[n]
            if q < 0 or q >= pos.shape[0]:
                skipped += 1
            else:
                _emit_row(out[n], src[r], sc, bias, pos[q])
    return skipped


@jit(parallel=True)
def finish_rows(out, scale, bias, pos, pos_rows, n_threads):
    """In place: out[n, :] = out[n, :] * scale + bias + pos[pos_rows[n], :]; mirrors _rows.finish_rows."""
    sc = out.dtype.type(scale)
    n_out = out.shape[0]
    skipped = 0
    for n in nb.prange(n_out):
        if pos is None or not given(pos):
            _emit_row(out[n], out[n], sc, bias, None)
        else:
            q = pos_rows[n]
            if q < 0 or q >= pos.shape[0]:
                skipped += 1
            else:
                _emit_row(out[n], out[n], sc, bias, pos[q])
    return skipped


@jit()
def dedupe(ids, marker, uniq, remap):
    """First-seen order dedupe in O(N); mirrors _rows.dedupe (returns U, or -1 on a bad id)."""
    n_rows = marker.shape[0]
    u = 0
    for n in range(ids.shape[0]):
        i = ids[n]
        if i < 0 or i >= n_rows:
            marker[:] = -1
            return -1
        m = marker[i]
        if m < 0:
            m = u
            marker[i] = m
            uniq[u] = i
            u += 1
        remap[n] = m
    for k in range(u):
        marker[uniq[k]] = -1
    return u


def warm_up():
    """Compile the common signatures now (float32/float64; dedupe's int32/int64 ids; the threaded
    kernels' index arrays reach them as int64, see fastembed.backends._one_index_type, and absent
    terms as empty arrays of the present ones' types, see _numba_jit.ABSENT_AS_EMPTY)."""
    for dtype in (np.float32, np.float64):
        src = np.zeros((2, 3), dtype)
        out = np.empty((2, 3), dtype)
        bias = np.zeros(3, dtype)
        rows = pos_rows = np.zeros(2, np.int64)
        gather_rows(src, rows, 1.0, bias, src, pos_rows, out, 1)
        for itype in (np.int32, np.int64):
            ids = np.zeros(2, itype)
            dedupe(ids, np.full(2, -1, itype), np.empty(2, itype), np.empty(2, itype))
        finish_rows(out, 1.0, bias, src, pos_rows, 1)


@jit(parallel=True)
def row_error_stats(orig, recon, stats, n_threads):
    """Per row, in float64: (||o - r||^2, ||o||^2, ||r||^2, o . r); mirrors _rows.row_error_stats."""
    for n in nb.prange(orig.shape[0]):
        e = 0.0
        a = 0.0
        b = 0.0
        c = 0.0
        for j in range(orig.shape[1]):
            x = np.float64(orig[n, j])
            y = np.float64(recon[n, j])
            e += (x - y) * (x - y)
            a += x * x
            b += y * y
            c += x * y
        stats[n, 0] = e
        stats[n, 1] = a
        stats[n, 2] = b
        stats[n, 3] = c


@jit(parallel=True)
def gather_sum_layernorm(word, ids, token_type, type_rows, pos, pos_rows, gamma, beta, eps, out, n_threads):
    """BERT/ALBERT embedding block per row; mirrors _rows.gather_sum_layernorm."""
    d = out.shape[1]
    skipped = 0
    for n in nb.prange(out.shape[0]):
        r = ids[n]
        t = type_rows[n]
        q = pos_rows[n]
        if r < 0 or r >= word.shape[0] or t < 0 or t >= token_type.shape[0] or q < 0 or q >= pos.shape[0]:
            skipped += 1
            continue
        mean = 0.0
        for j in range(d):
            out[n, j] = (word[r, j] + token_type[t, j]) + pos[q, j]
            mean += out[n, j]
        mean = mean / d
        var = 0.0
        for j in range(d):
            x = out[n, j] - mean
            var += x * x
        inv = 1.0 / np.sqrt(var / d + eps)
        for j in range(d):
            out[n, j] = out.dtype.type((out[n, j] - mean) * inv) * gamma[j] + beta[j]
    return skipped


@jit(inline="always")
def _half_bits_to_float_bits(h):
    """float32 bit pattern of an IEEE half given as bits (subnormals normalised by hand)."""
    sign = np.uint32(h & 0x8000) << np.uint32(16)
    exp = np.uint32((h >> 10) & 0x1F)
    mant = np.uint32(h & 0x3FF)
    if exp == 0:
        if mant == 0:
            return sign
        e = np.uint32(113)
        while (mant & np.uint32(0x400)) == 0:
            mant = mant << np.uint32(1)
            e -= np.uint32(1)
        return sign | (e << np.uint32(23)) | ((mant & np.uint32(0x3FF)) << np.uint32(13))
    if exp == 31:
        return sign | np.uint32(0x7F800000) | (mant << np.uint32(13))
    return sign | ((exp + np.uint32(112)) << np.uint32(23)) | (mant << np.uint32(13))


@jit(parallel=True)
def gather_dequant(src, rows, row_scale, row_offset, kind, out, n_threads):
    """out[n] = dequant(src[rows[n]]) in float32; mirrors _rows.gather_dequant."""
    n_src = src.shape[0]
    skipped = 0
    bits = out.view(np.uint32)
    for n in nb.prange(out.shape[0]):
        r = rows[n]
        if r < 0 or r >= n_src:
            skipped += 1
            continue
        if row_scale is not None:
            a = row_scale[r]
            b = row_offset[r]
            for j in range(out.shape[1]):
                out[n, j] = np.float32(src[r, j]) * a + b
        elif kind == 1:
            for j in range(out.shape[1]):
                bits[n, j] = _half_bits_to_float_bits(src[r, j])
        else:
            for j in range(out.shape[1]):
                bits[n, j] = np.uint32(src[r, j]) << np.uint32(16)
    return skipped


@jit(inline="always")
def _sq_sum(row):
    a0 = a1 = a2 = a3 = 0.0
    d = row.shape[0]
    d4 = d - d % 4
    for j in range(0, d4, 4):
        v = np.float64(row[j])
        a0 += v * v
        v = np.float64(row[j + 1])
        a1 += v * v
        v = np.float64(row[j + 2])
        a2 += v * v
        v = np.float64(row[j + 3])
        a3 += v * v
    for j in range(d4, d):
        v = np.float64(row[j])
        a0 += v * v
    return (a0 + a1) + (a2 + a3)


@jit(parallel=True)
def row_sq_norms(x, out, n_threads):
    """out[n] = sum_j x[n, j]^2 in float64, four interleaved partial sums; mirrors _rows.row_sq_norms."""
    for n in nb.prange(x.shape[0]):
        out[n] = _sq_sum(x[n])


@jit(parallel=True)
def sq_norms(x, weights, row_out, col_partial, n_threads):
    """Row and (weighted) column sums of squares in one pass; mirrors _rows.sq_norms."""
    n_rows = x.shape[0]
    n_parts = col_partial.shape[0]
    chunk = (n_rows + n_parts - 1) // n_parts
    for t in nb.prange(n_parts):
        lo = t * chunk
        hi = min(lo + chunk, n_rows)
        for n in range(lo, hi):
            w = 1.0 if weights is None else weights[n]
            row_out[n] = _sq_sum(x[n])  # the Cython kernel's order: four chains
            for j in range(x.shape[1]):
                v = np.float64(x[n, j])
                col_partial[t, j] += w * (v * v)
