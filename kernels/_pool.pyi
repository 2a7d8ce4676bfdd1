# Stubs for kernels/_pool.pyx (fastembed._kernels._pool). real = float32 | float64, index = int32 | int64.
import numpy as np
from numpy.typing import NDArray

_Real = NDArray[np.float32] | NDArray[np.float64]
_Index = NDArray[np.int32] | NDArray[np.int64]
_Table = _Real | NDArray[np.int8] | NDArray[np.uint16]

def pool_rows(
    out: _Real,
    table: _Table,
    row_scale: NDArray[np.float32] | None,
    row_offset: NDArray[np.float32] | None,
    kind: int,
    ids: _Index,
    offsets: NDArray[np.int64],
    per_token_rows: bool,
    weights: _Real | None,
    token_weights: _Real | None,
    token_map: NDArray[np.int64] | None,
    padding_idx: int,
    mode: int,
    scale: float,
    bias: _Real | None,
    normalize: bool,
    n_threads: int,
) -> int: ...
def finish_pooled(out: _Real, scale: float, bias: _Real | None, normalize: bool, n_threads: int) -> None: ...
