# Stubs for kernels/_rows.pyx (fastembed._kernels._rows). real = float32 | float64, index = int32 | int64.
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

_Real = NDArray[np.float32] | NDArray[np.float64]
_Index = NDArray[np.int32] | NDArray[np.int64]

def openmp_enabled() -> bool: ...
def stream_min_bytes(value: float | None = None) -> float: ...
def stream_isa(value: int | None = None) -> int: ...
def gather_rows(
    src: _Real,
    rows: _Index,
    scale: float,
    bias: _Real | None,
    pos: _Real | None,
    pos_rows: NDArray[np.int64] | None,
    out: _Real,
    n_threads: int,
) -> int: ...
def gather_call(
    ids: _Index,
    table: _Real,
    scale: float,
    pos: _Real | None,
    out: _Real | None,
    max_bytes: float,
    threads_for: Callable[[int], int] | int,
    bias: _Real | None = None,
    offset: int = 0,
    position_ids: _Index | None = None,
) -> _Real | None: ...
def finish_rows(
    out: _Real, scale: float, bias: _Real | None, pos: _Real | None, pos_rows: NDArray[np.int64] | None, n_threads: int
) -> int: ...
def dedupe(ids: _Index, marker: _Index, uniq: _Index, remap: _Index) -> int: ...
def row_error_stats(orig: _Real, recon: _Real, stats: NDArray[np.float64], n_threads: int) -> None: ...
def gather_sum_layernorm(
    word: _Real,
    ids: _Index,
    token_type: _Real,
    type_rows: NDArray[np.int64],
    pos: _Real,
    pos_rows: NDArray[np.int64],
    gamma: _Real,
    beta: _Real,
    eps: float,
    out: _Real,
    n_threads: int,
) -> int: ...
def gather_dequant(
    src: NDArray[np.int8] | NDArray[np.uint16],
    rows: _Index,
    row_scale: NDArray[np.float32] | None,
    row_offset: NDArray[np.float32] | None,
    kind: int,
    out: NDArray[np.float32],
    n_threads: int,
) -> int: ...
def row_sq_norms(x: _Real, out: NDArray[np.float64], n_threads: int) -> None: ...
def sq_norms(
    x: _Real,
    weights: NDArray[np.float64] | None,
    row_out: NDArray[np.float64],
    col_partial: NDArray[np.float64],
    n_threads: int,
) -> None: ...
def stream_probe(dst: NDArray[np.uint8], src: NDArray[np.uint8] | None, n_threads: int) -> int: ...
