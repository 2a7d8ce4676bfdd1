"""Compact tables: float16, bfloat16 and row-wise int8, dequantized inside the gather kernel.

Accepted as ``table`` by :func:`fastembed.factorized_lookup`, :func:`fastembed.lookup` and the layers:

- a float16 array;
- bfloat16: an ``ml_dtypes.bfloat16`` array, or a **uint16 array, read as bfloat16 bit patterns**;
- :class:`QuantizedRows` from :func:`quantize_rows`: int8 codes with a float32 scale and
  offset per row, ``row = codes * scale + offset``.

The gather dequantizes to float32, the projection accumulates in float32, and the
output is float32 (``proj``, ``bias`` and ``pos_table`` are float32; a float16 or
bfloat16 ``proj`` is converted to float32 once per call).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .io import bfloat16_to_float32

INT8, FLOAT16, BFLOAT16 = 0, 1, 2
KIND_NAMES = {INT8: "int8", FLOAT16: "float16", BFLOAT16: "bfloat16"}


@dataclass(frozen=True)
class QuantizedRows:
    """Row-wise affine int8 quantization: ``table[i] ~ codes[i] * scale[i] + offset[i]``.

    codes : (V, r) int8; scale, offset : (V,) float32.
    """

    codes: np.ndarray
    scale: np.ndarray
    offset: np.ndarray

    def __post_init__(self):
        codes = np.asarray(self.codes)
        if codes.ndim != 2 or codes.dtype != np.int8:
            raise ValueError(f"codes must be a 2-D int8 array, got {codes.dtype} {codes.shape}")
        for name in ("scale", "offset"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.float32)
            if arr.shape != (codes.shape[0],):
                raise ValueError(f"{name} must have shape ({codes.shape[0]},), got {arr.shape}")
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "codes", codes)

    @property
    def shape(self):
        return self.codes.shape

    @property
    def nbytes(self):
        return self.codes.nbytes + self.scale.nbytes + self.offset.nbytes

    def dequantize(self, dtype=np.float32):
        """The float table, ``codes * scale + offset`` (computed in ``dtype``)."""
        return self.codes.astype(dtype) * self.scale.astype(dtype)[:, None] + self.offset.astype(dtype)[:, None]


def quantize_rows(E, bits=8) -> QuantizedRows:
    """Quantize each row of E (V, r) to int8 codes with its own scale and offset.

    Per row: ``offset = float32(min + 128 * (max - min) / 255)``, ``scale`` the smallest float32
    with ``(max - offset) / scale <= 127`` and ``(offset - min) / scale <= 128`` (about
    ``(max - min) / 255``), ``codes = round((E - offset) / scale)`` in [-128, 127]. Each entry is
    then within ``scale / 2`` of ``codes * scale + offset`` computed exactly; computed in float32
    (as the lookups do) add its rounding, ``2**-24 * (|E| + 128 * scale)`` at most, which dominates
    only for rows whose spread is tiny next to their magnitude. A constant row is exact.

    Raises
    ------
    TypeError
        A complex or non-numeric table.
    ValueError
        bits other than 8, a table that is not 2-D, NaN or inf, or values beyond the float32 range
        (scale and offset are float32).
    """
    if bits != 8:
        raise ValueError(f"only bits=8 is supported, got {bits}")
    E = np.asarray(E)
    if E.dtype.kind not in "biuf":
        raise TypeError(f"E must be a real numeric table, got dtype {E.dtype}")
    E = E.astype(np.float64, copy=False)
    if E.ndim != 2:
        raise ValueError(f"E must be 2-D, got shape {E.shape}")
    if not np.isfinite(E).all():
        raise ValueError("E contains NaN or inf")
    lo = E.min(axis=1) if E.shape[1] else np.zeros(E.shape[0])
    hi = E.max(axis=1) if E.shape[1] else np.zeros(E.shape[0])
    limit = float(np.finfo(np.float32).max) / 2
    if E.size and max(-lo.min(), hi.max()) > limit:
        raise ValueError(f"E has values beyond +-{limit:.3g}: its float32 scale and offset cannot hold them")
    offset = (lo + 128.0 * ((hi - lo) / 255.0)).astype(np.float32)
    off = offset.astype(np.float64)
    need = np.maximum((hi - off) / 127.0, (off - lo) / 128.0)  # the rounded offset may sit off-centre
    scale = need.astype(np.float32)
    low = scale.astype(np.float64) < need
    scale[low] = np.nextafter(scale[low], np.float32(np.inf))
    safe = np.where(scale > 0, scale, 1).astype(np.float64)
    codes = np.clip(np.rint((E - off[:, None]) / safe[:, None]), -128, 127).astype(np.int8)
    return QuantizedRows(codes, scale, offset)


@dataclass(frozen=True)
class CompactTable:
    """A compact table as the kernels read it: int8 codes or uint16 (float16 / bfloat16) bits."""

    kind: int
    data: np.ndarray
    scale: np.ndarray | None = None
    offset: np.ndarray | None = None

    @property
    def shape(self):
        return self.data.shape

    @property
    def kind_name(self):
        return KIND_NAMES[self.kind]

    def take(self, rows):
        """float32 rows ``rows`` (numpy dequantization: the readable path)."""
        if self.kind == INT8:
            return self.data[rows].astype(np.float32) * self.scale[rows, None] + self.offset[rows, None]
        if self.kind == FLOAT16:
            return self.data[rows].view(np.float16).astype(np.float32)
        return bfloat16_to_float32(self.data[rows])

    def dequantize(self):
        return self.take(np.arange(self.shape[0]))


def as_compact(table):
    """A CompactTable for a float16 / bfloat16 / uint16 / QuantizedRows table, None for any other."""
    if isinstance(table, QuantizedRows):
        return CompactTable(INT8, table.codes, table.scale, table.offset)
    if isinstance(table, CompactTable):
        return table
    if not isinstance(table, np.ndarray):
        return None
    if table.dtype == np.float16:
        return CompactTable(FLOAT16, _bits(table))
    if table.dtype.name == "bfloat16" or table.dtype == np.uint16:
        return CompactTable(BFLOAT16, _bits(table))
    return None


def _bits(table):
    if table.ndim != 2:
        raise ValueError(f"table must be 2-D, got shape {table.shape}")
    bits = table.view(np.uint16)
    if any(s % 2 for s in bits.strides):
        bits = np.ascontiguousarray(bits)
    return bits


def proj_float32(proj):
    """A float16 / bfloat16 / uint16 projection as float32 (float32 passes through)."""
    compact = as_compact(proj) if isinstance(proj, np.ndarray) and proj.ndim == 2 else None
    return compact.dequantize() if compact is not None else proj
