"""Compact factors: float16, bfloat16 and row-wise int8 tables against float32, same lookup.

time_*: the fused lookup at ALBERT shapes (32 x 512 ids, r=128, d=768), dequantization in the
gather kernel; track_*: the bytes each table format stores (what the lookup reads from memory).
"""

import functools

import numpy as np

import fastembed as fe
from fastembed import _bench_cases as cases

from .common import backend_or_skip, prepared, token_ids

KINDS = ["float32", "float16", "bfloat16", "int8"]


@functools.cache
def compact(kind):
    table, proj = cases.factors("albert-base")
    layer = fe.FactorizedEmbedding(table, proj)
    return layer if kind == "float32" else layer.quantize(kind)


class CompactLookup:
    params = [KINDS, ["cython", "numba"], ["text", "uniform"]]
    param_names = ["table", "backend", "ids"]
    timeout = 300

    @prepared
    def setup(self, kind, backend, ids_kind):
        backend_or_skip(backend)
        layer = compact(kind)
        ids = token_ids(ids_kind, 32, 512, 30000)
        layer.positional = cases.positions(512, 768)
        layer.scale = float(np.sqrt(768))
        out = np.empty((32, 512, 768), np.float32)
        run = lambda: layer(ids, out=out, backend=backend)  # noqa: E731
        run()
        return run

    def time_lookup(self, kind, backend, ids_kind):
        self.run()


class CompactFootprint:
    params = [KINDS]
    param_names = ["table"]

    def track_table_bytes(self, kind):
        return compact(kind).nbytes() - compact(kind).proj.nbytes

    track_table_bytes.unit = "bytes"

    def track_bytes_saved_vs_float32(self, kind):
        return compact("float32").nbytes() - compact(kind).nbytes()

    track_bytes_saved_vs_float32.unit = "bytes"
