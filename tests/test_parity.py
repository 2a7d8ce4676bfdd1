"""The Numba kernels mirror the Cython kernels of the same name: same results, bit for bit (the fused
projection within rounding: compilers differ in fusing a multiply-add)."""

import ast
import importlib
import inspect
from pathlib import Path

import numpy as np
import pytest

from fastembed import backends

pytestmark = pytest.mark.skipif(
    not {"cython", "numba"} <= set(backends.available()), reason="needs both compiled backends"
)


@pytest.fixture(scope="module")
def pair():
    return backends.kernels("cython"), backends.kernels("numba")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("itype", [np.int32, np.int64])
@pytest.mark.parametrize("terms", ["none", "bias", "pos", "both"])
@pytest.mark.parametrize("src_layout", ["C", "F"])
def test_gather_rows_and_finish_rows(pair, dtype, itype, terms, src_layout):
    rng = np.random.default_rng(0)
    src = rng.standard_normal((50, 37)).astype(dtype)
    src = np.asfortranarray(src) if src_layout == "F" else src
    rows = rng.integers(0, 50, 333).astype(itype)
    bias = rng.standard_normal(37).astype(dtype) if terms in ("bias", "both") else None
    pos = rng.standard_normal((40, 37)).astype(dtype) if terms in ("pos", "both") else None
    pos_rows = rng.integers(0, 40, 333).astype(np.int64) if pos is not None else None
    outs = []
    for k in pair:
        out = np.empty((333, 37), dtype)
        assert k.gather_rows(src, rows, 1.7, bias, pos, pos_rows, out, 2) == 0
        assert k.finish_rows(out, 0.3, bias, pos, pos_rows, 2) == 0
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("itype", [np.int32, np.int64])
def test_dedupe(pair, itype):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 100, 1000).astype(itype)
    results = []
    for k in pair:
        marker = np.full(100, -1, itype)
        uniq, remap = np.empty_like(ids), np.empty_like(ids)
        u = k.dedupe(ids, marker, uniq, remap)
        assert (marker == -1).all()
        np.testing.assert_array_equal(uniq[:u][remap], ids)
        results.append((u, uniq[:u].copy(), remap.copy()))
    assert results[0][0] == results[1][0] == len(np.unique(ids))
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][2], results[1][2])


def test_kernels_skip_and_count_bad_rows_instead_of_reading_out_of_bounds(pair):
    src = np.ones((4, 3), np.float32)
    rows = np.array([0, 4, -1, 3, 2**40], np.int64)
    for k in pair:
        out = np.zeros((5, 3), np.float32)
        assert k.rows.gather_rows(src, rows, 1.0, None, None, None, out, 1) == 3
        np.testing.assert_array_equal(out[[0, 3]], 1.0)
        np.testing.assert_array_equal(out[[1, 2, 4]], 0.0)
        marker = np.full(4, -1, np.int64)
        assert k.dedupe(rows, marker, np.empty(5, np.int64), np.empty(5, np.int64)) == -1
        assert (marker == -1).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norm_and_layernorm_kernels(pair, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((777, 13)).astype(dtype)
    w = rng.random(777)
    word, tt, pos = (rng.standard_normal(shape).astype(dtype) for shape in ((50, 13), (2, 13), (30, 13)))
    ids, types, prow = rng.integers(0, 50, 99), rng.integers(0, 2, 99), rng.integers(0, 30, 99)
    gamma, beta = rng.standard_normal(13).astype(dtype), rng.standard_normal(13).astype(dtype)
    results = []
    for k in pair:
        rows, partial, norms, stats = np.empty(777), np.zeros((2, 13)), np.empty(777), np.empty((777, 4))
        k.sq_norms(x, w, rows, partial, 2)
        k.row_sq_norms(x, norms, 2)
        k.row_error_stats(x, x[::-1].copy(), stats, 2)
        out = np.empty((99, 13), dtype)
        assert k.gather_sum_layernorm(word, ids, tt, types, pos, prow, gamma, beta, 1e-12, out, 2) == 0
        results.append((rows, partial.sum(0), norms, stats, out))
    for a, b in zip(results[0], results[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12 if dtype == np.float64 else 1e-6, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("itype", [np.int32, np.int64])
@pytest.mark.parametrize("kernel", ["project_rows", "project_distinct"])
def test_projection_kernels(pair, dtype, itype, kernel):
    rng = np.random.default_rng(4)
    table, proj = rng.standard_normal((60, 21)).astype(dtype), rng.standard_normal((21, 53)).astype(dtype)
    rows = rng.integers(0, 60, 99).astype(itype)
    uniq, remap = np.unique(rows % 20, return_inverse=True)
    index = (rows,) if kernel == "project_rows" else (uniq.astype(itype), remap.astype(itype))
    bias, pos = rng.standard_normal(53).astype(dtype), rng.standard_normal((30, 53)).astype(dtype)
    pos_rows = rng.integers(0, 30, 99)
    outs = []
    for k in pair:
        for simd in (512, 256, 0):
            out = np.empty((99, 53), dtype)
            extra = (0.0,) if kernel == "project_rows" else ()  # whole_bytes
            assert getattr(k, kernel)(table, *index, proj, 1.3, bias, pos, pos_rows, out, *extra, simd, 2) == 0
            outs.append(out)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    for other in outs[1:]:
        np.testing.assert_allclose(other, outs[0], rtol=tol, atol=tol * np.abs(outs[0]).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("itype", [np.int32, np.int64])
def test_project_gather(pair, dtype, itype):
    rng = np.random.default_rng(5)
    table, proj = rng.standard_normal((60, 21)).astype(dtype), rng.standard_normal((21, 53)).astype(dtype)
    uniq, remap = np.unique(rng.integers(0, 60, 999) % 40, return_inverse=True)
    bias, pos = rng.standard_normal(53).astype(dtype), rng.standard_normal((30, 53)).astype(dtype)
    pos_rows = rng.integers(0, 30, 999)
    results = []
    for k in pair:
        projected, out = np.empty((len(uniq), 53), dtype), np.empty((999, 53), dtype)
        assert (
            k.project_gather(
                table, uniq.astype(itype), remap.astype(itype), proj, 1.3, bias, pos, pos_rows, projected, out, 0, 2
            )
            == 0
        )
        results.append(out)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(results[1], results[0], rtol=tol, atol=tol * np.abs(results[0]).max())


def _stub_parameters(module):
    """Parameter names of each function in the ``.pyi`` stub installed beside a Cython module."""
    path = Path(importlib.import_module(module).__file__)
    stub = path.with_name(path.name.split(".")[0] + ".pyi")
    tree = ast.parse(stub.read_text())
    return {f.name: [a.arg for a in f.args.args] for f in tree.body if isinstance(f, ast.FunctionDef)}


def test_both_sets_satisfy_the_one_protocol():
    """Every kernel of kernels/_protocol.py is defined by each set that has its module, the Numba mirror
    with the Cython stub's parameters in the same order, and a threaded kernel takes n_threads last."""
    from fastembed._kernels._protocol import KERNELS, MODULES

    stubs = {role: _stub_parameters(module) for role, module in MODULES["cython"].items()}
    for name, spec in KERNELS.items():
        expected = stubs[spec.module][name]
        assert (expected[-1] == "n_threads") == spec.threaded, name
        for set_name, kernel_set in (("cython", backends.kernels("cython")), ("numba", backends.kernels("numba"))):
            module = getattr(kernel_set, spec.module)
            if module is None:
                assert spec.module not in MODULES[set_name], (set_name, name)
                continue
            assert callable(getattr(kernel_set, name)), (set_name, name)
            if set_name == "numba":
                function = getattr(module, name)
                py_func = getattr(function, "py_func", function)
                assert list(inspect.signature(py_func).parameters) == expected, name


def test_numba_threaded_kernels_get_one_index_type(pair):
    """int32, int64, read-only and strided index arrays reach a threaded Numba kernel as one type (Numba
    compiles once per combination of argument types), with the same results and the caller's arrays
    untouched. A dispatcher of its own counts the compilations."""
    import numba

    numba_set = pair[1]
    fresh = numba.njit(numba_set.rows.gather_rows.py_func)
    rng = np.random.default_rng(5)
    src = rng.standard_normal((20, 7)).astype(np.float32)
    rows = rng.integers(0, 20, 50)
    read_only = rows.copy()
    read_only.flags.writeable = False
    strided = np.repeat(rows, 2)[::2]
    outs = []
    for index in (rows.astype(np.int32), rows, read_only, strided, np.broadcast_to(rows[:1], (50,))):
        out = np.empty((50, 7), np.float32)
        assert numba_set._enter(fresh, [src, index, 1.0, None, None, None, out], 2) == 0
        outs.append(out)
    assert len(fresh.signatures) == 1
    assert str(fresh.signatures[0][1]) == "array(int64, 1d, C)"
    for out in outs[:4]:
        np.testing.assert_array_equal(out, src[rows])
    np.testing.assert_array_equal(outs[4], src[np.full(50, rows[0])])
    assert not read_only.flags.writeable


def _term_calls(kernel, rng):
    """(arguments without n_threads, with every optional term of ABSENT_AS_EMPTY given; the same
    with each of them None) for one kernel of each module that has such terms."""
    d = 9
    table = rng.standard_normal((20, 6)).astype(np.float32)
    bias = rng.standard_normal(d).astype(np.float32)
    if kernel == "gather_rows":
        src = rng.standard_normal((20, d)).astype(np.float32)
        rows = rng.integers(0, 20, 30)
        pos, pos_rows = rng.standard_normal((12, d)).astype(np.float32), rng.integers(0, 12, 30)
        full = [src, rows, 1.5, bias, pos, pos_rows, np.empty((30, d), np.float32)]
        return full, [*full[:3], None, None, None, full[6]]
    if kernel == "project_rows":
        proj = rng.standard_normal((6, d)).astype(np.float32)
        rows = rng.integers(0, 20, 30)
        pos, pos_rows = rng.standard_normal((12, d)).astype(np.float32), rng.integers(0, 12, 30)
        full = [table, rows, proj, 1.5, bias, pos, pos_rows, np.empty((30, d), np.float32), 0.0, 0]
        return full, [*full[:4], None, None, None, *full[7:]]
    ids = rng.integers(0, 20, 25)
    offsets = np.array([0, 4, 4, 11, 25])
    weights = rng.standard_normal(25).astype(np.float32)
    empty = np.empty(0, np.float32)
    token_weights = rng.standard_normal(30).astype(np.float32)
    token_map = rng.integers(0, 20, 30)
    head = [np.empty((4, 6), np.float32), table, empty, empty, -1, ids, offsets, False]
    tail = [-1, 1, 1.5]  # padding_idx (none), mode (mean), scale
    full = [*head, weights, token_weights, token_map, *tail, bias[:6], True]
    return full, [*head, None, None, None, *tail, None, True]


@pytest.mark.parametrize("kernel", ["gather_rows", "project_rows", "pool_rows"])
def test_numba_kernels_compile_once_with_and_without_their_optional_terms(pair, kernel):
    """An absent bias, position table or per-token weight reaches a Numba kernel as an empty array
    of the present one's type, so calls with and without it share one compilation (they took one
    each, 1-5 s apiece), and both give the Cython kernel's results. A dispatcher of its own counts."""
    import numba

    cython_set, numba_set = pair
    module = {"gather_rows": "rows", "project_rows": "project", "pool_rows": "pool"}[kernel]
    fresh = numba.njit(getattr(getattr(numba_set, module), kernel).py_func)
    for arguments in _term_calls(kernel, np.random.default_rng(8)):
        out_index = 0 if kernel == "pool_rows" else 7 if kernel == "project_rows" else 6
        expected = [a.copy() if isinstance(a, np.ndarray) else a for a in arguments]
        assert getattr(cython_set, kernel)(*expected, 2) == 0
        assert numba_set._enter(fresh, arguments, 2) == 0
        np.testing.assert_allclose(arguments[out_index], expected[out_index], rtol=1e-6, atol=1e-6)
    assert len(fresh.signatures) == 1
