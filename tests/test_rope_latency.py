"""apply_rope's latency path (fastembed._rope_latency): the calls it takes give the general path's
bits, and every call it cannot prove valid goes to the general path, which raises what it always
raised."""

import warnings

import numpy as np
import pytest

import fastembed as fe
from fastembed import _rope, _rope_latency, backends
from fastembed.models import MODEL_CONFIGS, model_config
from util import run_against_a_vandal

pytestmark = pytest.mark.skipif(backends.cython_kernels() is None, reason="the latency path runs the Cython kernels")


@pytest.fixture
def taken(monkeypatch):
    """A list that records, call by call, whether the latency path returned a result."""
    record = []
    fast = _rope_latency.apply_rope_fast

    def spy(*arguments):
        result = fast(*arguments)
        record.append(result is not None)
        return result

    monkeypatch.setattr(_rope, "apply_rope_fast", spy)
    return record


def general(x, **options):
    """apply_rope on the general path alone."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_rope, "apply_rope_fast", lambda *arguments: None)
        return fe.apply_rope(x, **options)


LLAMA3 = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4096}

FAST_CASES = [
    ((1, 32, 1, 128), {"offset": 100}),  # a decoding step
    ((4, 32, 1, 128), {"offset": np.int64(7)}),
    ((1, 8, 16, 64), {"offset": 3, "style": "gptj"}),
    ((2, 4, 100, 32), {"offset": 0}),  # more positions than the directly computed tables
    ((1, 2, 8, 16), {"offset": 60}),  # across two blocks of directly computed positions
    ((1, 2, 64, 16), {"offset": 128}),  # one whole block
    ((3, 1, 20), {"offset": 5, "rotary_dim": 12}),
    ((1, 2), {}),
    ((2, 2, 9, 16), {"offset": 2**39, "base": 500000.0}),  # long positions
    ((1, 4, 2, 64), {"offset": 9, "scaling": LLAMA3}),
    ((1, 4, 3, 64), {"offset": 90, "scaling": YARN}),
    ((1, 2, 5, 40), {"scaling": {"rope_type": "linear", "factor": 2, "partial_rotary_factor": 0.5}}),
    ((2, 3, 8), {"offset": 4, "backend": "cython", "n_threads": 2}),
    ((1, 32, 1, 128), {"positions": np.array([[[100]]])}),  # a decoding step, positions given
    ((2, 4, 3, 16), {"positions": np.array([[[7, 9, 8]], [[60, 61, 62]]], np.int32)}),  # (B, 1, L)
    ((2, 4, 3, 16), {"positions": np.array([5, 3, 5], np.uint8)}),  # (L,), repeated, unsorted
    ((3, 6, 16), {"positions": np.array([[120], [64], [127]]), "style": "gptj"}),  # (B, 1): one per row
    ((2, 5, 16), {"positions": np.array([[60, 61, 62, 63, 64]]), "rotary_dim": 8}),  # across two blocks
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", ["fresh", "out", "in place"])
@pytest.mark.parametrize("shape, options", FAST_CASES)
def test_latency_path_gives_the_bits_of_the_general_path(taken, shape, options, dtype, target):
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(dtype)
    expected = general(x, **options)
    if target == "fresh":
        got = fe.apply_rope(x, **options)
    elif target == "out":
        out = np.full_like(x, np.nan)
        assert fe.apply_rope(x, out=out, **options) is out
        got = out
    else:
        got = x.copy()
        assert fe.apply_rope(got, out=got, **options) is got
    assert taken == [True]
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == x.dtype and got.shape == x.shape


def test_a_decoding_loop_matches_the_truth(taken):
    """Step by step, the offset advancing, against the float64 reference."""
    rng = np.random.default_rng(5)
    inv_freq = 10000.0 ** (-np.arange(0, 64, 2) / 64)
    for position in range(250, 260):
        x = rng.standard_normal((2, 4, 1, 64)).astype(np.float32)
        expected = fe.reference.rope(x, np.full((2, 4, 1), position), "neox", 64, inv_freq)
        np.testing.assert_allclose(fe.apply_rope(x, offset=position), expected, atol=1e-5)
    assert all(taken) and len(taken) == 10


def test_steps_read_from_a_kept_block_carry_the_bits_of_a_fresh_table(taken):
    """Positions 60..70 one at a time and in runs (inside a block of 64, across two), the blocks
    kept or not, in either dtype: each call gives the general path's bits."""
    rng = np.random.default_rng(11)
    for dtype in (np.float32, np.float64):
        for offset, L in [(60, 1), (63, 1), (64, 1), (65, 1), (61, 3), (62, 4), (64, 6), (70, 1)]:
            if offset == 64:  # from here on, the blocks are built afresh
                _rope_latency._block_tables.cache_clear()
            x = rng.standard_normal((2, 3, L, 16)).astype(dtype)
            np.testing.assert_array_equal(fe.apply_rope(x, offset=offset), general(x, offset=offset))
    assert all(taken) and len(taken) == 16


def _model_layers():
    """(name, layer_type) of every shipped config: None, or each layer type of a nested one."""
    for path in sorted(MODEL_CONFIGS.glob("*.json")):
        parameters = model_config(path.stem).get("rope_parameters") or {}
        nested = [key for key, value in parameters.items() if isinstance(value, dict)]
        yield from ((path.stem, layer) for layer in nested or [None])


@pytest.mark.parametrize("name, layer_type", list(_model_layers()))
def test_shipped_model_configs_give_the_general_path_bits(taken, name, layer_type):
    """``apply_rope(x, **rope_config(config))`` (mrope_interleaved=False given): the path takes every
    config but the multimodal (which do not reach it) and the position-dependent (longrope) ones,
    with the same bits."""
    config = fe.rope_config(model_config(name), layer_type=layer_type)
    x = np.random.default_rng(4).standard_normal((2, 4, 3, config.head_dim)).astype(np.float32)
    np.testing.assert_array_equal(fe.apply_rope(x, offset=1000, **config), general(x, offset=1000, **config))
    scaling = config.scaling or {}
    if config.mrope_section is not None:
        assert taken == []
    else:
        assert taken == [scaling.get("rope_type", scaling.get("type")) not in ("dynamic", "longrope")]


def _general_path_cases():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 6, 16)).astype(np.float32)
    read_only = x.copy()
    read_only.flags.writeable = False
    shared = rng.standard_normal(x.size + 16).astype(np.float32)  # x and out both C-contiguous
    raw = np.zeros(x.size, np.float32)  # positions 0 as int64, and an out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        matrix = np.asmatrix(x[0, 0])
    return {
        "strided x": (x[:, :, ::2], {}),
        "Fortran x": (np.asfortranarray(x), {}),
        "float16 x": (x.astype(np.float16), {}),
        "big-endian x": (x.astype(">f4"), {}),
        "1-D x": (x[0, 0, 0], {}),
        "matrix x": (matrix, {}),
        "list x": (x[0, 0].tolist(), {}),
        "positions over more than a block": (x, {"positions": np.array([0, 1, 2, 3, 4, 64])}),
        "positions a list": (x, {"positions": [0, 1, 2, 3, 4, 5]}),
        "bool positions": (x, {"positions": np.ones(6, bool)}),
        "float positions": (x, {"positions": np.arange(6.0)}),
        "negative positions": (x, {"positions": np.arange(-1, 5)}),
        "positions past max_position": (x, {"positions": np.arange(6) + 95, "max_position": 100}),
        "positions not broadcasting": (x, {"positions": np.arange(5)}),
        "positions of x's rank": (x, {"positions": np.zeros((2, 3, 6, 1), int)}),
        "positions empty": (x, {"positions": np.zeros((0,), int)}),
        "positions and offset": (x, {"positions": np.arange(6), "offset": 1}),
        "positions near 2**64": (x, {"positions": np.full(6, 2**64 - 1, np.uint64)}),
        "out overlapping positions": (x, {"positions": raw.view(np.int64)[:6], "out": raw.reshape(x.shape)}),
        "offset per row": (x, {"offset": np.array([1, 2])}),
        "bool offset": (x, {"offset": True}),
        "float offset": (x, {"offset": 1.0}),
        "negative offset": (x, {"offset": -1}),
        "offset past max_position": (x, {"offset": 95, "max_position": 100}),
        "offset past the table's limit": (x, {"offset": 2**40}),
        "bool base": (x, {"base": True}),
        "low base": (x, {"base": 1.0}),
        "nan base": (x, {"base": float("nan")}),
        "array base": (x, {"base": np.array([2.0])}),
        "odd rotary_dim": (x, {"rotary_dim": 5}),
        "wide rotary_dim": (x, {"rotary_dim": 18}),
        "float rotary_dim": (x, {"rotary_dim": 8.0}),
        "bool rotary_dim": (x, {"rotary_dim": True}),
        "unknown style": (x, {"style": "glm"}),
        "style an array": (x, {"style": np.array(["neox", "gptj"])}),
        "backend an array": (x, {"backend": np.array(["auto", "cython"])}),
        "unknown backend": (x, {"backend": "gpu"}),
        "numba": (x, {"backend": "numba"}),
        "numpy": (x, {"backend": "numpy"}),
        "bad n_threads": (x, {"n_threads": 0}),
        "float n_threads": (x, {"n_threads": 1.5}),
        "dynamic scaling": (x, {"scaling": {"rope_type": "dynamic", "factor": 2.0, "max_position_embeddings": 4}}),
        "unknown rope type": (x, {"scaling": {"rope_type": "warp"}}),
        "bool factor": (x, {"scaling": {"rope_type": "linear", "factor": True}}),
        "list in scaling": (x, {"scaling": {"rope_type": "linear", "factor": 2.0, "extra": [1]}}),
        "scaling not a dict": (x, {"scaling": [("rope_type", "linear")]}),
        "mrope section": (x, {"mrope_section": [2, 3, 3]}),
        "mrope interleaved, no section": (x, {"mrope_interleaved": True}),
        "mrope section in the scaling": (x, {"scaling": {"mrope_section": (2, 3, 3)}, "mrope_interleaved": False}),
        "out of another shape": (x, {"out": np.empty((2, 3, 6, 8), np.float32)}),
        "out of another dtype": (x, {"out": np.empty(x.shape)}),
        "out read-only": (x, {"out": read_only}),
        "in place, read-only": (read_only, {"out": read_only}),
        "out reversing x": (x, {"out": x.reshape(-1)[::-1].reshape(x.shape)}),
        "out overlapping x": (shared[: x.size].reshape(x.shape), {"out": shared[16:].reshape(x.shape)}),
        "out a view of x": (x, {"out": x[...]}),
        "out strided": (x, {"out": np.empty((2, 3, 12, 16), np.float32)[:, :, ::2]}),
        "out a list": (x, {"out": [0.0]}),
        "empty x": (x[:, :, :0], {}),
    }


GENERAL_PATH_CASES = _general_path_cases()


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
@pytest.mark.parametrize("name", GENERAL_PATH_CASES)
def test_calls_it_cannot_prove_valid_take_the_general_path(taken, name):
    x, options = GENERAL_PATH_CASES[name]
    try:
        expected = general(x, **options)
    except Exception as error:  # noqa: BLE001 - the same exception, whichever it is
        with pytest.raises(type(error)) as raised:
            fe.apply_rope(x, **options)
        assert str(raised.value) == str(error)
    else:
        np.testing.assert_array_equal(fe.apply_rope(x, **options), expected)
    assert taken in ([False], [])  # [] where the call does not reach it (mrope)


def test_cached_scalars_are_told_apart_by_type(taken):
    """A valid factor 1 cached first does not let True (refused) through, nor 1.0 change bits."""
    x = np.random.default_rng(2).standard_normal((1, 2, 3, 8)).astype(np.float32)
    linear = {"rope_type": "linear"}
    fe.apply_rope(x, scaling={**linear, "factor": 1})
    with pytest.raises(TypeError, match="factor"):
        fe.apply_rope(x, scaling={**linear, "factor": True})
    np.testing.assert_array_equal(
        fe.apply_rope(x, scaling={**linear, "factor": 1.0}), general(x, scaling={**linear, "factor": 1.0})
    )
    assert taken == [True, False, True]


def test_a_mutated_scaling_dict_is_read_again(taken):
    x = np.random.default_rng(3).standard_normal((1, 2, 3, 8))
    scaling = {"rope_type": "linear", "factor": 2.0}
    first = fe.apply_rope(x, scaling=scaling)
    scaling["factor"] = 4.0
    second = fe.apply_rope(x, scaling=scaling)
    np.testing.assert_array_equal(second, general(x, scaling=scaling))
    assert not np.array_equal(first, second)


def test_another_thread_rewriting_the_positions_never_crashes_nor_mixes(tmp_path):
    """The positions are checked on a private copy: each call rotates by the good positions or
    raises IndexError (a bad one copied, the general path then reports it), never a mixture."""
    setup = """
    import numpy as np, fastembed as fe
    x = np.random.default_rng(0).standard_normal((4, 8, 16, 64)).astype(np.float32)
    positions = np.arange(100, 116).reshape(1, 1, 16) + np.array([0, 20, 40, 47]).reshape(4, 1, 1)
    good = positions.copy()
    expected = fe.apply_rope(x, positions=good)
    """
    rewrite = """
    positions.flat[::3] = 2**40
    positions[...] = good
    """
    call = "got = fe.apply_rope(x, positions=positions)"
    check = "assert np.array_equal(got, expected), i"
    rc, out, err = run_against_a_vandal(tmp_path, setup, rewrite, call, check, calls=3000)
    assert rc == 0, err  # a segfault is rc -11
    assert "'ok'" in out
