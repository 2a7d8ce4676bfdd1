"""Fused factorized lookup, ALBERT shapes: fastembed's methods against the peers a user would pick
(numpy, torch as written, at its best and with a dedupe, torch.compile, ONNX Runtime). Cases and
methods are fastembed._bench_cases, which the report times too.

out = (E[ids] @ P) * sqrt(d) + sinusoidal positions, into a preallocated buffer.
"""

import numpy as np

import fastembed as fe
from fastembed import _bench_cases as cases

from .common import available, backend_or_skip, lookup_data, prepared


class FactorizedLookup:
    params = [cases.LOOKUP_METHODS + cases.PEERS, [c.key for c in cases.LOOKUP_CASES]]
    param_names = ["method", "case"]
    timeout = 300

    @prepared
    def setup(self, method, case_key):
        case, data = lookup_data(case_key)
        # torch.compile compiles each shape for tens of seconds: only when it is what is timed
        methods = cases.lookup_methods(case, data, compile_torch=method == "torch.compile")
        return available(methods, method)

    def time_lookup(self, method, case_key):
        self.run()


class DecodeStep:
    """One generation step, ids (B, 1) at position 100 (``offset=100``): the smallest call a model
    makes, timed against the peers (fastembed._bench_cases.step_methods)."""

    params = [["fastembed auto"] + cases.PEERS, list(cases.STEP_BATCHES)]
    param_names = ["method", "batch"]
    timeout = 300
    number = 100  # a sample: 100 calls (each after asv's setup, timed alone), not one call of microseconds

    @prepared
    def setup(self, method, batch):
        return available(cases.step_methods(batch, compile_torch=method == "torch.compile"), method)

    def time_step(self, method, batch):
        self.run()


class DenseLookup:
    params = [["cython", "numba", "numpy"], [(32, 512), (1, 128)]]
    param_names = ["backend", "batch_x_length"]

    @prepared
    def setup(self, backend, shape):
        backend_or_skip(backend)
        B, L = shape
        table = cases.dense("albert-base")
        ids = cases.token_ids("uniform", B, L, table.shape[0])
        pos = cases.positions(512, 768)
        out = np.empty((B, L, 768), np.float32)
        run = lambda: fe.lookup(ids, table, scale=27.7, pos_table=pos, out=out, backend=backend)  # noqa: E731
        run()
        return run

    def time_lookup(self, backend, shape):
        self.run()


class LookupPeakMemory:
    """Memory of the table footprints: factors vs dense (what factorization saves)."""

    params = [list(cases.SHAPES)]
    param_names = ["shape"]

    def track_factor_bytes(self, shape):
        table, proj = cases.factors(shape)
        return table.nbytes + proj.nbytes

    def track_dense_bytes(self, shape):
        V, _, d = cases.SHAPES[shape]
        return V * d * 4

    track_factor_bytes.unit = "bytes"
    track_dense_bytes.unit = "bytes"
