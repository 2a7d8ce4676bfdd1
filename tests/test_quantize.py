"""Compact tables (float16, bfloat16, row-wise int8) with dequantization in the gather kernel."""

import numpy as np
import pytest

import fastembed as fe
from fastembed.io import bfloat16_to_float32, float32_to_bfloat16
from util import BACKENDS, COMPILED, assert_matches_reference

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None


def _compact_forms(E):
    """(name, compact table, its exact float32 values)."""
    q = fe.quantize_rows(E)
    forms = [
        ("int8", q, q.dequantize()),
        ("float16", E.astype(np.float16), E.astype(np.float16).astype(np.float32)),
        ("bfloat16-bits", float32_to_bfloat16(E), bfloat16_to_float32(float32_to_bfloat16(E))),
    ]
    if ml_dtypes is not None:
        bf = E.astype(ml_dtypes.bfloat16)
        forms.append(("bfloat16-ml_dtypes", bf, bf.astype(np.float32)))
    return forms


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    return dict(
        E=rng.standard_normal((400, 12)).astype(np.float32),
        P=rng.standard_normal((12, 20)).astype(np.float32),
        bias=rng.standard_normal(20).astype(np.float32),
        pos=rng.standard_normal((50, 20)).astype(np.float32),
        ids=rng.integers(0, 400, (3, 50)),
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("plan", [None, "dedupe", "direct", "fused"])
def test_every_compact_form_is_the_dequantized_reference(small, backend, plan):
    if backend == "numpy" and plan is not None:
        pytest.skip("plans are for the compiled backends")
    kw = dict(scale=1.5, bias=small["bias"], pos_table=small["pos"], offset=0)
    for name, table, exact in _compact_forms(small["E"]):
        out = fe.factorized_lookup(small["ids"], table, small["P"], backend=backend, plan=plan, **kw)
        assert out.dtype == np.float32, name
        ref = fe.reference.factorized_lookup(small["ids"], exact.astype(np.float64), small["P"], **kw)
        mag = fe.reference.factorized_lookup(
            small["ids"],
            np.abs(exact),
            np.abs(small["P"]),
            scale=1.5,
            bias=np.abs(small["bias"]),
            pos_table=np.abs(small["pos"]),
        )
        assert_matches_reference(out, ref, mag, np.float32)
        dense = fe.lookup(small["ids"], table, scale=2.0, backend=backend)
        np.testing.assert_array_equal(dense, 2.0 * exact[small["ids"]], err_msg=name)


@pytest.mark.parametrize("kind", ["int8", "float16", "bfloat16"])
def test_quantization_error_bound_on_a_real_pretrained_table(minilm_word_embeddings, kind):
    """On all-MiniLM-L6-v2's factors, every output is within the error bound of its table's format."""
    from fastembed.text import real_text_ids

    layer = fe.FactorizedEmbedding.from_dense(minilm_word_embeddings, rank=128)
    compact = layer.quantize(kind)
    ids = real_text_ids(4, 128)
    exact = layer(ids)
    got = compact(ids)
    E, P = layer.table.astype(np.float64), layer.proj.astype(np.float64)
    if kind == "int8":
        per_row = compact.table.scale.astype(np.float64)[ids] / 2  # |E - dequant(E)| <= scale / 2
        bound = per_row[..., None] * np.abs(P).sum(axis=0)
    else:
        unit = 2.0**-11 if kind == "float16" else 2.0**-8  # half an ulp, relative
        bound = unit * (np.abs(E[ids]) @ np.abs(P))
    bound += 2e-5 * (np.abs(E[ids]) @ np.abs(P))  # float32 arithmetic on top
    assert np.all(np.abs(got - exact) <= bound)
    err = np.linalg.norm(got - exact) / np.linalg.norm(exact)
    assert err < {"int8": 0.01, "float16": 1e-3, "bfloat16": 5e-3}[kind]


def test_quantize_rows_bounds_and_edges():
    rng = np.random.default_rng(1)
    E = rng.standard_normal((300, 40)) * rng.uniform(0.01, 100, (300, 1))
    E[5] = 3.25  # a constant row is exact
    q = fe.quantize_rows(E)
    assert q.codes.dtype == np.int8 and q.scale.dtype == np.float32 and q.offset.dtype == np.float32
    err = np.abs(q.dequantize(np.float64) - E)
    assert np.all(err <= q.scale[:, None].astype(np.float64) / 2 * (1 + 1e-6) + 1e-6 * np.abs(E))
    np.testing.assert_array_equal(q.dequantize()[5], 3.25)
    assert q.nbytes == 300 * 40 + 300 * 8  # one byte per entry, a float32 scale and offset per row
    with pytest.raises(ValueError):
        fe.quantize_rows(E, bits=4)
    with pytest.raises(ValueError):
        fe.quantize_rows(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError):
        fe.QuantizedRows(q.codes, q.scale[:-1], q.offset)
    with pytest.raises(ValueError):
        fe.QuantizedRows(q.codes.astype(np.int16), q.scale, q.offset)


@pytest.mark.parametrize("kind", ["int8", "float16", "bfloat16"])
@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_quantized_layer_save_load_is_self_describing(tmp_path, small, kind, suffix):
    layer = fe.FactorizedEmbedding(small["E"], small["P"], bias=small["bias"], scale=2.0).quantize(kind)
    path = tmp_path / f"q{suffix}"
    layer.save(path)
    back = fe.FactorizedEmbedding.load(path)
    assert back.quantization == kind and back.rank == 12
    np.testing.assert_array_equal(back(small["ids"]), layer(small["ids"]))
    if suffix == ".safetensors":
        from fastembed.io import read_safetensors_header

        header, meta, _, _ = read_safetensors_header(path)
        assert meta["quantization"] == kind and meta["rank"] == "12"
        if kind == "bfloat16":
            assert header["table"]["dtype"] == "BF16"
        if kind == "int8":
            assert header["table.codes"]["dtype"] == "I8"
    assert layer.nbytes() < fe.FactorizedEmbedding(small["E"], small["P"], bias=small["bias"]).nbytes()


def test_compact_tables_need_float32_companions(small):
    q = fe.quantize_rows(small["E"])
    with pytest.raises(ValueError, match="proj"):
        fe.factorized_lookup(small["ids"], q, small["P"].astype(np.float64))
    with pytest.raises(ValueError, match="bias"):
        fe.factorized_lookup(small["ids"], q, small["P"], bias=small["bias"].astype(np.float64))
    with pytest.raises(IndexError):
        fe.factorized_lookup([[400]], q, small["P"])
    # a float16 projection is accepted (converted once per call)
    out = fe.factorized_lookup(small["ids"], q, small["P"].astype(np.float16))
    assert out.dtype == np.float32


@pytest.mark.skipif(len(COMPILED) < 2, reason="needs both compiled backends")
@pytest.mark.parametrize("kind", [0, 1, 2])
def test_gather_dequant_parity(kind):
    from fastembed import backends

    rng = np.random.default_rng(2)
    if kind == 0:
        src = rng.integers(-128, 128, (60, 9)).astype(np.int8)
        scale, offset = rng.random(60).astype(np.float32), rng.standard_normal(60).astype(np.float32)
    else:
        src = np.arange(60 * 9, dtype=np.uint16).reshape(60, 9) * 113
        scale = offset = None
    rows = rng.integers(0, 60, 200)
    outs = []
    for name in COMPILED:
        out = np.empty((200, 9), np.float32)
        assert backends.kernels(name).gather_dequant(src, rows, scale, offset, kind, out, 2) == 0
        outs.append(out.view(np.uint32))
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("plan", ["direct", "fused"])
@pytest.mark.parametrize("compact", [False, True])
def test_row_blocks_of_the_direct_and_fused_plans(backend, plan, compact, monkeypatch):
    """Scratch is bounded by row blocks (256 rows here); positions and ids stay aligned across blocks."""
    from fastembed import _pipeline, reference

    monkeypatch.setattr(_pipeline, "DIRECT_CHUNK_BYTES", 1)
    rng = np.random.default_rng(3)
    E, P = rng.standard_normal((900, 16)).astype(np.float32), rng.standard_normal((16, 40)).astype(np.float32)
    ids, pos = rng.integers(0, 900, (3, 333)), rng.standard_normal((333, 40)).astype(np.float32)
    table = fe.quantize_rows(E) if compact else E
    exact = table.dequantize() if compact else E
    out = fe.factorized_lookup(ids, table, P, scale=2.0, pos_table=pos, backend=backend, plan=plan)
    ref = reference.factorized_lookup(ids, exact.astype(np.float64), P, scale=2.0, pos_table=pos)
    mag = reference.factorized_lookup(ids, np.abs(exact), np.abs(P), scale=2.0, pos_table=np.abs(pos))
    assert_matches_reference(out, ref, mag, np.float32)
