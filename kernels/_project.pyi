# Stubs for kernels/_project.pyx (fastembed._kernels._project). real = float32 | float64, index = int32 | int64.
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

_Real = NDArray[np.float32] | NDArray[np.float64]
_Index = NDArray[np.int32] | NDArray[np.int64]

def simd_width() -> int: ...
def simd_available() -> bool: ...
def fma_probe(n_steps: int, n_threads: int, width: int = 512) -> tuple[float, str | None]: ...
def project_rows(
    table: _Real,
    rows: _Index | None,
    proj: _Real,
    scale: float,
    bias: _Real | None,
    pos: _Real | None,
    pos_rows: NDArray[np.int64] | None,
    out: _Real,
    whole_bytes: float,
    simd: int,
    n_threads: int,
) -> int: ...
def project_distinct(
    table: _Real,
    uniq: _Index | None,
    remap: _Index,
    proj: _Real,
    scale: float,
    bias: _Real | None,
    pos: _Real | None,
    pos_rows: NDArray[np.int64] | None,
    out: _Real,
    simd: int,
    n_threads: int,
) -> int: ...
def project_gather(
    table: _Real,
    uniq: _Index,
    remap: _Index,
    proj: _Real,
    scale: float,
    bias: _Real | None,
    pos: _Real | None,
    pos_rows: NDArray[np.int64] | None,
    projected: _Real,
    out: _Real,
    simd: int,
    n_threads: int,
) -> int: ...
def stream_min_bytes(value: float | None = None) -> float: ...
def stream_isa(value: int | None = None) -> int: ...
def streamed_calls() -> int: ...
def tile_rows512(value: int | None = None) -> int: ...
def tile_shape512() -> tuple[int, int]: ...
def gram_rows(
    x: _Real, gram: NDArray[np.float64], row_norms: NDArray[np.float64] | None, simd: int, n_threads: int
) -> int: ...
def project_call(
    ids: _Index,
    table: _Real,
    proj: _Real,
    scale: float,
    pos: _Real | None,
    out: _Real | None,
    simd: int,
    max_flops: float,
    threads_for: Callable[[float], int] | int,
    bias: _Real | None = None,
    offset: int = 0,
    position_ids: _Index | None = None,
) -> _Real | None: ...
