"""The leading eigenvectors of a symmetric matrix, through the LAPACK that numpy ships.

``np.linalg.eigh`` (LAPACK's dsyevd) reduces the matrix to a tridiagonal T = Q^T G Q (dsytrd),
finds T's eigenpairs by divide and conquer (dstedc) and carries every one of T's eigenvectors back
through Q (dormtr). An exact factorization keeps r of d vectors (MiniLM: 128 of 384), so here the
same three steps run with the last one on the r kept vectors only: the same eigenvalues (bit for
bit) and the kept vectors to the same accuracy, in 10.3-10.8 ms against eigh's 14.3-14.8 on one
core of the Zen 4 (MiniLM's 384 x 384 Gram matrix, AVX-512 and AVX2 code paths alike: dsytrd 3,
dstedc 5, dormtr 2.5 for 128 vectors where eigh's back-transform of all 384 took ~7).

The steps are LAPACKE's C functions with 64-bit integers (``*64_`` names, so the integer width is
known) exported by the OpenBLAS numpy's wheels bundle, found through threadpoolctl. Where none is
loaded (numpy built on MKL, Accelerate or a 32-bit-integer OpenBLAS), a step reports an error or the
matrix holds inf or NaN, ``np.linalg.eigh`` answers.
"""

import contextlib
import ctypes
import functools
import threading

import numpy as np

from ._threads import blas_limit

_LAYOUT_COLUMN_MAJOR = 102
MIN_VECTORS_PER_THREAD = 32  # a thread's share of the back-transform; fewer vectors run on fewer threads


class _Lapacke:
    """dsytrd, dstedc and dormtr of one library, bound with their C signatures."""

    def __init__(self, lib, prefix, path):
        i64, ptr, char = ctypes.c_int64, ctypes.c_void_p, ctypes.c_char
        self.path = path

        def bind(name, *args):
            f = getattr(lib, f"{prefix}LAPACKE_{name}64_")
            f.restype = i64
            f.argtypes = [ctypes.c_int, *args]
            return f

        self.sytrd = bind("dsytrd", char, i64, ptr, i64, ptr, ptr, ptr)
        self.stedc = bind("dstedc", char, i64, ptr, ptr, ptr, i64)
        self.ormtr = bind("dormtr", char, char, char, i64, i64, ptr, i64, ptr, ptr, i64)


@functools.lru_cache(maxsize=1)
def lapacke():
    """The bound LAPACKE steps of the first loaded OpenBLAS that exports them, or None."""
    try:
        from threadpoolctl import threadpool_info

        libraries = [i["filepath"] for i in threadpool_info() if i.get("internal_api") == "openblas"]
    except Exception:  # noqa: BLE001 - threadpoolctl could not inspect the process: use eigh
        return None
    for path in libraries:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):  # numpy >= 2's scipy-openblas, numpy 1.x's openblas64_
            if all(hasattr(lib, f"{prefix}LAPACKE_{n}64_") for n in ("dsytrd", "dstedc", "dormtr")):
                return _Lapacke(lib, prefix, path)
    return None


def leading_eigenpairs(g, choose_rank, n_threads=1):
    """Eigenvalues of symmetric ``g`` and its eigenvectors for the largest r of them.

    ``g = V diag(s2) V^T``; returns ``(V[:, :r], s2)`` with ``s2`` (d,) descending and clipped at
    0, ``r = choose_rank(s2)``, only the kept r vectors carried back to g's coordinates.

    Parameters
    ----------
    g : ndarray of float64, shape (d, d)
        Symmetric (LAPACK's steps read its lower triangle; one with inf or NaN goes to eigh).
    choose_rank : callable
        Maps the descending, clipped eigenvalues (d,) to the number of vectors kept, 0..d.
    n_threads : int
        Threads that carry the kept vectors back, each a share of them on one BLAS thread (with
        LAPACK's steps).

    Returns
    -------
    vectors : ndarray of float64, shape (d, r)
        Orthonormal columns, column k for ``s2[k]``.
    s2 : ndarray of float64, shape (d,)
    """
    d = g.shape[0]
    steps = lapacke()
    if steps is not None and d > 0 and np.isfinite(g).all():  # else eigh's NaNs, as the callers knew them
        found = _by_steps(steps, g, choose_rank, n_threads)
        if found is not None:
            return found
    s2, vecs = np.linalg.eigh(g)
    order = np.argsort(s2)[::-1]
    s2 = np.clip(s2[order], 0, None)
    r = choose_rank(s2)
    return vecs[:, order[:r]], s2


def _by_steps(steps, g, choose_rank, n_threads):
    """leading_eigenpairs by dsytrd, dstedc and dormtr on the kept vectors; None if a step fails."""
    d = g.shape[0]
    a = np.array(g, dtype=np.float64, order="F")  # dsytrd overwrites it with Q's reflectors
    diag, off, tau = np.empty(d), np.empty(max(d - 1, 1)), np.empty(max(d - 1, 1))
    if steps.sytrd(_LAYOUT_COLUMN_MAJOR, b"L", d, a.ctypes.data, d, diag.ctypes.data, off.ctypes.data, tau.ctypes.data):
        return None
    z = np.empty((d, d))  # column-major: z[k] is T's eigenvector k, ascending eigenvalues
    if steps.stedc(_LAYOUT_COLUMN_MAJOR, b"I", d, diag.ctypes.data, off.ctypes.data, z.ctypes.data, d):
        return None
    s2 = np.clip(diag[::-1], 0, None)
    r = choose_rank(s2)
    kept = np.ascontiguousarray(z[d - r :][::-1])  # column-major (d, r): the largest first
    if not _back_transform(steps, a, tau, kept, n_threads):
        return None
    return kept.T, s2


def _back_transform(steps, a, tau, kept, n_threads):
    """kept <- Q kept (dormtr; Q from dsytrd's reflectors in ``a``), its vectors (rows of ``kept``)
    shared among up to ``n_threads`` threads (each vector is carried back alone, so the shares
    change no result). MiniLM's 128 vectors: 2.4 ms on one thread, 1.6 on two (Zen 4). True when
    every share succeeded."""
    d, r = a.shape[0], kept.shape[0]
    bounds = np.linspace(0, r, max(1, min(n_threads, r // MIN_VECTORS_PER_THREAD)) + 1).astype(int)
    failed = []

    def share(lo, hi):
        # dormtr writes into the reflectors while it applies them (and restores them): each
        # share but the first reads a copy of its own
        reflectors = a if lo == 0 else a.copy(order="F")
        if hi > lo and steps.ormtr(
            _LAYOUT_COLUMN_MAJOR,
            b"L",
            b"L",
            b"N",
            d,
            hi - lo,
            reflectors.ctypes.data,
            d,
            tau.ctypes.data,
            kept[lo:].ctypes.data,
            d,
        ):
            failed.append((lo, hi))

    helpers = [threading.Thread(target=share, args=pair) for pair in zip(bounds[1:-1], bounds[2:], strict=True)]
    with blas_limit(1) if helpers else contextlib.nullcontext():  # shares run side by side, not BLAS's pool
        for helper in helpers:
            helper.start()
        share(bounds[0], bounds[1])
        for helper in helpers:
            helper.join()
    return not failed
