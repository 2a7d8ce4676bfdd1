"""The kernel protocol: the functions every compiled kernel set exports, with one signature each.

The Cython kernels (``_rows.pyx``, ``_positional.pyx``, ``_project.pyx``, ``_pool.pyx``) and their
Numba mirrors (``_rows_numba.py``, ...) both define every function listed here, with the arguments
of the ``.pyi`` stub beside the Cython module: arrays arrive validated and normalised, scalars as
Python numbers, and a threaded kernel takes ``n_threads`` last. ``fastembed.backends.KernelSet``
binds each one to the package's thread policy; the only argument it adapts is for Numba, which
compiles once per combination of types: its threaded kernels get 1-D integer arrays as contiguous,
writable int64 ones, and the optional terms listed in ``_numba_jit.ABSENT_AS_EMPTY`` as empty arrays
when absent (the kernels read ``given(term)``, true for a passed array, false for None or the empty
stand-in).
"""

from typing import NamedTuple


class Kernel(NamedTuple):
    """How the package calls one kernel of the protocol."""

    module: str  # which module of a set defines it: "rows", "positional", "project" or "pool"
    threaded: bool  # takes ``n_threads`` last and runs on the set's thread pool
    skips: str | None  # what its returned count counts when an index is outside its table, if it counts


KERNELS = {
    "gather_rows": Kernel("rows", True, "rows"),
    "finish_rows": Kernel("rows", True, "rows"),
    "gather_dequant": Kernel("rows", True, "rows"),
    "gather_sum_layernorm": Kernel("rows", True, "rows"),
    "row_error_stats": Kernel("rows", True, None),
    "row_sq_norms": Kernel("rows", True, None),
    "sq_norms": Kernel("rows", True, None),
    "dedupe": Kernel("rows", False, None),  # returns the number of distinct ids, -1 for a bad id
    "sincos_rows": Kernel("positional", True, "rows"),
    "rope_rows": Kernel("positional", True, "rows"),
    "project_rows": Kernel("project", True, "rows"),
    "project_distinct": Kernel("project", True, "rows"),
    "project_gather": Kernel("project", True, "rows"),
    "gram_rows": Kernel("project", True, None),
    "pool_rows": Kernel("pool", True, "bags"),
    "finish_pooled": Kernel("pool", True, None),
    "encode_batch": Kernel("wordpiece", True, None),  # returns the ids; Cython only
    "build_slots": Kernel("wordpiece", False, None),
}

# The importable module of each role, per kernel set (the role "rows" is required, the others optional;
# the WordPiece tokenizer's kernel is Cython only).
MODULES = {
    "cython": {
        "rows": "fastembed._kernels._rows",
        "positional": "fastembed._kernels._positional",
        "project": "fastembed._kernels._project",
        "pool": "fastembed._kernels._pool",
        "wordpiece": "fastembed._kernels._wordpiece",
    },
    "numba": {
        "rows": "fastembed._kernels._rows_numba",
        "positional": "fastembed._kernels._positional_numba",
        "project": "fastembed._kernels._project_numba",
        "pool": "fastembed._kernels._pool_numba",
    },
}
