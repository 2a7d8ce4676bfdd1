"""Transformer embedding blocks of real checkpoints: BERT's and ALBERT's.

BERT:   out = LayerNorm((word[ids] + token_type[types]) + position[positions])           (V x d tables)
ALBERT: out = LayerNorm((word[ids] + token_type[types]) + position[positions]) @ W^T + b  (V x E tables,
        W the (H x E) ``embedding_hidden_mapping_in``: LayerNorm runs in the small E dimension, then
        the projection to the hidden size H)

Gather, add and LayerNorm run as one fused kernel pass per row; ALBERT's
projection is one BLAS product plus the bias. Weights are numpy arrays keyed
as in the transformers checkpoints, with or without the model prefix
(``albert.``, ``bert.``).
"""

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _validation as v
from . import backends
from ._pipeline import project
from ._threads import blas_limit, resolve
from .io import CheckpointError, load_safetensors

WORD = "embeddings.word_embeddings.weight"


def _find_prefix(sd):
    for key in sd:
        if key.endswith(WORD):
            return key[: -len(WORD)]
    raise CheckpointError(f"no '{WORD}' in the state dict (keys: {sorted(sd)[:5]} ...)")


def _array(sd, key, dtype=None):
    if key not in sd:
        raise CheckpointError(f"the state dict has no {key!r}")
    arr = np.asarray(sd[key])
    return arr if dtype is None else np.ascontiguousarray(arr, dtype=dtype)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensors of a checkpoint file or model folder as numpy arrays.

    A folder is searched for model.safetensors, then pytorch_model.bin (read
    with ``torch.load(weights_only=True)``: no arbitrary pickles; needs torch).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin")
    if path.suffix == ".safetensors":
        return load_safetensors(path)
    if path.suffix in (".bin", ".pt", ".pth"):
        try:
            import torch
        except ImportError:
            raise CheckpointError(
                f"{path}: reading a PyTorch checkpoint needs torch (or convert it to safetensors)"
            ) from None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: not a loadable weights-only PyTorch checkpoint ({exc})") from None
        return {
            k: t.detach().float().numpy() if t.dtype == torch.bfloat16 else t.detach().numpy() for k, t in state.items()
        }
    if path.suffix == ".npz":
        from .io import load_npz

        return load_npz(path)
    raise CheckpointError(f"{path}: unknown checkpoint format")


def _config(path):
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    config = folder / "config.json"
    if config.is_file():
        return json.loads(config.read_text())
    return {}


class BertEmbedding:
    """BERT's embedding block: ``LayerNorm((word[ids] + token_type[types]) + position[positions])``.

    Parameters
    ----------
    word : (V, d), position : (P, d), token_type : (T, d), gamma, beta : (d,)
        float32 or float64, one dtype.
    eps : float
        LayerNorm epsilon (``layer_norm_eps``).
    """

    def __init__(self, word, position, token_type, gamma, beta, eps=1e-12):
        self.word = v.as_float_matrix(word, "word")
        dtype, d = self.word.dtype, self.word.shape[1]
        self.position = v.as_float_matrix(position, "position", dtype)
        self.token_type = v.as_float_matrix(token_type, "token_type", dtype)
        for name, table in (("position", self.position), ("token_type", self.token_type)):
            if table.shape[1] != d:
                raise ValueError(f"{name} must have {d} columns, got {table.shape}")
        self.gamma = v.as_vector(gamma, "gamma", d, dtype)
        self.beta = v.as_vector(beta, "beta", d, dtype)
        self.eps = float(eps)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, np.ndarray], eps: float = 1e-12, dtype: DTypeLike | None = None):
        """From numpy arrays keyed as in a transformers BERT checkpoint (any prefix)."""
        prefix = _find_prefix(sd)
        word = _array(sd, prefix + WORD, dtype)
        dtype = word.dtype
        e = prefix + "embeddings."
        return cls(
            word,
            _array(sd, e + "position_embeddings.weight", dtype),
            _array(sd, e + "token_type_embeddings.weight", dtype),
            _array(sd, e + "LayerNorm.weight", dtype),
            _array(sd, e + "LayerNorm.bias", dtype),
            eps=eps,
        )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, dtype: DTypeLike | None = None):
        """From a local model folder (config.json + model.safetensors or pytorch_model.bin) or file."""
        return cls.from_state_dict(load_state_dict(path), eps=_config(path).get("layer_norm_eps", 1e-12), dtype=dtype)

    @property
    def dim(self):
        return self.word.shape[1]

    def _rows(self, ids, token_type_ids, position_ids):
        ids = v.as_index_array(ids, "ids", self.word.shape[0])
        positions = v.positions(ids.shape, self.position, 0, position_ids, self.dim, self.word.dtype)
        if token_type_ids is None:
            types = np.zeros(ids.size, np.int64)
        else:
            types = v.as_index_array(
                token_type_ids, "token_type_ids", self.token_type.shape[0], what="token_type table"
            )
            try:
                types = np.broadcast_to(types, ids.shape)
            except ValueError:
                raise ValueError(f"token_type_ids of shape {types.shape} do not broadcast to ids {ids.shape}") from None
            types = np.ascontiguousarray(types, dtype=np.int64).reshape(-1)
        return ids, types, positions.rows

    def normalized(self, ids, token_type_ids=None, position_ids=None, *, backend="auto", n_threads=None):
        """The LayerNorm output, shape ids.shape + (d,)."""
        name = backends.resolve(backend)
        ids, types, pos_rows = self._rows(ids, token_type_ids, position_ids)
        out = np.empty((ids.size, self.dim), self.word.dtype)
        k = backends.kernels(name)
        if ids.size:
            if k is None:
                self._normalized_numpy(ids.reshape(-1), types, pos_rows, out)
            else:
                k.gather_sum_layernorm(
                    self.word,
                    ids.reshape(-1),
                    self.token_type,
                    types,
                    self.position,
                    pos_rows,
                    self.gamma,
                    self.beta,
                    self.eps,
                    out,
                    k.for_work(resolve(n_threads), out.size),
                )
        return out.reshape(ids.shape + (self.dim,))

    def _normalized_numpy(self, ids, types, pos_rows, out):
        x = (self.word[ids] + self.token_type[types]) + self.position[pos_rows]
        mean = x.mean(axis=-1, keepdims=True, dtype=np.float64)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        out[...] = ((x - mean) / np.sqrt(var + self.eps)).astype(out.dtype) * self.gamma + self.beta

    def __call__(
        self,
        ids: ArrayLike,
        token_type_ids: ArrayLike | None = None,
        position_ids: ArrayLike | None = None,
        *,
        backend: str = "auto",
        n_threads: int | None = None,
    ) -> np.ndarray:
        """Embed ``ids`` (..., L) -> (..., L, d) (ALBERT: (..., L, H)). Defaults: token type 0,
        positions 0..L-1."""
        normalized = self.normalized(ids, token_type_ids, position_ids, backend=backend, n_threads=n_threads)
        return self._after_layernorm(normalized, backend, resolve(n_threads))

    def _after_layernorm(self, normalized, backend, n_threads):
        return normalized


class AlbertEmbedding(BertEmbedding):
    """ALBERT's embedding block: BERT's in the E dimension, then ``@ mapping.T + mapping_bias``.

    Parameters
    ----------
    word, position, token_type, gamma, beta, eps
        As in :class:`BertEmbedding`, in the embedding size E.
    mapping : (H, E)
        ``encoder.embedding_hidden_mapping_in.weight``.
    mapping_bias : (H,)
    """

    def __init__(self, word, position, token_type, gamma, beta, mapping, mapping_bias, eps=1e-12):
        super().__init__(word, position, token_type, gamma, beta, eps)
        self.mapping = v.as_float_matrix(mapping, "mapping", self.word.dtype)
        if self.mapping.shape[1] != self.dim:
            raise ValueError(f"mapping must have shape (H, {self.dim}), got {self.mapping.shape}")
        self.mapping_bias = v.as_vector(mapping_bias, "mapping_bias", self.mapping.shape[0], self.word.dtype)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, np.ndarray], eps: float = 1e-12, dtype: DTypeLike | None = None):
        """From numpy arrays keyed as in a transformers ALBERT checkpoint, with or without ``albert.``."""
        bert = BertEmbedding.from_state_dict(sd, eps=eps, dtype=dtype)
        m = _find_prefix(sd) + "encoder.embedding_hidden_mapping_in."
        dtype = bert.word.dtype
        return cls(
            bert.word,
            bert.position,
            bert.token_type,
            bert.gamma,
            bert.beta,
            _array(sd, m + "weight", dtype),
            _array(sd, m + "bias", dtype),
            eps=eps,
        )

    @property
    def hidden_size(self):
        return self.mapping.shape[0]

    def n_parameters(self):
        return sum(
            x.size
            for x in (self.word, self.position, self.token_type, self.gamma, self.beta, self.mapping, self.mapping_bias)
        )

    def _after_layernorm(self, normalized, backend, n_threads):
        """``normalized @ mapping.T + mapping_bias``: one BLAS product, then the bias in place."""
        flat = normalized.reshape(-1, self.dim)
        out = np.empty((flat.shape[0], self.hidden_size), self.word.dtype)
        if flat.shape[0]:
            project(flat, self.mapping.T, out, n_threads)
            k = backends.kernels(backends.resolve(backend))
            if k is None:
                with blas_limit(n_threads):
                    out += self.mapping_bias
            else:
                k.finish_rows(out, 1.0, self.mapping_bias, None, None, k.for_work(n_threads, out.size))
        return out.reshape(normalized.shape[:-1] + (self.hidden_size,))
