"""The registry that drives the sweeps: each public lookup with its float64
reference and how to build its arguments, and the comparison rule.

A result passes when every element is within ``rtol * magnitude`` of the
float64 reference, where ``magnitude`` is the reference evaluated on the
absolute values of every input: the classical error bound of a sum of
products, so cancellation in a row cannot hide or fake an error.
"""

import numpy as np
import pytest

import fastembed as fe
from fastembed import reference

BACKENDS = fe.backends.available()
COMPILED = [b for b in BACKENDS if b != "numpy"]
DTYPES = [np.float32, np.float64]
# micro-tile widths (bits) the Cython fused kernel runs on this CPU, widest first; 0 = the portable loop
SIMD_WIDTHS = [w for w in (512, 256) if "cython" in COMPILED and fe.backends.kernels("cython").simd_width >= w]
FUSED_VARIANTS = [("cython", w) for w in SIMD_WIDTHS] + [(b, 0) for b in COMPILED]
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-11}


def _abs(x):
    return None if x is None else np.abs(np.asarray(x))


class Lookup:
    """One public lookup in the registry."""

    def __init__(self, name, func, ref, factorized):
        self.name, self.func, self.ref, self.factorized = name, func, ref, factorized

    def tables(self, rng, V, r, d, dtype):
        """Positional tables for this lookup: (table, proj) or (table,)."""
        if self.factorized:
            return (rng.standard_normal((V, r)).astype(dtype), rng.standard_normal((r, d)).astype(dtype))
        return (rng.standard_normal((V, d)).astype(dtype),)

    def call(self, ids, tables, **kw):
        return self.func(ids, *tables, **kw)

    def expected(self, ids, tables, **kw):
        kw = {k: w for k, w in kw.items() if k in ("scale", "bias", "pos_table", "offset", "position_ids")}
        ref = self.ref(ids, *tables, **kw)
        magnitude = self.ref(
            ids,
            *[np.abs(t) for t in tables],
            **{k: (abs(w) if k == "scale" else _abs(w) if k in ("bias", "pos_table") else w) for k, w in kw.items()},
        )
        return ref, magnitude


LOOKUPS = [
    Lookup("factorized_lookup", fe.factorized_lookup, reference.factorized_lookup, factorized=True),
    Lookup("lookup", fe.lookup, reference.lookup, factorized=False),
]


def assert_matches_reference(result, ref, magnitude, dtype):
    """Elementwise |result - ref| <= rtol * magnitude, NaN exactly where the reference has NaN."""
    assert result.shape == ref.shape, (result.shape, ref.shape)
    assert result.dtype == np.dtype(dtype)
    res = result.astype(np.float64)
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(res), nan)
    err = np.abs(res - ref)[~nan]
    bound = (RTOL[np.dtype(dtype)] * magnitude)[~nan]
    assert np.all(err <= bound), f"max error / bound = {np.max(err / np.where(bound > 0, bound, 1)):.3g}"


def layouts(x, layout):
    """``x`` with the same values in another memory layout."""
    if layout == "C":
        return np.ascontiguousarray(x)
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "strided":  # a view with steps > 1 and a reversed axis
        big = np.empty((x.shape[0], 2 * x.shape[1]), x.dtype)[:, ::-2]
        big[...] = x
        return big
    raise ValueError(layout)


def hf_rope_frequencies(scaling, dim, base, seq_len):
    """(inv_freq, attention_factor) from transformers' ROPE_INIT_FUNCTIONS for ``scaling`` on a
    Llama config of head_dim ``dim`` (skips without torch / transformers)."""
    torch = pytest.importorskip("torch")
    rope_utils = pytest.importorskip("transformers.modeling_rope_utils")
    from transformers import LlamaConfig

    params = {k: v for k, v in scaling.items() if k != "max_position_embeddings"}
    params["rope_theta"] = base
    if params["rope_type"] == "yarn":
        params.setdefault("factor", None)  # transformers' validation wants the key; None implies the ratio
    config = LlamaConfig(
        hidden_size=dim * 2,
        num_attention_heads=2,
        max_position_embeddings=scaling.get("max_position_embeddings", 256),
        rope_parameters=params,
    )
    inv_freq, attention = rope_utils.ROPE_INIT_FUNCTIONS[scaling["rope_type"]](
        config, torch.device("cpu"), seq_len=seq_len
    )
    return inv_freq.double().numpy(), float(attention)
