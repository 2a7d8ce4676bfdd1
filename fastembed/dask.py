"""fastembed on dask: lookups over datasets of token ids, and factorizing tables
chunked by rows, on a dask.distributed cluster (or any dask scheduler).

Nothing here is home-made distribution: the graphs are dask arrays; tables
are shipped to each worker once (``client.scatter(..., broadcast=True)`` when
a distributed client is active, else one shared graph key), and each block
runs the local kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _validation as v
from . import backends
from ._eigen import leading_eigenpairs
from ._factorize import (
    ErrorReport,
    Factorization,
    assemble,
    rank_chooser,
    report_from_stats,
    row_stats,
    tail_energy,
)
from ._lookup import factorized_lookup as _local_factorized_lookup
from ._lookup import lookup as _local_lookup


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError("fastembed.dask needs dask: pip install 'fastembed-kernels[dask]'") from exc
    return dask, da


def _client():
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def _share(arrays, client=None):
    """Graph handles for numpy arrays that every block uses: shipped once per worker."""
    dask, _ = _dask()
    client = client if client is not None else _client()
    present = [a for a in arrays if a is not None]
    if client is not None and present:
        # hash=False: re-scattering data a cluster already holds under the same hash key hung
        # (distributed 2026.x); each call ships its tables once per worker either way
        futures = iter(client.scatter(present, broadcast=True, hash=False))
        return [None if a is None else next(futures) for a in arrays]
    return [None if a is None else dask.delayed(a, pure=True) for a in arrays]


def _as_dask_ids(ids):
    _, da = _dask()
    if isinstance(ids, da.Array):
        return ids
    return da.from_array(np.asarray(ids), chunks="auto")


def _block_call(ids_block, *tables, local, offset, has_position_ids, kwargs, block_info=None):
    """One block: the local call, with the position offset of this block along the sequence axis."""
    if has_position_ids:
        position_ids, tables = tables[-1], tables[:-1]
        return local(
            ids_block, *tables[:-2], bias=tables[-2], pos_table=tables[-1], position_ids=position_ids, **kwargs
        )
    start = block_info[0]["array-location"][-1][0] if ids_block.ndim and block_info else 0
    pos_table = tables[-1]
    block_offset = offset + start if pos_table is not None else 0
    return local(ids_block, *tables[:-2], bias=tables[-2], pos_table=pos_table, offset=block_offset, **kwargs)


def _lookup(local, ids, tables, d, dtype, *, scale, bias, pos_table, offset, position_ids, backend, n_threads, client):
    _, da = _dask()
    ids = _as_dask_ids(ids)
    if ids.dtype.kind not in "iuO":
        raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
    bias = v.as_vector(bias, "bias", d, dtype)
    if pos_table is not None:
        pos_table = v.as_pos_table(pos_table, d, dtype)
        if position_ids is None:
            v.check_offset(offset, ids.shape[-1] if ids.ndim else 1, pos_table.shape[0], " of the pos_table")
    elif position_ids is not None or offset:
        raise ValueError("position_ids or offset given without a pos_table")
    shared = _share([*tables, bias, pos_table], client)
    args = [ids, *shared]
    if position_ids is not None:
        position_ids = da.broadcast_to(_as_dask_ids(position_ids), ids.shape).rechunk(ids.chunks)
        args.append(position_ids)
    kwargs = dict(scale=scale, backend=backend, n_threads=n_threads)
    return da.map_blocks(
        _block_call,
        *args,
        local=local,
        offset=offset,
        has_position_ids=position_ids is not None,
        kwargs=kwargs,
        new_axis=ids.ndim,
        chunks=ids.chunks + ((d,),),
        dtype=dtype,
        meta=np.empty((0,) * (ids.ndim + 1), dtype=dtype),
    )


def factorized_lookup(
    ids: Any,
    table: np.ndarray,
    proj: np.ndarray,
    *,
    scale: float = 1.0,
    bias: np.ndarray | None = None,
    pos_table: np.ndarray | None = None,
    offset: int = 0,
    position_ids: Any = None,
    backend: str = "auto",
    n_threads: int | None = None,
    client: Any = None,
) -> Any:
    """:func:`fastembed.factorized_lookup` over a dask array of ids, one kernel call per block.

    ``out[..., :] = (table[ids] @ proj) * scale + bias + pos_table[position]``

    Parameters
    ----------
    ids : dask.array.Array (or array_like), shape (..., L), chunked along any axes
        When the sequence axis is split, each block gets the positions of its
        columns (``offset + l`` with l counted over the whole array).
    table, proj, scale, bias, pos_table, offset, position_ids, backend, n_threads
        As in :func:`fastembed.factorized_lookup`; the tables are numpy arrays,
        shipped once to each worker.
    client : distributed.Client, optional
        Default: the active client, if any (tables are scattered with broadcast=True).

    Returns
    -------
    dask.array.Array, shape ids.shape + (d,), chunks ids.chunks + ((d,),)
        Computing it raises what the local call raises for a bad block (e.g. IndexError).
    """
    backends.resolve(backend)
    table, proj, dtype, d = v.lookup_tables(table, proj)
    return _lookup(
        _local_factorized_lookup,
        ids,
        [table, proj],
        d,
        dtype,
        scale=scale,
        bias=bias,
        pos_table=pos_table,
        offset=offset,
        position_ids=position_ids,
        backend=backend,
        n_threads=n_threads,
        client=client,
    )


def lookup(
    ids: Any,
    table: np.ndarray,
    *,
    scale: float = 1.0,
    bias: np.ndarray | None = None,
    pos_table: np.ndarray | None = None,
    offset: int = 0,
    position_ids: Any = None,
    backend: str = "auto",
    n_threads: int | None = None,
    client: Any = None,
) -> Any:
    """:func:`fastembed.lookup` over a dask array of ids (see :func:`factorized_lookup`)."""
    backends.resolve(backend)
    table, _, dtype, d = v.lookup_tables(table)
    return _lookup(
        _local_lookup,
        ids,
        [table],
        d,
        dtype,
        scale=scale,
        bias=bias,
        pos_table=pos_table,
        offset=offset,
        position_ids=position_ids,
        backend=backend,
        n_threads=n_threads,
        client=client,
    )


def _weighted_rows(W, sqrt_w):
    return W if sqrt_w is None else W * sqrt_w[:, None]


def factorize(
    W: Any,
    rank: int | None = None,
    *,
    energy: float | None = None,
    seed: int | None = None,
    row_weights: Any = None,
    method: str = "randomized",
    n_iter: int = 3,
    oversample: int = 10,
) -> Factorization:
    """Factorize a table chunked by rows: ``W ~ table @ proj`` (see :func:`fastembed.factorize`).

    ``method="randomized"``: randomized range finder with ``n_iter`` power
    iterations, orthonormalised by dask's tall-skinny QR (``dask.array.linalg.qr``)
    — one pass over W per product. ``method="svd"``: exact, from the d x d Gram
    matrix ``W^T diag(w) W`` summed over row blocks (one pass), then a local
    eigensolver.

    Parameters
    ----------
    W : dask.array.Array (V, d) chunked by rows (a single column chunk), or a numpy array
    rank : int, optional; energy : float, optional (method="svd" only)
    seed : int, optional
    row_weights : array_like (V,), optional (numpy or dask)

    Returns
    -------
    Factorization
        ``table`` is a dask array (V, r) when W is one (lazy; chunked like W),
        ``proj`` (r, d) numpy; ``relative_error`` and ``report`` are computed
        (one more pass over W).
    """
    dask, da = _dask()
    if not isinstance(W, da.Array):
        W = np.asarray(W)
    v.table_to_factorize(W.shape)
    if not isinstance(W, da.Array):
        W = da.from_array(W, chunks=(min(W.shape[0], 65536), -1))
    if W.numblocks[1] != 1:
        W = W.rechunk({1: -1})
    if W.dtype not in (np.float32, np.float64):
        W = W.astype(np.float64)
    rank = v.factorize_arguments(W.shape, rank, energy, None, method)
    if energy is not None and method != "svd":
        raise ValueError("energy= needs method='svd' here (the exact spectrum)")
    sqrt_w = None
    weights = None
    if row_weights is not None:
        weights = row_weights if isinstance(row_weights, da.Array) else np.asarray(row_weights, float)
        v.row_weights_shape(weights.shape, W.shape[0])
        if not isinstance(weights, da.Array):
            weights = da.from_array(weights, chunks=(W.chunks[0],))
        weights = weights.rechunk((W.chunks[0],)).astype(np.float64)
        v.row_weights_values(*dask.compute(weights.min(), (weights > 0).any()))
        sqrt_w = da.sqrt(weights).astype(W.dtype)
    finite = da.isfinite(W).all()
    X = _weighted_rows(W, sqrt_w)
    all_s2 = None
    if method == "svd":
        gram, ok = dask.compute((X.T @ X).astype(np.float64), finite)
        v.require_finite(ok)
        vr, all_s2 = leading_eigenpairs(gram, rank_chooser(rank, energy))
    else:
        vr = _randomized_right_vectors(X, rank, seed, n_iter, oversample, finite)
    v_cast = vr.astype(W.dtype)
    table = W @ v_cast
    proj = np.ascontiguousarray(v_cast.T)
    stats = da.map_blocks(
        row_stats, W, table, proj, chunks=(W.chunks[0], (4,)), dtype=np.float64, meta=np.empty((0, 0))
    )
    stats, s2 = dask.compute(stats, _weighted_column_norms(table, weights))
    report = report_from_stats(stats, None if weights is None else weights.compute(), tail_energy(all_s2, s2))
    return assemble(table, proj, s2, all_s2, None, report, method, "table")


def _orthonormal_dask(Y):
    _, da = _dask()
    Q, _ = da.linalg.qr(Y.rechunk({1: -1}))
    return Q


def _randomized_right_vectors(X, rank, seed, n_iter, oversample, finite):
    dask, _ = _dask()
    rng = np.random.default_rng(seed)
    width = min(rank + oversample, min(X.shape))
    omega = rng.standard_normal((X.shape[1], width)).astype(X.dtype)
    Q = _orthonormal_dask(X @ omega)
    for _ in range(n_iter):
        Z = np.linalg.qr((X.T @ Q).compute().astype(np.float64))[0].astype(X.dtype)
        Q = _orthonormal_dask(X @ Z)
    B, ok = dask.compute((Q.T @ X).astype(np.float64), finite)
    v.require_finite(ok)
    _, _, vt = np.linalg.svd(B, full_matrices=False)
    return vt[:rank].T


def _weighted_column_norms(table, weights):
    sq = table.astype(np.float64) ** 2
    if weights is not None:
        sq = sq * weights[:, None]
    return sq.sum(axis=0)


__all__ = ["factorized_lookup", "lookup", "factorize", "Factorization", "ErrorReport"]
