"""The one njit decorator every Numba kernel uses: cached where a cache can be written.

Numba raises at decoration time ("no locator available") when ``cache=True``
and neither the package folder nor NUMBA_CACHE_DIR nor a home cache is
writable; then the kernels compile in memory instead of breaking the import.
"""

import functools

import numba as nb


def jit(**options):
    def decorate(fn):
        try:
            return nb.njit(cache=True, nogil=True, **options)(fn)
        except RuntimeError:
            return nb.njit(cache=False, nogil=True, **options)(fn)

    return decorate


@functools.cache
def serial(dispatcher):
    """The same kernel compiled without ``parallel`` (prange runs as range): it never enters
    Numba's threading layer, so it runs in a child forked after the parent's pool started."""
    options = {k: v for k, v in dispatcher.targetoptions.items() if k not in ("parallel", "nopython")}
    return nb.njit(cache=False, **options)(dispatcher.py_func)
