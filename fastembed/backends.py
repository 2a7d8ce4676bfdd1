"""Which backends are importable here, and which one a call runs on.

"cython" and "numba" are kernel sets with one interface (the functions of
kernels/_protocol.py, each threaded one taking ``n_threads`` last); "numpy" is the readable
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
# AVX2 tiles against gather + BLAS + finish, float32 r=128 d=768, 2 threads, measured with simd=256
# forced on a Zen 4 (whose AVX-512 runs on 256-bit units, as AVX2 does): 0.50x BLAS's time at 25
# MFLOP (1 x 128), 0.70x at 101, 0.86x at 201, 1.17x at 403 (4 x 512) and 1.05-1.5x beyond (d=4096
# r=256: 1.5x; float64: 1.19x). The fused plan pays below the crossover, with a margin. Re-measured
# with the packed 4 x 3 AVX2 tiles (one run, +-10% here): 1.11x at 201 MFLOP, 1.17x at 403, 0.92-0.97x
# at 805-3221 and 1.05-1.5x at d=4096. On an Intel Xeon with FASTEMBED_SIMD=avx2 and OpenBLAS's Haswell
# kernels (OPENBLAS_CORETYPE=Haswell: what an Intel AVX2 CPU runs), medians of 25-60 calls, uniform ids:
# 0.93x at 403 and 805 MFLOP, 0.87x at 1611, 0.75x at 3221 (16.7 against 22.1 ms; BLAS's threads spin
# on after each call and slow the OpenMP passes around it), float64 0.97x at 805 and 0.70x at 3221;
# d=4096 r=256 (8.6 GFLOP) 0.93-0.96x, equal in best times. Both CPUs favour the tiles from 805 to
# 3221 MFLOP, so the fused plan pays up to 4 GFLOP; past it the Zen 4's d=4096 result keeps BLAS.
FUSED_AVX2_MAX_FLOPS = 4e9
# FASTEMBED_SIMD: the widest micro-tiles the Cython kernels may run (bits), whatever the CPU has.
SIMD_CAPS = {"avx512": 512, "avx2": 256, "none": 0}


def simd_cap():
    """Bits FASTEMBED_SIMD allows the micro-tiles (512 when unset; FASTEMBED_DISABLE_SIMD=1 is 0).

    ``FASTEMBED_SIMD=avx2`` makes an AVX-512 CPU run the AVX2 tiles and take the plans chosen for
    them, as an AVX2-only CPU would: ``python -m fastembed.bench`` then measures them (and an FMA
    peak of AVX2 width). The streaming stores and the kernels chosen by them (RoPE's direct rows,
    the streamed finish) follow the cap too (``_cap_streaming``); the passes compiled as GCC
    target clones (the plain row finish, pooling) still take the widest ISA the CPU has; so do
    BLAS and the peers.
    """
    if os.environ.get("FASTEMBED_DISABLE_SIMD") == "1":
        return 0
    value = os.environ.get("FASTEMBED_SIMD", "").strip().lower()
    if not value:
        return 512
    if value not in SIMD_CAPS:
        raise ValueError(f"FASTEMBED_SIMD must be one of {', '.join(SIMD_CAPS)}, got {value!r}")
    return SIMD_CAPS[value]


class KernelSet:
    """One backend's kernels: each function of ``kernels/_protocol.KERNELS`` as a method.

    A threaded kernel's method takes the kernel's own arguments (``n_threads`` last) and passes
    through one thread policy (``thread_count``) and one bookkeeping step (the OpenMP pool's
    warmth, see ``fastembed._threads.for_work``); a kernel that counts rows skipped for an index
    outside their table raises RuntimeError when it skipped any, since arguments arrive validated.
    The raw kernels stay reachable as ``self.rows.gather_rows`` and so on.
    """

    def __init__(self, name, rows, positional=None, project=None, pool=None, wordpiece=None):
        from ._kernels._protocol import KERNELS

        self.name = name
        self.rows, self.positional, self.project, self.pool = rows, positional, project, pool
        self.wordpiece = wordpiece  # Cython only: fastembed.WordPiece's kernel
        for kernel, spec in KERNELS.items():
            module = getattr(self, spec.module)
            if module is not None:
                function = getattr(module, kernel)
                setattr(self, kernel, self._bound(kernel, spec, function) if spec.threaded else function)

    def _bound(self, kernel, spec, function):
        def call(*arguments):
            *rest, n_threads = arguments
            result = self._enter(function, rest, self.thread_count(n_threads))
            if self.openmp:
                _threads.note_openmp_kernel_end()
            if spec.skips is not None and result:
                raise RuntimeError(f"{kernel} kernel skipped {result} {spec.skips} with an index outside their table")
            return result

        call.__name__ = call.__qualname__ = kernel
        call.__doc__ = function.__doc__
        return call

    def _enter(self, function, arguments, n_threads):
        return function(*arguments, n_threads)

    @functools.cached_property
    def openmp(self):
        """True when the kernels run on an OpenMP pool (the Cython kernels built with OpenMP)."""
        return bool(self.rows.openmp_enabled())

    @functools.cached_property
    def simd_width(self):
        """Bits of the widest micro-tile ``project_rows`` runs here: 512 (AVX-512), 256 (AVX2) or 0.

        At most ``simd_cap()``: FASTEMBED_SIMD=avx2 runs the AVX2 tiles on an AVX-512 CPU;
        FASTEMBED_SIMD=none or FASTEMBED_DISABLE_SIMD=1 makes it 0: the portable loop then runs
        when the fused plan is forced, and the automatic choice falls back to the BLAS plans."""
        if self.project is None:
            return 0
        return min(int(self.project.simd_width()), simd_cap())

    @property
    def fused_simd(self):
        """True when the automatic plan choice takes the fused kernel at every size: with AVX-512
        tiles it beat gather + BLAS + finish on every measured shape and dtype (1.3-2.5x on
        full-width AVX-512 cores; on a Zen 4, whose AVX-512 runs on 256-bit units, 0.8-0.9x
        BLAS's time at 32 x 512 with the 4 x 6 tiles, which AMD CPUs run, and 0.45-0.7x at 1 x 128). For AVX2 tiles see
        ``fused_pays``."""
        return self.simd_width >= 512

    def fused_pays(self, flops):
        """True when the automatic plan choice takes the fused kernel for a projection of ``flops``:
        always with AVX-512 tiles; with AVX2 tiles up to FUSED_AVX2_MAX_FLOPS, past which the BLAS
        plans were faster."""
        return self.fused_simd or (self.simd_width >= 256 and flops <= FUSED_AVX2_MAX_FLOPS)

    def for_work(self, n_threads, n_elements):
        """Threads worth waking for a memory-bound pass over ``n_elements`` on this set's pool (at
        most ``n_threads``; see ``fastembed._threads.for_work``)."""
        return _threads.for_work(n_threads, n_elements, openmp=self.openmp)

    def for_flops(self, n_threads, flops):
        """Threads worth waking for a compute-bound call of ``flops`` on this set's pool."""
        return _threads.for_flops(n_threads, flops, openmp=self.openmp)

    def thread_count(self, n_threads):
        """The thread policy every kernel call passes through: at least 1, at most
        ``fastembed._threads.max_threads()`` (1 in a child forked after the pool ran)."""
        if n_threads == 1:  # the latency paths' common case, without the lookups below
            return 1
        n = max(1, min(int(n_threads), _threads.max_threads()))
        if n > 1 and self.openmp:
            _threads.note_pool_start()
        return n


class NumbaKernelSet(KernelSet):
    """Numba kernels: the thread count is Numba's per-thread setting, and entry
    into parallel regions is serialised unless the threading layer is one that
    supports concurrent entry (tbb, omp)."""

    _entry_lock = threading.RLock()
    simd_width = 0  # the mirror is the portable loop: correct, but the BLAS plans are faster
    openmp = False  # Numba's own pool, whichever threading layer it picked

    def __init__(self, name, rows, positional=None, project=None, pool=None):
        import numba

        self._numba = numba
        super().__init__(name, rows, positional, project, pool)

    def thread_count(self, n_threads):
        return min(super().thread_count(n_threads), self._numba.config.NUMBA_NUM_THREADS)

    def _enter(self, kernel, arguments, n_threads):
        """Run a Numba kernel on ``n_threads`` threads (Numba's per-thread setting), with entry
        into parallel regions serialised unless the threading layer supports concurrent entry
        (tbb, omp); in a child forked after the pool ran, its serial compilation."""
        from ._kernels._numba_jit import serial

        arguments = _absent_as_empty(kernel, [_one_index_type(a) for a in arguments])
        if _threads.serial_reason() is not None:
            return serial(kernel)(*arguments, n_threads)
        _threads.note_pool_start()  # the first parallel call starts Numba's pool, whatever n
        with self._maybe_serialised():
            previous = self._numba.get_num_threads()
            self._numba.set_num_threads(n_threads)
            try:
                return kernel(*arguments, n_threads)
            finally:
                self._numba.set_num_threads(previous)

    def _maybe_serialised(self):
        try:
            layer = self._numba.threading_layer()
        except ValueError:  # no parallel region has run yet
            layer = None
        return contextlib.nullcontext() if layer in ("tbb", "omp") else self._entry_lock


def _one_index_type(argument):
    """A 1-D integer array as a writable, contiguous int64 one (a copy unless it already is one),
    anything else as it is. Numba compiles a kernel once per combination of argument types, and
    index arrays came as int32 or int64, read-only (broadcast positions) or not: the test suite alone
    compiled gather_rows 70 times, ~2 s each. Index arrays are O(N) beside the O(N d) rows they
    select; the kernels only read them."""
    if (
        isinstance(argument, np.ndarray)
        and argument.ndim == 1
        and argument.dtype.kind == "i"
        and (argument.dtype != np.int64 or not argument.flags.writeable or not argument.flags.c_contiguous)
    ):
        return argument.astype(np.int64)
    return argument


def _absent_as_empty(kernel, arguments):
    """``arguments`` with each absent optional term that ``kernel`` reads as an empty array (see
    ``fastembed._kernels._numba_jit.ABSENT_AS_EMPTY``) given as one, so that one compiled version of
    the kernel serves calls with and without the term."""
    out_index, slots = _absent_slots(kernel.py_func)
    if not slots:
        return arguments
    out_dtype = arguments[out_index].dtype
    arguments = list(arguments)
    for index, ndim in slots:
        if arguments[index] is None:
            arguments[index] = _empty(np.dtype(np.int64) if ndim == 0 else out_dtype, max(ndim, 1))
    return arguments


@functools.cache
def _absent_slots(py_func):
    """(index of ``out``, ((index, ndim) of each term in ABSENT_AS_EMPTY)) for a Numba kernel's
    Python function; (None, ()) for a kernel with no such terms."""
    from ._kernels._numba_jit import ABSENT_AS_EMPTY

    terms = ABSENT_AS_EMPTY.get(py_func.__name__)
    if not terms:
        return None, ()
    names = py_func.__code__.co_varnames[: py_func.__code__.co_argcount]
    return names.index("out"), tuple((names.index(name), ndim) for name, ndim in terms.items())


@functools.cache
def _empty(dtype, ndim):
    """The empty stand-in of an absent term, one per dtype and rank: the kernels never write it."""
    return np.zeros((0,) * ndim, dtype)


@functools.cache
def _load(name):
    """The KernelSet of a compiled backend, or None when it cannot be imported here."""
    try:
        from ._kernels._protocol import MODULES

        modules = MODULES[name]
        rows = importlib.import_module(modules["rows"])
        others = {role: _optional(module) for role, module in modules.items() if role != "rows"}
    except ImportError:
        return None
    if name == "numba":
        return NumbaKernelSet(name, rows, **others)
    if not rows.openmp_enabled():
        warnings.warn(
            "fastembed's Cython kernels were built without OpenMP and run on one thread; "
            "rebuild with a compiler that supports -fopenmp for parallel kernels",
            RuntimeWarning,
            stacklevel=3,
        )
    loaded = KernelSet(name, rows, **others)
    _cap_streaming(loaded)
    return loaded


def _cap_streaming(loaded):
    """Cap the streaming stores of the Cython modules that write with them at ``simd_cap()``
    (512, 256 or 0 bits: 0 is plain stores), so that ``FASTEMBED_SIMD=avx2`` runs their 256-bit
    kernels as an AVX2-only CPU would. A no-op without a cap."""
    cap = simd_cap()
    if cap >= 512:
        return
    for module in (loaded.rows, loaded.positional, loaded.project):
        if module is not None:  # each Cython module that writes rows has stream_isa (_stream.pxi)
            module.stream_isa(min(module.stream_isa(), cap))


def _optional(module):
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _importable(name):
    return name == "numpy" or _load(name) is not None


def available() -> list[str]:
    """Names of the backends importable here, fastest first, e.g. ["cython", "numba", "numpy"]."""
    return [name for name in BACKENDS if _importable(name)]


def resolve(backend: str) -> str:
    """The name of the backend a call with ``backend=`` runs on (ValueError if unknown or missing)."""
    if backend == "auto":  # the first importable, without importing the ones after it (Numba: ~0.2 s)
        return next(name for name in BACKENDS if _importable(name))
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {('auto',) + BACKENDS}")
    if not _importable(backend):
        raise ValueError(f"backend {backend!r} is not importable here; available: {available()}")
    return backend


def cython_kernels():
    """The Cython KernelSet, or None where it cannot be imported (what "auto" runs when it loads)."""
    return _load("cython")


def kernels(backend):
    """The KernelSet of a compiled backend (None for "numpy")."""
    name = resolve(backend)
    return None if name == "numpy" else _load(name)


def warm_up(backend: str = "numba") -> None:
    """Compile (or load from Numba's disk cache) the common kernel signatures now, so that the
    first call in a pipeline does not pay for it. A no-op for the cython and numpy backends."""
    loaded = kernels(backend)
    if isinstance(loaded, NumbaKernelSet):
        loaded.rows.warm_up()
        if loaded.project is not None:
            loaded.project.warm_up()


def simd_name(width: int | None) -> str:
    """The ISA of a tile width, as ``--info`` and the report print it."""
    return {None: "no Cython kernels", 0: "none (BLAS plans)", 256: "AVX2", 512: "AVX-512"}.get(width, str(width))


def simd_capped_below(width: int | None) -> int | None:
    """The widest tile width the CPU runs when the tiles in force, ``width`` (``simd_width()``), are
    narrower (FASTEMBED_SIMD or FASTEMBED_DISABLE_SIMD capped them), else None."""
    loaded = _load("cython")
    if width is None or loaded is None or loaded.project is None:
        return None
    widest = int(loaded.project.simd_width())
    return widest if width < widest else None


def simd_width() -> int | None:
    """Bits of the SIMD micro-tiles the Cython fused lookup runs on this CPU: 512 (AVX-512), 256
    (AVX2 + FMA) or 0 (none; the BLAS plans run instead). None if the Cython kernels are missing."""
    loaded = _load("cython")
    return None if loaded is None else loaded.simd_width


def openmp_enabled() -> bool | None:
    """Whether the Cython kernels were built with OpenMP (None if they are not importable)."""
    loaded = _load("cython")
    return None if loaded is None else bool(loaded.rows.openmp_enabled())
