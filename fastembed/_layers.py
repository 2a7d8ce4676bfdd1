"""Embedding layers: a dense table or factors E @ P, with scale, bias and positions,
callable on ids, saved as safetensors or npz with self-describing metadata."""

import json
import math
import os

import numpy as np
from numpy.typing import ArrayLike

from . import _validation as v
from ._lookup import factorized_lookup, lookup
from ._quantize import FLOAT16, INT8, CompactTable, QuantizedRows, proj_float32, quantize_rows
from ._version import __version__
from .io import CheckpointError, load_npz, load_safetensors, read_safetensors_header, save_safetensors

FORMAT_KEY = "fastembed.format"


def _save(path, tensors, meta):
    path = os.fspath(path)
    tensors = {k: t for k, t in tensors.items() if t is not None}
    meta = dict(meta, **{"fastembed.version": __version__})
    if path.endswith(".npz"):  # bfloat16 bits are plain uint16 there; metadata says what they are
        tensors = {name.removesuffix("@bf16"): t for name, t in tensors.items()}
        np.savez(path, **tensors, __metadata__=np.array(json.dumps(meta)))
    else:
        save_safetensors(path, tensors, {k: str(val) for k, val in meta.items()})


def _load(path):
    path = os.fspath(path)
    tensors = load_npz(path) if path.endswith(".npz") else load_safetensors(path, bf16="bits")
    if path.endswith(".npz"):
        raw = tensors.pop("__metadata__", None)
        try:
            meta = json.loads(str(raw)) if raw is not None else {}
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})"[:500]) from None
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise CheckpointError(f"{path}: metadata must map strings to strings")
    else:
        meta = read_safetensors_header(path)[1]
    return tensors, meta


# What each stored table format must hold: tensor name -> the dtypes it may have.
_STORED_TABLES = {
    "none": {"table": ("float32", "float64")},
    "int8": {"table.codes": ("int8",), "table.scale": ("float32",), "table.offset": ("float32",)},
    "float16": {"table": ("float16",)},
    "bfloat16": {"table": ("uint16",)},
}


def _tensor(tensors, name, path, dtypes=("float32", "float64")):
    """The stored tensor ``name``, CheckpointError when missing or of another dtype than ``dtypes``."""
    if name not in tensors:
        raise CheckpointError(f"{path}: no tensor {name!r}")
    arr = tensors[name]
    if arr.dtype.name not in dtypes:
        raise CheckpointError(f"{path}: tensor {name!r} is {arr.dtype}, expected {' or '.join(dtypes)}")
    return arr


def _layer_from_file(cls, path, build):
    """``build(tensors, meta, scale, terms)`` for a file of ``cls.kind``; whatever the contents get wrong
    (missing tensors, dtypes or shapes that do not fit, bad metadata) is a CheckpointError."""
    tensors, meta = _load(path)
    _expect(meta, cls.kind, path)
    try:
        scale = float(meta.get("scale", "1.0"))
    except ValueError:
        raise CheckpointError(f"{path}: metadata scale {meta.get('scale')!r} is not a number") from None
    optional = {name: _tensor(tensors, name, path) for name in ("bias", "positional") if name in tensors}
    try:
        return build(tensors, meta, scale, optional)
    except CheckpointError:
        raise
    except (ValueError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{path}: the stored tensors do not form a {cls.kind} layer ({exc})") from None


def _table_tensors(table):
    """Tensors and metadata that store a (possibly compact) table under ``table*`` names."""
    if isinstance(table, CompactTable):
        if table.kind == INT8:
            return {"table.codes": table.data, "table.scale": table.scale, "table.offset": table.offset}, "int8"
        if table.kind == FLOAT16:
            return {"table": table.data.view(np.float16)}, "float16"
        return {"table@bf16": table.data}, "bfloat16"
    return {"table": table}, "none"


def _table_from(tensors, meta, path):
    kind = meta.get("quantization", "none")
    if kind not in _STORED_TABLES:
        raise CheckpointError(f"{path}: unknown quantization {kind!r}")
    stored = {name: _tensor(tensors, name, path, dtypes) for name, dtypes in _STORED_TABLES[kind].items()}
    if kind == "int8":
        return QuantizedRows(stored["table.codes"], stored["table.scale"], stored["table.offset"])
    return stored["table"]  # float16, uint16 bfloat16 bit patterns, or float32/float64


def _expect(meta, kind, path):
    if meta.get(FORMAT_KEY) != kind:
        raise CheckpointError(f"{path}: not a {kind} file (format {meta.get(FORMAT_KEY)!r})")


class Embedding:
    """``out = table[ids] * scale + bias + positional[offset + l]``.

    Parameters
    ----------
    table : ndarray (V, d), float32 or float64
    bias : ndarray (d,), optional
    scale : float
    positional : ndarray (n_positions, d), optional
        A learned or sinusoidal position table (e.g. ``fastembed.sinusoidal(512, d)``).
    """

    kind = "Embedding"

    def __init__(
        self,
        table: np.ndarray,
        *,
        bias: np.ndarray | None = None,
        scale: float = 1.0,
        positional: np.ndarray | None = None,
    ) -> None:
        self.table, dtype = v.as_lookup_table(table)
        self._set_terms(self.table.shape[1], dtype, bias, scale, positional)

    def _set_terms(self, d, dtype, bias, scale, positional):
        self.bias = v.as_vector(bias, "bias", d, dtype)
        self.scale = v.as_scale(scale)
        self.positional = None if positional is None else v.as_float_matrix(positional, "positional", dtype)
        if self.positional is not None and self.positional.shape[1] != d:
            raise ValueError(f"positional must have {d} columns, got {self.positional.shape}")

    @property
    def dim(self):
        return self.table.shape[1]

    @property
    def num_embeddings(self):
        return self.table.shape[0]

    def __call__(
        self,
        ids: ArrayLike,
        *,
        offset: int = 0,
        position_ids: ArrayLike | None = None,
        out: np.ndarray | None = None,
        backend: str = "auto",
        n_threads: int | None = None,
    ) -> np.ndarray:
        """Embed ``ids`` (..., L) -> (..., L, d): ``table[ids] * scale + bias + positional[...]``
        (the factorized layer: ``(table[ids] @ proj) * scale + ...``); positions as in
        :func:`fastembed.lookup`."""
        common = dict(
            scale=self.scale,
            bias=self.bias,
            pos_table=self.positional,
            offset=offset,
            position_ids=position_ids,
            out=out,
            backend=backend,
            n_threads=n_threads,
        )
        return self._embed(ids, common)

    def _embed(self, ids, common):
        return lookup(ids, self.table, **common)

    @property
    def quantization(self):
        """ "none", or the compact format of the table: "int8", "float16" or "bfloat16"."""
        return self.table.kind_name if isinstance(self.table, CompactTable) else "none"

    def n_parameters(self):
        """Stored values: table entries (codes of a compact table), bias and positions."""
        return sum(math.prod(x.shape) for x in (self.table, self.bias, self.positional) if x is not None)

    def nbytes(self):
        """Bytes of every stored array (codes and per-row parameters included)."""
        arrays = [self.bias, self.positional, getattr(self, "proj", None)]
        if isinstance(self.table, CompactTable):
            arrays += [self.table.data, self.table.scale, self.table.offset]
        else:
            arrays.append(self.table)
        return sum(a.nbytes for a in arrays if a is not None)

    def _meta(self):
        return {FORMAT_KEY: self.kind, "scale": repr(self.scale), "quantization": self.quantization}

    def save(self, path: str | os.PathLike) -> None:
        """Write to ``path``: safetensors, or npz when it ends in .npz. Compact tables keep their
        codes, per-row parameters and format (metadata ``quantization``)."""
        tensors, _ = _table_tensors(self.table)
        _save(path, dict(tensors, bias=self.bias, positional=self.positional), self._meta())

    @classmethod
    def load(cls, path: str | os.PathLike):
        """A layer saved by :meth:`save`; CheckpointError for any file that is not one."""
        return _layer_from_file(
            cls, path, lambda tensors, meta, scale, terms: cls(_table_from(tensors, meta, path), scale=scale, **terms)
        )


class FactorizedEmbedding(Embedding):
    """``out = (table[ids] @ proj) * scale + bias + positional[offset + l]``, ALBERT-style factors.

    Parameters
    ----------
    table : ndarray (V, r)
    proj : ndarray (r, d)
    bias, scale, positional
        As in :class:`Embedding`.

    ``cache_dense(True)`` keeps the materialized ``table @ proj`` (V x d) for
    latency-bound serving: calls then run as a dense lookup (a pure memory pass),
    at the cost of V x d memory.
    """

    kind = "FactorizedEmbedding"

    def __init__(
        self,
        table: np.ndarray,
        proj: np.ndarray,
        *,
        bias: np.ndarray | None = None,
        scale: float = 1.0,
        positional: np.ndarray | None = None,
    ) -> None:
        self.table, dtype = v.as_lookup_table(table)
        self.proj = v.as_float_matrix(
            proj_float32(proj) if isinstance(self.table, CompactTable) else proj, "proj", dtype
        )
        if self.proj.shape[0] != self.table.shape[1]:
            raise ValueError(
                f"proj must have {self.table.shape[1]} rows to match table {self.table.shape}, got {self.proj.shape}"
            )
        self._dense = None
        self._set_terms(self.proj.shape[1], dtype, bias, scale, positional)

    @property
    def dim(self):
        return self.proj.shape[1]

    @property
    def rank(self):
        return self.table.shape[1]

    @classmethod
    def from_dense(
        cls, W, rank=None, *, energy=None, max_error=None, bias=None, scale=1.0, positional=None, **factorize_options
    ):
        """Factorize a trained (V, d) table (see :func:`fastembed.factorize`) into a layer.

        With ``center=True`` the mean row is fitted and added to ``bias``.
        The Factorization is kept as ``layer.factorization``.
        """
        from ._factorize import factorize

        fac = factorize(W, rank, energy=energy, max_error=max_error, **factorize_options)
        if fac.bias is not None:
            bias = fac.bias if bias is None else np.asarray(bias) + fac.bias
        layer = cls(fac.table, fac.proj, bias=bias, scale=scale, positional=positional)
        layer.factorization = fac
        return layer

    def to_dense(self) -> np.ndarray:
        """``table @ proj``, (V, d): the dense table this layer's factors stand for (scale, bias and
        positions are not folded in; :meth:`to_embedding` keeps them). Compact tables are dequantized."""
        table = self.table.dequantize() if isinstance(self.table, CompactTable) else self.table
        return table @ self.proj

    def astype_float32(self) -> "FactorizedEmbedding":
        """A float32 copy (compact formats dequantize to float32, so quantizing starts here)."""
        table = self.table.dequantize() if isinstance(self.table, CompactTable) else self.table
        return type(self)(
            np.asarray(table, np.float32),
            self.proj.astype(np.float32),
            bias=_f32(self.bias),
            scale=self.scale,
            positional=_f32(self.positional),
        )

    def quantize(self, kind: str = "int8") -> "FactorizedEmbedding":
        """A copy with the token table stored as ``kind``: "int8" (row-wise, :func:`fastembed.quantize_rows`),
        "float16" or "bfloat16" (uint16 bit patterns, rounded to nearest even). The projection, bias
        and positions stay float32; lookups dequantize inside the gather kernel."""
        from .io import float32_to_bfloat16

        if isinstance(self.table, CompactTable):
            raise ValueError(f"the table is already {self.quantization}")
        table = self.table
        if kind == "int8":
            compact = quantize_rows(table)
        elif kind == "float16":
            compact = table.astype(np.float16)
        elif kind == "bfloat16":
            compact = float32_to_bfloat16(table)
        else:
            raise ValueError(f"unknown quantization {kind!r}; choose int8, float16 or bfloat16")
        layer = type(self)(
            compact,
            self.proj.astype(np.float32),
            bias=_f32(self.bias),
            scale=self.scale,
            positional=_f32(self.positional),
        )
        return layer

    def to_embedding(self):
        """An :class:`Embedding` giving the same outputs."""
        return Embedding(self.to_dense(), bias=self.bias, scale=self.scale, positional=self.positional)

    def cache_dense(self, enabled: bool = True) -> "FactorizedEmbedding":
        """Keep (or drop) the materialized table; returns self."""
        self._dense = self.to_dense() if enabled else None
        return self

    @property
    def dense_cached(self):
        return self._dense is not None

    def _embed(self, ids, common):
        if self._dense is not None:
            return lookup(ids, self._dense, **common)
        return factorized_lookup(ids, self.table, self.proj, **common)

    def n_parameters(self):
        """Stored values: table entries (codes of a compact table), projection, bias and positions."""
        return sum(math.prod(x.shape) for x in (self.table, self.proj, self.bias, self.positional) if x is not None)

    def _meta(self):
        return dict(super()._meta(), rank=str(self.rank))

    def save(self, path: str | os.PathLike) -> None:
        """Write the factors (not the dense cache): safetensors, or npz when ``path`` ends in .npz.
        Metadata records the rank and the table's quantization, so the file is self-describing."""
        tensors, _ = _table_tensors(self.table)
        _save(path, dict(tensors, proj=self.proj, bias=self.bias, positional=self.positional), self._meta())

    @classmethod
    def load(cls, path: str | os.PathLike):
        """A layer saved by :meth:`save`; CheckpointError for any file that is not one."""

        def build(tensors, meta, scale, terms):
            table = _table_from(tensors, meta, path)
            return cls(table, _tensor(tensors, "proj", path), scale=scale, **terms)

        return _layer_from_file(cls, path, build)


def _f32(x):
    return None if x is None else np.asarray(x, dtype=np.float32)
