"""Pooled lookups: one vector per bag of ids (EmbeddingBag), validated once, run on a backend."""

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _numpy_backend, _pipeline, _workspace, backends
from . import _validation as v
from ._quantize import INT8, CompactTable
from ._ragged import as_ragged
from ._threads import resolve

MODES = ("sum", "mean", "sqrtn", "max")
MODE_CODES = {name: code for code, name in enumerate(MODES)}
FLOAT_KIND = -1  # the kernels' ``kind`` for a float32/float64 table
# Bags per kernel call are cut so that one call reads at most this many table elements: Python sees
# Ctrl-C between calls (as _pipeline.SIGNAL_CHECK_BYTES does for the lookups).
SIGNAL_CHECK_ELEMENTS = 1 << 26
# The factorized linear modes pool the r-wide rows of a block of bags into scratch, project them with BLAS,
# then finish them. Blocks are large: each switch between the OpenMP kernels and the BLAS pool costs
# more (the idle pool spins while the other works) than small blocks gain in cache (measured: 4096-bag
# blocks of 100,000 sentences took 4x the unblocked time).
PROJECT_BLOCK_BYTES = _pipeline.DIRECT_CHUNK_BYTES


class PoolTables(NamedTuple):
    """Validated tables of a pooled lookup (reused by StaticEmbedding across calls)."""

    table: np.ndarray | CompactTable
    proj: np.ndarray | None
    dtype: np.dtype
    d: int
    n_vocab: int  # ids index [0, n_vocab): the token map, or the table
    token_weights: np.ndarray | None
    token_map: np.ndarray | None
    padding_idx: int  # -1: none


def prepare_tables(table, proj=None, token_weights=None, token_map=None, padding_idx=None):
    """Check the tables of a pooled lookup once: see :func:`pooled_lookup` for each argument."""
    table, proj, dtype, d = v.lookup_tables(table, proj)
    n_rows = table.shape[0]
    if token_map is not None:
        given = v.integer_array(token_map, "token_map")
        if given.ndim != 1:
            raise ValueError(f"token_map must be 1-D (one table row per vocabulary id), got shape {given.shape}")
        token_map = v.as_index_array(given, "token_map", n_rows).astype(np.int64, copy=False)
    n_vocab = n_rows if token_map is None else token_map.shape[0]
    if token_weights is not None:
        token_weights = v.as_float_vector(token_weights, "token_weights", n_vocab, dtype, "vocabulary id")
    if padding_idx is None:
        padding = -1
    else:
        padding = v.as_integer(padding_idx, "padding_idx")
        if not -n_vocab <= padding < n_vocab:
            raise IndexError(f"padding_idx {padding} is outside [-{n_vocab}, {n_vocab}) of the vocabulary")
        padding %= n_vocab
    return PoolTables(table, proj, dtype, d, n_vocab, token_weights, token_map, padding)


class _Bags(NamedTuple):
    ids: np.ndarray  # flat, private, checked against the vocabulary
    offsets: np.ndarray  # (B + 1,) int64, private, checked
    weights: np.ndarray | None  # (N,) in the output dtype, private


def _bags(ids, offsets, weights, tables, out, inputs):
    """Validate the ragged ids, weights and out; returns (_Bags, the output array)."""
    if offsets is None:
        if isinstance(ids, np.ndarray) and ids.ndim == 1:
            raise ValueError("1-D ids need offsets= (B + 1 CSR offsets); or pass (B, L) ids or a list of sequences")
        flat, offs = as_ragged(ids)
    else:
        flat = v.integer_array(ids, "ids")
        if flat.ndim != 1:
            raise ValueError(f"ids given with offsets must be 1-D (flat), got shape {flat.shape}")
        offs = v.as_offsets(offsets, flat.shape[0])
    n_ids, n_bags = flat.shape[0], offs.shape[0] - 1
    given_weights = weights
    if weights is not None:
        given = np.asarray(v.as_numpy(weights, "weights"))
        if given.ndim > 1 and given.size == n_ids:
            given = given.reshape(-1)  # (B, L) weights beside (B, L) ids
        weights = v.as_float_vector(given, "weights", n_ids, tables.dtype, "id")
    shape = (n_bags, tables.d)
    if out is not None:
        v.check_index_range(flat, "ids", tables.n_vocab, "vocabulary")
    out = v.output(out, shape, tables.dtype, dict(inputs, ids=ids, offsets=offsets, weights=given_weights))
    result = out if out is not None else np.empty(shape, dtype=tables.dtype)
    flat = v.as_index_array(flat, "ids", tables.n_vocab, "vocabulary")
    return _Bags(flat, offs, weights), result


def run(tables, ids, offsets, mode, weights, scale, bias, normalize, out, backend, n_threads, inputs):
    """A pooled lookup over prepared tables; the arguments as :func:`pooled_lookup` takes them."""
    name = backends.resolve(backend)
    mode = v.as_choice(mode, "mode", MODES)
    scale = v.as_scale(scale)
    given_bias, bias = bias, v.as_vector(bias, "bias", tables.d, tables.dtype)
    inputs = dict(inputs, bias=given_bias)
    bags, result = _bags(ids, offsets, weights, tables, out, inputs)
    n_bags, d = result.shape
    if n_bags == 0 or d == 0:
        return result
    threads = resolve(n_threads)
    k = backends.kernels(name)
    frame = _workspace.enter()
    try:
        work = result if result.flags.c_contiguous else np.empty(result.shape, tables.dtype)
        if k is None:
            _numpy_backend.pooled(tables, bags, MODE_CODES[mode], scale, bias, normalize, work, threads)
        else:
            _compiled(k, tables, bags, MODE_CODES[mode], scale, bias, normalize, work, threads)
        if work is not result:
            result[...] = work
    finally:
        _workspace.leave(frame)
    return result


def _compiled(k, tables, bags, mode, scale, bias, normalize, out, n_threads):
    table, proj = tables.table, tables.proj
    if proj is None:
        _pool(k, table, bags, False, tables, mode, scale, bias, normalize, out, n_threads)
    elif mode == MODE_CODES["max"]:  # max does not commute with the projection: project every token
        rows = bags.ids if tables.token_map is None else tables.token_map[bags.ids]
        projected = _workspace.scratch("pooled_tokens", (rows.shape[0], tables.d), tables.dtype)
        if rows.shape[0]:
            _pipeline.factorized(k, rows, table, proj, 1.0, None, None, None, projected, n_threads)
        _pool(k, projected, bags, True, tables, mode, scale, bias, normalize, out, n_threads)
    else:
        r = table.shape[1]
        per_block = max(1, PROJECT_BLOCK_BYTES // (max(r, tables.d) * tables.dtype.itemsize))
        pooled = _workspace.scratch("pooled_rows", (min(out.shape[0], per_block), r), tables.dtype)
        finish = scale != 1.0 or bias is not None or normalize
        for start in range(0, out.shape[0], per_block):
            stop = min(start + per_block, out.shape[0])
            block = _Bags(bags.ids, bags.offsets[start : stop + 1], bags.weights)
            rows = pooled[: stop - start]
            _pool(k, table, block, False, tables, mode, 1.0, None, False, rows, n_threads)
            _pipeline.project(rows, proj, out[start:stop], n_threads)
            if finish:
                threads = k.for_work(n_threads, rows.shape[0] * tables.d)
                k.finish_pooled(out[start:stop], scale, bias, normalize, threads)


_NO_ROW_TERMS = np.empty(0, np.float32)  # row_scale / row_offset of a table without int8 codes


def _pool(k, table, bags, per_token_rows, tables, mode, scale, bias, normalize, out, n_threads):
    """The pool kernel over ``out``'s bags, in calls short enough for Ctrl-C to be seen."""
    compact = isinstance(table, CompactTable)
    data, kind = (table.data, table.kind) if compact else (table, FLOAT_KIND)
    int8 = compact and table.kind == INT8
    row_scale, row_offset = (table.scale, table.offset) if int8 else (_NO_ROW_TERMS, _NO_ROW_TERMS)
    token_map = None if per_token_rows else tables.token_map
    offsets, width = bags.offsets, data.shape[1]
    n_tokens = int(offsets[-1] - offsets[0])
    threads = k.for_work(n_threads, n_tokens * width)
    n_bags = out.shape[0]
    per_call = max(1, n_bags * SIGNAL_CHECK_ELEMENTS // max(1, n_tokens * width))
    for start in range(0, n_bags, per_call):
        stop = min(start + per_call, n_bags)
        k.pool_rows(
            out[start:stop],
            data,
            row_scale,
            row_offset,
            kind,
            bags.ids,
            offsets[start : stop + 1],
            per_token_rows,
            bags.weights,
            tables.token_weights,
            token_map,
            tables.padding_idx,
            mode,
            scale,
            bias,
            normalize,
            threads,
        )


Mode = Literal["sum", "mean", "sqrtn", "max"]


def pooled_lookup(
    ids: ArrayLike,
    table: NDArray[np.floating],
    proj: NDArray[np.floating] | None = None,
    *,
    offsets: ArrayLike | None = None,
    mode: Mode = "mean",
    weights: ArrayLike | None = None,
    token_weights: ArrayLike | None = None,
    token_map: ArrayLike | None = None,
    padding_idx: int | None = None,
    scale: float = 1.0,
    bias: NDArray[np.floating] | None = None,
    normalize: bool = False,
    out: NDArray[np.floating] | None = None,
    backend: Literal["auto", "cython", "numba", "numpy"] = "auto",
    n_threads: int | None = None,
) -> NDArray[np.floating]:
    """One vector per bag of ids: an embedding bag, dense or factorized.

    For bag b with tokens n (ids other than ``padding_idx``), ``count`` of them,
    ``w_n = weights[n] * token_weights[ids[n]]`` (each optional) and
    ``x_n = table[token_map[ids[n]]]`` (``table[ids[n]]`` without a map)::

        sum:   s_b = sum_n w_n x_n           mean:  s_b / count
        sqrtn: s_b / sqrt(count)             max:   elementwise max_n of w_n x_n
        out[b] = pooled_b @ proj * scale + bias,  then out[b] / ||out[b]|| if normalize

    With ``proj`` the linear modes pool the r-wide rows and project each bag
    once (B x r x d work, not N x r x d); "max" projects every token, then
    pools. An empty bag (or one of padding only) pools to zeros.

    Parameters
    ----------
    ids : array_like of int
        (B, L) ids, each row one bag; flat (N,) ids with ``offsets``; or
        anything :func:`fastembed.as_ragged` takes (a list of lists, a
        pyarrow list array, a list of ``tokenizers.Encoding``...).
    table : ndarray, shape (V, r) (or (V, d) without proj), float32 or float64; or a compact table
        float16, bfloat16 and :class:`fastembed.QuantizedRows` are dequantized
        in the kernel, and the output is then float32; any memory layout.
    proj : ndarray, shape (r, d), optional
        Projection, the output dtype.
    offsets : array_like of int, shape (B + 1,), optional
        CSR offsets of flat ids: ``offsets[0] == 0``, non-decreasing,
        ``offsets[-1] == len(ids)``.
    mode : {"sum", "mean", "sqrtn", "max"}
    weights : array_like, shape (N,) (or ids' (B, L)), optional
        One weight per token (torch's ``per_sample_weights``), in every mode.
    token_weights : array_like, shape (V_vocab,), optional
        One weight per vocabulary id (e.g. SIF / Zipf weights).
    token_map : array_like of int, shape (V_vocab,), optional
        Vocabulary id -> table row (pruned or clustered vocabularies); ids are
        then checked against ``len(token_map)``.
    padding_idx : int, optional
        A vocabulary id skipped and not counted; negative counts from the end.
    scale : float, default 1.0
    bias : ndarray, shape (d,), optional
    normalize : bool, default False
        Divide each output row by its L2 norm (rows of zeros stay zero).
    out : ndarray, shape (B, d), optional
        Written in place and returned; must not overlap any input; untouched
        when the call raises.
    backend : {"auto", "cython", "numba", "numpy"}
    n_threads : int, optional
        Threads for this call (see :func:`fastembed.set_num_threads`).

    Returns
    -------
    ndarray, shape (B, d), dtype of ``table`` (float32 for a compact table)

    Raises
    ------
    IndexError
        An id outside the vocabulary, a token_map entry outside the table, a
        padding_idx outside the vocabulary.
    TypeError
        Float or bool ids, offsets or token_map; non-real weights; a non-real scale.
    ValueError
        Offsets that break a CSR rule (named in the message), 1-D ids without
        offsets, shape, dtype or ``out`` mismatches, NaN or inf weights, an
        unknown mode or backend.
    """
    tables = prepare_tables(table, proj, token_weights, token_map, padding_idx)
    inputs = {"table": tables.table, "proj": tables.proj, "token_weights": token_weights, "token_map": token_map}
    return run(tables, ids, offsets, mode, weights, scale, bias, normalize, out, backend, n_threads, inputs)
