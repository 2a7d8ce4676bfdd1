"""Coverage-guided fuzzing of fastembed's entry points and of the raw Cython/Numba kernels (atheris).

    python tests/fuzz_kernels.py -max_total_time=30 [-runs=N] [corpus_dir]

Five targets, chosen by the input: public functions must return or raise
IndexError/TypeError/ValueError/MemoryError; raw kernels, fed out-of-range indices
on purpose, must skip and count those rows and never read out of bounds or crash;
an ``out`` sharing memory with any input (every plan) must be a ValueError that
leaves the memory as it was; fuzzed bytes as a safetensors or layer file must load
or be a CheckpointError; fuzzed text through fastembed.WordPiece (a small vocabulary, every
normalizer option) must give the ids of its exact Python path. Anything else is a finding: atheris stops
and writes the input that caused it (crash-*), which becomes a regression test in
tests/test_fuzz_regressions.py.
"""

import sys

import atheris

with atheris.instrument_imports():
    import numpy as np

    import fastembed as fe
    from fastembed import backends

EXPECTED = (IndexError, TypeError, ValueError, MemoryError)
EDGES = [0, 1, -1, 2**31 - 1, 2**31, -(2**31), 2**63 - 1, -(2**63)]


def _ids(fdp, shape, V):
    n = int(np.prod(shape))
    values = []
    for _ in range(n):
        if fdp.ConsumeIntInRange(0, 9) == 0:
            values.append(fdp.PickValueInList(EDGES + [V, V - 1]))
        else:
            values.append(fdp.ConsumeIntInRange(0, max(V - 1, 0)))
    kind = fdp.ConsumeIntInRange(0, 3)
    if kind == 0:
        return np.array(values, dtype=object).reshape(shape).tolist() if shape else (values[0] if values else [])
    if kind == 1 and all(-(2**31) <= x < 2**31 for x in values):
        return np.array(values, dtype=np.int32).reshape(shape)
    if kind == 2:
        return np.array(values, dtype=np.float64).reshape(shape)  # must be a TypeError
    return np.array(values, dtype=np.int64).reshape(shape)


def _public(fdp):
    backend = fdp.PickValueInList(backends.available())
    dtype = fdp.PickValueInList([np.float32, np.float64])
    V, r, d = fdp.ConsumeIntInRange(0, 6), fdp.ConsumeIntInRange(0, 4), fdp.ConsumeIntInRange(0, 6)
    shape = tuple(fdp.ConsumeIntInRange(0, 4) for _ in range(fdp.ConsumeIntInRange(0, 3)))
    rng = np.random.default_rng(fdp.ConsumeIntInRange(0, 1000))
    table = rng.standard_normal((V, r)).astype(dtype)
    if fdp.ConsumeBool():
        table = np.asfortranarray(table)
    proj = rng.standard_normal((r, d)).astype(dtype)
    kw = {}
    if fdp.ConsumeBool():
        kw["pos_table"] = rng.standard_normal((fdp.ConsumeIntInRange(0, 6), d)).astype(dtype)
        kw["offset"] = fdp.ConsumeIntInRange(-2, 4)
    if fdp.ConsumeBool():
        kw["bias"] = rng.standard_normal(fdp.PickValueInList([d, d + 1])).astype(dtype)
    which = fdp.ConsumeIntInRange(0, 3)
    ids = _ids(fdp, shape, V)
    if which == 0:
        fe.factorized_lookup(ids, table, proj, backend=backend, **kw)
    elif which == 1:
        fe.lookup(ids, table, backend=backend, **kw)
    elif which == 2:
        if np.ndim(ids) == 0 and not isinstance(ids, list) and abs(int(np.asarray(ids))) > 2**16:
            return  # a count this large is a legitimate multi-GB table (MemoryError is tested in test_reliability)
        fe.sinusoidal(ids, max(d, 0) or 1, layout=fdp.PickValueInList(["interleaved", "concat"]), backend=backend)
    else:
        x = rng.standard_normal((*shape, 2 * max(r, 1))).astype(dtype)
        fe.apply_rope(
            x,
            positions=ids if fdp.ConsumeBool() else None,
            backend=backend,
            style=fdp.PickValueInList(["neox", "gptj"]),
        )


def _raw_kernels(fdp):
    compiled = [b for b in backends.available() if b != "numpy"]
    if not compiled:
        return
    k = backends.kernels(fdp.PickValueInList(compiled))
    dtype = fdp.PickValueInList([np.float32, np.float64])
    n_src, d, n = fdp.ConsumeIntInRange(1, 6), fdp.ConsumeIntInRange(1, 5), fdp.ConsumeIntInRange(1, 12)
    src = np.arange(n_src * d, dtype=dtype).reshape(n_src, d)
    rows = np.array([fdp.PickValueInList(EDGES + list(range(-2, n_src + 2))) for _ in range(n)], dtype=np.int64)
    out = np.full((n, d), -7, dtype)
    skipped = k.rows.gather_rows(src, rows, 1.0, None, None, None, out, fdp.ConsumeIntInRange(1, 3))
    bad = (rows < 0) | (rows >= n_src)
    if skipped != int(bad.sum()):
        raise AssertionError(f"gather_rows skipped {skipped}, {int(bad.sum())} rows were out of range")
    if not np.array_equal(out[~bad], src[rows[~bad]]) or not (out[bad] == -7).all():
        raise AssertionError("gather_rows wrote the wrong rows")
    marker = np.full(n_src, -1, np.int64)
    u = k.dedupe(rows, marker, np.empty(n, np.int64), np.empty(n, np.int64))
    if (u < 0) != bool(bad.any()) or not (marker == -1).all():
        raise AssertionError("dedupe mishandled an out-of-range id")
    proj = np.ones((d, fdp.ConsumeIntInRange(1, 60)), dtype)
    out = np.full((n, proj.shape[1]), -7, dtype)
    simd = fdp.PickValueInList([512, 256, 0])
    counted = k.project.project_rows(
        src, rows, proj, 1.0, None, None, None, out, 0.0, simd, fdp.ConsumeIntInRange(1, 3)
    )
    if counted != int(bad.sum()):
        raise AssertionError(f"project_rows counted {counted}, {int(bad.sum())} rows were out of range")
    if bad.any() and not (out == -7).all():
        raise AssertionError("project_rows wrote with an out-of-range index")
    if not bad.any() and not np.allclose(out, src[rows] @ proj):
        raise AssertionError("project_rows computed the wrong rows")


ALIASABLE = ("ids", "position_ids", "table", "proj", "bias", "pos_table")


def _aliasing(fdp):
    backend = fdp.PickValueInList(backends.available())
    plan = None if backend == "numpy" else fdp.PickValueInList([None, "dedupe", "direct", "fused"])
    V, r, d, n = (
        fdp.ConsumeIntInRange(1, 6),
        fdp.ConsumeIntInRange(1, 5),
        fdp.ConsumeIntInRange(1, 9),
        fdp.ConsumeIntInRange(1, 40),
    )
    shapes = {
        "ids": ((n,), np.int64),
        "position_ids": ((n,), np.int64),
        "table": ((V, r), np.float32),
        "proj": ((r, d), np.float32),
        "bias": ((d,), np.float32),
        "pos_table": ((n, d), np.float32),
    }
    target = fdp.PickValueInList(list(ALIASABLE))
    shape, dtype = shapes[target]
    out_bytes, in_bytes = n * d * 4, int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.zeros(out_bytes + in_bytes + 8, np.uint8)
    start = fdp.ConsumeIntInRange(0, out_bytes - 1) // 8 * 8
    out = raw[:out_bytes].view(np.float32).reshape(n, d)
    args = {name: np.zeros(s, t) for name, (s, t) in shapes.items()}
    args[target] = raw[start : start + in_bytes].view(dtype).reshape(shape)
    args[target][...] = 0
    before = raw.copy()
    try:
        fe.factorized_lookup(
            args["ids"],
            args["table"],
            args["proj"],
            bias=args["bias"],
            pos_table=args["pos_table"],
            position_ids=args["position_ids"],
            out=out,
            backend=backend,
            plan=plan,
        )
    except ValueError as exc:
        if "out overlaps" not in str(exc):
            raise AssertionError(f"out overlapping {target}: {exc!r} instead of the overlap error") from exc
    else:
        raise AssertionError(f"out overlapping {target} was accepted")
    if not np.array_equal(raw, before):
        raise AssertionError(f"a refused call (out overlapping {target}) wrote to memory")


def _files(fdp):
    import os
    import tempfile

    from fastembed.io import CheckpointError, load_safetensors

    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 600))
    fd, path = tempfile.mkstemp(suffix=".safetensors")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        for load in (load_safetensors, fe.FactorizedEmbedding.load, fe.Embedding.load):
            try:
                load(path)
            except CheckpointError:
                pass
            except Exception as exc:  # anything else a file can cause is a finding
                raise AssertionError(f"{load.__qualname__} of a hostile file raised {exc!r}") from exc
    finally:
        os.unlink(path)


_WORDPIECE = {}


def _wordpiece(fdp):
    from fastembed import _wordpiece_exact

    options = tuple(fdp.ConsumeBool() for _ in range(4))
    if options not in _WORDPIECE:
        tokens = ["[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "ab", "##a", "##b", "##ab", "é", "##é", "中", "x" * 5]
        lowercase, strip, clean, cjk = options
        _WORDPIECE[options] = fe.WordPiece.from_tokens(
            tokens,
            lowercase,
            strip_accents=strip,
            clean_text=clean,
            handle_chinese_chars=cjk,
            max_input_chars_per_word=fdp.ConsumeIntInRange(1, 8),
        )
    wordpiece = _WORDPIECE[options]
    texts = [fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 40)) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    special = fdp.ConsumeBool()
    max_length = fdp.ConsumeIntInRange(2, 12) if fdp.ConsumeBool() else None
    ids, offsets = wordpiece.encode_batch(texts, add_special_tokens=special, max_length=max_length)
    for i, text in enumerate(texts):
        expected = _wordpiece_exact.encode(text, wordpiece.spec, special, max_length)
        if ids[offsets[i] : offsets[i + 1]].tolist() != expected:
            raise AssertionError(
                f"WordPiece kernel {ids[offsets[i] : offsets[i + 1]].tolist()} != exact {expected} on {text!r}"
            )


TARGETS = (_public, _raw_kernels, _aliasing, _files, _wordpiece)


def one_input(data):
    fdp = atheris.FuzzedDataProvider(data)
    try:
        TARGETS[fdp.ConsumeIntInRange(0, len(TARGETS) - 1)](fdp)
    except EXPECTED:
        pass


def main():
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
