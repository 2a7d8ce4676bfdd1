"""Every public computation against its float64 truth in fastembed.reference, on every backend, in
both dtypes and every memory layout, and every bad input refused with the documented exception on
every backend before anything is written: the sweeps the registry in util.py drives."""

import inspect

import numpy as np
import pytest

import fastembed as fe
from util import DTYPES, FUNCTIONS, assert_matches_reference, layouts

SWEEP = [(f, backend) for f in FUNCTIONS for backend in f.backends]
BAD = [(f, backend, bad) for f in FUNCTIONS for backend in f.backends for bad in f.bad]

# Public names that compute nothing a float64 formula could check, each with the test that covers it.
NOT_NUMERIC = {
    "__version__": "metadata",
    "backends": "module (test_lookup, test_threads)",
    "reference": "the truth itself",
    "get_num_threads": "thread policy (test_threads)",
    "num_threads": "thread policy (test_threads)",
    "set_num_threads": "thread policy (test_threads)",
    "as_ragged": "an exact conversion of integer ids (test_pooled)",
    "positions_from_offsets": "integer positions (test_pooled)",
    "make_positions": "integer positions, exact (test_positional)",
    "positions_from_mask": "integer positions, exact (test_positional)",
    "mrope_positions": "integer positions, exact (test_rope_models)",
    "rope_config": "reads a config (test_rope_models)",
    "RopeConfig": "reads a config (test_rope_models)",
    "rope_permutation": "an integer permutation (test_rope)",
    "convert_rope_weight": "a permutation of rows, exact (test_rope)",
    "rope_frequencies": "against reference.rope_frequencies and transformers (test_rope_models)",
    "WordPiece": "tokenizer: against _wordpiece_exact and transformers (test_wordpiece)",
    "StaticEmbedding": "a pooled lookup (registry) behind the tokenizer (test_static)",
    "Factorization": "factorize's result (registry)",
    "ErrorReport": "factorize's report (test_factorize)",
    "Embedding": "lookup as a layer (test_layers)",
    "FactorizedEmbedding": "factorized_lookup as a layer (test_layers)",
    "QuantizedRows": "quantize_rows' result (test_quantize)",
    "quantize_rows": "rounding to int8 codes, bound checked (test_quantize)",
}
COVERED = {
    "factorized_lookup",
    "lookup",
    "pooled_lookup",
    "sinusoidal",
    "apply_rope",
    "rope_cos_sin",
    "BertEmbedding",
    "AlbertEmbedding",
    "factorize",
}


def test_every_public_name_has_a_reference_or_says_what_covers_it():
    swept = {f.name.split(" ")[0] for f in FUNCTIONS}
    assert swept == COVERED
    assert set(fe.__all__) == COVERED | set(NOT_NUMERIC), set(fe.__all__) ^ (COVERED | set(NOT_NUMERIC))


def _laid_out(args, names, layout):
    return {k: (layouts(w, layout) if k in names and w.ndim == 2 else w) for k, w in args.items()}


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("function, backend", SWEEP, ids=lambda x: str(x))
def test_matches_its_reference(function, backend, dtype, layout):
    args = _laid_out(function.arguments(np.random.default_rng(0), dtype), function.layout_args, layout)
    result = function.run(args, backend)
    assert_matches_reference(result, *function.truth(args), dtype)


@pytest.mark.parametrize("function, backend, bad", BAD, ids=lambda x: str(x))
def test_refuses_bad_input_before_writing(function, backend, bad):
    change, exception = function.bad[bad]
    args = function.arguments(np.random.default_rng(0), np.float32)
    if function.out_shape is not None:
        args["out"] = np.full(function.out_shape(args), 7.0, np.float32)
    try:
        args = change(args)
    except ValueError:  # the change itself cannot be built for this entry's shapes
        pytest.fail(f"{bad!r} could not be built")
    with pytest.raises(exception):
        function.run(args, backend)
    if "out" in args:
        assert np.all(args["out"] == 7.0), "the call wrote into out before raising"


def test_the_registry_calls_what_it_names():
    """Each run() goes through the public function named: a wrong backend name must reach it."""
    for function in FUNCTIONS:
        if "backend" in inspect.signature(getattr(fe, function.name.split(" ")[0])).parameters:
            args = function.arguments(np.random.default_rng(0), np.float64)
            with pytest.raises(ValueError, match="unknown backend"):
                function.run(args, "fortran")
