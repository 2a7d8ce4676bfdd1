"""The one njit decorator every Numba kernel uses: cached where a cache can be written.

Numba raises at decoration time ("no locator available") when ``cache=True``
and neither the package folder nor NUMBA_CACHE_DIR nor a home cache is
writable; then the kernels compile in memory instead of breaking the import.
"""

import functools

import numba as nb
from numba.core import types
from numba.extending import overload


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


# The optional terms each threaded kernel takes as an empty array when absent, rather than None
# (fastembed.backends.NumbaKernelSet passes them so): Numba compiles a kernel once per combination
# of argument types, and None-or-array for each term multiplied the versions (the test suite compiled
# gather_rows 41 times, project_rows 31, pool_rows 26, at 1-5 s each). name -> ndim of the stand-in;
# ndim 0 is an int64 index array, the others have the output's dtype. pool_rows' token_map and
# token_weights are empty when present only for a vocabulary of 0 ids, where every id the caller
# validated is padding, so that no token reads them either way.
ABSENT_AS_EMPTY = {
    "gather_rows": {"bias": 1, "pos": 2, "pos_rows": 0},
    "finish_rows": {"bias": 1, "pos": 2, "pos_rows": 0},
    "project_rows": {"bias": 1, "pos": 2, "pos_rows": 0},
    "project_distinct": {"bias": 1, "pos": 2, "pos_rows": 0},
    "project_gather": {"bias": 1, "pos": 2, "pos_rows": 0},
    "pool_rows": {"weights": 1, "token_weights": 1, "token_map": 0, "bias": 1},
    "finish_pooled": {"bias": 1},
}


def given(term):
    """Whether an optional term was passed: not None and not the empty stand-in for an absent one.
    A present term is never empty where it is read (a bias of d = 0 columns adds nothing; position
    and weight arrays have an entry for each of the rows or tokens the kernel visits)."""
    return term is not None and term.shape[0] != 0


@overload(given, inline="always")
def _given(term):
    if isinstance(term, types.NoneType):
        return lambda term: False
    return lambda term: term.shape[0] != 0
