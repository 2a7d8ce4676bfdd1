"""Fused factorized lookup, ALBERT shapes: fastembed backends against the peers a user would pick
(numpy, torch as written and at its best, torch.compile, ONNX Runtime: fastembed._peers, shared
with the report).

out = (E[ids] @ P) * sqrt(d) + sinusoidal positions, into a preallocated buffer.
"""

import numpy as np

import fastembed as fe
from fastembed._peers import lookup_peers

from .common import backend_or_skip, dense, factors, positions, token_ids

METHODS = [
    "fastembed-cython",
    "fastembed-numba",
    "fastembed-direct-blas",  # the gather + BLAS + finish plan, to show what the fused kernel adds
    "fastembed-materialized",
    "numpy",
    "torch (user)",
    "torch (best)",
    "torch (dedupe)",
    "torch.compile",
    "onnxruntime",
]


class FactorizedLookup:
    params = [METHODS, [("albert-base", 32, 512), ("albert-base", 1, 128), ("xxlarge", 8, 512)], ["text", "uniform"]]
    param_names = ["method", "shape", "ids"]
    timeout = 300

    def setup(self, method, shape, kind):
        name, B, L = shape
        self.table, self.proj = factors(name)
        V, d = self.table.shape[0], self.proj.shape[1]
        self.ids = token_ids(kind, B, L, V)
        self.pos = positions(max(L, 512), d)
        self.scale = float(np.sqrt(d))
        self.out = np.empty((B, L, d), np.float32)
        self.run = self._method(method, B, L)
        self.run()  # warm: JIT, caches, thread pools

    def _method(self, method, B, L):
        table, proj, ids, pos, scale, out = self.table, self.proj, self.ids, self.pos, self.scale, self.out
        if method == "fastembed-direct-blas":
            backend_or_skip("cython")
            return lambda: fe.factorized_lookup(ids, table, proj, scale=scale, pos_table=pos, out=out, plan="direct")
        if method.startswith("fastembed-") and method != "fastembed-materialized":
            backend = method.split("-", 1)[1]
            backend_or_skip(backend)
            return lambda: fe.factorized_lookup(ids, table, proj, scale=scale, pos_table=pos, out=out, backend=backend)
        if method == "fastembed-materialized":
            full = dense(self._shape_name())
            return lambda: fe.lookup(ids, full, scale=scale, pos_table=pos, out=out)
        peers = lookup_peers(table, proj, pos, scale, ids, out, compile_torch=method == "torch.compile")
        if method not in peers:
            raise NotImplementedError(f"{method} is not installed")
        return peers[method]

    def _shape_name(self):
        return "albert-base" if self.proj.shape[1] == 768 else "xxlarge"

    def time_lookup(self, method, shape, kind):
        self.run()


class DenseLookup:
    params = [["cython", "numba", "numpy"], [(32, 512), (1, 128)]]
    param_names = ["backend", "batch_x_length"]

    def setup(self, backend, shape):
        backend_or_skip(backend)
        B, L = shape
        self.table = dense("albert-base")
        self.ids = token_ids("uniform", B, L, self.table.shape[0])
        self.pos = positions(512, 768)
        self.out = np.empty((B, L, 768), np.float32)
        self.time_lookup(backend, shape)

    def time_lookup(self, backend, shape):
        fe.lookup(self.ids, self.table, scale=27.7, pos_table=self.pos, out=self.out, backend=backend)


class LookupPeakMemory:
    """Memory of the table footprints: factors vs dense (what factorization saves)."""

    params = [["albert-base", "xxlarge"]]
    param_names = ["shape"]

    def track_factor_bytes(self, shape):
        table, proj = factors(shape)
        return table.nbytes + proj.nbytes

    def track_dense_bytes(self, shape):
        table, proj = factors(shape)
        return table.shape[0] * proj.shape[1] * 4

    track_factor_bytes.unit = "bytes"
    track_dense_bytes.unit = "bytes"
