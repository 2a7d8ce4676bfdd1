"""Which backends are importable here, and which one a call runs on.

"cython" and "numba" are kernel sets with one interface (the functions of
kernels/_rows.pyx, each taking ``n_threads`` last); "numpy" is the readable
pure-numpy implementation. "auto" means the first available of
cython > numba > numpy. Nothing heavy is imported until a backend is used.
"""

import contextlib
import functools
import importlib
import os
import threading
import warnings

import numpy as np

from . import _threads

BACKENDS = ("cython", "numba", "numpy")


class KernelSet:
    """One backend's kernels behind the interface of kernels/_rows.pyx."""

    def __init__(
        self, name, rows_module, positional_module=None, project_module=None, pool_module=None, wordpiece_module=None
    ):
        self.name = name
        self.rows = rows_module
        self.positional = positional_module
        self.project = project_module
        self.pool = pool_module
        self.wordpiece = wordpiece_module  # Cython only: fastembed.WordPiece's kernel

    @functools.cached_property
    def openmp(self):
        """True when the kernels run on an OpenMP pool (the Cython kernels built with OpenMP)."""
        return bool(self.rows.openmp_enabled())

    @functools.cached_property
    def simd_width(self):
        """Bits of the widest micro-tile ``project_rows`` runs here: 512 (AVX-512), 256 (AVX2) or 0.

        FASTEMBED_DISABLE_SIMD=1 makes it 0: the portable loop then runs when the fused plan is
        forced, and the automatic choice falls back to the BLAS plans."""
        if os.environ.get("FASTEMBED_DISABLE_SIMD") == "1" or self.project is None:
            return 0
        return int(self.project.simd_width())

    @property
    def fused_simd(self):
        """True when the automatic plan choice takes the fused kernel: with AVX-512 tiles it beat
        gather + BLAS + finish on every measured shape and dtype (1.3-2.5x). AVX2 tiles beat it at
        d=768 float32 but lost at d=4096 and in float64 (measured on AVX-512 hardware; no AVX2-only
        CPU was available), so there the BLAS plans stay the default and ``plan="fused"`` opts in."""
        return self.simd_width >= 512

    def thread_count(self, n_threads):
        """The thread policy every kernel call passes through: at least 1, at most
        ``fastembed._threads.max_threads()`` (1 in a child forked after the pool ran)."""
        n = max(1, min(int(n_threads), _threads.max_threads()))
        if n > 1 and self.openmp:
            _threads.note_pool_start()
        return n

    def gather_rows(self, src, rows, scale, bias, pos, pos_rows, out, n_threads):
        return self.rows.gather_rows(src, rows, scale, bias, pos, pos_rows, out, self.thread_count(n_threads))

    def finish_rows(self, out, scale, bias, pos, pos_rows, n_threads):
        return self.rows.finish_rows(out, scale, bias, pos, pos_rows, self.thread_count(n_threads))

    def dedupe(self, ids, marker, uniq, remap):
        return self.rows.dedupe(ids, marker, uniq, remap)

    def gather_dequant(self, src, rows, row_scale, row_offset, kind, out, n_threads):
        return self.rows.gather_dequant(src, rows, row_scale, row_offset, kind, out, self.thread_count(n_threads))

    def row_error_stats(self, orig, recon, stats, n_threads):
        return self.rows.row_error_stats(orig, recon, stats, self.thread_count(n_threads))

    def row_sq_norms(self, x, out, n_threads):
        return self.rows.row_sq_norms(x, out, self.thread_count(n_threads))

    def sq_norms(self, x, weights, row_out, col_partial, n_threads):
        return self.rows.sq_norms(x, weights, row_out, col_partial, self.thread_count(n_threads))

    def gather_sum_layernorm(self, word, ids, token_type, type_rows, pos, pos_rows, gamma, beta, eps, out, n_threads):
        return self.rows.gather_sum_layernorm(
            word, ids, token_type, type_rows, pos, pos_rows, gamma, beta, eps, out, self.thread_count(n_threads)
        )

    def sincos_rows(self, out, hi, lo, tables, n_sin, n_cos, sin_col, cos_col, step, n_threads):
        return self.positional.sincos_rows(
            out, hi, lo, *tables, n_sin, n_cos, sin_col, cos_col, step, self.thread_count(n_threads)
        )

    def rope_rows(self, x, out, table_rows, cos, sin, half, neox, n_threads):
        return self.positional.rope_rows(x, out, table_rows, cos, sin, half, neox, self.thread_count(n_threads))

    def pool_rows(self, out, table, row_scale, row_offset, *rest):
        """The arguments of kernels/_pool.pyx::pool_rows, ``n_threads`` last."""
        *arguments, n_threads = rest
        return self.pool.pool_rows(out, table, row_scale, row_offset, *arguments, self.thread_count(n_threads))

    def finish_pooled(self, out, scale, bias, normalize, n_threads):
        return self.pool.finish_pooled(out, scale, bias, normalize, self.thread_count(n_threads))

    def project_rows(self, table, rows, proj, scale, bias, pos, pos_rows, out, n_threads, simd=None):
        """``simd``: the widest micro-tile allowed in bits (default: the widest that runs here)."""
        width = self.simd_width if simd is None else min(int(simd), self.simd_width)
        return self.project.project_rows(
            table, rows, proj, scale, bias, pos, pos_rows, out, width, self.thread_count(n_threads)
        )


class NumbaKernelSet(KernelSet):
    """Numba kernels: the thread count is Numba's per-thread setting, and entry
    into parallel regions is serialised unless the threading layer is one that
    supports concurrent entry (tbb, omp)."""

    _entry_lock = threading.RLock()
    simd_width = 0  # the mirror is the portable loop: correct, but the BLAS plans are faster
    openmp = False  # Numba's own pool, whichever threading layer it picked

    def __init__(self, name, rows_module, positional_module=None, project_module=None, pool_module=None):
        super().__init__(name, rows_module, positional_module, project_module, pool_module)
        import numba

        self._numba = numba

    def _run(self, kernel, n_threads, *args):
        """Run a Numba kernel on at most ``n_threads`` threads (Numba's per-thread setting), with
        entry into parallel regions serialised unless the threading layer supports concurrent
        entry (tbb, omp); in a child forked after the pool ran, its serial compilation."""
        from ._kernels._numba_jit import serial

        n = min(self.thread_count(n_threads), self._numba.config.NUMBA_NUM_THREADS)
        if _threads.serial_reason() is not None:
            return serial(kernel)(*args)
        _threads.note_pool_start()  # the first parallel call starts Numba's pool, whatever n
        with self._maybe_serialised():
            previous = self._numba.get_num_threads()
            self._numba.set_num_threads(n)
            try:
                return kernel(*args)
            finally:
                self._numba.set_num_threads(previous)

    def _maybe_serialised(self):
        try:
            layer = self._numba.threading_layer()
        except ValueError:  # no parallel region has run yet
            layer = None
        return contextlib.nullcontext() if layer in ("tbb", "omp") else self._entry_lock

    def gather_rows(self, src, rows, scale, bias, pos, pos_rows, out, n_threads):
        return self._run(self.rows.gather_rows, n_threads, src, rows, out.dtype.type(scale), bias, pos, pos_rows, out)

    def finish_rows(self, out, scale, bias, pos, pos_rows, n_threads):
        return self._run(self.rows.finish_rows, n_threads, out, out.dtype.type(scale), bias, pos, pos_rows)

    def gather_dequant(self, src, rows, row_scale, row_offset, kind, out, n_threads):
        return self._run(self.rows.gather_dequant, n_threads, src, rows, row_scale, row_offset, kind, out)

    def row_error_stats(self, orig, recon, stats, n_threads):
        return self._run(self.rows.row_error_stats, n_threads, orig, recon, stats)

    def row_sq_norms(self, x, out, n_threads):
        return self._run(self.rows.row_sq_norms, n_threads, x, out)

    def sq_norms(self, x, weights, row_out, col_partial, n_threads):
        return self._run(self.rows.sq_norms, n_threads, x, weights, row_out, col_partial)

    def gather_sum_layernorm(self, word, ids, token_type, type_rows, pos, pos_rows, gamma, beta, eps, out, n_threads):
        return self._run(
            self.rows.gather_sum_layernorm,
            n_threads,
            word,
            ids,
            token_type,
            type_rows,
            pos,
            pos_rows,
            gamma,
            beta,
            eps,
            out,
        )

    def sincos_rows(self, out, hi, lo, tables, n_sin, n_cos, sin_col, cos_col, step, n_threads):
        return self._run(
            self.positional.sincos_rows, n_threads, out, hi, lo, *tables, n_sin, n_cos, sin_col, cos_col, step
        )

    def rope_rows(self, x, out, table_rows, cos, sin, half, neox, n_threads):
        return self._run(self.positional.rope_rows, n_threads, x, out, table_rows, cos, sin, half, neox)

    def pool_rows(self, out, table, row_scale, row_offset, *rest):
        *arguments, scale, bias, normalize, n_threads = rest
        if row_scale is None:  # typed arguments for the compact branch Numba compiles for every table
            row_scale = row_offset = np.empty(0, np.float32)
        return self._run(
            self.pool.pool_rows,
            n_threads,
            out,
            table,
            row_scale,
            row_offset,
            *arguments,
            out.dtype.type(scale),
            bias,
            normalize,
        )

    def finish_pooled(self, out, scale, bias, normalize, n_threads):
        return self._run(self.pool.finish_pooled, n_threads, out, out.dtype.type(scale), bias, normalize)

    def project_rows(self, table, rows, proj, scale, bias, pos, pos_rows, out, n_threads, simd=None):
        return self._run(
            self.project.project_rows, n_threads, table, rows, proj, out.dtype.type(scale), bias, pos, pos_rows, out
        )


@functools.cache
def _load(name):
    try:
        if name == "cython":
            rows = importlib.import_module("fastembed._kernels._rows")
            if not rows.openmp_enabled():
                warnings.warn(
                    "fastembed's Cython kernels were built without OpenMP and run on one thread; "
                    "rebuild with a compiler that supports -fopenmp for parallel kernels",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return KernelSet(
                name,
                rows,
                _optional("fastembed._kernels._positional"),
                _optional("fastembed._kernels._project"),
                _optional("fastembed._kernels._pool"),
                _optional("fastembed._kernels._wordpiece"),
            )
        if name == "numba":
            rows = importlib.import_module("fastembed._kernels._rows_numba")
            return NumbaKernelSet(
                name,
                rows,
                _optional("fastembed._kernels._positional_numba"),
                _optional("fastembed._kernels._project_numba"),
                _optional("fastembed._kernels._pool_numba"),
            )
    except ImportError:
        return None
    return "numpy"


def _optional(module):
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def available() -> list[str]:
    """Names of the backends importable here, fastest first, e.g. ["cython", "numba", "numpy"]."""
    return [name for name in BACKENDS if _load(name) is not None]


def resolve(backend: str) -> str:
    """The name of the backend a call with ``backend=`` runs on (ValueError if unknown or missing)."""
    if backend == "auto":
        for name in BACKENDS:
            if _load(name) is not None:
                return name
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {('auto',) + BACKENDS}")
    if _load(backend) is None:
        raise ValueError(f"backend {backend!r} is not importable here; available: {available()}")
    return backend


def kernels(backend):
    """The KernelSet of a compiled backend (None for "numpy")."""
    loaded = _load(resolve(backend))
    return None if loaded == "numpy" else loaded


def warm_up(backend: str = "numba") -> None:
    """Compile (or load from Numba's disk cache) the common kernel signatures now, so that the
    first call in a pipeline does not pay for it. A no-op for the cython and numpy backends."""
    loaded = _load(resolve(backend))
    if isinstance(loaded, NumbaKernelSet):
        loaded.rows.warm_up()
        if loaded.project is not None:
            loaded.project.warm_up()


def simd_width() -> int | None:
    """Bits of the SIMD micro-tiles the Cython fused lookup runs on this CPU: 512 (AVX-512), 256
    (AVX2 + FMA) or 0 (none; the BLAS plans run instead). None if the Cython kernels are missing."""
    loaded = _load("cython")
    return None if loaded is None else loaded.simd_width


def openmp_enabled() -> bool | None:
    """Whether the Cython kernels were built with OpenMP (None if they are not importable)."""
    loaded = _load("cython")
    return None if loaded is None else bool(loaded.rows.openmp_enabled())
