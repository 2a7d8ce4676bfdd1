"""pooled_lookup on every backend against the float64 reference, its inputs (ragged forms, compact
tables), its errors, and torch's embedding_bag where torch is installed."""

import numpy as np
import pytest

import fastembed as fe
from fastembed import reference
from fastembed._quantize import as_compact, quantize_rows
from util import BACKENDS, DTYPES, assert_matches_reference, layouts

MODES = ["sum", "mean", "sqrtn", "max"]
V, R, D = 97, 12, 20


def _bags(rng, n_bags=23, max_len=9, vocab=V):
    lengths = rng.integers(0, max_len, n_bags)
    lengths[:3] = [0, 1, max_len]  # an empty bag, a single token, the longest
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    return rng.integers(0, vocab, offsets[-1]), offsets


def _expected(ids, offsets, table, proj, **kw):
    """The float64 truth and its error magnitude: the same pooling over |inputs| (a bound on the
    rounding of every sum, weight and projection), normalized rows measured against the unnormalized norm."""
    ref = reference.pooled_lookup(ids, offsets, table, proj, **kw)
    absolute = {k: (np.abs(w) if isinstance(w, np.ndarray) and k != "token_map" else w) for k, w in kw.items()}
    absolute["scale"] = abs(kw.get("scale", 1.0))
    absolute["normalize"] = False
    if absolute.get("mode") == "max":
        absolute["mode"] = "sum"  # the max of w x is within the sum of |w x|
    magnitude = reference.pooled_lookup(ids, offsets, np.abs(table), None if proj is None else np.abs(proj), **absolute)
    if kw.get("normalize"):
        plain = reference.pooled_lookup(ids, offsets, table, proj, **dict(kw, normalize=False))
        norms = np.linalg.norm(plain, axis=1, keepdims=True)
        magnitude = 4 * np.where(norms > 0, magnitude / np.where(norms > 0, norms, 1), 0) + 4 * np.abs(ref)
    return ref, magnitude


OPTIONS = {
    "plain": {},
    "weights": {"weights": True},
    "token_weights": {"token_weights": True},
    "token_map": {"token_map": True},
    "padding": {"padding_idx": 5},
    "all": {"weights": True, "token_weights": True, "token_map": True, "padding_idx": -3, "bias": True, "scale": -1.5},
    "normalize": {"normalize": True, "bias": True},
}


def _options(rng, name, n_ids, d, dtype, vocab):
    spec = OPTIONS[name]
    kw = {}
    if spec.get("weights"):
        kw["weights"] = rng.uniform(-1, 2, n_ids).astype(dtype)
    if spec.get("token_map"):
        kw["token_map"] = rng.integers(0, V, vocab)
    if spec.get("token_weights"):
        kw["token_weights"] = rng.uniform(0, 1, vocab).astype(dtype)
    if spec.get("bias"):
        kw["bias"] = rng.standard_normal(d).astype(dtype)
    for key in ("padding_idx", "scale", "normalize"):
        if key in spec:
            kw[key] = spec[key]
    return kw


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("factorized", [False, True], ids=["dense", "factorized"])
@pytest.mark.parametrize("option", list(OPTIONS))
def test_matches_reference(backend, dtype, mode, factorized, option):
    rng = np.random.default_rng(hash((mode, option, factorized)) % 2**32)
    vocab = 130 if OPTIONS[option].get("token_map") else V
    ids, offsets = _bags(rng, vocab=vocab)
    table = rng.standard_normal((V, R if factorized else D)).astype(dtype)
    proj = rng.standard_normal((R, D)).astype(dtype) if factorized else None
    kw = _options(rng, option, ids.shape[0], D, dtype, vocab)
    got = fe.pooled_lookup(ids, table, proj, offsets=offsets, mode=mode, backend=backend, **kw)
    ref, magnitude = _expected(ids, offsets, table, proj, mode=mode, **kw)
    assert_matches_reference(got, ref, magnitude, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["F", "strided"])
@pytest.mark.parametrize("itype", [np.int32, np.uint16, np.int64])
def test_layouts_and_id_dtypes(backend, layout, itype):
    rng = np.random.default_rng(1)
    ids, offsets = _bags(rng)
    table = layouts(rng.standard_normal((V, D)).astype(np.float32), layout)
    got = fe.pooled_lookup(ids.astype(itype), table, offsets=offsets.astype(np.int32), backend=backend)
    ref, magnitude = _expected(ids, offsets, table, None, mode="mean")
    assert_matches_reference(got, ref, magnitude, np.float32)
    strided_out = np.zeros((got.shape[0], 2 * D), np.float32)[:, ::2]
    fe.pooled_lookup(ids, table, offsets=offsets, backend=backend, out=strided_out)
    np.testing.assert_array_equal(strided_out, got)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["float16", "bfloat16", "int8"])
@pytest.mark.parametrize("factorized", [False, True], ids=["dense", "factorized"])
def test_compact_tables_match_their_dequantized_values(backend, kind, factorized):
    rng = np.random.default_rng(3)
    ids, offsets = _bags(rng)
    dense = rng.standard_normal((V, R if factorized else D)).astype(np.float32)
    proj = rng.standard_normal((R, D)).astype(np.float32) if factorized else None
    table = {
        "float16": lambda: dense.astype(np.float16),
        "bfloat16": lambda: (dense.view(np.uint32) >> 16).astype(np.uint16),
        "int8": lambda: quantize_rows(dense),
    }[kind]()
    values = as_compact(table).dequantize().astype(np.float64)
    weights = rng.uniform(0.5, 1.5, len(ids))
    for mode in MODES:
        got = fe.pooled_lookup(ids, table, proj, offsets=offsets, mode=mode, weights=weights, backend=backend)
        assert got.dtype == np.float32
        ref, magnitude = _expected(ids, offsets, values, proj, mode=mode, weights=weights)
        assert_matches_reference(got, ref, magnitude, np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_awkward_shapes(backend):
    table = np.arange(12, dtype=np.float64).reshape(4, 3)
    assert fe.pooled_lookup([], table, backend=backend).shape == (0, 3)
    assert fe.pooled_lookup(np.zeros((0, 5), np.int64), table, backend=backend).shape == (0, 3)
    empty = fe.pooled_lookup([[], []], table, backend=backend, bias=np.ones(3), mode="max")
    np.testing.assert_array_equal(empty, np.ones((2, 3)))  # empty bags pool to zeros, plus bias
    padded = fe.pooled_lookup([[2, 2]], table, padding_idx=2, normalize=True, backend=backend)
    np.testing.assert_array_equal(padded, np.zeros((1, 3)))  # padding only: an empty bag, stays zero
    one = fe.pooled_lookup([[3]], table[:, :1].copy(), backend=backend)
    assert one.shape == (1, 1) and one[0, 0] == 9.0
    rect = fe.pooled_lookup(np.array([[0, 1], [2, 3]]), table, mode="sum", backend=backend)
    np.testing.assert_array_equal(rect, [[3, 5, 7], [15, 17, 19]])
    assert fe.pooled_lookup([[1]], np.zeros((4, 0)), backend=backend).shape == (1, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_thread_count_does_not_change_results(backend):
    """The pooling kernels give the same bits on any thread count. The factorized modes may
    project with BLAS (the pooled rows, or every token for max), whose sums may be ordered by its thread count
    (OpenBLAS on an AVX-512 Zen 5 differs in the last bits between 1 and 2 threads): there the
    runs agree to float32 rounding."""
    rng = np.random.default_rng(4)
    ids, offsets = _bags(rng, n_bags=3000, max_len=40)
    table, proj = rng.standard_normal((V, R)).astype(np.float32), rng.standard_normal((R, 64)).astype(np.float32)
    for mode in MODES:
        for factors in ((table,), (table, proj)):
            runs = [
                fe.pooled_lookup(ids, *factors, offsets=offsets, mode=mode, backend=backend, n_threads=n)
                for n in (1, 2, 64)
            ]
            for other in runs[1:]:
                if len(factors) == 1:  # no BLAS in the path
                    np.testing.assert_array_equal(other, runs[0])
                else:
                    np.testing.assert_allclose(other, runs[0], rtol=1e-5, atol=1e-5 * np.abs(runs[0]).max())


def test_backends_agree_bit_for_bit():
    compiled = [b for b in BACKENDS if b != "numpy"]
    if len(compiled) < 2:
        pytest.skip("needs both compiled backends")
    rng = np.random.default_rng(5)
    ids, offsets = _bags(rng, n_bags=200)
    table = rng.standard_normal((V, D)).astype(np.float32)
    kw = dict(weights=rng.random(len(ids)), token_weights=rng.random(V), padding_idx=3, bias=np.ones(D, np.float32))
    for mode in MODES:
        for normalize in (False, True):
            a, b = (
                fe.pooled_lookup(ids, table, offsets=offsets, mode=mode, normalize=normalize, backend=name, **kw)
                for name in compiled
            )
            np.testing.assert_array_equal(a, b)


# ---- ragged inputs -------------------------------------------------------------------------


def test_as_ragged_forms_agree():
    lists = [[1, 2, 3], [], [4], [5, 6]]
    ids, offsets = fe.as_ragged(lists)
    np.testing.assert_array_equal(ids, [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(offsets, [0, 3, 3, 4, 6])
    for other in (
        (ids, offsets),
        [np.array(x, dtype=np.int32) for x in lists],
        (list(ids), list(offsets)),
    ):
        got_ids, got_offsets = fe.as_ragged(other)
        np.testing.assert_array_equal(got_ids, ids)
        np.testing.assert_array_equal(got_offsets, offsets)
    rect_ids, rect_offsets = fe.as_ragged(np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(rect_offsets, [0, 3, 6])
    assert fe.as_ragged([])[1].tolist() == [0]
    assert fe.as_ragged(np.zeros((3, 0), np.int64))[1].tolist() == [0, 0, 0, 0]


def test_as_ragged_pyarrow():
    pa = pytest.importorskip("pyarrow")
    lists = [[1, 2, 3], [], [4], [5, 6], [7]]
    for array in (pa.array(lists, pa.list_(pa.int32())), pa.array(lists, pa.large_list(pa.int64()))):
        ids, offsets = fe.as_ragged(array)
        assert np.shares_memory(ids, np.asarray(array.values))  # zero copy
        np.testing.assert_array_equal(offsets, [0, 3, 3, 4, 6, 7])
        ids, offsets = fe.as_ragged(array.slice(1, 3))  # sliced: its own sequences
        np.testing.assert_array_equal(ids, [4, 5, 6])
        np.testing.assert_array_equal(offsets, [0, 0, 1, 3])
    chunked = pa.chunked_array([pa.array(lists[:2]), pa.array(lists[2:])])
    ids, offsets = fe.as_ragged(chunked)
    np.testing.assert_array_equal(ids, [1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(offsets, [0, 3, 3, 4, 6, 7])
    with pytest.raises(ValueError, match="null lists"):
        fe.as_ragged(pa.array([[1], None]))
    with pytest.raises(ValueError, match="null values"):
        fe.as_ragged(pa.array([[1, None]]))
    with pytest.raises(TypeError, match="lists of integers"):
        fe.as_ragged(pa.array([[1.5]]))
    table = np.random.default_rng(0).standard_normal((10, 4))
    np.testing.assert_array_equal(fe.pooled_lookup(pa.array(lists), table), fe.pooled_lookup(lists, table))


def test_as_ragged_tokenizers_encodings(minilm_dir):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(minilm_dir / "tokenizer.json"))
    texts = ["Hello world.", "", "A longer sentence, with punctuation!"]
    encodings = tok.encode_batch(texts, add_special_tokens=False)
    ids, offsets = fe.as_ragged(encodings)
    assert ids.tolist() == [i for e in encodings for i in e.ids]
    assert np.diff(offsets).tolist() == [len(e.ids) for e in encodings]


@pytest.mark.parametrize(
    "offsets, message",
    [
        ([1, 2, 3], r"offsets\[0\] must be 0"),
        ([0, 2, 1, 3], r"non-decreasing: offsets\[2\] = 1 < offsets\[1\] = 2"),
        ([0, 2], r"offsets\[-1\] must equal the number of ids, 3"),
        ([], "one entry per bag plus one"),
        ([[0, 3]], "one entry per bag plus one"),
    ],
)
def test_bad_offsets_say_which_rule(offsets, message):
    with pytest.raises(ValueError, match=message):
        fe.pooled_lookup([1, 2, 3], np.ones((5, 2)), offsets=offsets)
    with pytest.raises(ValueError, match=message):
        fe.as_ragged(([1, 2, 3], offsets))


def test_positions_from_offsets():
    np.testing.assert_array_equal(fe.positions_from_offsets([0, 3, 3, 5]), [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(fe.positions_from_offsets(np.array([0, 2, 4]), start=2), [2, 3, 2, 3])
    assert fe.positions_from_offsets([0]).shape == (0,)
    ids, offsets = fe.as_ragged([[5, 6, 7], [8, 9]])
    pos = np.random.default_rng(0).standard_normal((8, 3))
    table = np.random.default_rng(1).standard_normal((10, 3))
    packed = fe.lookup(ids, table, pos_table=pos, position_ids=fe.positions_from_offsets(offsets))
    np.testing.assert_allclose(packed[3:], fe.lookup([8, 9], table, pos_table=pos))
    with pytest.raises(ValueError, match="non-decreasing"):
        fe.positions_from_offsets([0, 3, 2])
    with pytest.raises(ValueError, match="start must be >= 0"):
        fe.positions_from_offsets([0, 1], start=-1)


# ---- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_errors_raise_before_writing(backend):
    table = np.ones((5, 3), np.float32)
    out = np.full((2, 3), 7.0, np.float32)
    cases = [
        (IndexError, "outside \\[0, 5\\) of the vocabulary", dict(ids=[[1], [5]])),
        (IndexError, "outside", dict(ids=[[1], [-1]])),
        (TypeError, "must be integers", dict(ids=[[1.0], [2.0]])),
        (TypeError, "booleans", dict(ids=[[True], [False]])),
        (ValueError, "mode must be one of", dict(ids=[[1], [2]], mode="median")),
        (ValueError, "weights must have shape \\(2,\\)", dict(ids=[[1], [2]], weights=[1.0])),
        (ValueError, "weights contains NaN", dict(ids=[[1], [2]], weights=[1.0, np.nan])),
        (TypeError, "weights must be real", dict(ids=[[1], [2]], weights=["a", "b"])),
        (ValueError, "token_weights must have shape \\(5,\\)", dict(ids=[[1], [2]], token_weights=[1.0])),
        (IndexError, "token_map contains 9", dict(ids=[[1], [2]], token_map=[0, 9])),
        (IndexError, "outside \\[0, 2\\) of the vocabulary", dict(ids=[[1], [4]], token_map=[0, 1])),
        (IndexError, "padding_idx 5", dict(ids=[[1], [2]], padding_idx=5)),
        (TypeError, "padding_idx must be an integer", dict(ids=[[1], [2]], padding_idx=1.0)),
        (ValueError, "1-D ids need offsets", dict(ids=np.array([1, 2]))),
        (ValueError, "out must have shape \\(3, 3\\)", dict(ids=[[1], [2], [3]])),
        (ValueError, "bias must have shape", dict(ids=[[1], [2]], bias=np.ones(2, np.float32))),
        (ValueError, "must have the table's dtype", dict(ids=[[1], [2]], bias=np.ones(3))),
        (ValueError, "unknown backend", dict(ids=[[1], [2]], backend="gpu")),
    ]
    for exc, message, kw in cases:
        kw = dict({"backend": backend}, **kw)
        with pytest.raises(exc, match=message):
            fe.pooled_lookup(kw.pop("ids"), table, out=out, **kw)
        assert (out == 7.0).all(), (message, kw)


def test_out_must_not_overlap_inputs():
    table = np.ones((6, 3))
    with pytest.raises(ValueError, match="out overlaps table"):
        fe.pooled_lookup([[1], [2]], table, out=table[:2])
    weights = np.ones(6)
    with pytest.raises(ValueError, match="out overlaps weights"):
        fe.pooled_lookup([[1, 2, 3], [4, 5, 0]], np.ones((6, 1)), weights=weights, out=weights[:2].reshape(2, 1))
    bias = np.zeros((2, 3))
    with pytest.raises(ValueError, match="out overlaps bias"):
        fe.pooled_lookup([[1], [2]], table, bias=bias[0], out=bias)


def test_ids_mutated_during_call_cannot_escape_the_check():
    # the kernels read a private copy of the ids, taken before the range check
    rng = np.random.default_rng(6)
    ids = rng.integers(0, 10, 1000)
    offsets = np.arange(0, 1001, 10)
    out = fe.pooled_lookup(ids, np.ones((10, 4)), offsets=offsets)
    ids[:] = 10**9
    np.testing.assert_array_equal(out, np.ones((100, 4)))


# ---- torch's embedding_bag --------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
@pytest.mark.parametrize("padding", [None, 4])
def test_matches_torch_embedding_bag(backend, mode, padding):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    ids, offsets = _bags(rng, n_bags=50)
    table = rng.standard_normal((V, D)).astype(np.float32)
    weights = rng.random(len(ids)).astype(np.float32) if mode == "sum" else None
    expected = torch.nn.functional.embedding_bag(
        torch.from_numpy(ids),
        torch.from_numpy(table),
        torch.from_numpy(offsets[:-1]),
        mode=mode,
        per_sample_weights=None if weights is None else torch.from_numpy(weights),
        padding_idx=padding,
    ).numpy()
    got = fe.pooled_lookup(
        ids, table, offsets=offsets, mode=mode, weights=weights, padding_idx=padding, backend=backend
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_fork_after_threads_ran_and_absurd_thread_counts():
    import multiprocessing

    rng = np.random.default_rng(8)
    ids, offsets = _bags(rng, n_bags=5000, max_len=30)
    table = rng.standard_normal((V, D)).astype(np.float32)
    expected = fe.pooled_lookup(ids, table, offsets=offsets, n_threads=2)  # the pool has run
    np.testing.assert_array_equal(fe.pooled_lookup(ids, table, offsets=offsets, n_threads=10**9), expected)
    context = multiprocessing.get_context("fork")
    with context.Pool(1) as pool:  # the child must not hang in a parallel region
        got = pool.apply_async(fe.pooled_lookup, (ids, table), {"offsets": offsets, "n_threads": 2}).get(timeout=60)
    np.testing.assert_array_equal(got, expected)
