"""Public lookups: validate once, pick a backend, run it into the output."""

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _numpy_backend, _pipeline, _threads, _workspace, backends
from . import _validation as v
from ._threads import blas_limit, resolve


class _Call(NamedTuple):
    """A validated call: flat ids, tables and the output it writes."""

    ids: np.ndarray  # flat int32/int64, contiguous
    shape: tuple  # ids.shape + (d,)
    scale: float
    bias: np.ndarray | None
    pos_table: np.ndarray | None
    pos_rows: np.ndarray | None
    out: np.ndarray  # the caller's, or a fresh array
    n_threads: int


def _prepare(ids, table, d, dtype, scale, bias, pos_table, offset, position_ids, out, n_threads, inputs):
    scale = v.as_scale(scale)
    given_bias, bias = bias, v.as_vector(bias, "bias", d, dtype)
    given_ids = v.integer_array(ids, "ids")
    shape = given_ids.shape + (d,)
    # the overlap rule is about the caller's arrays, before any conversion copied them
    inputs = dict(inputs, ids=given_ids, bias=given_bias, pos_table=pos_table, position_ids=position_ids)
    if out is not None:  # a bad id is reported before an out shaped for other ids
        v.check_index_range(given_ids, "ids", table.shape[0])
    out = v.output(out, shape, dtype, inputs)
    result = out if out is not None else np.empty(shape, dtype=dtype)  # a MemoryError before any copy of ids
    ids = v.as_index_array(given_ids, "ids", table.shape[0])
    positions = v.positions(ids.shape, pos_table, offset, position_ids, d, dtype)
    return _Call(ids.reshape(-1), shape, scale, bias, positions.table, positions.rows, result, resolve(n_threads))


def _run(call, dtype, compute):
    """Let ``compute(out2d)`` fill the output (the caller's or a fresh one), return it in ids.shape + (d,)."""
    result = call.out
    n, d = call.ids.shape[0], call.shape[-1]
    if n == 0 or d == 0:
        return result
    frame = _workspace.enter()
    try:
        if result.flags.c_contiguous:
            compute(result.reshape(n, d))
        else:
            work = np.empty((n, d), dtype=dtype)
            compute(work)
            result[...] = work.reshape(call.shape)
    finally:
        _workspace.leave(frame)
    return result


def _latency_kernels(ids, table, position_ids, backend):
    """The Cython kernels when a call may try a latency path (numpy ids and table, position ids
    None or numpy, backend auto or cython and loaded), else None."""
    if (backend != "auto" and backend != "cython") or type(ids) is not np.ndarray or type(table) is not np.ndarray:
        return None
    if position_ids is not None and type(position_ids) is not np.ndarray:
        return None
    k = backends.cython_kernels()  # what "auto" and "cython" run where it loads; else the general path reports
    return k if k is not None and k.name == "cython" else None


def _fast(ids, table, proj, scale, bias, pos_table, offset, position_ids, out, backend, n_threads):
    """The latency path of the commonest calls (C-contiguous numpy arrays, positions counted from
    an int offset or given as position ids of the ids' shape, the fused plan with SIMD tiles; a
    decoding step is one): one compiled call that takes the arguments only when it can prove them
    valid and returns None otherwise, for the general path to check and report.
    It skips the general path's Python (about 10 us a call at 1 x 128 ids, timed with the report's
    latency case; 30 us for a decoding step with position ids)."""
    k = _latency_kernels(ids, table, position_ids, backend)
    if k is None or table.ndim != 2 or type(proj) is not np.ndarray or proj.ndim != 2:
        return None
    token_flops = 2.0 * table.shape[1] * proj.shape[1]
    flops = ids.size * token_flops
    if not k.fused_pays(flops):
        return None
    if (
        ids.size >= _pipeline.DEDUPE_MIN_TOKENS
        and _pipeline.choose_plan(ids.size, table.shape[0], True, token_flops) != "fused"
    ):
        return None  # many repeated ids: the dedupe plan is the faster one
    threads = resolve(n_threads)
    one = flops < _threads.ONE_THREAD_FLOPS  # one thread whatever the pool: no policy to run
    threads_for = 1 if one else (lambda flops: _pipeline.fused_threads(k, threads, flops))
    result = k.project.project_call(
        ids,
        table,
        proj,
        scale,
        pos_table,
        out,
        k.simd_width,
        _pipeline.SIGNAL_CHECK_FLOPS,
        threads_for,
        bias,
        offset,
        position_ids,
    )
    if result is not None and not one and k.openmp:  # one thread: no pool to keep warm
        _threads.note_openmp_kernel_end()
    return result


def _fast_dense(ids, table, scale, bias, pos_table, offset, position_ids, out, backend, n_threads):
    """The dense lookup's latency path, as ``_fast`` is the factorized one's: the gather kernel on
    C-contiguous numpy arrays, or None for the general path (which spends
    about 20 us of Python a call at 1 x 128 ids, with a 12 us kernel: the report's latency case)."""
    k = _latency_kernels(ids, table, position_ids, backend)
    if k is None or table.ndim != 2:
        return None
    threads = resolve(n_threads)
    one = ids.size * table.shape[1] < _threads.ONE_THREAD_ELEMENTS  # one thread whatever the pool
    threads_for = 1 if one else (lambda n_elements: k.thread_count(k.for_work(threads, n_elements)))
    result = k.rows.gather_call(
        ids,
        table,
        scale,
        pos_table,
        out,
        _pipeline.SIGNAL_CHECK_BYTES,
        threads_for,
        bias,
        offset,
        position_ids,
    )
    if result is not None and not one and k.openmp:  # one thread: no pool to keep warm
        _threads.note_openmp_kernel_end()
    return result


def _lookup(ids, table, proj, scale, bias, pos_table, offset, position_ids, out, backend, n_threads, plan):
    """The lookups' one implementation: factorized when ``proj`` is given, dense otherwise."""
    if plan is None:
        if proj is not None:
            result = _fast(ids, table, proj, scale, bias, pos_table, offset, position_ids, out, backend, n_threads)
        else:
            result = _fast_dense(ids, table, scale, bias, pos_table, offset, position_ids, out, backend, n_threads)
        if result is not None:
            return result
    name = backends.resolve(backend)
    table, proj, dtype, d = v.lookup_tables(table, proj)
    inputs = {"table": table, "proj": proj}
    if plan not in (None, "dedupe", "direct", "fused"):
        raise ValueError(f"unknown plan {plan!r}")
    call = _prepare(ids, table, d, dtype, scale, bias, pos_table, offset, position_ids, out, n_threads, inputs)
    k = backends.kernels(name)
    terms = (call.scale, call.bias, call.pos_table, call.pos_rows)

    def compute(out2d):
        if k is None and proj is None:
            _numpy_backend.dense(call.ids, table, *terms, out2d)
        elif k is None:
            with blas_limit(call.n_threads):
                _numpy_backend.factorized(call.ids, table, proj, *terms, out2d)
        elif proj is None:
            _pipeline.dense(k, call.ids, table, *terms, out2d, call.n_threads)
        else:
            _pipeline.factorized(k, call.ids, table, proj, *terms, out2d, call.n_threads, plan)

    return _run(call, dtype, compute)


Backend = Literal["auto", "cython", "numba", "numpy"]


def factorized_lookup(
    ids: ArrayLike,
    table: NDArray[np.floating],
    proj: NDArray[np.floating],
    *,
    scale: float = 1.0,
    bias: NDArray[np.floating] | None = None,
    pos_table: NDArray[np.floating] | None = None,
    offset: int = 0,
    position_ids: ArrayLike | None = None,
    out: NDArray[np.floating] | None = None,
    backend: Backend = "auto",
    n_threads: int | None = None,
    plan: Literal["dedupe", "direct", "fused"] | None = None,
) -> NDArray[np.floating]:
    """Fused factorized embedding lookup.

    ``out[..., :] = (table[ids[...]] @ proj) * scale + bias + pos_table[position]``

    Parameters
    ----------
    ids : array_like of int, shape (..., L)
        Token ids in ``[0, V)``, any integer dtype, any shape and strides. The
        last axis is the sequence axis.
    table : ndarray, shape (V, r), float32 or float64; or a compact table
        Token factor ``E``; any memory layout. float16, bfloat16 (ml_dtypes, or
        uint16 bit patterns) and :class:`fastembed.QuantizedRows` (int8) are
        dequantized in the gather kernel; the output is then float32.
    proj : ndarray, shape (r, d)
        Projection ``P``, same dtype as ``table``; any memory layout.
    scale : float, default 1.0
        Multiplies the projected rows (e.g. ``sqrt(d)``).
    bias : ndarray, shape (d,), optional
        Added to every row.
    pos_table : ndarray, shape (n_positions, d), optional
        Row ``offset + l`` is added at sequence position ``l``.
    offset : int, default 0
        First position (decoding with a cache).
    position_ids : array_like of int, optional
        Rows of ``pos_table`` given explicitly, broadcast against ``ids``.
    out : ndarray, shape ids.shape + (d,), optional
        Written in place and returned; untouched when the call raises.
    backend : {"auto", "cython", "numba", "numpy"}
        See :func:`fastembed.backends.available`.
    n_threads : int, optional
        Threads for this call (kernels and BLAS); see :func:`fastembed.set_num_threads`.
    plan : {None, "dedupe", "direct", "fused"}
        Compiled backends only: force a plan (default: chosen from the shapes,
        the repetition of the ids and the CPU; see ``fastembed._pipeline``).

    Returns
    -------
    ndarray, shape ids.shape + (d,), dtype of ``table``

    Raises
    ------
    IndexError
        An id outside ``[0, V)`` (negative ids too) or a position outside the pos_table.
    TypeError
        Float, bool or non-numeric ids.
    ValueError
        Shape, rank or dtype mismatches, a bad ``out``, an unknown backend.
    """
    return _lookup(ids, table, proj, scale, bias, pos_table, offset, position_ids, out, backend, n_threads, plan)


def lookup(
    ids: ArrayLike,
    table: NDArray[np.floating],
    *,
    scale: float = 1.0,
    bias: NDArray[np.floating] | None = None,
    pos_table: NDArray[np.floating] | None = None,
    offset: int = 0,
    position_ids: ArrayLike | None = None,
    out: NDArray[np.floating] | None = None,
    backend: Backend = "auto",
    n_threads: int | None = None,
) -> NDArray[np.floating]:
    """Fused dense embedding lookup.

    ``out[..., :] = table[ids[...]] * scale + bias + pos_table[position]``

    Parameters
    ----------
    ids : array_like of int, shape (..., L)
        Token ids in ``[0, V)``; the last axis is the sequence axis.
    table : ndarray, shape (V, d), float32 or float64; or a compact table
        Embedding table; any memory layout; compact tables as in :func:`factorized_lookup`.
    scale, bias, pos_table, offset, position_ids, out, backend, n_threads
        As in :func:`factorized_lookup`.

    Returns
    -------
    ndarray, shape ids.shape + (d,), dtype of ``table``

    Raises
    ------
    IndexError, TypeError, ValueError
        As in :func:`factorized_lookup`.
    """
    return _lookup(ids, table, None, scale, bias, pos_table, offset, position_ids, out, backend, n_threads, None)
