"""Every bad input, on every backend: the same exception and message, raised
before anything is written to ``out``."""

import numpy as np
import pytest

import fastembed as fe
from util import BACKENDS, LOOKUPS

V, R, D, L = 20, 4, 6, 5


def _good(lookup):
    rng = np.random.default_rng(0)
    tables = lookup.tables(rng, V, R, D, np.float32)
    return dict(
        ids=rng.integers(0, V, (2, L)),
        tables=tables,
        kw=dict(bias=np.zeros(D, np.float32), pos_table=np.zeros((L + 2, D), np.float32)),
    )


def _set(key, value):
    def change(args):
        if key == "ids":
            args["ids"] = value
        elif key in ("table", "proj"):
            i = 0 if key == "table" else 1
            tables = list(args["tables"])
            tables[i] = value(tables[i]) if callable(value) else value
            args["tables"] = tuple(tables)
        else:
            args["kw"][key] = value(args["kw"]) if callable(value) else value

    return change


BAD = {
    # ids
    "id == V": (IndexError, _set("ids", [[0, V]])),
    "id -1": (IndexError, _set("ids", [[-1, 0]])),
    "id 2**31": (IndexError, _set("ids", np.array([[2**31]], np.int64))),
    "id 2**63-1": (IndexError, _set("ids", np.array([2**63 - 1], np.int64))),
    "id uint64 max": (IndexError, _set("ids", np.array([2**64 - 1], np.uint64))),
    "id python int 2**70": (IndexError, _set("ids", [2**70])),
    "int32 id -5": (IndexError, _set("ids", np.array([3, -5], np.int32))),
    "float ids": (TypeError, _set("ids", np.array([[1.0, 2.0]]))),
    "float list ids": (TypeError, _set("ids", [1.5])),
    "bool ids": (TypeError, _set("ids", np.array([True, False]))),
    "string ids": (TypeError, _set("ids", ["a", "b"])),
    "object ids": (TypeError, _set("ids", np.array([1, None], dtype=object))),
    # tables
    "table 1-D": (ValueError, _set("table", lambda t: t[0])),
    "table 3-D": (ValueError, _set("table", lambda t: t[None])),
    "table int": (ValueError, _set("table", lambda t: t.astype(np.int32))),
    "table complex": (ValueError, _set("table", lambda t: t.astype(np.complex64))),
    "table int16": (ValueError, _set("table", lambda t: t.astype(np.int16))),
    # terms
    "bias shape": (ValueError, _set("bias", np.zeros(D + 1, np.float32))),
    "bias dtype": (ValueError, _set("bias", np.zeros(D, np.float64))),
    "bias 2-D": (ValueError, _set("bias", np.zeros((1, D), np.float32))),
    "scale string": (TypeError, _set("scale", "2")),
    "scale array": (TypeError, _set("scale", np.ones(2))),
    "scale complex": (TypeError, _set("scale", 1j)),
    "pos_table width": (ValueError, _set("pos_table", np.zeros((9, D + 1), np.float32))),
    "pos_table dtype": (ValueError, _set("pos_table", np.zeros((9, D), np.float64))),
    "pos_table 1-D": (ValueError, _set("pos_table", np.zeros(D, np.float32))),
    "offset past table": (IndexError, _set("offset", 3)),
    "offset negative": (IndexError, _set("offset", -1)),
    "offset float": (TypeError, _set("offset", 1.0)),
    # without bias, where the latency paths are tried first: not "the truth value ... is ambiguous"
    "offset array": (TypeError, lambda a: a["kw"].update(offset=np.array([1, 2]), bias=None)),
    "offset bool": (TypeError, lambda a: a["kw"].update(offset=True, bias=None)),
    "position_ids past table": (IndexError, _set("position_ids", [0, 1, 2, 3, L + 2])),
    "position_ids negative": (IndexError, _set("position_ids", [0, -1, 2, 3, 4])),
    "position_ids float": (TypeError, _set("position_ids", [0.0, 1.0, 2.0, 3.0, 4.0])),
    "position_ids shape": (ValueError, _set("position_ids", [0, 1])),
    "position_ids with offset": (ValueError, lambda a: a["kw"].update(position_ids=[0] * L, offset=1)),
    "position_ids without pos_table": (ValueError, lambda a: a["kw"].update(position_ids=[0] * L, pos_table=None)),
    "offset without pos_table": (ValueError, lambda a: a["kw"].update(offset=1, pos_table=None)),
    # out and backend
    "out shape": (ValueError, _set("out", np.zeros((2, L, D + 1), np.float32))),
    "out dtype": (ValueError, _set("out", np.zeros((2, L, D), np.float64))),
    "out list": (ValueError, _set("out", [[0.0]])),
    "backend unknown": (ValueError, _set("backend", "cuda")),
}

FACTORIZED_ONLY = {
    "proj rows": (ValueError, _set("proj", lambda p: p[:-1])),
    "proj dtype": (ValueError, _set("proj", lambda p: p.astype(np.float64))),
    "proj 1-D": (ValueError, _set("proj", lambda p: p[0])),
    "plan unknown": (ValueError, _set("plan", "sorted")),
}


def _cases():
    return list(_each_case())


def _each_case():
    for lookup in LOOKUPS:
        bad = dict(BAD, **FACTORIZED_ONLY) if lookup.factorized else BAD
        for name, (exc, change) in bad.items():
            yield pytest.param(lookup, exc, change, id=f"{lookup.name}-{name}")


@pytest.mark.parametrize("lookup,exc,change", _cases())
def test_bad_input_raises_same_error_on_every_backend_and_writes_nothing(lookup, exc, change):
    messages = set()
    for backend in BACKENDS:
        args = _good(lookup)
        change(args)
        kw = dict(args["kw"])
        kw.setdefault("backend", backend)
        sentinel = np.full((2, L, D), 7.0, np.float32)
        kw.setdefault("out", sentinel)
        with pytest.raises(exc) as info:
            lookup.call(args["ids"], args["tables"], **kw)
        messages.add(str(info.value))
        assert (sentinel == 7.0).all(), "out was written before the error"
    assert len(messages) == 1, messages


@pytest.mark.parametrize("lookup", LOOKUPS, ids=lambda x: x.name)
@pytest.mark.parametrize("backend", BACKENDS)
def test_out_overlapping_an_input_or_readonly_is_refused(lookup, backend):
    args = _good(lookup)
    table = np.zeros((V, D), np.float32)
    out = np.zeros((2, L, D), np.float32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        lookup.func(args["ids"], *args["tables"], out=out, backend=backend)
    if not lookup.factorized:
        with pytest.raises(ValueError, match="overlaps table"):
            lookup.func([[0, 1]], table, out=table[:2].reshape(1, 2, D), backend=backend)


def test_unavailable_backend_names_what_is_available(monkeypatch):
    from fastembed import backends

    monkeypatch.setattr(backends, "_load", lambda name: None if name == "numba" else "numpy")
    with pytest.raises(ValueError, match="not importable here"):
        backends.resolve("numba")


# ---------------------------------------------------------------- what a new user passes by mistake


def test_a_ragged_list_of_ids_names_the_argument_and_the_fix():
    with pytest.raises(ValueError, match="ids must be a rectangular array of integers; got a ragged sequence"):
        fe.lookup([[1, 2, 3], [4]], np.ones((5, 2)))


def test_a_factorization_passed_as_the_table_says_to_pass_its_factors():
    fac = fe.factorize(np.random.default_rng(0).standard_normal((30, 8)), rank=2)
    with pytest.raises(TypeError, match=r"table is a Factorization: pass its factors"):
        fe.lookup([0, 1], fac)


def test_a_non_array_table_names_what_it_got():
    with pytest.raises(ValueError, match="table must be 2-D, got dict as shape"):
        fe.lookup([0], {"weight": 1})


def test_torch_inputs_are_taken_or_refused_with_what_to_do():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    E = rng.standard_normal((20, 4)).astype(np.float32)
    P = rng.standard_normal((4, 6)).astype(np.float32)
    ids = rng.integers(0, 20, (2, 5))
    expected = fe.factorized_lookup(ids, E, P)
    got = fe.factorized_lookup(torch.from_numpy(ids), torch.from_numpy(E), torch.from_numpy(P))
    np.testing.assert_array_equal(got, expected)
    for dtype, numpy_form in ((torch.float16, E.astype(np.float16)), (torch.bfloat16, None)):
        t = torch.from_numpy(E).to(dtype)
        reference_table = numpy_form if numpy_form is not None else t.view(torch.int16).numpy().view(np.uint16)
        np.testing.assert_array_equal(fe.factorized_lookup(ids, t, P), fe.factorized_lookup(ids, reference_table, P))
        np.testing.assert_array_equal(fe.lookup(ids, t), fe.lookup(ids, reference_table))
    bits = torch.from_numpy(E).to(torch.bfloat16)
    assert np.shares_memory(fe._validation.as_numpy(bits, "table"), bits.view(torch.int16).numpy())
    with pytest.raises(TypeError, match=r"table requires grad: pass table.detach\(\)"):
        fe.lookup(ids, torch.ones(20, 4, requires_grad=True))
    with pytest.raises(TypeError, match=r"table is on meta: pass table.cpu\(\)"):
        fe.lookup(ids, torch.ones(20, 4, device="meta"))
    with pytest.raises(TypeError, match=r"table is a torch Embedding: pass its weight"):
        fe.lookup(ids, torch.nn.Embedding(20, 4))
    with pytest.raises(TypeError, match=r"ids requires grad|ids must be integers"):
        fe.lookup(torch.ones(3, requires_grad=True), E)
    x = torch.from_numpy(rng.standard_normal((2, 6, 8)))
    np.testing.assert_array_equal(fe.apply_rope(x), fe.apply_rope(x.numpy()))
    np.testing.assert_array_equal(fe.factorize(torch.from_numpy(E), rank=2).table, fe.factorize(E, rank=2).table)
