"""Thread counts: resolved once per call in Python, then passed to the kernels.

Precedence: the call's ``n_threads`` > a ``num_threads(n)`` block active in
the calling thread > ``set_num_threads(n)`` > FASTEMBED_NUM_THREADS > the
cores this process may use (the environment and the cores are read once).
Whatever the source, the count a kernel gets is at most the cores this process
may use (more threads than cores only adds wake-ups; absurd counts would make
OpenMP start thousands of threads or abort the process).
BLAS is limited to the same count (threadpoolctl) for the duration of the
call, so BLAS and the kernel pools do not oversubscribe the cores.

In a child process forked after a kernel thread pool started (multiprocessing's
default on Linux), every kernel runs on one thread: GNU OpenMP cannot start its
pool again after fork (a parallel region hangs) and Numba's OpenMP layer aborts.
``serial_reason()`` says so, and ``fastembed --info`` prints it.
"""

import contextlib
import functools
import os
import threading
import time

from ._validation import as_integer

# libgomp's default spin-wait (300000 spins) keeps idle OpenMP workers busy
# while OpenBLAS runs the projection on the same cores, which made a
# gather -> matmul sequence 15x slower on 2 cores. A short spin keeps region
# start-up fast without that fight. Set before libgomp loads; a user's own
# setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "3000")


class _PerThread(threading.local):
    """This thread's ``num_threads`` setting; a class default, as getattr on a missing
    attribute of a thread-local costs ~0.4 us (an exception raised and caught) on every call."""

    n = None


_local = _PerThread()
_default = None
_blas_lock = threading.RLock()  # re-entrant: a limited block calls code that limits again (factorize -> eigh)
_blas_controller = None
_blas_threads = None


@functools.lru_cache(maxsize=1)
def available_cores():
    """Cores this process may run on (read once)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@functools.lru_cache(maxsize=1)
def _environment_default():
    env = os.environ.get("FASTEMBED_NUM_THREADS", "").strip()
    if not env:
        return available_cores()
    try:
        return _checked(int(env))
    except (TypeError, ValueError):
        raise ValueError(f"FASTEMBED_NUM_THREADS must be a whole number >= 1, got {env!r}") from None


_pool_started = False  # a kernel thread pool (OpenMP or Numba) ran in this process
_serial_reason = None  # why this process runs every kernel on one thread, if it does


def note_pool_start():
    """Record that a kernel thread pool ran here (a child forked from now on runs serially)."""
    global _pool_started
    _pool_started = True


def _after_fork_in_child():
    global _serial_reason, _last_openmp_kernel_end
    if _pool_started:
        _serial_reason = (
            "this process was forked after the parent's kernel thread pool ran (GNU OpenMP and "
            "Numba's OpenMP layer cannot restart it): kernels run on one thread here; use the "
            "'spawn' or 'forkserver' start method for parallel kernels in child processes"
        )
    _last_openmp_kernel_end = float("-inf")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def serial_reason():
    """Why kernels run on one thread in this process (None when they may use threads)."""
    return _serial_reason


def max_threads():
    """The most threads any kernel call gets here: the cores this process may use (1 in a
    child forked after the kernel pool ran)."""
    return 1 if _serial_reason else available_cores()


def _checked(n):
    return as_integer(n, "thread count", low=1)


def set_num_threads(n: int | None) -> None:
    """Set the process-wide default thread count for fastembed kernels (None resets it)."""
    global _default
    _default = None if n is None else _checked(n)


def get_num_threads() -> int:
    """The thread count set for calls without ``n_threads`` from this thread (by the precedence in
    the module docstring). Kernels use at most the cores this process may use of it."""
    return requested(None)


@contextlib.contextmanager
def num_threads(n: int):
    """Within this block, calls from the current thread use ``n`` threads."""
    n = _checked(n)
    previous = _local.n
    _local.n = n
    try:
        yield n
    finally:
        _local.n = previous


def requested(n_threads):
    """The thread count asked for, by the call or the settings (before the clamp)."""
    if n_threads is not None:
        return _checked(n_threads)
    local = _local.n
    if local is not None:
        return local
    if _default is not None:
        return _default
    return _environment_default()


def resolve(n_threads):
    """The thread count for one call: what was asked for, at most ``max_threads()``."""
    if n_threads is None and _default is None and not _serial_reason and _local.n is None:
        return _clamped_environment_default()
    return min(requested(n_threads), max_threads())


@functools.lru_cache(maxsize=1)
def _clamped_environment_default():
    return min(_environment_default(), available_cores())


# Waking an idle OpenMP/Numba worker costs 25-250 us on a VM (the most after
# the CPUs idled), more than a small row pass takes on one thread: below this
# many elements per thread a kernel runs on fewer threads ...
MIN_ELEMENTS_PER_THREAD = 1 << 18
# ... unless calls come back to back: when an OpenMP kernel ended within
# WARM_POOL_SECONDS, its workers (spinning, then parked on a futex, their CPUs
# not yet idled by the host) wake quickly, so passes down to this size use them.
# Measured on a 2-vCPU KVM guest (Zen 4) with the 1 x 128 fused lookup (25 MFLOP)
# after the calling thread slept for a gap: 2 threads took 155-175 us against
# 255-290 us on one for gaps up to 400 us, and 350-700 us from 700 us on (the
# vCPUs had idled); 200 us keeps a margin below that crossover.
MIN_ELEMENTS_PER_THREAD_WARM = 1 << 14
# Below this many elements a pass runs on one thread whatever the pool's state.
ONE_THREAD_ELEMENTS = 2 * MIN_ELEMENTS_PER_THREAD_WARM
_passive = os.environ.get("OMP_WAIT_POLICY", "").lower() == "passive" or os.environ.get("GOMP_SPINCOUNT") == "0"
WARM_POOL_SECONDS = 0.0 if _passive else 200e-6
# Compute-bound kernels: a pool pays from a few microseconds of FMAs per thread (Numba's, whatever
# its state) ...
MIN_FLOPS_PER_THREAD = 2_000_000
# ... the OpenMP pool within WARM_POOL_SECONDS of its last kernel from less (the fused kernel,
# ALBERT-base rows on the Zen 4 VM, calls back to back, 1 vs 2 threads: 4 rows (0.8 MFLOP) 9.4 vs
# 9.2 us, 6 rows 16.8 vs 13.6, 12 rows 24.1 vs 13.6: a second thread pays from ~1 MFLOP) ...
MIN_FLOPS_PER_THREAD_WARM = 500_000
# Below this, one thread whatever the pool (a latency path then runs without asking the policy).
ONE_THREAD_FLOPS = 2 * MIN_FLOPS_PER_THREAD_WARM
# ... and an idle OpenMP pool only when half the work saves more than the wake-up (100-250 us,
# measured on 2-vCPU KVM guests): ~64 MFLOP per thread.
MIN_FLOPS_PER_THREAD_COLD = 64_000_000
_last_openmp_kernel_end = float("-inf")


def note_openmp_kernel_end():
    """Record that an OpenMP kernel just returned (see ``for_work``)."""
    global _last_openmp_kernel_end, _pool_started
    _last_openmp_kernel_end = time.perf_counter()
    _pool_started = True


def for_work(n_threads, n_elements, openmp=False):
    """Threads worth waking for a memory-bound pass over ``n_elements`` (at most ``n_threads``);
    ``openmp``: the pass runs on the OpenMP pool, which back-to-back calls keep warm."""
    if n_elements < ONE_THREAD_ELEMENTS:
        return 1
    per_thread = MIN_ELEMENTS_PER_THREAD
    if openmp and _pool_is_warm():
        per_thread = MIN_ELEMENTS_PER_THREAD_WARM
    return max(1, min(n_threads, n_elements // per_thread))


def for_flops(n_threads, flops, openmp=False):
    """Threads worth waking for a compute-bound kernel of ``flops`` (at most ``n_threads``);
    ``openmp`` as in ``for_work``."""
    if flops < ONE_THREAD_FLOPS:
        return 1
    per_thread = MIN_FLOPS_PER_THREAD
    if openmp:
        per_thread = MIN_FLOPS_PER_THREAD_WARM if _pool_is_warm() else MIN_FLOPS_PER_THREAD_COLD
    return max(1, min(n_threads, int(flops // per_thread)))


def _pool_is_warm():
    return time.perf_counter() - _last_openmp_kernel_end < WARM_POOL_SECONDS


def _controller():
    global _blas_controller
    if _blas_controller is None:
        from threadpoolctl import ThreadpoolController

        _blas_controller = ThreadpoolController()
    return _blas_controller


def blas_num_threads():
    """The largest BLAS thread count, read once at the first call (None if no BLAS)."""
    global _blas_threads
    if _blas_threads is None:
        counts = [info["num_threads"] for info in _controller().info() if info["user_api"] == "blas"]
        _blas_threads = max(counts) if counts else 0
    return _blas_threads or None


@contextlib.contextmanager
def blas_limit(n):
    """Limit BLAS to ``n`` threads inside the block when it would use more.

    The BLAS thread count is process-global, so changing it is serialised.
    """
    current = blas_num_threads()
    if current is None or current <= n:
        yield
        return
    with _blas_lock, _controller().limit(limits=n, user_api="blas"):
        yield
