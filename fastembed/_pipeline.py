"""How a compiled backend computes a lookup: which kernels, in which order, on how many threads.

Factorized lookup, ``out = table[ids] @ proj * scale + bias + pos``, by one of
three plans (chosen in ``choose_plan``):

- "dedupe": project only the distinct ids. An O(N) remap (no sort) finds the
  U distinct rows. With the fused kernel's SIMD tiles and few repeats, each
  distinct row's tile is written straight to all its occurrences
  (``project_distinct``: no U x d buffer, no second pass). Otherwise
  ``Y = table[uniq] @ proj`` (the fused kernel, or one (U x r) @ (r x d) BLAS
  product), then one parallel pass writes ``out[n] = Y[remap[n]] * scale +
  bias + pos[...]``; where the fused kernel pays for the U rows' projection
  (with AVX2 tiles too, whose limit is on the flops done), the two run as one
  pipeline (``project_gather``: rows are gathered while other distinct rows
  are projected). Real text repeats tokens, so U is often a fraction of N.
- "direct": gather ``G = table[ids]`` (N x r), write ``G @ proj`` straight
  into ``out`` with BLAS, then finish the rows in place. No (U x d) buffer.
- "fused": one kernel (kernels/_project.pyx) gathers, projects and finishes
  each tile of rows in registers. Chosen where the backend runs it with SIMD
  micro-tiles (AVX-512); its portable loop is there for every backend and CPU
  but slower than BLAS, so the plan is then only taken when forced.

Arguments arrive validated (fastembed/_validation.py); this module only plans
and calls kernels.
"""

import numpy as np

from . import _workspace
from ._quantize import CompactTable
from ._threads import blas_limit

DEDUPE_MIN_TOKENS = 512
DEDUPE_MAX_UNIQUE_FRACTION = 0.8  # with BLAS projections
# With fused projections, dedupe's own work per token (the remap, the occurrence lists, writes scattered
# over the output) costs about what 3000 flops of projection cost (measured on a Zen 4, 2 threads, N =
# 16384, r x d = 8 x 32 .. 128 x 768): it pays while U/N < 1 - 3000 / (2 r d), up to FUSED_DEDUPE_MAX.
FUSED_DEDUPE_TOKEN_FLOPS = 3000
FUSED_DEDUPE_MAX_UNIQUE_FRACTION = 0.9
# project_distinct writes each distinct row's occurrences wherever they lie; with many repeats those
# scattered writes cost more than projecting the distinct rows into a buffer and gathering from it
# in output order (measured on the Zen 4 at N = 16384, r x d = 128 x 768: the buffer won below
# U/N = 0.2-0.3, 2.4 vs 4.2 ms at U/N = 0.02; project_distinct won above, 12.7 vs 14.4 ms at 0.68).
FUSED_SCATTER_MIN_UNIQUE_FRACTION = 0.25
MARKER_ROWS_PER_TOKEN = 64
DIRECT_CHUNK_BYTES = 64 << 20  # bounds the gather buffer; smaller blocks made BLAS (K=r) slower than the cache gain
# Python runs signal handlers (Ctrl-C) only between kernel calls, so long calls are cut into blocks
# of at most this much work: ~4 GFLOP is 20 ms on the 2-core Zen 4 (AVX-512 or AVX2 tiles), 50 on a
# 2-core Zen 1, ~0.15 s on one slow AVX2 core; 256 MiB of output a few tens of milliseconds of memory
# traffic. Each cut costs a call (proj repacked, the call's last tasks on one thread): at 2 GFLOP,
# ALBERT-base's 32 x 512 uniform lookup (2.5 GFLOP of distinct rows) was two calls and took 2-4%
# longer than one (Zen 4, interleaved, 3 runs: 14.3 / 14.7 / 14.2 ms against 14.0 / 14.2 / 13.9;
# with the AVX2 tiles 17.0 / 15.2 / 15.7 against 16.0 / 15.3 / 15.2), xxlarge 8 x 512 (8.6 GFLOP)
# two calls against four 3-4% (44.1 / 46.6 / 44.0 against 42.9 / 44.7 / 42.5; with the AVX2 tiles
# no change: 49.8 / 50.7 / 49.7 against 49.6 / 51.3 / 49.8).
SIGNAL_CHECK_FLOPS = 1 << 32
SIGNAL_CHECK_BYTES = 256 << 20


def blockwise(n_rows, rows_per_block, run, *row_arrays):
    """``run(*row_arrays)`` over blocks of at most ``rows_per_block`` rows (arrays sliced along
    their first axis; None stays None), one call when everything fits in one block."""
    step = max(1, int(rows_per_block))
    if n_rows <= step:
        run(*row_arrays)
        return
    for start in range(0, n_rows, step):
        rows = slice(start, start + step)
        run(*(None if a is None else a[rows] for a in row_arrays))


def choose_plan(n_tokens, n_rows, fused=False, token_flops=None):
    """'dedupe' when a remap over a table-sized marker is cheap next to the tokens (and, with the
    fused kernel, each token's projection, ``token_flops`` = 2 r d, large enough that skipping
    repeated rows can pay), else 'fused' where the fused kernel is fast, else 'direct'."""
    if n_tokens >= DEDUPE_MIN_TOKENS and n_rows <= MARKER_ROWS_PER_TOKEN * n_tokens:
        if not fused or token_flops is None or dedupe_limit(token_flops, fused) > 0.1:
            return "dedupe"
    return "fused" if fused else "direct"


def dedupe_limit(token_flops, fused):
    """The largest fraction of distinct ids at which projecting only those pays."""
    if not fused:
        return DEDUPE_MAX_UNIQUE_FRACTION
    return min(FUSED_DEDUPE_MAX_UNIQUE_FRACTION, 1 - FUSED_DEDUPE_TOKEN_FLOPS / max(token_flops, 1))


def distinct(k, ids, n_rows):
    """(uniq, remap): ids == uniq[remap], uniq in first-seen order (views of scratch buffers)."""
    marker = _workspace.marker(n_rows, ids.dtype)
    uniq = _workspace.scratch("uniq", ids.shape, ids.dtype)
    remap = _workspace.scratch("remap", ids.shape, ids.dtype)
    n_unique = k.dedupe(ids, marker, uniq, remap)
    if n_unique < 0:
        raise RuntimeError("dedupe kernel met an index outside the table after validation")
    return uniq[:n_unique], remap


def gather(k, src, rows, n_threads, scale=1.0, bias=None, pos_table=None, pos_rows=None, out=None):
    """out[n] = src[rows[n]] * scale + bias + pos[pos_rows[n]] with the backend's kernel.

    A CompactTable ``src`` is dequantized to float32 in the gather; its other terms follow in place.
    """
    compact = isinstance(src, CompactTable)
    if out is None:
        out = np.empty((rows.shape[0], src.shape[1]), dtype=np.float32 if compact else src.dtype)
    threads = k.for_work(n_threads, out.size)

    def run(rows, p_rows, out):
        if not compact:
            k.gather_rows(src, rows, scale, bias, pos_table, p_rows, out, threads)
            return
        k.gather_dequant(src.data, rows, src.scale, src.offset, src.kind, out, threads)
        if scale != 1.0 or bias is not None or pos_table is not None:
            k.finish_rows(out, scale, bias, pos_table, p_rows, threads)

    blockwise(out.shape[0], SIGNAL_CHECK_BYTES // max(1, out.shape[1] * out.itemsize), run, rows, pos_rows, out)
    return out


def project(g, proj, out, n_threads):
    """out = g @ proj with BLAS limited to n_threads."""
    with blas_limit(n_threads):
        return np.matmul(g, proj, out=out)


def factorized(k, ids, table, proj, scale, bias, pos_table, pos_rows, out, n_threads, plan=None):
    """out (N x d, C-contiguous) = table[ids] @ proj * scale + bias + pos[pos_rows]."""
    unit_pos = pos_table is None or pos_table.shape[1] <= 1 or pos_table.strides[1] == pos_table.itemsize
    token_flops = 2.0 * table.shape[1] * proj.shape[1]
    fused_fast = unit_pos and k.fused_pays(ids.shape[0] * token_flops)
    plan = plan or choose_plan(ids.shape[0], table.shape[0], fused_fast, token_flops)
    if plan == "dedupe":
        uniq, remap = distinct(k, ids, table.shape[0])
        if uniq.shape[0] <= dedupe_limit(token_flops, fused_fast) * ids.shape[0]:
            if fused_fast and uniq.shape[0] >= FUSED_SCATTER_MIN_UNIQUE_FRACTION * ids.shape[0]:
                if not unit_pos:
                    pos_table = np.ascontiguousarray(pos_table)
                _fused_distinct(k, uniq, remap, table, proj, scale, bias, pos_table, pos_rows, out, n_threads)
                return out
            projected = _workspace.scratch("projected", (uniq.shape[0], proj.shape[1]), proj.dtype)
            if k.fused_pays(token_flops * uniq.shape[0]) and _pipelined(table, uniq, proj, out):
                threads = max(fused_threads(k, n_threads, token_flops * uniq.shape[0]), k.for_work(n_threads, out.size))
                k.project_gather(
                    table, uniq, remap, proj, scale, bias, pos_table, pos_rows, projected, out, k.simd_width, threads
                )
                return out
            if fused_fast:
                _fused(k, uniq, table, proj, 1.0, None, None, None, projected, n_threads)
            else:
                rows = _workspace.scratch("rows", (uniq.shape[0], table.shape[1]), proj.dtype)
                project(gather(k, table, uniq, n_threads, out=rows), proj, projected, n_threads)
            return gather(k, projected, remap, n_threads, scale, bias, pos_table, pos_rows, out)
        plan = "fused" if fused_fast else "direct"
    if plan == "fused":
        if not unit_pos:
            pos_table = np.ascontiguousarray(pos_table)
        _fused(k, ids, table, proj, scale, bias, pos_table, pos_rows, out, n_threads)
    else:
        _direct(k, ids, table, proj, scale, bias, pos_table, pos_rows, out, n_threads)
    return out


def _pipelined(table, uniq, proj, out):
    """True when the distinct rows' projection and the gather from it may run as one pipelined kernel
    call (``project_gather``): a plain table, and both passes short enough for Ctrl-C to wait on."""
    flops = 2.0 * uniq.shape[0] * table.shape[1] * proj.shape[1]
    return not isinstance(table, CompactTable) and flops <= SIGNAL_CHECK_FLOPS and out.nbytes <= SIGNAL_CHECK_BYTES


def _fused(k, ids, table, proj, scale, bias, pos_table, pos_rows, out, n_threads):
    """The fused kernel; a compact table is first dequantized, by row blocks, into scratch."""
    proj = np.ascontiguousarray(proj)
    n, r = out.shape[0], table.shape[1]
    if not isinstance(table, CompactTable):
        _fused_block(k, table, ids, proj, scale, bias, pos_table, pos_rows, out, n_threads)
        return
    block = max(256, DIRECT_CHUNK_BYTES // max(1, r * proj.itemsize))
    g = _workspace.scratch("rows", (min(n, block), r), proj.dtype)
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        m = rows.stop - rows.start
        gather(k, table, ids[rows], n_threads, out=g[:m])
        p_rows = None if pos_rows is None else pos_rows[rows]
        _fused_block(k, g[:m], None, proj, scale, bias, pos_table, p_rows, out[rows], n_threads)


def _fused_distinct(k, uniq, remap, table, proj, scale, bias, pos_table, pos_rows, out, n_threads):
    """out[n] = table[uniq[remap[n]]] @ proj * scale + bias + pos[pos_rows[n]] with the fused kernel,
    each distinct row projected once; a compact table's distinct rows are dequantized first. Blocks
    of distinct rows (their remap shifted) keep each call short enough for Ctrl-C to be seen."""
    proj = np.ascontiguousarray(proj)
    if isinstance(table, CompactTable):
        rows = _workspace.scratch("rows", (uniq.shape[0], table.shape[1]), proj.dtype)
        table, uniq = gather(k, table, uniq, n_threads, out=rows), None
    n_distinct = table.shape[0] if uniq is None else uniq.shape[0]
    flops_per_row = 2.0 * out.shape[1] * max(1, table.shape[1])
    threads = fused_threads(k, n_threads, flops_per_row * n_distinct)
    step = max(1, int(SIGNAL_CHECK_FLOPS // flops_per_row))
    for start in range(0, n_distinct, step):
        block = slice(start, start + step)
        src, rows = (table[block], None) if uniq is None else (table, uniq[block])
        shifted = remap if start == 0 else remap - start
        k.project_distinct(src, rows, shifted, proj, scale, bias, pos_table, pos_rows, out, k.simd_width, threads)


def fused_threads(k, n_threads, flops):
    """Threads for one call of the fused kernel of ``flops`` (at most ``n_threads``)."""
    return k.thread_count(k.for_flops(n_threads, flops))


def _fused_block(k, table, ids, proj, scale, bias, pos_table, pos_rows, out, n_threads):
    """The fused kernel over ``out``'s rows, in blocks short enough for Ctrl-C to be seen."""
    flops_per_row = 2.0 * out.shape[1] * max(1, table.shape[1])
    threads = fused_threads(k, n_threads, flops_per_row * out.shape[0])

    whole_bytes = float(out.nbytes)  # each block stores (streaming or not) as the whole call would

    def run(rows, p_rows, out, own_rows):  # without ids, out row n comes from table row n
        src = table if own_rows is None else own_rows
        k.project_rows(src, rows, proj, scale, bias, pos_table, p_rows, out, whole_bytes, k.simd_width, threads)

    own_rows = table[: out.shape[0]] if ids is None else None
    blockwise(out.shape[0], SIGNAL_CHECK_FLOPS // flops_per_row, run, ids, pos_rows, out, own_rows)


def fused_rows(k, table, proj, out, n_threads):
    """out = table @ proj (every row of ``table``, any strides; ``proj`` C-contiguous) with the
    fused kernel, in blocks short enough for Ctrl-C to be seen."""
    _fused_block(k, table, None, proj, 1.0, None, None, None, out, n_threads)


def _direct(k, ids, table, proj, scale, bias, pos_table, pos_rows, out, n_threads):
    """Gather, project into out and finish, by row blocks that stay in cache between the steps."""
    n, d = out.shape
    block = max(256, DIRECT_CHUNK_BYTES // (d * out.itemsize))
    if n <= block:
        rows = gather(k, table, ids, n_threads, out=_workspace.scratch("rows", (n, table.shape[1]), proj.dtype))
        project(rows, proj, out, n_threads)
        k.finish_rows(out, scale, bias, pos_table, pos_rows, k.for_work(n_threads, out.size))
        return
    g = _workspace.scratch("rows", (block, table.shape[1]), proj.dtype)
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        m = rows.stop - rows.start
        gather(k, table, ids[rows], n_threads, out=g[:m])
        project(g[:m], proj, out[rows], n_threads)
        p_rows = None if pos_rows is None else pos_rows[rows]
        k.finish_rows(out[rows], scale, bias, pos_table, p_rows, k.for_work(n_threads, m * d))


def dense(k, ids, table, scale, bias, pos_table, pos_rows, out, n_threads):
    """out (N x d, C-contiguous) = table[ids] * scale + bias + pos[pos_rows]."""
    return gather(k, table, ids, n_threads, scale, bias, pos_table, pos_rows, out)
