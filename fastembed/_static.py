"""StaticEmbedding: texts -> one vector per text by a tokenizer and a pooled table lookup."""

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from . import _pooled
from . import _validation as v
from ._quantize import CompactTable, QuantizedRows
from ._tokenizers import as_tokenizer, median_token_length
from .io import load_safetensors, save_safetensors

MODEL2VEC_DEFAULT_MAX_LENGTH = 512


class StaticEmbedding:
    """A static sentence-embedding model: tokenize, then pool the tokens' rows (model2vec's model).

    ``encode(texts)[i] = pooled_lookup(tokens(texts[i]), table, proj, mode, token_weights,
    token_map, padding_idx=unknown token, normalize)``

    Parameters
    ----------
    tokenizer : fastembed.WordPiece, tokenizers.Tokenizer, or path of a tokenizer.json / vocab.txt
        A BERT WordPiece tokenizer (file or ``tokenizers`` object) runs on fastembed.WordPiece,
        the compiled kernel with the ids of ``tokenizers``; any other tokenizer.json (BPE,
        Unigram, other normalizers) on Hugging Face ``tokenizers``, which it then needs.
    table : ndarray, shape (V, r) (or (V, d) without proj); or a compact table
        float32 (float64 is stored as float32), float16, bfloat16 or QuantizedRows.
    proj : ndarray, shape (r, d), optional
        Factorized models pool in r dimensions and project each text once.
    token_weights, token_map, mode, normalize
        As in :func:`fastembed.pooled_lookup` (default mode "mean", normalize True).
    max_length : int or None, default 512
        Tokens kept per text (as model2vec: texts are also cut at ``max_length`` times the median
        token length in characters first).
    skip_unknown : bool, default True
        Leave the unknown token out of every text (model2vec does).

    Raises
    ------
    ValueError
        A tokenizer whose vocabulary does not fit the table (or token map), bad tables.
    """

    def __init__(
        self,
        tokenizer,
        table,
        proj=None,
        *,
        token_weights=None,
        token_map=None,
        mode="mean",
        normalize=True,
        max_length=MODEL2VEC_DEFAULT_MAX_LENGTH,
        skip_unknown=True,
    ):
        if max_length is not None:
            max_length = v.as_integer(max_length, "max_length", low=1)
        self.tokenizer = as_tokenizer(tokenizer, max_length)
        table = v.as_numpy(table, "table")
        if isinstance(table, np.ndarray) and table.dtype == np.float64:
            table = table.astype(np.float32)
        if proj is not None:
            proj = np.asarray(v.as_numpy(proj, "proj"))
            proj = proj.astype(np.float32) if proj.dtype == np.float64 else proj
        if token_weights is not None:
            token_weights = np.asarray(token_weights, dtype=np.float32)
        self.mode = v.as_choice(mode, "mode", _pooled.MODES)
        self.normalize = bool(normalize)
        self.max_length = max_length
        self.skip_unknown = bool(skip_unknown)
        tables = _pooled.prepare_tables(table, proj, token_weights, token_map)
        highest = max(self.tokenizer.vocab.values(), default=-1)
        if highest >= tables.n_vocab:
            raise ValueError(
                f"the tokenizer has ids up to {highest}, but the table (or token_map) covers {tables.n_vocab}"
            )
        unknown = self.tokenizer.unk_id if skip_unknown else None
        self._tables = tables._replace(padding_idx=-1 if unknown is None else unknown)
        self._char_budget = None if max_length is None else max_length * median_token_length(self.tokenizer.vocab)

    @property
    def dim(self):
        """d, the width of every vector."""
        return self._tables.d

    def __repr__(self):
        t = self._tables
        kind = t.table.kind_name if isinstance(t.table, CompactTable) else str(t.dtype)
        shape = f"{t.table.shape[0]} x {t.table.shape[1]} {kind}" + ("" if t.proj is None else f" @ {t.proj.shape}")
        return f"StaticEmbedding({shape}, mode={self.mode!r}, normalize={self.normalize}, {self.tokenizer.name})"

    def tokenize(self, texts):
        """(ids, offsets): the tokens of each text, as :func:`encode` pools them (before padding is skipped)."""
        return self._tokenize(_texts(texts))

    def _tokenize(self, texts):
        """``tokenize`` of a list of str already checked."""
        if self._char_budget is not None:
            budget = self._char_budget
            texts = [t if len(t) <= budget else t[:budget] for t in texts]
        return self.tokenizer.ragged(texts)

    def encode(self, texts, *, batch_size=4096, show_progress=False, n_threads=None):
        """Vectors of ``texts``.

        Parameters
        ----------
        texts : str or sequence of str
        batch_size : int, default 4096
            Texts tokenized per step; the next batch is tokenized while this one is pooled.
        show_progress : bool, default False
            A progress bar on stderr.
        n_threads : int, optional
            Threads of the pooling kernels (see :func:`fastembed.set_num_threads`).

        Returns
        -------
        ndarray, shape (n, d), float32 (shape (d,) for one str)
        """
        single = isinstance(texts, str)
        texts = _texts(texts)
        batch_size = v.as_integer(batch_size, "batch_size", low=1)
        out = np.zeros((len(texts), self.dim), dtype=self._tables.dtype)
        progress = _Progress(len(texts)) if show_progress else None
        for start, (ids, offsets) in self._tokenized_batches(texts, batch_size):
            _pooled.run(
                self._tables,
                ids,
                offsets,
                self.mode,
                None,
                1.0,
                None,
                self.normalize,
                out[start : start + offsets.shape[0] - 1],
                "auto",
                n_threads,
                {},
            )
            if progress is not None:
                progress.update(offsets.shape[0] - 1)
        if progress is not None:
            progress.close()
        return out[0] if single else out

    def _tokenized_batches(self, texts, batch_size):
        """(first text, (ids, offsets)) of each batch of ``texts``. With more than one batch, the
        next batch is tokenized on a worker thread while the caller pools this one; one batch (a
        query) is tokenized on the calling thread: starting and joining a worker took 300 us, 15
        times the tokenizing of one sentence."""
        if len(texts) <= batch_size:
            if texts:
                yield 0, self._tokenize(texts)
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self._tokenize, texts[:batch_size])
            for start in range(0, len(texts), batch_size):
                tokenized = pending.result()
                following = start + batch_size
                if following < len(texts):
                    pending = pool.submit(self._tokenize, texts[following : following + batch_size])
                yield start, tokenized

    # ---- model2vec's folder format --------------------------------------------------------

    @classmethod
    def from_model2vec(cls, folder, *, max_length=None, normalize=None):
        """Load a model2vec model saved on disk (``StaticModel.save_pretrained``).

        Reads ``model.safetensors`` ("embeddings", optional "weights" and "mapping"),
        ``tokenizer.json`` and ``config.json`` (its ``normalize`` and ``max_length``, which the
        arguments override). Gives model2vec's ``encode`` vectors on the same texts.

        Raises
        ------
        FileNotFoundError
            A missing file; the message names it.
        """
        folder = Path(folder)
        for name in ("model.safetensors", "tokenizer.json"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} is not a model2vec folder: it has no {name}")
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        tensors = load_safetensors(folder / "model.safetensors", bf16="bits")
        if "embeddings" not in tensors:
            raise KeyError(f"{folder / 'model.safetensors'} has no 'embeddings' tensor (found {sorted(tensors)})")
        table = tensors["embeddings"]
        if table.dtype == np.int8:  # model2vec averages the raw int8 values
            ones = np.ones(table.shape[0], np.float32)
            table = QuantizedRows(table, ones, np.zeros_like(ones))
        return cls(
            folder / "tokenizer.json",
            table,
            token_weights=tensors.get("weights"),
            token_map=tensors.get("mapping"),
            normalize=config.get("normalize", False) if normalize is None else normalize,
            max_length=config.get("max_length", MODEL2VEC_DEFAULT_MAX_LENGTH) if max_length is None else max_length,
        )

    def save(self, folder):
        """Write the model as a folder model2vec (and :meth:`from_model2vec`) loads.

        A factorized model is stored as its product ``table @ proj`` (model2vec has one table);
        a compact table as float32.

        Raises
        ------
        ValueError
            A mode other than "mean" or ``skip_unknown=False`` (model2vec has neither).
        """
        if self.mode != "mean" or not self.skip_unknown:
            raise ValueError("model2vec models pool by mean and skip the unknown token; this model does not")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        t = self._tables
        table = t.table.dequantize() if isinstance(t.table, CompactTable) else np.asarray(t.table)
        if t.proj is not None:
            table = table @ t.proj
        tensors = {"embeddings": np.ascontiguousarray(table, dtype=np.float32)}
        if t.token_weights is not None:
            tensors["weights"] = t.token_weights
        if t.token_map is not None:
            tensors["mapping"] = t.token_map
        save_safetensors(folder / "model.safetensors", tensors)
        self.tokenizer.save(folder / "tokenizer.json")
        config = {
            "model_type": "model2vec",
            "architectures": ["StaticModel"],
            "hidden_dim": int(table.shape[1]),
            "normalize": self.normalize,
            "max_length": self.max_length,
            "embedding_dtype": "float32",
        }
        if t.token_map is not None:
            config["vocabulary_quantization"] = int(table.shape[0])
        (folder / "config.json").write_text(json.dumps(config, indent=4), encoding="utf-8")

    @classmethod
    def distill(cls, model_dir, *, rank=256, sif_coefficient=1e-4, batch_size=1024, max_length=512, n_threads=None):
        """Build a static model from a transformer checkpoint on disk (model2vec's recipe).

        Every vocabulary token t is embedded by the model as ``[CLS] t [SEP]`` (the mean of the
        last hidden states), the V x d result is reduced to ``rank`` dimensions by
        :func:`fastembed.factorize` (centered, rows weighted by their Zipf probability
        ``p_t ~ 1 / (t + 2)``), and each row is scaled by its SIF weight ``a / (a + p_t)``.
        Needs ``torch`` and ``transformers`` (optional extras).

        Parameters
        ----------
        model_dir : path
            A folder with config.json, the weights and tokenizer.json (e.g. fastembed.models.minilm_dir()).
        rank : int, default 256
        sif_coefficient : float, default 1e-4
        batch_size : int, default 1024
            Tokens per forward pass.

        Returns
        -------
        StaticEmbedding
        """
        from ._distill import distill

        return distill(cls, model_dir, rank, sif_coefficient, batch_size, max_length, n_threads)


def _texts(texts):
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
    return texts


class _Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, total):
        self.total, self.done, self.start, self.drawn = total, 0, time.perf_counter(), 0.0

    def update(self, n):
        self.done += n
        now = time.perf_counter()
        if now - self.drawn >= 0.1 or self.done >= self.total:
            self.drawn = now
            width = 30
            filled = width * self.done // max(self.total, 1)
            rate = self.done / max(now - self.start, 1e-9)
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(f"\rencoding [{bar}] {self.done}/{self.total} texts, {rate:,.0f}/s")
            sys.stderr.flush()

    def close(self):
        sys.stderr.write("\n")
