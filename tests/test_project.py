"""The fused gather-project-finish kernel (kernels/_project.pyx and its Numba mirror) against the
float64 reference: AVX-512 and AVX2 micro-tiles (those this CPU runs) and the portable loop, both
index types, table layouts, every term, shapes around the tile edges, thread counts; bad indices
are counted and nothing is written."""

import numpy as np
import pytest

from fastembed import backends
from util import (
    COMPILED,
    DTYPES,
    FUSED_VARIANTS,
    RTOL,
    SIMD_WIDTHS,
    latency_path_option_declines,
    latency_path_position_id_declines,
    layouts,
    run_python,
)

# (n rows, V, r, d): tiles are 8 rows by strips of up to 48 / 24 columns (AVX-512 float32 /
# float64), or two halves of 4 rows by strips of 24 / 12 (AVX2), a strip's last vector masked; from
# 256 rows proj is packed first
SHAPES = [
    (1, 1, 1, 1),
    (3, 5, 2, 7),
    (9, 40, 7, 49),
    (17, 64, 33, 100),
    (8, 10, 1, 48),
    (5, 20, 3, 12),
    (6, 30, 4, 25),
    (4, 12, 5, 97),
    (7, 12, 6, 95),
    (130, 300, 128, 768),
    (300, 50, 9, 131),
    (4099, 300, 5, 131),
    (12, 30, 5, 47),
    (13, 40, 3, 145),
    (21, 50, 4, 64),
]
VARIANTS = FUSED_VARIANTS  # (backend, widest micro-tile allowed)


def _kernels(backend):
    if backend not in COMPILED:
        pytest.skip(f"{backend} not available")
    return backends.kernels(backend)


def _reference(table, rows, proj, scale, bias, pos, pos_rows):
    t = table.astype(np.float64)
    gathered = t if rows is None else t[rows]
    out = (gathered @ proj.astype(np.float64)) * scale
    magnitude = (np.abs(gathered) @ np.abs(proj.astype(np.float64))) * abs(scale)
    if bias is not None:
        out, magnitude = out + bias, magnitude + np.abs(bias)
    if pos is not None:
        out, magnitude = out + pos[pos_rows], magnitude + np.abs(pos[pos_rows])
    return out, magnitude


def _check(result, expected, magnitude, dtype):
    err = np.abs(result.astype(np.float64) - expected)
    assert np.all(err <= RTOL[np.dtype(dtype)] * magnitude + 1e-300), float(np.max(err / (magnitude + 1e-300)))


def _case(rng, shape, dtype, itype, layout, terms):
    n, V, r, d = shape
    table = layouts(rng.standard_normal((V, r)).astype(dtype), layout)
    rows = rng.integers(0, V, n).astype(itype)
    proj = rng.standard_normal((r, d)).astype(dtype)
    bias = rng.standard_normal(d).astype(dtype) if terms in ("bias", "both") else None
    pos = pos_rows = None
    if terms in ("pos", "both"):
        pos = layouts(rng.standard_normal((n + 5, d)).astype(dtype), "C")[::-1]  # negative row stride
        pos_rows = rng.integers(0, n + 5, n).astype(np.int64)
    return table, rows, proj, bias, pos, pos_rows


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("itype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("terms", ["none", "bias", "pos", "both"])
def test_project_rows_matches_reference(backend, simd, dtype, itype, shape, terms):
    k = _kernels(backend)
    rng = np.random.default_rng(sum(shape))
    for layout in ("C", "F", "strided"):
        table, rows, proj, bias, pos, pos_rows = _case(rng, shape, dtype, itype, layout, terms)
        out = np.full((shape[0], shape[3]), np.nan, dtype)
        assert k.project_rows(table, rows, proj, 1.7, bias, pos, pos_rows, out, 0.0, simd, 2) == 0
        _check(out, *_reference(table, rows, proj, 1.7, bias, pos, pos_rows), dtype)


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("itype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("terms", ["none", "both"])
def test_project_distinct_matches_reference_and_project_rows(backend, simd, dtype, itype, shape, terms):
    """Each distinct row projected once and written to all its rows: the reference's values, and
    (same kernel set, same tiles) bitwise project_rows' values."""
    k = _kernels(backend)
    rng = np.random.default_rng(sum(shape) + 1)
    for layout in ("C", "F"):
        table, rows, proj, bias, pos, pos_rows = _case(rng, shape, dtype, itype, layout, terms)
        rows = rows % max(1, shape[1] // 3)  # repeats
        uniq, remap = np.unique(rows, return_inverse=True)
        uniq, remap = uniq.astype(itype), remap.astype(itype)
        out = np.full((shape[0], shape[3]), np.nan, dtype)
        uniq, remap = uniq[::-1].copy(), len(uniq) - 1 - remap  # not in first-seen order
        assert k.project_distinct(table, uniq, remap, proj, 1.7, bias, pos, pos_rows, out, simd, 2) == 0
        _check(out, *_reference(table, rows, proj, 1.7, bias, pos, pos_rows), dtype)
        every = np.empty_like(out)
        k.project_rows(table, rows, proj, 1.7, bias, pos, pos_rows, every, 0.0, simd, 2)
        np.testing.assert_array_equal(out, every)


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
def test_project_distinct_in_blocks_of_distinct_rows(backend, simd):
    """A block of distinct rows (remap shifted) writes only its rows; uniq None is the identity;
    an index outside its table is counted and nothing is written."""
    k = _kernels(backend)
    rng = np.random.default_rng(8)
    table, proj = rng.standard_normal((40, 6)).astype(np.float32), rng.standard_normal((6, 30)).astype(np.float32)
    ids = rng.integers(0, 40, 500)
    uniq, remap = np.unique(ids, return_inverse=True)
    pos, pos_rows = rng.standard_normal((9, 30)).astype(np.float32), rng.integers(0, 9, 500)
    expected, magnitude = _reference(table, ids, proj, 0.5, None, pos, pos_rows)
    out = np.full((500, 30), np.nan, np.float32)
    half = len(uniq) // 2
    assert k.project_distinct(table, uniq[:half], remap, proj, 0.5, None, pos, pos_rows, out, simd, 2) == 0
    assert np.isnan(out[remap >= half]).all() and not np.isnan(out[remap < half]).any()
    assert k.project_distinct(table[uniq[half:]], None, remap - half, proj, 0.5, None, pos, pos_rows, out, simd, 2) == 0
    _check(out, expected, magnitude, np.float32)
    unused = np.concatenate([uniq, [uniq[0]]])  # its last distinct row appears in no output row
    again = np.full((500, 30), np.nan, np.float32)
    assert k.project_distinct(table, unused, remap, proj, 0.5, None, pos, pos_rows, again, simd, 2) == 0
    np.testing.assert_array_equal(again, out)
    bad = uniq.copy()
    bad[[0, -1]] = [-1, 40]
    out[:] = -7
    assert k.project.project_distinct(table, bad, remap, proj, 0.5, None, pos, pos_rows, out, simd, 2) == 2
    assert (out == -7).all()


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", DTYPES)
def test_identity_rows_and_zero_rank(backend, simd, dtype):
    k = _kernels(backend)
    rng = np.random.default_rng(5)
    table, proj = rng.standard_normal((20, 6)).astype(dtype), rng.standard_normal((6, 50)).astype(dtype)
    out = np.empty((20, 50), dtype)
    assert k.project_rows(table, None, proj, 1.0, None, None, None, out, 0.0, simd, 2) == 0
    _check(out, *_reference(table, None, proj, 1.0, None, None, None), dtype)
    bias = rng.standard_normal(50).astype(dtype)
    out = np.full((4, 50), np.nan, dtype)
    empty = np.empty((3, 0), dtype)
    assert (
        k.project_rows(
            empty, np.array([0, 2, 1, 0]), np.empty((0, 50), dtype), 3.0, bias, None, None, out, 0.0, simd, 1
        )
        == 0
    )
    np.testing.assert_array_equal(out, np.broadcast_to(bias, out.shape))


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
def test_result_is_bitwise_the_same_for_every_thread_count(backend, simd):
    """Every output element is one multiply-add chain over k, whichever task computes it."""
    k = _kernels(backend)
    rng = np.random.default_rng(2)
    table, rows, proj, bias, pos, pos_rows = _case(rng, (203, 500, 40, 150), np.float32, np.int64, "C", "both")
    outs = []
    for n_threads in (1, 2, 3, 8):
        out = np.empty((203, 150), np.float32)
        k.project_rows(table, rows, proj, 0.5, bias, pos, pos_rows, out, 0.0, simd, n_threads)
        outs.append(out)
    for other in outs[1:]:
        np.testing.assert_array_equal(other, outs[0])


@pytest.mark.skipif("cython" not in COMPILED, reason="the task ranges are the Cython kernel's")
def test_tasks_of_threads_that_never_start_are_run_by_the_others(tmp_path):
    """The fused kernel's tasks are cut into one range per requested thread, each thread taking its
    own first: with OMP_THREAD_LIMIT=1 the team is one thread, which must run every range (an
    unrun range would leave its rows as np.empty left them), with the bits of one thread."""
    code = """
        import numpy as np
        from fastembed import backends
        k = backends.kernels("cython")
        rng = np.random.default_rng(3)
        table = rng.standard_normal((500, 40)).astype(np.float32)
        proj = rng.standard_normal((40, 150)).astype(np.float32)
        rows = rng.integers(0, 500, 203)
        for simd in sorted({0, k.simd_width}):
            outs = []
            for n_threads in (1, 2, 5):
                out = np.full((203, 150), np.nan, np.float32)
                k.project_rows(table, rows, proj, 0.5, None, None, None, out, 0.0, simd, n_threads)
                outs.append(out)
            assert not np.isnan(outs[0]).any()
            for other in outs[1:]:
                assert np.array_equal(other, outs[0])
        print("ok")
    """
    code_, out, err = run_python(code, tmp_path, env={"OMP_THREAD_LIMIT": "1"})
    assert code_ == 0 and out.startswith("ok"), err[-2000:]


def _at_offset(a, offset_bytes, fill=np.nan):
    """A copy of ``a`` whose data start ``offset_bytes`` after a 4 KiB boundary, inside a buffer
    filled with ``fill`` around it (returned too, to check what a kernel wrote outside ``a``)."""
    pad = 4096
    buf = np.full(a.nbytes + 3 * pad, fill, a.dtype) if a.dtype.kind == "f" else np.zeros(a.nbytes + 3 * pad, a.dtype)
    raw = buf.view(np.uint8)
    start = (-raw.ctypes.data) % pad + pad + offset_bytes
    view = raw[start : start + a.nbytes].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view, buf


@pytest.mark.parametrize("simd", SIMD_WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "d"), [(5, 16), (9, 48), (130, 768), (300, 96), (70, 1024)], ids=str)
def test_misaligned_proj_is_read_from_aligned_strips_with_the_same_bits(simd, dtype, n, d):
    """numpy aligns arrays to 16 bytes: proj, out, bias and pos at every element offset within a
    vector give the bits of the aligned call (the strips then start before column 0, whose lanes
    are neither read from bias/pos nor stored), and nothing outside out is written. Below 256 rows
    proj is read in place; 300 rows pack it, and rows 4 KiB apart (d = 1024) pack from 64."""
    k = _kernels("cython")
    itemsize = np.dtype(dtype).itemsize
    rng = np.random.default_rng(n + d)
    table = rng.standard_normal((50, 24)).astype(dtype)
    rows = rng.integers(0, 50, n)
    proj, bias = rng.standard_normal((24, d)).astype(dtype), rng.standard_normal(d).astype(dtype)
    pos, pos_rows = rng.standard_normal((n + 3, d)).astype(dtype), rng.integers(0, n + 3, n).astype(np.int64)
    aligned = np.empty((n, d), dtype)
    k.project_rows(table, rows, _at_offset(proj, 0)[0], 1.3, bias, pos, pos_rows, aligned, 0.0, simd, 2)
    _check(aligned, *_reference(table, rows, proj, 1.3, bias, pos, pos_rows), dtype)
    for offset in range(itemsize, 64, itemsize * (1 if n < 100 else 3)):
        p = _at_offset(proj, offset)[0]
        b, q = _at_offset(bias, (offset * 7) % 64)[0], _at_offset(pos, (offset * 3) % 64)[0]
        for out_offset in (0, offset):
            out, around = _at_offset(np.full((n, d), np.nan, dtype), out_offset)
            assert k.project_rows(table, rows, p, 1.3, b, q, pos_rows, out, 0.0, simd, 2) == 0
            np.testing.assert_array_equal(out, aligned)
            assert np.isnan(around).sum() == around.size - out.size  # only out's elements written
            uniq, remap = np.unique(rows, return_inverse=True)
            out[...] = np.nan
            projected = np.empty((len(uniq), d), dtype)
            assert k.project.project_gather(table, uniq, remap, p, 1.3, b, q, pos_rows, projected, out, simd, 2) == 0
            np.testing.assert_array_equal(out, aligned)
            assert np.isnan(around).sum() == around.size - out.size


@pytest.mark.parametrize("simd", SIMD_WIDTHS)
def test_packed_panels_of_concurrent_calls_stay_apart(simd):
    """proj's packed panels live in a buffer of the calling thread's, kept between calls (grown
    when a larger proj comes, and above 16 MiB allocated per call instead): threads packing
    different projs at once, each growing its buffer, all get their own results."""
    import concurrent.futures

    k = _kernels("cython")
    rng = np.random.default_rng(4)
    cases = []
    for r, d in [(8, 48), (40, 200), (130, 768), (16, 3000), (64, 65600)]:  # the last packs 16.8 MB
        table, proj = rng.standard_normal((70, r)).astype(np.float32), rng.standard_normal((r, d)).astype(np.float32)
        rows = rng.integers(0, 70, 300)
        cases.append((table, rows, proj, table[rows].astype(np.float64) @ proj.astype(np.float64)))

    def run(order):
        for i in order:
            table, rows, proj, expected = cases[i]
            out = np.empty((300, proj.shape[1]), np.float32)
            assert k.project_rows(table, rows, proj, 1.0, None, None, None, out, 0.0, simd, 2) == 0
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)

    orders = [[0, 1, 2, 3, 4, 2, 0], [4, 3, 2, 1, 0, 1], [2, 2, 1, 4, 0], [1, 0, 3, 3, 2]]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for done in [pool.submit(run, order) for order in orders]:
            done.result()


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
def test_bad_indices_are_counted_and_nothing_is_written(backend, simd):
    k = _kernels(backend)
    table, proj = np.ones((4, 3), np.float32), np.ones((3, 5), np.float32)
    pos = np.ones((2, 5), np.float32)
    for rows, pos_rows, bad in [
        (np.array([0, 4, -1, 3, 2**40]), None, 3),
        (np.array([0, 1, 2, 3, 3]), np.array([0, 1, 2, -1, 1]), 2),
        (np.array([0, 1, 2, 3, -(2**62)], np.int64), np.array([0, 1, 1, 0, 9]), 2),
    ]:
        out = np.full((5, 5), -7, np.float32)
        terms = (pos, pos_rows) if pos_rows is not None else (None, None)
        assert k.project.project_rows(table, rows, proj, 1.0, None, *terms, out, 0.0, simd, 2) == bad
        assert (out == -7).all()


@pytest.mark.skipif("cython" not in COMPILED, reason="needs the Cython kernels")
def test_cython_refuses_mismatched_shapes():
    k = backends.kernels("cython")
    table, proj, out = np.ones((4, 3), np.float32), np.ones((3, 5), np.float32), np.empty((2, 5), np.float32)
    rows = np.zeros(2, np.int64)
    with pytest.raises(ValueError, match="proj shape"):
        k.project_rows(table, rows, np.ones((2, 5), np.float32), 1.0, None, None, None, out, 0.0, 0, 1)
    with pytest.raises(ValueError, match="rows shape"):
        k.project_rows(table, np.zeros(3, np.int64), proj, 1.0, None, None, None, out, 0.0, 0, 1)
    with pytest.raises(ValueError, match="bias shape"):
        k.project_rows(table, rows, proj, 1.0, np.ones(4, np.float32), None, None, out, 0.0, 0, 1)
    with pytest.raises(ValueError, match="unit column stride"):
        pos = np.ones((3, 10), np.float32)[:, ::2]
        k.project_rows(table, rows, proj, 1.0, None, pos, np.zeros(2, np.int64), out, 0.0, 0, 1)


def test_simd_switch_is_reported_and_honoured(monkeypatch):
    """FASTEMBED_DISABLE_SIMD=1 turns the micro-tiles off; --info and simd_width() say what runs."""
    if "cython" not in COMPILED:
        pytest.skip("needs the Cython kernels")
    import fastembed as fe
    from fastembed.__main__ import info

    k = backends.kernels("cython")
    assert fe.backends.simd_width() == k.simd_width == k.project.simd_width() in (0, 256, 512)
    assert (k.simd_width > 0) == k.project.simd_available()
    assert k.fused_simd == (k.simd_width >= 512)  # auto takes the fused plan with AVX-512 tiles only
    assert any(line.startswith("fused lookup micro-tiles on this CPU: ") for line in info())
    monkeypatch.setenv("FASTEMBED_DISABLE_SIMD", "1")
    fresh = backends.KernelSet("cython", k.rows, k.positional, k.project)
    assert fresh.simd_width == 0 and fresh.fused_simd is False


def test_simd_cap_caps_the_tiles_and_is_checked(monkeypatch):
    """FASTEMBED_SIMD=avx2 / none caps the tiles below what the CPU runs (never above it); an
    unknown value is a ValueError naming the choices."""
    if "cython" not in COMPILED:
        pytest.skip("needs the Cython kernels")
    k = backends.kernels("cython")
    widest = k.project.simd_width()
    for value, cap in [("avx512", 512), ("AVX2", 256), (" none ", 0)]:
        monkeypatch.setenv("FASTEMBED_SIMD", value)
        fresh = backends.KernelSet("cython", k.rows, k.positional, k.project)
        assert fresh.simd_width == min(widest, cap)
        assert fresh.fused_simd == (min(widest, cap) >= 512)
    monkeypatch.setenv("FASTEMBED_SIMD", "sse2")
    with pytest.raises(ValueError, match="FASTEMBED_SIMD must be one of avx512, avx2, none"):
        _ = backends.KernelSet("cython", k.rows, k.positional, k.project).simd_width
    flops, isa = k.project.fma_probe(10, 2, 256)
    assert (isa, flops) == (("avx2", 2 * 12 * 8 * 10 * 2.0) if widest >= 256 else (None, 0.0))  # 12 chains of 8 lanes


def test_simd_cap_runs_the_capped_tiles_end_to_end(tmp_path):
    """In a fresh interpreter with FASTEMBED_SIMD=avx2, the automatic lookup (every plan), the exact
    factorize, --info and the report's machine line take the AVX2 tiles, the streaming stores (and
    RoPE's direct rows) their 256-bit kernels, and the values are the reference's."""
    if "cython" not in COMPILED or backends.kernels("cython").project.simd_width() < 256:
        pytest.skip("needs the Cython kernels on a CPU with AVX2")
    code = """
        import numpy as np, fastembed
        from fastembed import backends, bench, reference
        from fastembed.__main__ import info
        assert backends.simd_width() == 256, backends.simd_width()
        assert bench._tile_shape().startswith("AVX2 4x3"), bench._tile_shape()
        assert any(line.endswith("AVX2") or "AVX2 (capped" in line for line in info() if "micro-tiles" in line)
        from fastembed._kernels import _positional, _project, _rows
        assert [m.stream_isa() for m in (_positional, _project, _rows)] == [256] * 3
        # RoPE's direct rows forced onto the (256-bit) streaming kernels: the plain rows' bits
        x = np.random.default_rng(4).standard_normal((2, 3, 40, 64), dtype=np.float32)
        _positional.stream_min_bytes(float("inf"))
        plain = fastembed.apply_rope(x, backend="cython")
        _positional.stream_min_bytes(0)
        streamed = fastembed.apply_rope(x, backend="cython")
        assert np.array_equal(streamed, plain)
        assert np.allclose(plain, reference.rope(x, np.arange(40)), rtol=1e-5, atol=1e-5)
        rng = np.random.default_rng(5)
        table = rng.standard_normal((500, 40), dtype=np.float32)
        proj = rng.standard_normal((40, 70), dtype=np.float32)
        pos = rng.standard_normal((64, 70), dtype=np.float32)
        for ids in (rng.integers(0, 500, (3, 64)), rng.integers(0, 5, (3, 64)), rng.integers(0, 500, (1, 7))):
            want = reference.factorized_lookup(ids, table, proj, 0.5, pos_table=pos)
            for plan in (None, "fused", "dedupe", "direct"):
                got = fastembed.factorized_lookup(ids, table, proj, scale=0.5, pos_table=pos, plan=plan)
                bound = 1e-5 * (np.abs(table[ids]) @ np.abs(proj) * 0.5 + np.abs(pos[: ids.shape[1]]) + 1)
                assert np.all(np.abs(got - want) <= bound), plan
        # the exact factorize's Gram pass and codes on the AVX2 tiles: the Eckart-Young optimum
        W64 = rng.standard_normal((3000, 20)) @ rng.standard_normal((20, 96)) + 0.01 * rng.standard_normal((3000, 96))
        for dtype in (np.float32, np.float64):
            W = W64.astype(dtype)
            for center in (False, True):
                f = fastembed.factorize(W, 12, center=center)
                X = W.astype(np.float64) - (W.astype(np.float64).mean(axis=0) if center else 0)
                s = np.linalg.svd(X, compute_uv=False)
                optimum = np.sqrt((s[12:] ** 2).sum() / (W.astype(np.float64) ** 2).sum())
                R = f.table.astype(np.float64) @ f.proj + (f.bias if center else 0)
                error = np.linalg.norm(W - R) / np.linalg.norm(W.astype(np.float64))
                assert abs(error - optimum) <= 1e-4 * optimum + 1e-6, (dtype, center, error, optimum)
        print("ok")
    """
    returncode, stdout, stderr = run_python(code, tmp_path, env={"FASTEMBED_SIMD": "avx2"})
    assert returncode == 0 and stdout.strip() == "ok", stderr[-3000:]


# ---------------------------------------------------------------- project_gather (the pipelined dedupe plan)


def _first_seen(rows):
    """(uniq, remap) with uniq in first-seen order, as fastembed's dedupe gives them."""
    uniq, first, remap = np.unique(rows, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first)] = np.arange(len(uniq))
    return uniq[np.argsort(first)], rank[remap.reshape(-1)]


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("itype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (9, 40, 7, 49), (300, 50, 9, 131), (2000, 700, 128, 96)], ids=str)
@pytest.mark.parametrize("terms", ["none", "bias", "pos", "both"])
@pytest.mark.parametrize("order", ["first-seen", "reversed"])
def test_project_gather_is_project_rows_then_gather_rows(backend, simd, dtype, itype, shape, terms, order):
    """The pipeline gives the reference's values and, bit for bit, the two passes it overlaps, for
    every thread count, with plain and streaming stores, whatever order the distinct rows are in."""
    k = _kernels(backend)
    rng = np.random.default_rng(sum(shape) + 7)
    for layout in ("C", "F"):
        table, rows, proj, bias, pos, pos_rows = _case(rng, shape, dtype, itype, layout, terms)
        rows = (rows % max(1, shape[1] // 4)) if shape[0] > 1 else rows  # repeats
        uniq, remap = _first_seen(rows)
        if order == "reversed":
            uniq, remap = uniq[::-1], len(uniq) - 1 - remap
        uniq, remap = np.ascontiguousarray(uniq, itype), np.ascontiguousarray(remap, itype)
        expected_projected = np.empty((len(uniq), shape[3]), dtype)
        k.project_rows(table, uniq, proj, 1.0, None, None, None, expected_projected, 0.0, simd, 1)
        expected = np.empty((shape[0], shape[3]), dtype)
        k.gather_rows(expected_projected, remap, 1.7, bias, pos, pos_rows, expected, 1)
        _check(expected, *_reference(table, rows, proj, 1.7, bias, pos, pos_rows), dtype)
        previous = k.project.stream_min_bytes() if backend == "cython" else None
        try:
            for threshold, n_threads in ((None, 1), (None, 2), (0, 3), (0, 8)):
                if previous is not None and threshold is not None:
                    k.project.stream_min_bytes(threshold)
                projected = np.full_like(expected_projected, np.nan)
                out = np.full_like(expected, np.nan)
                assert (
                    k.project_gather(
                        table, uniq, remap, proj, 1.7, bias, pos, pos_rows, projected, out, simd, n_threads
                    )
                    == 0
                )
                np.testing.assert_array_equal(projected, expected_projected)
                np.testing.assert_array_equal(out, expected)
        finally:
            if previous is not None:
                k.project.stream_min_bytes(previous)


@pytest.mark.skipif("cython" not in COMPILED, reason="the streaming stores are the Cython kernel's")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 3, 16, 20, 37, 768])
def test_streamed_gather_runs_write_every_row_at_every_line_offset(dtype, d):
    """Streamed, the pipeline gathers blocks of rows in output order as runs whose shared lines are
    assembled first: the plain stores' bits at every start of out within a line, nothing written
    outside out."""
    k = backends.kernels("cython")
    rng = np.random.default_rng(d)
    n, r = 150, 5
    table, proj = rng.standard_normal((40, r)).astype(dtype), rng.standard_normal((r, d)).astype(dtype)
    bias, pos = rng.standard_normal(d).astype(dtype), rng.standard_normal((7, d)).astype(dtype)
    uniq, remap = _first_seen(rng.integers(0, 40, n))
    uniq, remap = np.ascontiguousarray(uniq, np.int64), np.ascontiguousarray(remap, np.int64)
    pos_rows = rng.integers(0, 7, n)
    projected = np.empty((len(uniq), d), dtype)
    previous = k.project.stream_min_bytes()
    try:
        for terms in ((None, None, None), (bias, pos, pos_rows)):
            k.project.stream_min_bytes(float("inf"))
            expected = np.empty((n, d), dtype)
            k.project_gather(table, uniq, remap, proj, 0.5, *terms, projected, expected, k.simd_width, 2)
            k.project.stream_min_bytes(0)
            for offset in range(0, 64, np.dtype(dtype).itemsize):
                out, buf = _at_offset(expected * 0, offset)
                k.project_gather(table, uniq, remap, proj, 0.5, *terms, projected, out, k.simd_width, 2)
                np.testing.assert_array_equal(out, expected)
                assert np.isnan(buf).sum() == buf.size - out.size  # nothing outside out
    finally:
        k.project.stream_min_bytes(previous)


@pytest.mark.skipif(not SIMD_WIDTHS, reason="needs the SIMD tiles")
@pytest.mark.parametrize("simd", SIMD_WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_a_proj_larger_than_l2_is_run_by_column_blocks_with_the_same_bits(simd, dtype):
    """A proj past PROJ_L2_BYTES (1 MiB) is cut into column blocks taken one after the other; a
    task then covers a block's columns of its rows, and when the output streams it finishes those
    segments from a buffer (_emit_segments). Every thread count and the streamed and plain stores give
    the same bits, within rounding of the float64 reference, for project_rows and project_distinct
    (whose segments go to every occurrence); nothing is written outside out."""
    k = backends.kernels("cython")
    rng = np.random.default_rng(11)
    n, V, r, d = 520, 90, 16 if dtype == np.float64 else 32, 9001  # proj 1.15 MB; d leaves a partial strip
    table, proj = rng.standard_normal((V, r)).astype(dtype), rng.standard_normal((r, d)).astype(dtype)
    bias, pos = rng.standard_normal(d).astype(dtype), rng.standard_normal((11, d)).astype(dtype)
    rows, pos_rows = rng.integers(0, V, n), rng.integers(0, 11, n)
    uniq, remap = _first_seen(rows)
    uniq, remap = np.ascontiguousarray(uniq, np.int64), np.ascontiguousarray(remap, np.int64)
    expected, magnitude = _reference(table, rows, proj, 0.7, bias, pos, pos_rows)
    previous = k.project.stream_min_bytes()
    results = []
    try:
        for threshold in (float("inf"), 0):
            k.project.stream_min_bytes(threshold)
            for n_threads in (1, 2, 3):
                for kernel in ("rows", "distinct"):
                    out, buf = _at_offset(np.zeros((n, d), dtype), 16)
                    if kernel == "rows":
                        count = k.project_rows(table, rows, proj, 0.7, bias, pos, pos_rows, out, 0.0, simd, n_threads)
                    else:
                        count = k.project_distinct(
                            table, uniq, remap, proj, 0.7, bias, pos, pos_rows, out, simd, n_threads
                        )
                    assert count == 0
                    assert np.isnan(buf).sum() == buf.size - out.size  # nothing outside out
                    results.append(out.copy())
    finally:
        k.project.stream_min_bytes(previous)
    _check(results[0], expected, magnitude, dtype)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])


@pytest.mark.skipif(not SIMD_WIDTHS, reason="needs the SIMD tiles, which stream")
def test_a_lookup_cut_into_blocks_stores_as_one_call_would(monkeypatch):
    """A fused lookup long enough to be cut into blocks (for Ctrl-C) chooses streaming stores by its
    whole output, not by each block's: with the threshold between the two sizes every block streams
    (and the values are the unstreamed ones); with it above the whole output, none does."""
    import fastembed as fe
    from fastembed import _pipeline

    k = backends.kernels("cython")
    rng = np.random.default_rng(7)
    table = rng.standard_normal((300, 16)).astype(np.float32)
    proj = rng.standard_normal((16, 40)).astype(np.float32)
    pos = rng.standard_normal((64, 40)).astype(np.float32)
    ids = rng.integers(0, 300, (4, 64))
    block_rows = 32
    monkeypatch.setattr(_pipeline, "SIGNAL_CHECK_FLOPS", block_rows * 2 * 16 * 40)
    n_blocks = ids.size // block_rows
    whole, block = ids.size * 40 * 4, block_rows * 40 * 4
    previous = k.project.stream_min_bytes()
    try:
        k.project.stream_min_bytes(whole + 1)
        before = k.project.streamed_calls()
        expected = fe.factorized_lookup(ids, table, proj, scale=0.5, pos_table=pos, backend="cython", plan="fused")
        assert k.project.streamed_calls() == before
        k.project.stream_min_bytes((whole + block) / 2)
        before = k.project.streamed_calls()
        out = fe.factorized_lookup(ids, table, proj, scale=0.5, pos_table=pos, backend="cython", plan="fused")
        assert k.project.streamed_calls() - before == n_blocks
    finally:
        k.project.stream_min_bytes(previous)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.skipif(512 not in SIMD_WIDTHS, reason="needs the AVX-512 tiles")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_both_avx512_tile_shapes_give_the_same_bits(dtype, shape):
    """The AVX-512 tiles of 8 x 3 and of 4 x 6 vectors (tile_rows512, chosen per CPU at import) sum
    each element in the same order: project_rows, project_distinct and gram_rows give the same
    bits with either, with and without scale, bias and positions."""
    k = backends.kernels("cython")
    rng = np.random.default_rng(len(shape) + sum(shape))
    table, rows, proj, bias, pos, pos_rows = _case(rng, shape, dtype, np.int64, "C", "both")
    uniq, remap = _first_seen(rows)
    uniq, remap = np.ascontiguousarray(uniq, np.int64), np.ascontiguousarray(remap, np.int64)
    n, d = rows.shape[0], proj.shape[1]
    previous = k.project.tile_rows512()
    results = {}
    try:
        for rows512 in (8, 4):
            k.project.tile_rows512(rows512)
            outs = [np.empty((n, d), dtype) for _ in range(4)]
            k.project.project_rows(table, rows, proj, 1.0, None, None, None, outs[0], 0.0, 512, 2)
            k.project.project_rows(table, rows, proj, 0.7, bias, pos, pos_rows, outs[1], 0.0, 512, 2)
            k.project.project_distinct(table, uniq, remap, proj, 0.7, bias, pos, pos_rows, outs[2], 512, 2)
            gram = np.zeros((d, d))
            k.project.gram_rows(proj, gram, None, 512, 2)
            results[rows512] = outs[:3] + [gram]
    finally:
        k.project.tile_rows512(previous)
    for eight, four in zip(results[8], results[4], strict=True):
        np.testing.assert_array_equal(eight, four)
    expected, magnitude = _reference(table, rows, proj, 0.7, bias, pos, pos_rows)
    _check(results[4][1], expected, magnitude, dtype)
    with pytest.raises(ValueError, match="4 or 8"):
        k.project.tile_rows512(6)


@pytest.mark.skipif("cython" not in COMPILED, reason="the streaming stores are the Cython kernel's")
@pytest.mark.parametrize("simd", SIMD_WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [1, 5, 16, 47, 100, 768])
def test_streamed_fused_rows_are_the_tiles_bits_at_every_line_offset(simd, dtype, d):
    """Past the streaming threshold, project_rows and project_distinct tiles write their sums to a
    buffer of the task's rows, finished into out with streaming stores (runs of consecutive rows,
    or every occurrence of a distinct row): the bits of the tiles' own epilogue at every start of
    out within a line, with and without scale, bias and positions, nothing written outside out."""
    k = backends.kernels("cython")
    rng = np.random.default_rng(d)
    n, V, r = 150, 40, 7
    table, proj = rng.standard_normal((V, r)).astype(dtype), rng.standard_normal((r, d)).astype(dtype)
    bias, pos = rng.standard_normal(d).astype(dtype), rng.standard_normal((9, d)).astype(dtype)
    rows, pos_rows = rng.integers(0, V, n), rng.integers(0, 9, n)
    uniq, remap = _first_seen(rows)
    uniq, remap = np.ascontiguousarray(uniq, np.int64), np.ascontiguousarray(remap, np.int64)
    calls = {
        "rows": lambda scale, terms, out: k.project.project_rows(table, rows, proj, scale, *terms, out, 0.0, simd, 2),
        "distinct": lambda scale, terms, out: k.project.project_distinct(
            table, uniq, remap, proj, scale, *terms, out, simd, 2
        ),
    }
    previous = k.project.stream_min_bytes()
    try:
        for call in calls.values():
            for scale, terms in ((1.0, (None, None, None)), (0.37, (bias, pos, pos_rows))):
                k.project.stream_min_bytes(float("inf"))
                expected = np.empty((n, d), dtype)
                call(scale, terms, expected)
                k.project.stream_min_bytes(0)
                for offset in range(0, 64, np.dtype(dtype).itemsize):
                    out, buf = _at_offset(expected * 0, offset)
                    assert call(scale, terms, out) == 0
                    np.testing.assert_array_equal(out, expected)
                    assert np.isnan(buf).sum() == buf.size - out.size  # nothing outside out
    finally:
        k.project.stream_min_bytes(previous)


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
def test_project_gather_counts_bad_indices_and_writes_nothing(backend, simd):
    k = _kernels(backend)
    table, proj = np.ones((4, 3), np.float32), np.ones((3, 5), np.float32)
    pos = np.ones((2, 5), np.float32)
    uniq = np.array([3, 0, 2], np.int64)
    for bad_uniq, remap, pos_rows, bad in [
        (np.array([3, 4, -1]), np.array([0, 1, 2, 1, 0]), None, 2),
        (uniq, np.array([0, 3, -1, 2, 2**40]), None, 3),
        (uniq, np.array([0, 1, 2, 1, 0]), np.array([0, 1, 2, -1, 1]), 2),
    ]:
        out = np.full((5, 5), -7, np.float32)
        projected = np.full((3, 5), -7, np.float32)
        terms = (pos, pos_rows) if pos_rows is not None else (None, None)
        result = k.project.project_gather(table, bad_uniq, remap, proj, 1.0, None, *terms, projected, out, simd, 2)
        assert result == bad
        assert (out == -7).all() and (projected == -7).all()


@pytest.mark.skipif("cython" not in COMPILED, reason="needs the Cython kernels")
def test_project_gather_refuses_mismatched_shapes():
    k = backends.kernels("cython")
    table, proj = np.ones((4, 3), np.float32), np.ones((3, 5), np.float32)
    uniq, remap = np.array([1, 2], np.int64), np.zeros(6, np.int64)
    projected, out = np.empty((2, 5), np.float32), np.empty((6, 5), np.float32)
    for args, message in [
        ((table, uniq, remap, proj, 1.0, None, None, None, np.empty((3, 5), np.float32), out), "projected shape"),
        ((table, uniq, remap[:5], proj, 1.0, None, None, None, projected, out), "remap shape"),
        ((table, uniq, remap, np.ones((2, 5), np.float32), 1.0, None, None, None, projected, out), "proj"),
        ((table, uniq, remap, proj, 1.0, np.ones(4, np.float32), None, None, projected, out), "bias shape"),
        ((table, uniq, remap, proj, 1.0, None, np.ones((3, 5), np.float32), None, projected, out), "position shape"),
    ]:
        with pytest.raises(ValueError, match=message):
            k.project.project_gather(*args, 0, 1)


@pytest.mark.parametrize("width", SIMD_WIDTHS)
def test_dedupe_plan_pipelines_its_two_passes(monkeypatch, width):
    """Where the fused kernel pays for the distinct rows' projection (AVX-512 tiles; AVX2 tiles up to
    FUSED_AVX2_MAX_FLOPS of it, though the whole call is beyond), the dedupe plan's buffer path is
    one project_gather call: the reference's values, and with AVX-512 tiles the bits of its two
    passes run one after the other."""
    import fastembed as fe
    from fastembed import _pipeline

    rng = np.random.default_rng(9)
    table = rng.standard_normal((3000, 128)).astype(np.float32)
    proj = rng.standard_normal((128, 768)).astype(np.float32)
    ids = (rng.zipf(1.3, (28, 1024)) % 3000).astype(np.int64)
    bias, pos = rng.standard_normal(768).astype(np.float32), rng.standard_normal((1024, 768)).astype(np.float32)
    n_unique, token_flops = len(np.unique(ids)), 2.0 * 128 * 768
    assert n_unique * token_flops <= backends.FUSED_AVX2_MAX_FLOPS < ids.size * token_flops
    k = backends.kernels("cython")
    monkeypatch.setattr(k, "simd_width", width)  # 256: the plans of an AVX2-only CPU
    calls = []
    original = k.project_gather
    monkeypatch.setattr(k, "project_gather", lambda *a: calls.append(a) or original(*a))
    piped = fe.factorized_lookup(ids, table, proj, scale=1.5, bias=bias, pos_table=pos, backend="cython")
    assert len(calls) == 1 and calls[0][-2] == width
    expected, magnitude = _reference(table, ids.reshape(-1), proj, 1.5, bias, pos, np.tile(np.arange(1024), 28))
    _check(piped.reshape(-1, 768), expected, magnitude, np.float32)
    if width == 512:
        monkeypatch.setattr(_pipeline, "_pipelined", lambda *a: False)
        two_passes = fe.factorized_lookup(ids, table, proj, scale=1.5, bias=bias, pos_table=pos, backend="cython")
        assert len(calls) == 1
        np.testing.assert_array_equal(piped, two_passes)


# ---------------------------------------------------------------- the latency path (project_call)


def _call_kernels():
    k = _kernels("cython")
    if k.simd_width < 256:
        pytest.skip("the latency path runs the fused kernel's SIMD tiles (AVX2 or AVX-512)")
    return k


def _project_call(k, ids, table, proj, scale, pos, out, bias=None, offset=0, position_ids=None):
    return k.project.project_call(
        ids, table, proj, scale, pos, out, k.simd_width, 2.0**31, lambda flops: 2, bias, offset, position_ids
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("id_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("ids_shape", [(1,), (1, 128), (3, 17), (2, 2, 9), (5, 1)])
@pytest.mark.parametrize(("with_pos", "offset"), [(False, 0), (True, 0), (True, 3), (True, "position ids")])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_out", [False, True])
def test_latency_path_is_the_fused_kernel_bit_for_bit(
    dtype, id_dtype, ids_shape, with_pos, offset, with_bias, with_out
):
    """factorized_lookup's simple case runs project_call: the same tiles, the same bits as the
    general path's fused plan, and the float64 reference's values, with a bias and positions from
    an offset (a decoding step, ids (B, 1)) or given as position ids of the ids' shape too."""
    import fastembed as fe

    k = _call_kernels()
    rng = np.random.default_rng(7)
    V, r, d = 50, 33, 100
    table, proj = rng.standard_normal((V, r)).astype(dtype), rng.standard_normal((r, d)).astype(dtype)
    pos = rng.standard_normal((ids_shape[-1] + 3, d)).astype(dtype) if with_pos else None
    bias = rng.standard_normal(d).astype(dtype) if with_bias else None
    ids = rng.integers(0, V, ids_shape).astype(id_dtype)
    out = np.full(ids_shape + (d,), np.nan, dtype) if with_out else None
    flat = ids.reshape(-1)
    if offset == "position ids":
        position_ids, offset = rng.integers(0, pos.shape[0], ids_shape).astype(id_dtype), 0
        rows = position_ids.reshape(-1)
    else:
        position_ids = None
        rows = offset + np.tile(np.arange(ids_shape[-1]), flat.size // ids_shape[-1])
    got = _project_call(k, ids, table, proj, 1.5, pos, out, bias, offset, position_ids)
    assert got is not None and got.shape == ids_shape + (d,) and got.dtype == dtype
    assert not with_out or got is out
    general = fe.factorized_lookup(
        ids, table, proj, scale=1.5, bias=bias, pos_table=pos, offset=offset, position_ids=position_ids, plan="fused"
    )
    np.testing.assert_array_equal(got, general)
    expected, magnitude = _reference(table, flat, proj, 1.5, bias, pos, rows if with_pos else None)
    _check(got.reshape(-1, d), expected, magnitude, dtype)


def test_latency_path_declines_what_it_cannot_prove_valid():
    """Every case outside the simple one returns None with out untouched: the general path then
    checks the call and raises its own messages."""
    k = _call_kernels()
    rng = np.random.default_rng(8)
    table = rng.standard_normal((20, 8)).astype(np.float32)
    proj = rng.standard_normal((8, 16)).astype(np.float32)
    pos = np.zeros((10, 16), np.float32)
    ids = rng.integers(0, 20, (2, 5))
    out = np.full((2, 5, 16), -3.0, np.float32)
    assert _project_call(k, ids, table, proj, 1.0, pos, out) is out  # the simple case runs
    out[...] = -3.0
    big = np.zeros(4096, np.float32)
    too_big, negative = ids.copy(), ids.copy()
    too_big[1, 3], negative[0, 2] = 20, -1
    declined = {
        "float ids": (ids.astype(np.float64), table, proj, 1.0, pos, out),
        "bool ids": (ids > 3, table, proj, 1.0, pos, out),
        "uint64 ids": (ids.astype(np.uint64), table, proj, 1.0, pos, out),
        "an id == V": (too_big, table, proj, 1.0, pos, out),
        "a negative id": (negative, table, proj, 1.0, pos, out),
        "int32 id == V": (too_big.astype(np.int32), table, proj, 1.0, pos, out),
        "0-d ids": (np.array(3), table, proj, 1.0, pos, np.zeros(16, np.float32)),
        "empty ids": (ids[:, :0], table, proj, 1.0, pos, out[:, :0]),
        "list ids": (ids.tolist(), table, proj, 1.0, pos, out),
        "strided ids": (np.repeat(ids, 2, axis=1)[:, ::2], table, proj, 1.0, pos, out),
        "Fortran table": (ids, np.asfortranarray(table), proj, 1.0, pos, out),
        "float64 proj": (ids, table, proj.astype(np.float64), 1.0, pos, out),
        "proj rows != r": (ids, table, proj[:7], 1.0, pos, out),
        "pos too short": (ids, table, proj, 1.0, pos[:4], out),
        "pos too narrow": (ids, table, proj, 1.0, pos[:, :15], out),
        "pos float64": (ids, table, proj, 1.0, pos.astype(np.float64), out),
        "out float64": (ids, table, proj, 1.0, pos, out.astype(np.float64)),
        "out misshaped": (ids, table, proj, 1.0, pos, out.reshape(5, 2, 16)),
        "out read-only": (ids, table, proj, 1.0, pos, np.broadcast_to(out, out.shape)),
        "out strided": (ids, table, proj, 1.0, pos, np.zeros((2, 5, 32), np.float32)[..., ::2]),
        "bool scale": (ids, table, proj, True, pos, out),
        "numpy scale": (ids, table, proj, np.float32(1.0), pos, out),
        "out over table": (ids, big[:160].reshape(20, 8), proj, 1.0, pos, big[100:260].reshape(2, 5, 16)),
        "out over proj": (ids, table, big[:128].reshape(8, 16), 1.0, pos, big[:160].reshape(2, 5, 16)),
        "out over pos": (ids, table, proj, 1.0, big[:160].reshape(10, 16), big[150:310].reshape(2, 5, 16)),
        "out over ids": (big[:10].view(np.int32).reshape(2, 5), table, proj, 1.0, pos, big[:160].reshape(2, 5, 16)),
    }
    bias = np.ones(16, np.float32)
    assert _project_call(k, ids, table, proj, 1.0, pos, out, bias, 5) is out  # the last rows of pos
    out[...] = -3.0
    for name, (b, offset, p, o) in latency_path_option_declines(pos, out, big).items():
        declined[name] = (ids, table, proj, 1.0, p, o, b, offset)
    position_ids = rng.integers(0, 10, (2, 5))
    assert _project_call(k, ids, table, proj, 1.0, pos, out, None, 0, position_ids) is out  # they run
    out[...] = -3.0
    for name, (p, offset, given, o) in latency_path_position_id_declines(pos, out, big, position_ids).items():
        declined[name] = (ids, table, proj, 1.0, p, o, None, offset, given)
    for name, args in declined.items():
        before = np.array(args[5], copy=True)
        assert _project_call(k, *args) is None, name
        np.testing.assert_array_equal(args[5], before, err_msg=name)
    # more work than one uninterruptible kernel call may take (2 * 10 * 8 * 16 flops here)
    assert k.project.project_call(ids, table, proj, 1.0, pos, out, k.simd_width, 2559.0, lambda f: 2) is None
    np.testing.assert_array_equal(out, -3.0)
    assert k.project.project_call(ids, table, proj, 1.0, pos, out, k.simd_width, 2560.0, lambda f: 2) is out


def test_latency_calls_of_one_thread_skip_the_thread_policy(monkeypatch):
    """A call below ONE_THREAD_FLOPS (a decoding step) runs on one thread without the policy's
    Python; a bigger one asks the policy, with the flops the kernel counts."""
    import fastembed as fe
    from fastembed import _pipeline, _threads

    _call_kernels()
    asked = []
    policy = _pipeline.fused_threads
    monkeypatch.setattr(_pipeline, "fused_threads", lambda k, n, flops: asked.append(flops) or policy(k, n, flops))
    rng = np.random.default_rng(10)
    r, d = 64, 256
    table, proj = rng.standard_normal((1000, r)).astype(np.float32), rng.standard_normal((r, d)).astype(np.float32)
    small, big = rng.integers(0, 1000, (4, 1)), rng.integers(0, 1000, (1, 128))
    assert 2.0 * small.size * r * d < _threads.ONE_THREAD_FLOPS <= 2.0 * big.size * r * d
    got = [fe.factorized_lookup(ids, table, proj, scale=2.0) for ids in (small, big)]
    assert asked == [2.0 * big.size * r * d]
    for ids, result in zip((small, big), got, strict=True):
        np.testing.assert_array_equal(result, fe.factorized_lookup(ids, table, proj, scale=2.0, plan="fused"))


def test_factorized_lookup_takes_the_latency_path_only_for_the_simple_case(monkeypatch):
    import fastembed as fe

    k = _call_kernels()
    calls = []
    original = k.project.project_call
    monkeypatch.setattr(k.project, "project_call", lambda *a: calls.append(1) or original(*a))
    table, proj = np.ones((10, 4), np.float32), np.ones((4, 8), np.float32)
    fe.factorized_lookup([[1, 2]], table, proj)  # a list: the general path converts and checks it
    fe.factorized_lookup(np.array([[1, 2]]), table, proj, pos_table=np.zeros((4, 8), np.float32))
    fe.factorized_lookup(np.array([[1, 2]], np.int32), table, proj.T.copy().T)  # Fortran proj: declined inside
    assert len(calls) == 2
    text_like = np.tile(np.arange(8), (4, 128))  # 4096 ids, 8 distinct, r x d = 128 x 64: the cost model picks dedupe
    fe.factorized_lookup(text_like, np.ones((10, 128), np.float32), np.ones((128, 64), np.float32))
    pos = np.arange(32, dtype=np.float32).reshape(4, 8)
    step = fe.factorized_lookup(np.array([[1]]), table, proj, bias=np.ones(8, np.float32), pos_table=pos, offset=3)
    np.testing.assert_array_equal(step[0, 0], 4 + 1 + pos[3])  # a decoding step takes the path
    assert len(calls) == 3
    for kwargs in ({"plan": "direct"}, {"backend": "numba"}, {"position_ids": [0, 1]}):
        if kwargs.get("backend") == "numba" and "numba" not in COMPILED:
            continue
        fe.factorized_lookup(np.array([[1, 2]]), table, proj, **kwargs, pos_table=pos)
    assert len(calls) == 3
    step = fe.factorized_lookup(np.array([[1], [2]]), table, proj, pos_table=pos, position_ids=np.array([[3], [0]]))
    np.testing.assert_array_equal(step[:, 0], 4 + pos[[3, 0]])  # a decoding step with position ids takes it
    assert len(calls) == 4
    with pytest.raises(IndexError, match="outside"):
        fe.factorized_lookup(np.array([[1, 2]]), table, proj, pos_table=pos, offset=3)  # declined, then reported
    with pytest.raises(IndexError, match="outside"):
        fe.factorized_lookup(np.array([[1]]), table, proj, pos_table=pos, position_ids=np.array([[4]]))
    assert len(calls) == 6


def _sq_sums_in_order(x):
    """sum_j x[i, j]^2 in float64 in the kernels' documented order: four accumulators (j mod 4), the
    last d % 4 elements into the first, summed pairwise."""
    x = np.asarray(x, dtype=np.float64)
    d4 = x.shape[1] - x.shape[1] % 4
    a = np.zeros((x.shape[0], 4))
    for j in range(0, d4, 4):
        a = a + x[:, j : j + 4] * x[:, j : j + 4]
    for j in range(d4, x.shape[1]):
        a[:, 0] = a[:, 0] + x[:, j] * x[:, j]
    return (a[:, 0] + a[:, 1]) + (a[:, 2] + a[:, 3])


@pytest.mark.parametrize("backend", COMPILED)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 3, 4, 5, 9, 64, 65, 131])
@pytest.mark.parametrize("d", [0, 1, 3, 4, 7, 13, 384])
def test_row_norms_have_the_bits_of_their_order(backend, dtype, n, d):
    """row_sq_norms, sq_norms and gram_rows's fused norms (which reads rows two apart) add each row's
    squares in one documented order: the same bits as that order computed in numpy, for row counts
    around the kernels' block and thread splits and d around the four accumulators' tail."""
    k = backends.kernels(backend)
    rng = np.random.default_rng(n * 100 + d)
    x = (rng.standard_normal((2 * n, d)) * rng.uniform(0.1, 10, (2 * n, 1))).astype(dtype)
    want = _sq_sums_in_order(x[::2])
    got = np.full(n, np.nan)
    k.row_sq_norms(np.ascontiguousarray(x[::2]), got, 2)
    np.testing.assert_array_equal(got, want)
    got[:], partial = np.nan, np.zeros((2, d))
    k.sq_norms(np.ascontiguousarray(x[::2]), None, got, partial, 2)
    np.testing.assert_array_equal(got, want)
    if d:
        got[:] = np.nan
        k.gram_rows(x[::2], np.zeros((d, d)), got, k.simd_width, 2)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("backend", "simd"), VARIANTS, ids=lambda x: str(x))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("n", "d"), [(1, 1), (3, 5), (255, 97), (257, 130), (600, 49), (700, 384)], ids=str)
def test_gram_rows_adds_the_upper_triangle_and_mirrors_it(backend, simd, dtype, n, d):
    """gram += x^T x, summed by chunks of 256 rows in x's dtype, exactly symmetric, from rows of
    any stride."""
    k = _kernels(backend)
    rng = np.random.default_rng(n + d)
    x = rng.standard_normal((2 * n, d)).astype(dtype)[::2]  # rows 2 apart
    start = rng.standard_normal((d, d))
    start = start + start.T
    gram = start.copy()
    norms = np.full(n, np.nan)
    assert k.gram_rows(x, gram, norms, simd, 2) == 0
    x64 = x.astype(np.float64)
    magnitude = np.abs(x64).T @ np.abs(x64) + np.abs(start)
    err = np.abs(gram - (start + x64.T @ x64))
    assert np.all(err <= RTOL[np.dtype(dtype)] * magnitude), float(np.max(err / magnitude))
    np.testing.assert_array_equal(gram, gram.T)
    expected_norms = np.empty(n)
    k.row_sq_norms(np.ascontiguousarray(x), expected_norms, 1)  # the same sums, bit for bit
    np.testing.assert_array_equal(norms, expected_norms)
    without = start.copy()
    k.gram_rows(x, without, None, simd, 2)
    np.testing.assert_array_equal(without, gram)


@pytest.mark.skipif("cython" not in COMPILED, reason="needs the Cython kernels")
@pytest.mark.parametrize("simd", SIMD_WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_rows_sums_have_the_same_bits_at_every_address_and_thread_count(simd, dtype):
    """The tiles' sums carried between sub-chunks of rows (and the strips' placement) depend on
    neither where x lies nor how many threads share the tiles."""
    k = backends.kernels("cython")
    x = np.random.default_rng(7).standard_normal((600, 200)).astype(dtype)
    expected = np.zeros((200, 200))
    k.gram_rows(x, expected, None, simd, 1)
    for offset in (0, 4, 8, 16, 24, 40, 56):
        moved, _ = _at_offset(x, offset)
        for threads in (1, 2, 3):
            gram = np.zeros((200, 200))
            k.gram_rows(moved, gram, None, simd, threads)
            np.testing.assert_array_equal(gram, expected)


@pytest.mark.skipif("cython" not in COMPILED, reason="needs the Cython kernels")
@pytest.mark.parametrize("simd", SIMD_WIDTHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [128, 256, 384])
def test_gram_rows_from_a_copy_of_aliasing_rows_has_the_same_bits(simd, dtype, d):
    """Rows a multiple of 128 bytes apart are summed (with the AVX2 tiles) from each thread's copy
    of the chunk, rows an odd number of cache lines apart: the bits of rows that need no copy,
    at every thread count, row norms included."""
    k = backends.kernels("cython")
    x = np.random.default_rng(d).standard_normal((600, d)).astype(dtype)
    padded = np.zeros((600, d + 8), dtype)[:, :d]  # rows (d + 8) items apart: never copied
    padded[...] = x
    for threads in (1, 2, 3):
        want, got = np.zeros((d, d)), np.zeros((d, d))
        want_norms, got_norms = np.full(600, np.nan), np.full(600, np.nan)
        k.gram_rows(padded, want, want_norms, simd, threads)
        k.gram_rows(x, got, got_norms, simd, threads)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_norms, want_norms)


@pytest.mark.skipif("cython" not in COMPILED, reason="needs the Cython kernels")
def test_gram_rows_refuses_what_it_cannot_read():
    k = backends.kernels("cython")
    with pytest.raises(ValueError, match="gram shape"):
        k.gram_rows(np.ones((4, 3), np.float32), np.zeros((3, 4)), None, 512, 1)
    with pytest.raises(ValueError, match="unit column stride"):
        k.gram_rows(np.ones((4, 6), np.float32)[:, ::2], np.zeros((3, 3)), None, 512, 1)
    with pytest.raises(ValueError, match="row_norms shape"):
        k.gram_rows(np.ones((4, 3), np.float32), np.zeros((3, 3)), np.zeros(3), 512, 1)
