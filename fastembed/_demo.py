"""The main job on real data: factorize all-MiniLM-L6-v2's word embeddings and
run the fused lookup on real English token ids, on every backend.

Prints what it did, how far each backend is from the float64 reference, and
how fast each is next to the plain numpy expression.
"""

import time

import numpy as np

from . import backends, factorized_lookup, reference
from ._factorize import factorize
from ._timing import wall_times
from .io import load_safetensors
from .models import minilm_dir
from .text import real_text_ids

WORD = "embeddings.word_embeddings.weight"
POSITION = "embeddings.position_embeddings.weight"


def _best_time(fn, repeat=7):
    return min(wall_times(fn, repeat))


def run(rank=128, batch=32, length=128, print_=print):
    folder = minilm_dir()
    tensors = load_safetensors(folder / "model.safetensors", [WORD, POSITION])
    W, pos = tensors[WORD], tensors[POSITION]
    print_(f"model      all-MiniLM-L6-v2 from {folder}")
    print_(
        f"table      word embeddings {W.shape[0]} x {W.shape[1]} {W.dtype}, positions {pos.shape[0]} x {pos.shape[1]}"
    )

    start = time.perf_counter()
    fac = factorize(W, rank)
    elapsed = time.perf_counter() - start
    ratio = W.size / (fac.table.size + fac.proj.size)
    print_(
        f"factorize  rank {rank} (exact) in {elapsed * 1e3:.0f} ms: relative error {fac.relative_error:.4f} "
        f"(optimum {fac.report.optimal_relative_error:.4f}), mean row cosine {fac.report.mean_cosine:.3f}, "
        f"{ratio:.2f}x fewer parameters"
    )

    ids = real_text_ids(batch, length)
    distinct = len(np.unique(ids)) / ids.size
    print_(f"ids        {batch} x {length} real English tokens (stdlib docstrings, WordPiece), {distinct:.0%} distinct")

    scale = float(np.sqrt(W.shape[1]))
    kwargs = dict(scale=scale, pos_table=pos)
    truth = reference.factorized_lookup(ids, fac.table, fac.proj, **kwargs)
    magnitude = reference.factorized_lookup(
        ids, np.abs(fac.table), np.abs(fac.proj), scale=scale, pos_table=np.abs(pos)
    )
    out = np.empty(ids.shape + (W.shape[1],), dtype=W.dtype)

    def numpy_expression():
        return (fac.table[ids] @ fac.proj) * scale + pos[np.arange(length)]

    baseline = _best_time(numpy_expression)
    print_(f"lookup     out = (E[ids] @ P) * {scale:.2f} + pos[l] -> {out.shape} {out.dtype}")
    print_(f"           {'numpy expression':18s} {baseline * 1e3:8.3f} ms   1.00x")
    for name in backends.available():
        result = factorized_lookup(ids, fac.table, fac.proj, out=out, backend=name, **kwargs)
        error = float(np.max(np.abs(result - truth) / magnitude))
        seconds = _best_time(lambda b=name: factorized_lookup(ids, fac.table, fac.proj, out=out, backend=b, **kwargs))
        print_(
            f"           {'backend ' + name:18s} {seconds * 1e3:8.3f} ms {baseline / seconds:6.2f}x"
            f"   max error / bound vs float64 reference {error:.1e}"
        )
    return fac
