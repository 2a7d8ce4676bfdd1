"""The registry that drives the sweeps: each public lookup with its float64
reference and how to build its arguments, and the comparison rule.

A result passes when every element is within ``rtol * magnitude`` of the
float64 reference, where ``magnitude`` is the reference evaluated on the
absolute values of every input: the classical error bound of a sum of
products, so cancellation in a row cannot hide or fake an error.
"""

import os
import subprocess
import sys
import textwrap

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


def run_against_a_vandal(tmp_path, setup, rewrite, call, check="pass", calls=400):
    """Run, in a fresh interpreter, ``calls`` times the statements ``call`` while another thread
    runs ``rewrite`` over and over (the inputs' good values back at the end of each pass); after a
    call that returned, ``check`` runs (``i`` is the call's number). (returncode, stdout, stderr);
    stdout holds the counts of calls that returned ("ok") and that raised IndexError."""
    setup, rewrite, call, check = (textwrap.dedent(part).strip() for part in (setup, rewrite, call, check))
    body = "\n".join(
        [
            setup,
            "import threading",
            "stop = threading.Event()",
            "def vandal():",
            "    while not stop.is_set():",
            textwrap.indent(rewrite, " " * 8),
            "t = threading.Thread(target=vandal); t.start()",
            'outcomes = {"ok": 0, "IndexError": 0}',
            "try:",
            f"    for i in range({calls}):",
            "        try:",
            textwrap.indent(call, " " * 12),
            "        except IndexError:",
            '            outcomes["IndexError"] += 1',
            "        else:",
            textwrap.indent(check, " " * 12),
            '            outcomes["ok"] += 1',
            "finally:",
            "    stop.set(); t.join()",
            "print(outcomes)",
        ]
    )
    return run_python(body, tmp_path)


def run_python(code, tmp_path, timeout=240, env=None):
    """Run ``code`` in a fresh interpreter outside the source tree; (returncode, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, **(env or {})),
    )
    return proc.returncode, proc.stdout, proc.stderr


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


# ---------------------------------------------------------------------------------------------------
# The registry of every public computation: how to build its arguments, how to call it on a backend,
# its float64 truth (fastembed.reference) with the magnitude its error is measured against, and the
# bad inputs it must refuse. tests/test_registry.py sweeps every entry over backends, dtypes, memory
# layouts and bad inputs with assert_matches_reference, the one tolerance rule.
# ---------------------------------------------------------------------------------------------------


class Public:
    """One public computation.

    ``arguments(rng, dtype)`` builds keyword arguments; ``layout_args`` names the float arrays among
    them that the sweep re-lays in memory; ``run(args, backend)`` calls the public function;
    ``truth(args)`` returns (reference, magnitude), both float64; ``bad`` maps a name to
    (a function changing the arguments, the exception the public function must raise). Functions
    without a ``backend=`` argument sweep "auto" only; ``out_shape(args)`` (when the function takes
    ``out=``) is the shape of the buffer the bad-input sweep checks is left untouched.
    """

    def __init__(self, name, arguments, run, truth, bad, layout_args=(), backends=None, out_shape=None):
        self.name, self.arguments, self.run, self.truth, self.bad = name, arguments, run, truth, bad
        self.layout_args, self.out_shape = layout_args, out_shape
        self.backends = BACKENDS if backends is None else backends

    def __repr__(self):
        return self.name


def _normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _replace(**changes):
    return lambda args: dict(args, **changes)


def _without(args, name):
    return {k: w for k, w in args.items() if k != name}


def _with(name, make):
    return lambda args: dict(args, **{name: make(args)})


def _lookup_arguments(factorized):
    def arguments(rng, dtype):
        V, r, d, L = 23, 5, 12, 9
        args = dict(
            ids=rng.integers(0, V, (3, L)),
            table=_normal(rng, (V, r if factorized else d), dtype),
            scale=1.7,
            bias=_normal(rng, d, dtype),
            pos_table=_normal(rng, (L + 4, d), dtype),
            offset=3,
        )
        if factorized:
            args["proj"] = _normal(rng, (r, d), dtype)
        return args

    return arguments


def _lookup_entry(name, func, ref, factorized):
    def run(args, backend):
        args = dict(args)
        ids, table = args.pop("ids"), args.pop("table")
        tables = (table, args.pop("proj")) if factorized else (table,)
        return func(ids, *tables, backend=backend, **args)

    def truth(args):
        tables = ("table", "proj") if factorized else ("table",)
        terms = {k: args[k] for k in ("scale", "bias", "pos_table", "offset", "position_ids") if k in args}
        value = ref(args["ids"], *(args[t] for t in tables), **terms)
        absolute = {
            k: (abs(w) if k == "scale" else _abs(w) if k in ("bias", "pos_table") else w) for k, w in terms.items()
        }
        return value, ref(args["ids"], *(np.abs(args[t]) for t in tables), **absolute)

    bad = {
        "id == V": (
            _with("ids", lambda a: np.where(a["ids"] == a["ids"][0, 0], a["table"].shape[0], a["ids"])),
            IndexError,
        ),
        "negative id": (_with("ids", lambda a: -a["ids"] - 1), IndexError),
        "float ids": (_with("ids", lambda a: a["ids"].astype(np.float64)), TypeError),
        "bias of d + 1": (_with("bias", lambda a: np.zeros(a["bias"].size + 1, a["bias"].dtype)), ValueError),
        "positions past the pos_table": (_replace(offset=10), IndexError),
        "3-D table": (_with("table", lambda a: a["table"][None]), ValueError),
        "n_threads=0": (_replace(n_threads=0), ValueError),
    }
    if factorized:
        bad["proj of r + 1 rows"] = (_with("proj", lambda a: np.vstack([a["proj"], a["proj"][:1]])), ValueError)
    layout = ("table", "pos_table") + (("proj",) if factorized else ())
    return Public(
        name,
        _lookup_arguments(factorized),
        run,
        truth,
        bad,
        layout,
        out_shape=lambda a: a["ids"].shape + (a["bias"].size,),
    )


def _pooled_arguments(rng, dtype):
    V, r, d = 31, 6, 10
    return dict(
        ids=rng.integers(0, V, 25),
        offsets=np.array([0, 4, 4, 11, 25]),
        table=_normal(rng, (V, r), dtype),
        proj=_normal(rng, (r, d), dtype),
        weights=rng.random(25),
        token_weights=rng.random(V),
        scale=0.5,
        bias=_normal(rng, d, dtype),
    )


def _pooled_truth(args):
    value = reference.pooled_lookup(**args)
    absolute = {
        k: (np.abs(w) if isinstance(w, np.ndarray) and k not in ("ids", "offsets") else w) for k, w in args.items()
    }
    return value, reference.pooled_lookup(**absolute)


POOLED = Public(
    "pooled_lookup (mean, factorized, weighted)",
    _pooled_arguments,
    lambda args, backend: fe.pooled_lookup(**args, backend=backend),
    _pooled_truth,
    {
        "id == V": (
            _with("ids", lambda a: np.where(a["ids"] == a["ids"][0], a["table"].shape[0], a["ids"])),
            IndexError,
        ),
        "float ids": (_with("ids", lambda a: a["ids"].astype(np.float32)), TypeError),
        "offsets past the ids": (_with("offsets", lambda a: a["offsets"] + 1), ValueError),
        "weights of N - 1": (_with("weights", lambda a: a["weights"][:-1]), ValueError),
        "proj of r + 1 rows": (_with("proj", lambda a: np.vstack([a["proj"], a["proj"][:1]])), ValueError),
        "unknown mode": (_replace(mode="median"), ValueError),
    },
    ("table", "proj"),
    out_shape=lambda a: (a["offsets"].size - 1, a["proj"].shape[1]),
)


def _angle_magnitude(theta, dtype):
    """Magnitude of sin(theta) or cos(theta) with theta rounded in float64 (as every dtype does):
    the value's own size, 1, plus |theta| rounding units of float64 expressed in units of ``dtype``."""
    return 1.0 + np.abs(theta) * (np.finfo(np.float64).eps / np.finfo(dtype).eps)


def _sinusoidal_entry(layout, endpoint=False):
    def arguments(rng, dtype):
        return dict(
            positions=np.array([0, 1, 7, 513, 40_000, 1_000_000]), d=19, layout=layout, endpoint=endpoint, dtype=dtype
        )

    def truth(args):
        value = reference.sinusoidal(args["positions"], args["d"], args["layout"], endpoint=args["endpoint"])
        # every entry is a sine or cosine of an angle no larger than its position
        return value, _angle_magnitude(np.asarray(args["positions"], np.float64), args["dtype"])[
            :, None
        ] * np.ones_like(value)

    return Public(
        f"sinusoidal ({layout}{', endpoint' if endpoint else ''})",
        arguments,
        lambda args, backend: fe.sinusoidal(**args, cache=False, backend=backend),
        truth,
        {
            "d=2.0": (_replace(d=2.0), TypeError),
            "d=0": (_replace(d=0), ValueError),
            "negative position": (_with("positions", lambda a: -a["positions"] - 1), IndexError),
            "float positions": (_with("positions", lambda a: a["positions"] + 0.5), TypeError),
            "unknown layout": (_replace(layout="zigzag"), ValueError),
            "dtype int32": (_replace(dtype=np.int32), ValueError),
            "base='1e4'": (_replace(base="1e4"), TypeError),
            "base=0": (_replace(base=0.0), ValueError),
        },
        out_shape=lambda a: (a["positions"].size, a["d"]),
    )


ROPE_SCALINGS = {
    "default": None,
    "linear": {"rope_type": "linear", "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "factor": 2.0, "max_position_embeddings": 64},
    "ntk": {"rope_type": "ntk", "factor": 4.0},
    "llama3": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    },
    "yarn": {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 64},
    "longrope": {
        "rope_type": "longrope",
        "long_factor": [1.0 + 0.5 * i for i in range(8)],
        "short_factor": [1.0 + 0.01 * i for i in range(8)],
        "original_max_position_embeddings": 64,
        "max_position_embeddings": 512,
    },
    "proportional": {"rope_type": "proportional", "partial_rotary_factor": 0.5},
}


def _rope_positions(args):
    """The positions apply_rope uses: ``positions`` broadcast to x.shape[:-1], or offset + l."""
    x = args["x"]
    if "positions" in args:
        return np.broadcast_to(np.asarray(args["positions"], np.int64), x.shape[:-1])
    return np.broadcast_to(args.get("offset", 0) + np.arange(x.shape[-2]), x.shape[:-1])


def _rope_entry(kind, style="neox", far=False):
    """apply_rope with one scaling; ``far``: explicit per-row positions up to 2**30."""
    scaling = ROPE_SCALINGS[kind]

    def arguments(rng, dtype):
        args = dict(x=_normal(rng, (2, 3, 20, 16), dtype), style=style, offset=90)
        if far:
            args = dict(_without(args, "offset"), positions=rng.integers(0, 2**30, (2, 1, 20)))
        if scaling is not None:
            args["scaling"] = scaling
        return args

    def truth(args):
        x, positions = args["x"], _rope_positions(args)
        rotary_dim = x.shape[-1]
        seq_len = int(positions.max()) + 1
        inv_freq, attention = reference.rope_frequencies(rotary_dim, scaling=args.get("scaling"), seq_len=seq_len)
        value = reference.rope(x, positions, args["style"], rotary_dim, inv_freq, attention=attention)
        # |a cos - b sin| <= (|a| + |b|) * attention for each pair: the magnitude of both outputs
        absolute = np.abs(np.asarray(x, np.float64))
        half = rotary_dim // 2
        if args["style"] == "neox":
            pair = absolute[..., :half] + absolute[..., half:]
            magnitude = np.concatenate([pair, pair], axis=-1)
        else:
            magnitude = np.repeat(absolute[..., 0::2] + absolute[..., 1::2], 2, axis=-1)
        theta = positions[..., None] * inv_freq
        angle = np.concatenate([theta, theta], -1) if args["style"] == "neox" else np.repeat(theta, 2, -1)
        return value, magnitude * _angle_magnitude(angle, x.dtype) * max(attention, 1.0)

    return Public(
        f"apply_rope ({kind}, {style}{', positions to 2^30' if far else ''})",
        arguments,
        lambda args, backend: fe.apply_rope(**args, backend=backend),
        truth,
        {
            "odd rotary_dim": (_replace(rotary_dim=5), ValueError),
            "rotary_dim='8'": (_replace(rotary_dim="8"), TypeError),
            "negative offset": (lambda a: dict(_without(a, "positions"), offset=-1), IndexError),
            "position 2**40": (
                lambda a: dict(_without(a, "offset"), positions=np.full(a["x"].shape[-2], 2**40)),
                IndexError,
            ),
            "float positions": (
                lambda a: dict(_without(a, "offset"), positions=np.arange(a["x"].shape[-2]) + 0.5),
                TypeError,
            ),
            "1-D x": (_with("x", lambda a: a["x"][0, 0, 0]), ValueError),
            "integer x": (_with("x", lambda a: a["x"].astype(np.int64)), ValueError),
            "unknown style": (_replace(style="spiral"), ValueError),
        },
        out_shape=lambda a: a["x"].shape,
    )


def _rope_cos_sin_arguments(rng, dtype):
    return dict(positions=np.array([[0, 5, 99], [2**20, 7, 3]]), dim=12, scaling=ROPE_SCALINGS["yarn"], dtype=dtype)


def _rope_cos_sin_truth(args):
    inv_freq, attention = reference.rope_frequencies(args["dim"], scaling=args["scaling"])
    theta = np.asarray(args["positions"], np.float64)[..., None] * inv_freq
    value = np.stack([np.cos(theta), np.sin(theta)]) * attention
    return value, np.stack([_angle_magnitude(theta, args["dtype"])] * 2) * attention


ROPE_COS_SIN = Public(
    "rope_cos_sin (yarn)",
    _rope_cos_sin_arguments,
    lambda args, backend: np.stack(fe.rope_cos_sin(**args, backend=backend)),
    _rope_cos_sin_truth,
    {
        "odd dim": (_replace(dim=7), ValueError),
        "dim=8.0": (_replace(dim=8.0), TypeError),
        "negative position": (_with("positions", lambda a: -a["positions"]), IndexError),
        "unknown rope type": (_replace(scaling={"rope_type": "warp"}), ValueError),
        "dtype int32": (_replace(dtype=np.int32), ValueError),
        "dtype 'cosine'": (_replace(dtype="cosine"), TypeError),
    },
)


def _block_arguments(albert):
    def arguments(rng, dtype):
        V, P, T, d, H = 17, 12, 2, 8, 11
        args = dict(
            ids=rng.integers(0, V, (3, 10)),
            token_type_ids=rng.integers(0, T, (3, 10)),
            word=_normal(rng, (V, d), dtype),
            position=_normal(rng, (P, d), dtype),
            token_type=_normal(rng, (T, d), dtype),
            gamma=(1 + 0.1 * rng.standard_normal(d)).astype(dtype),
            beta=_normal(rng, d, dtype),
            eps=1e-12,
        )
        if albert:
            args["mapping"] = _normal(rng, (H, d), dtype)
            args["mapping_bias"] = _normal(rng, H, dtype)
        return args

    return arguments


def _block_run(albert):
    def run(args, backend):
        args = dict(args)
        ids, types = args.pop("ids"), args.pop("token_type_ids")
        block = (fe.AlbertEmbedding if albert else fe.BertEmbedding)(**args)
        return block(ids, types, backend=backend)

    return run


def _block_truth(args):
    value = reference.embedding_block(**args)
    # LayerNorm's rounding is bounded by the sum's absolute terms over its spread, times |gamma|,
    # plus |beta|; the mapping then adds the absolute sum of its products
    ids, types = np.asarray(args["ids"]), np.asarray(args["token_type_ids"])
    word, position, token_type = (np.asarray(args[k], np.float64) for k in ("word", "position", "token_type"))
    terms = (word[ids], token_type[types], position[reference.positions_rows(ids.shape)])
    x = sum(terms)
    mean = x.mean(axis=-1, keepdims=True)
    spread = np.sqrt(((x - mean) ** 2).mean(axis=-1, keepdims=True) + args["eps"])
    absolute = (sum(np.abs(t) for t in terms) + np.abs(mean)) / spread
    magnitude = absolute * np.abs(np.asarray(args["gamma"], np.float64)) + np.abs(np.asarray(args["beta"], np.float64))
    if "mapping" in args:
        magnitude = magnitude @ np.abs(np.asarray(args["mapping"], np.float64)).T + np.abs(args["mapping_bias"])
    return value, magnitude


def _block_entry(albert):
    bad = {
        "id == V": (
            _with("ids", lambda a: np.where(a["ids"] == a["ids"][0, 0], a["word"].shape[0], a["ids"])),
            IndexError,
        ),
        "token type == T": (
            _with("token_type_ids", lambda a: a["token_type_ids"] + a["token_type"].shape[0]),
            IndexError,
        ),
        "float ids": (_with("ids", lambda a: a["ids"] + 0.5), TypeError),
        "gamma of d + 1": (_with("gamma", lambda a: np.ones(a["gamma"].size + 1, a["gamma"].dtype)), ValueError),
        "position of d - 1 columns": (_with("position", lambda a: a["position"][:, 1:]), ValueError),
        "sequence longer than the position table": (
            _with("ids", lambda a: np.zeros((1, a["position"].shape[0] + 1), np.int64)),
            IndexError,
        ),
    }
    if albert:
        bad["mapping of E + 1 columns"] = (
            _with("mapping", lambda a: np.hstack([a["mapping"], a["mapping"][:, :1]])),
            ValueError,
        )
    layout = ("word", "position", "token_type") + (("mapping",) if albert else ())
    return Public(
        "AlbertEmbedding" if albert else "BertEmbedding",
        _block_arguments(albert),
        _block_run(albert),
        _block_truth,
        bad,
        layout,
    )


def _factorize_arguments(rng, dtype):
    """A table with a clear spectral gap after rank 4 (the optimum is then well defined)."""
    V, d = 60, 14
    signal = rng.standard_normal((V, 4)) @ (rng.standard_normal((4, d)) * np.array([[8.0], [6.0], [4.0], [3.0]]))
    return dict(
        W=(signal + 0.05 * rng.standard_normal((V, d)) + 0.7).astype(dtype),
        rank=4,
        row_weights=rng.random(V) + 0.1,
        center=True,
    )


def _factorize_truth(args):
    dense, s, _ = reference.factorize(args["W"], args["rank"], args["row_weights"], args["center"])
    # a rank-r projector computed through the Gram matrix moves by about s_1^2 / (s_r^2 - s_(r+1)^2)
    # units of rounding (Davis-Kahan): each row's reconstruction by that many times its size
    r = args["rank"]
    W = np.asarray(args["W"], np.float64)
    amplification = s[0] ** 2 / (s[r - 1] ** 2 - s[r] ** 2)
    rows = np.linalg.norm(W, axis=1, keepdims=True)
    return dense, np.broadcast_to(rows * amplification + np.abs(W), dense.shape)


FACTORIZE = Public(
    "factorize (exact, weighted, centered)",
    _factorize_arguments,
    lambda args, backend: fe.factorize(**args).to_dense(),
    _factorize_truth,
    {
        "rank=0": (_replace(rank=0), ValueError),
        "rank=2.0": (_replace(rank=2.0), TypeError),
        "rank > d": (_with("rank", lambda a: a["W"].shape[1] + 1), ValueError),
        "1-D W": (_with("W", lambda a: a["W"][0]), ValueError),
        "negative row weight": (_with("row_weights", lambda a: -a["row_weights"]), ValueError),
        "row_weights of V - 1": (_with("row_weights", lambda a: a["row_weights"][:-1]), ValueError),
        "unknown method": (_replace(method="qr"), ValueError),
    },
    ("W",),
    backends=("auto",),
)


FUNCTIONS = [
    _lookup_entry("factorized_lookup", fe.factorized_lookup, reference.factorized_lookup, factorized=True),
    _lookup_entry("lookup", fe.lookup, reference.lookup, factorized=False),
    POOLED,
    _sinusoidal_entry("interleaved"),
    _sinusoidal_entry("concat"),
    _sinusoidal_entry("concat", endpoint=True),
    *[_rope_entry(kind) for kind in ROPE_SCALINGS],
    _rope_entry("default", style="gptj", far=True),
    ROPE_COS_SIN,
    _block_entry(albert=False),
    _block_entry(albert=True),
    FACTORIZE,
]


def latency_path_position_id_declines(pos, out, big, position_ids):
    """name -> (pos, offset, position ids, out) a latency path (project_call, gather_call) must
    decline, beside otherwise simple arguments with ``pos`` (10, 16), ``out`` (2, 5, 16) float32,
    ``big`` a float32 buffer of 4096 and valid ``position_ids`` (2, 5): the general path then checks
    and reports them."""
    past, below = position_ids.copy(), position_ids.copy()
    past[1, 1], below[0, 4] = 10, -1
    return {
        "a position id == n_pos": (pos, 0, past, out),
        "a negative position id": (pos, 0, below, out),
        "int32 position id == n_pos": (pos, 0, past.astype(np.int32), out),
        "position ids broadcast": (pos, 0, position_ids[:1], out),
        "position ids flat": (pos, 0, position_ids.reshape(-1), out),
        "float position ids": (pos, 0, position_ids.astype(np.float64), out),
        "bool position ids": (pos, 0, position_ids > 3, out),
        "uint64 position ids": (pos, 0, position_ids.astype(np.uint64), out),
        "position ids a list": (pos, 0, position_ids.tolist(), out),
        "strided position ids": (pos, 0, np.repeat(position_ids, 2, axis=1)[:, ::2], out),
        "position ids and an offset": (pos, 1, position_ids, out),
        "position ids without pos": (None, 0, position_ids, out),
        "out over position ids": (pos, 0, big[:20].view(np.int64).reshape(2, 5), big[:160].reshape(2, 5, 16)),
    }


def latency_path_option_declines(pos, out, big):
    """name -> (bias, offset, pos, out) a latency path (project_call, gather_call) must decline, beside
    otherwise simple arguments with ``pos`` (10, 16), ``out`` (2, 5, 16) float32 and ``big`` a float32
    buffer of 4096: the general path then checks and reports them."""
    bias = np.ones(16, np.float32)
    return {
        "offset past pos": (None, 6, pos, out),
        "negative offset": (None, -1, pos, out),
        "offset without pos": (None, 1, None, out),
        "numpy int offset": (None, np.int64(1), pos, out),
        "bool offset": (None, True, pos, out),
        "float offset": (None, 1.0, pos, out),
        "huge offset": (None, 2**70, pos, out),
        "bias misshaped": (bias[:15], 0, pos, out),
        "bias 2-d": (bias.reshape(1, 16), 0, pos, out),
        "bias float64": (bias.astype(np.float64), 0, pos, out),
        "bias strided": (np.ones(32, np.float32)[::2], 0, pos, out),
        "bias a list": (bias.tolist(), 0, pos, out),
        "out over bias": (big[150:166], 0, pos, big[:160].reshape(2, 5, 16)),
    }
