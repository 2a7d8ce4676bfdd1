# Stubs for kernels/_positional.pyx (fastembed._kernels._positional). real = float32 | float64.
import numpy as np
from numpy.typing import NDArray

_Real = NDArray[np.float32] | NDArray[np.float64]

def stream_min_bytes(value: float | None = None) -> float: ...
def stream_isa(value: int | None = None) -> int: ...
def sincos_rows(
    out: _Real,
    hi: NDArray[np.int64],
    lo: NDArray[np.int64],
    sin_hi: NDArray[np.float64],
    cos_hi: NDArray[np.float64],
    sin_lo: NDArray[np.float64],
    cos_lo: NDArray[np.float64],
    n_sin: int,
    n_cos: int,
    sin_col: int,
    cos_col: int,
    step: int,
    n_threads: int,
) -> int: ...
def rope_rows(
    x: _Real,
    out: _Real,
    table_rows: NDArray[np.int64],
    cos: _Real,
    sin: _Real,
    half: int,
    neox: bool,
    period: int,
    n_threads: int,
) -> int: ...
