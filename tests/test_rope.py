"""Rotary embeddings: every style, partial rotary, positions, scaling and
conversion, against an independent float64 computation and against transformers."""

import numpy as np
import pytest

import fastembed as fe
from fastembed import reference
from util import BACKENDS, hf_rope_frequencies


def rope_truth(x, positions, style, rotary_dim, inv_freq, attention=1.0):
    """The float64 truth (fastembed.reference.rope)."""
    return reference.rope(x, positions, style, rotary_dim, inv_freq, attention=attention)


def base_freqs(dim, base=10000.0):
    return base ** (-np.arange(0, dim, 2) / dim)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("style", ["neox", "gptj"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rotary_dim", [None, 16, 2])
def test_styles_and_partial_rotary(backend, style, dtype, rotary_dim):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 37, 24)).astype(dtype)
    got = fe.apply_rope(x, style=style, rotary_dim=rotary_dim, backend=backend)
    r = rotary_dim or 24
    expected = rope_truth(x, np.arange(37), style, r, base_freqs(r))
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, atol=tol * 8)
    assert got.dtype == dtype and got.shape == x.shape


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_many_rows_in_blocks_with_copied_tail_columns(backend, dtype):
    """More rows than one block of the compiled kernel, a partial rotary width (the rest copied),
    into a buffer and in place."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 700, 20)).astype(dtype)
    expected = rope_truth(x, np.arange(700), "neox", 16, base_freqs(16))
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(fe.apply_rope(x, rotary_dim=16, backend=backend), expected, atol=tol * 8)
    y = x.copy()
    assert fe.apply_rope(y, rotary_dim=16, out=y, backend=backend) is y
    np.testing.assert_allclose(y, expected, atol=tol * 8)


@pytest.mark.parametrize("backend", BACKENDS)
def test_positions_offset_and_in_place(backend):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 8))
    positions = rng.integers(0, 5000, (3, 5))
    np.testing.assert_allclose(
        fe.apply_rope(x, positions=positions, backend=backend),
        rope_truth(x, positions, "neox", 8, base_freqs(8)),
        atol=1e-12,
    )
    np.testing.assert_allclose(
        fe.apply_rope(x, offset=100, backend=backend),
        rope_truth(x, np.arange(100, 105), "neox", 8, base_freqs(8)),
        atol=1e-12,
    )
    y = x.copy()
    result = fe.apply_rope(y, out=y, positions=positions[:1], backend=backend)  # broadcast over the batch
    assert result is y
    np.testing.assert_allclose(
        y, rope_truth(x, np.broadcast_to(positions[:1], (3, 5)), "neox", 8, base_freqs(8)), atol=1e-12
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_input_and_output(backend):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6, 20))[:, ::2, ::2]
    out = np.zeros((4, 3, 20))[..., ::2]
    fe.apply_rope(x, out=out, backend=backend)
    np.testing.assert_allclose(out, rope_truth(x, np.arange(3), "neox", 10, base_freqs(10)), atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_long_positions_use_float64_angles(backend):
    x = np.ones((1, 3, 128), np.float32)
    positions = np.array([2**20 - 1, 500000, 32768])
    got = fe.apply_rope(x, positions=positions, backend=backend)
    expected = rope_truth(x, positions, "neox", 128, base_freqs(128))
    np.testing.assert_allclose(got, expected, atol=1e-6)


SCALINGS = [
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "dynamic", "factor": 2.0, "max_position_embeddings": 64},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
    {
        "rope_type": "yarn",
        "factor": 8.0,
        "original_max_position_embeddings": 128,
        "beta_fast": 16,
        "mscale": 1.0,
        "mscale_all_dim": 0.5,
    },
    {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    },
]


@pytest.mark.parametrize("scaling", SCALINGS, ids=lambda s: s["rope_type"] + ("-mscale" if "mscale" in s else ""))
def test_scaling_matches_transformers(scaling):
    dim, base, seq_len = 64, 10000.0, 300
    theirs, their_attention = hf_rope_frequencies(scaling, dim, base, seq_len)
    ours, attention = fe.rope_frequencies(dim, base=base, scaling=scaling, seq_len=seq_len)
    np.testing.assert_allclose(ours, theirs, rtol=2e-6)  # theirs is computed in float32
    assert attention == pytest.approx(their_attention, rel=1e-6)


def test_scaling_reaches_the_rotation():
    scaling = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64}
    x = np.random.default_rng(3).standard_normal((1, 9, 32))
    inv_freq, attention = fe.rope_frequencies(32, scaling=scaling)
    np.testing.assert_allclose(
        fe.apply_rope(x, scaling=scaling), rope_truth(x, np.arange(9), "neox", 32, inv_freq, attention), atol=1e-12
    )


def test_matches_transformers_apply_rotary_pos_emb():
    torch = pytest.importorskip("torch")
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    rng = np.random.default_rng(4)
    q = rng.standard_normal((2, 4, 50, 32)).astype(np.float32)
    k = rng.standard_normal((2, 4, 50, 32)).astype(np.float32)
    cos, sin = fe.rope_cos_sin(50, 32, dtype=np.float32)
    C = torch.from_numpy(np.concatenate([cos, cos], -1))[None]
    S = torch.from_numpy(np.concatenate([sin, sin], -1))[None]
    q_ref, k_ref = llama.apply_rotary_pos_emb(torch.from_numpy(q), torch.from_numpy(k), C, S)
    np.testing.assert_allclose(fe.apply_rope(q), q_ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(fe.apply_rope(k), k_ref.numpy(), atol=1e-5)


def test_rope_cos_sin_tables():
    cos, sin = fe.rope_cos_sin(np.array([[0, 7], [100000, 3]]), 16)
    theta = np.array([[0, 7], [100000, 3]])[..., None] * base_freqs(16)
    np.testing.assert_allclose(cos, np.cos(theta), atol=1e-14)
    np.testing.assert_allclose(sin, np.sin(theta), atol=1e-14)
    assert fe.rope_cos_sin(10, 8, dtype=np.float32)[0].dtype == np.float32


@pytest.mark.parametrize("rotary_dim", [None, 8])
def test_weight_conversion_preserves_attention_scores(rotary_dim):
    """A q/k projection trained for gptj, permuted, gives the same q.k after neox rotation (and back)."""
    rng = np.random.default_rng(5)
    n_heads, head_dim, hidden, L = 3, 16, 24, 11
    wq, wk = rng.standard_normal((n_heads * head_dim, hidden)), rng.standard_normal((n_heads * head_dim, hidden))
    h = rng.standard_normal((L, hidden))

    def scores(wq, wk, style):
        q = (h @ wq.T).reshape(L, n_heads, head_dim).transpose(1, 0, 2)
        k = (h @ wk.T).reshape(L, n_heads, head_dim).transpose(1, 0, 2)
        q, k = (
            fe.apply_rope(q, style=style, rotary_dim=rotary_dim),
            fe.apply_rope(k, style=style, rotary_dim=rotary_dim),
        )
        return q @ k.transpose(0, 2, 1)

    original = scores(wq, wk, "gptj")
    converted = scores(
        fe.convert_rope_weight(wq, n_heads, "gptj", "neox", rotary_dim),
        fe.convert_rope_weight(wk, n_heads, "gptj", "neox", rotary_dim),
        "neox",
    )
    np.testing.assert_allclose(converted, original, atol=1e-9)
    back = fe.convert_rope_weight(
        fe.convert_rope_weight(wq, n_heads, "gptj", "neox", rotary_dim), n_heads, "neox", "gptj", rotary_dim
    )
    np.testing.assert_array_equal(back, wq)
    assert not np.allclose(scores(wq, wk, "neox"), original)  # without conversion the scores differ


def test_conversion_is_transformers_llama_permute():
    """convert_llama_weights_to_hf's permute(w) == our gptj -> neox conversion."""
    n_heads, dim = 4, 32
    w = np.arange(dim * 6, dtype=np.float64).reshape(dim, 6)
    hf = w.reshape(n_heads, dim // n_heads // 2, 2, 6).transpose(0, 2, 1, 3).reshape(dim, 6)
    np.testing.assert_array_equal(fe.convert_rope_weight(w, n_heads, "gptj", "neox"), hf)


@pytest.mark.parametrize(
    "kwargs,exc",
    [
        (dict(rotary_dim=7), ValueError),
        (dict(rotary_dim=0), ValueError),
        (dict(rotary_dim=32), ValueError),
        (dict(style="glm"), ValueError),
        (dict(positions=[[1.0] * 5]), TypeError),
        (dict(positions=[[-1, 0, 1, 2, 3]]), IndexError),
        (dict(positions=[[0, 1, 2, 3, 99]], max_position=50), IndexError),
        (dict(offset=48, max_position=50), IndexError),
        (dict(positions=[0, 1]), ValueError),
        (dict(positions=[0, 1, 2, 3, 4], offset=2), ValueError),
        (dict(scaling={"rope_type": "longrope2"}), ValueError),
        (dict(scaling={"rope_type": "yarn"}), ValueError),
        (dict(scaling="linear"), TypeError),
        (dict(backend="gpu"), ValueError),
        (dict(out=np.zeros((2, 5, 17))), ValueError),
    ],
)
def test_bad_arguments(kwargs, exc):
    x = np.zeros((2, 5, 16))
    with pytest.raises(exc):
        fe.apply_rope(x, **kwargs)
    with pytest.raises(ValueError):
        fe.apply_rope(np.zeros((2, 5, 16), np.int64))
    with pytest.raises(ValueError):
        fe.apply_rope(np.zeros(16))


def _streaming_isas():
    if "cython" not in BACKENDS:
        return []
    from fastembed._kernels import _positional

    widest = _positional.stream_isa()
    return [isa for isa in (512, 256) if isa <= widest]


def _rotate_streamed_and_plain(x, isa, offset_elements):
    """apply_rope(x) (Cython, neox) into a view ``offset_elements`` into a zeroed buffer with room
    on both sides, with streaming stores of width ``isa`` and with plain stores: (streamed, plain,
    the buffer of the streamed call)."""
    from fastembed._kernels import _positional

    def rotate():
        base = np.zeros(x.size + 40, x.dtype)
        out = base[offset_elements : offset_elements + x.size].reshape(x.shape)
        fe.apply_rope(x, out=out, style="neox", backend="cython", offset=5)
        return out.copy(), base

    previous_bytes, previous_isa = _positional.stream_min_bytes(), _positional.stream_isa()
    try:
        _positional.stream_min_bytes(float("inf"))
        plain, _ = rotate()
        _positional.stream_min_bytes(0)
        _positional.stream_isa(isa)
        streamed, base = rotate()
    finally:
        _positional.stream_min_bytes(previous_bytes)
        _positional.stream_isa(previous_isa)
    return streamed, plain, base


@pytest.mark.parametrize("isa", _streaming_isas())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("D", [2, 16, 32, 34, 64, 96, 128, 1000, 2048])
@pytest.mark.parametrize("offset_elements", [0, 1, 4, 7, 13])
def test_streaming_output_is_the_plain_output_bit_for_bit(isa, dtype, D, offset_elements):
    """Past the streaming threshold the Cython neox rows take streaming stores: straight from the
    registers where the half row is whole vectors (each aligned line joined from two vectors), else
    through an L1 stage (rows wider than the stage: plain stores). The same bits as plain stores for
    any row width, streaming width and output alignment, and nothing written outside the output."""
    x = np.random.default_rng(5).standard_normal((2, 3, 37, D)).astype(dtype)
    streamed, plain, base = _rotate_streamed_and_plain(x, isa, offset_elements)
    np.testing.assert_array_equal(streamed, plain)
    assert not base[:offset_elements].any() and not base[offset_elements + x.size :].any()
    np.testing.assert_array_equal(plain, fe.apply_rope(x, style="neox", backend="numpy", offset=5))


@pytest.mark.parametrize("isa", _streaming_isas())
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("D", [32, 96, 128])
@pytest.mark.parametrize("heads", [1, 5])
def test_streamed_rows_across_blocks_at_every_alignment(isa, dtype, D, heads):
    """Rows past one block of the parallel loop (512 rows; the threads write the lines where blocks
    meet with masked plain stores) at every element offset within a line: the plain bits. With
    several heads, whose rows read the same table rows, the heads' blocks of one position range
    are rotated together, row by row (the last group of heads short of a full one)."""
    x = np.random.default_rng(6).standard_normal((heads, 1100, D)).astype(dtype)
    for offset_elements in range(64 // x.itemsize + 1):
        streamed, plain, base = _rotate_streamed_and_plain(x, isa, offset_elements)
        np.testing.assert_array_equal(streamed, plain)
        assert not base[:offset_elements].any() and not base[offset_elements + x.size :].any()


@pytest.mark.parametrize("streamed", [0, 512, 256])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("heads,L,D,rotary", [(9, 700, 32, 32), (5, 1100, 20, 16), (2, 300, 128, 128), (3, 64, 64, 64)])
@pytest.mark.parametrize("in_place", [False, True])
def test_heads_rotated_together_have_the_bits_of_one_at_a_time(streamed, dtype, heads, L, D, rotary, in_place):
    """rope_rows given the rows' period (the sequence length) rotates several heads' blocks of
    positions together, row index by row index (plain, or streamed straight from the registers);
    only the order changes: the bits of the same rows rotated without it, tail columns and groups
    short of a full one included, and nothing written outside the output."""
    if "cython" not in BACKENDS or (streamed and streamed not in _streaming_isas()):
        pytest.skip("the Cython kernels' orders (and this streaming width)")
    from fastembed._kernels import _positional
    from fastembed._rope import rope_cos_sin

    rng = np.random.default_rng(heads * L)
    x = rng.standard_normal((heads * L, D)).astype(dtype)
    cos, sin = rope_cos_sin(L, rotary, dtype=dtype)
    rows = np.tile(np.arange(L, dtype=np.int64), heads)
    rows[::7] = rng.integers(0, L, rows[::7].shape)  # any table rows: the period is only an order
    previous_bytes, previous_isa = _positional.stream_min_bytes(), _positional.stream_isa()
    results = []
    try:
        _positional.stream_min_bytes(0 if streamed else float("inf"))
        _positional.stream_isa(streamed or previous_isa)
        for period in (0, L):
            base = np.zeros(x.size + 40, dtype)
            out = base[3 : 3 + x.size].reshape(x.shape)  # lines split at an odd element
            if in_place:
                out[...] = x
            _positional.rope_rows(out if in_place else x, out, rows, cos, sin, rotary // 2, True, period, 2)
            assert not base[:3].any() and not base[3 + x.size :].any()
            results.append(out.copy())
    finally:
        _positional.stream_min_bytes(previous_bytes)
        _positional.stream_isa(previous_isa)
    np.testing.assert_array_equal(results[1], results[0])
    np.testing.assert_array_equal(results[0][:, rotary:], x[:, rotary:])


def test_stream_isa_is_checked_and_capped_at_the_cpu():
    if "cython" not in BACKENDS:
        pytest.skip("the streaming stores are the Cython kernels'")
    from fastembed._kernels import _positional

    widest = _positional.stream_isa()
    try:
        with pytest.raises(ValueError, match="0, 256 or 512"):
            _positional.stream_isa(128)
        _positional.stream_isa(512)
        assert _positional.stream_isa() == widest
        _positional.stream_isa(0)
        assert _positional.stream_isa() == 0
    finally:
        _positional.stream_isa(widest)


def test_kept_tables_are_read_only_and_keyed_by_every_parameter():
    """The cos/sin tables and row index of the default positions are kept between calls: read-only,
    and a change of base, scaling, offset, rotary_dim or dtype takes tables of its own."""
    from fastembed import _rope

    x = np.random.default_rng(9).standard_normal((2, 3, 40, 16))
    first = fe.apply_rope(x, backend="numpy")
    rows = _rope._sequence_rows(6 * 40, 40)
    assert not rows.flags.writeable
    with pytest.raises(ValueError):
        rows[0] = 1
    linear = {"rope_type": "linear", "factor": 2.0}
    for kwargs in ({"base": 500.0}, {"offset": 3}, {"rotary_dim": 8}, {"scaling": linear}):
        changed = fe.apply_rope(x, backend="numpy", **kwargs)
        fresh = _rope._kept_tables.cache_clear() or fe.apply_rope(x, backend="numpy", **kwargs)
        np.testing.assert_array_equal(changed, fresh)
        assert not np.array_equal(changed, first)
    single = fe.apply_rope(x.astype(np.float32), backend="numpy")
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, first, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fe.apply_rope(x, backend="numpy"), first)


def test_small_rotations_do_not_wake_an_idle_pool(monkeypatch):
    """A decoding step's rotation (a few thousand elements) runs on one thread of an idle OpenMP
    pool, where waking a worker costs more than the whole rotation (on the Zen 4 VM, (1, 32, 16, 128)
    after a 200 us pause: 48 against 118 us); a large one gets the threads asked for."""
    from fastembed import _threads, backends

    k = backends.kernels("cython")
    if k is None or not k.openmp:
        pytest.skip("needs the Cython kernels built with OpenMP")
    asked = []
    rope_rows = k.rope_rows
    monkeypatch.setattr(k, "rope_rows", lambda *args: asked.append(args[-1]) or rope_rows(*args))
    monkeypatch.setattr(_threads, "_last_openmp_kernel_end", float("-inf"))
    monkeypatch.setattr(_threads, "WARM_POOL_SECONDS", 0.0)  # the pool stays idle between the calls
    small = np.random.default_rng(0).standard_normal((1, 32, 16, 128), dtype=np.float32)
    big = np.random.default_rng(1).standard_normal((2, 2, 4 * _threads.MIN_ELEMENTS_PER_THREAD // 256, 128))
    for x in (small, big):
        np.testing.assert_array_equal(fe.apply_rope(x, n_threads=2), fe.apply_rope(x, n_threads=1))
    assert asked == [1, 1, 2, 1]
