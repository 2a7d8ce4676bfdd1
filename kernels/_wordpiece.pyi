# Stubs for kernels/_wordpiece.pyx (fastembed._kernels._wordpiece).
import numpy as np
from numpy.typing import NDArray

_U8 = NDArray[np.uint8]
_I32 = NDArray[np.int32]
_I64 = NDArray[np.int64]

def hash_bytes(data: _U8) -> int: ...
def build_slots(keys: _U8, key_start: _I64, slots: _I32) -> None: ...
def encode_batch(
    text: _U8,
    text_start: _I64,
    counts: _I64,
    flags: _U8,
    map_offset: _I32,
    map_pool: _I32,
    keys: _U8,
    key_start: _I64,
    slots: _I32,
    ids: _I32,
    whole_max_chars: int,
    cont_keys: _U8,
    cont_start: _I64,
    cont_slots: _I32,
    cont_ids: _I32,
    cont_max_chars: int,
    added: _U8,
    added_start: _I64,
    added_ids: _I32,
    unk: int,
    max_chars: int,
    prefix: _I32,
    suffix: _I32,
    max_content: int,
    n_threads: int,
) -> _I32: ...
