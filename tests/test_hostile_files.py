"""Hostile files: every way a safetensors, npz or layer file can lie is a CheckpointError,
raised before data is read, never another exception, a hang or a silently wrong table."""

import json
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastembed as fe
from fastembed.io import CheckpointError, load_safetensors, read_safetensors_header, save_safetensors

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _write(path, header, data=b"", raw=None):
    raw = json.dumps(header).encode() if raw is None else raw
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


HOSTILE_HEADERS = {
    "overlapping offsets": ({"a": _entry(), "b": _entry()}, b"\0" * 8),
    "one entry inside another": ({"a": _entry(shape=(4,), offsets=(0, 16)), "b": _entry(offsets=(4, 12))}, b"\0" * 16),
    "a hole between entries": ({"a": _entry(), "b": _entry(offsets=(12, 20))}, b"\0" * 20),
    "bytes after the last entry": ({"a": _entry()}, b"\0" * 12),
    "list dtype": ({"a": _entry(dtype=["F32"])}, b"\0" * 8),
    "dict dtype": ({"a": _entry(dtype={"x": 1})}, b"\0" * 8),
    "boolean shape": ({"a": {"dtype": "F32", "shape": [True, 2], "data_offsets": [0, 8]}}, b"\0" * 8),
    "boolean offsets": ({"a": {"dtype": "U8", "shape": [1], "data_offsets": [False, True]}}, b"\0"),
    "65 dimensions": ({"a": _entry(dtype="U8", shape=(1,) * 65, offsets=(0, 1))}, b"\0"),
    "huge integers": ({"a": _entry(dtype="U8", shape=(10**30, 10**30), offsets=(0, 10**60))}, b"\0"),
    "negative offset": ({"a": _entry(offsets=(-8, 0))}, b"\0" * 8),
    "float shape": ({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, b"\0" * 8),
    "entry not an object": ({"a": [1, 2, 3]}, b""),
    "extra key": ({"a": dict(_entry(), extra=1)}, b"\0" * 8),
    "metadata not strings": ({"__metadata__": {"k": 1}, "a": _entry()}, b"\0" * 8),
    "header a list": ([1, 2], b""),
}


@pytest.mark.parametrize("case", list(HOSTILE_HEADERS))
def test_hostile_safetensors_headers_are_checkpoint_errors(case, tmp_path):
    header, data = HOSTILE_HEADERS[case]
    path = _write(tmp_path / "x.safetensors", header, data)
    with pytest.raises(CheckpointError):
        load_safetensors(path)


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nesting past the recursion limit
        b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
        b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "a": {"dtype": "U8", "shape": [1], '
        b'"data_offsets": [0, 1]}}',  # duplicate keys
        b"\xff\xfe not utf-8",
        b'{"a": NaN}',
        b"",
    ],
)
def test_malformed_json_headers_are_checkpoint_errors(raw, tmp_path):
    path = _write(tmp_path / "x.safetensors", None, b"\0", raw=raw)
    with pytest.raises(CheckpointError):
        read_safetensors_header(path)


@SETTINGS
@given(
    header=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
        max_leaves=20,
    ),
    tail=st.binary(max_size=64),
)
def test_any_json_header_loads_or_is_a_checkpoint_error(header, tail, tmp_path_factory):
    path = _write(tmp_path_factory.mktemp("h") / "x.safetensors", header, tail)
    try:
        tensors = load_safetensors(path)
    except CheckpointError:
        return
    assert all(isinstance(t, np.ndarray) for t in tensors.values())


@SETTINGS
@given(data=st.binary(max_size=300), cut=st.integers(0, 400))
def test_any_bytes_load_or_are_a_checkpoint_error(data, cut, tmp_path_factory):
    good = tmp_path_factory.mktemp("b") / "good.safetensors"
    save_safetensors(good, {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float16)})
    blob = good.read_bytes()
    path = good.with_name("x.safetensors")
    path.write_bytes(blob[:cut] + data + blob[cut + len(data) :])
    try:
        load_safetensors(path)
    except CheckpointError:
        pass


def test_a_fifo_or_a_directory_is_refused_without_blocking(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    code = textwrap.dedent(
        f"""
        import fastembed as fe
        from fastembed.io import CheckpointError, load_safetensors, load_npz
        for load, path in [(load_safetensors, {str(fifo)!r}), (load_npz, {str(fifo)!r}),
                           (fe.FactorizedEmbedding.load, {str(fifo)!r}), (load_safetensors, {str(tmp_path)!r})]:
            try:
                load(path)
            except CheckpointError as exc:
                print("refused:", exc)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("refused:") == 4, proc.stdout


def test_a_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot open"):
        load_safetensors(tmp_path / "nope.safetensors")


# ---------------------------------------------------------------- layer files


def _layer(kind="none"):
    rng = np.random.default_rng(0)
    layer = fe.FactorizedEmbedding(
        rng.standard_normal((20, 4)).astype(np.float32),
        rng.standard_normal((4, 6)).astype(np.float32),
        bias=np.ones(6, np.float32),
    )
    return layer if kind == "none" else layer.quantize(kind)


def _rewrite(path, tensors=None, metadata=None):
    """Rewrite a saved layer file with some tensors or metadata replaced (None values remove)."""
    header = read_safetensors_header(path)[1]
    stored = load_safetensors(path, bf16="bits")
    for name, value in (tensors or {}).items():
        if value is None:
            stored.pop(name, None)
        else:
            stored[name] = value
    for key, value in (metadata or {}).items():
        if value is None:
            header.pop(key, None)
        else:
            header[key] = value
    save_safetensors(path, stored, header)


LIES = {
    "metadata float16, data float64": ("float16", {"table": np.ones((20, 4), np.float64)}, None),
    "metadata bfloat16, data float32": ("bfloat16", {"table": np.ones((20, 4), np.float32)}, None),
    "metadata int8, codes int16": ("int8", {"table.codes": np.ones((20, 4), np.int16)}, None),
    "metadata int8, scale float64": ("int8", {"table.scale": np.ones(20, np.float64)}, None),
    "metadata int8, no offset": ("int8", {"table.offset": None}, None),
    "scale per row of the wrong length": ("int8", {"table.scale": np.ones(3, np.float32)}, None),
    "no proj": ("none", {"proj": None}, None),
    "proj of the wrong shape": ("none", {"proj": np.ones((5, 6), np.float32)}, None),
    "proj int": ("none", {"proj": np.ones((4, 6), np.int32)}, None),
    "bias of the wrong length": ("none", {"bias": np.ones(2, np.float32)}, None),
    "table 3-D": ("none", {"table": np.ones((2, 20, 4), np.float32)}, None),
    "unknown quantization": ("none", None, {"quantization": "int4"}),
    "scale not a number": ("none", None, {"scale": "many"}),
    "another format": ("none", None, {"fastembed.format": "embedding"}),
    "no format": ("none", None, {"fastembed.format": None}),
}


@pytest.mark.parametrize("case", list(LIES))
def test_layer_files_that_lie_are_checkpoint_errors(case, tmp_path):
    kind, tensors, metadata = LIES[case]
    path = tmp_path / "layer.safetensors"
    _layer(kind).save(path)
    _rewrite(path, tensors, metadata)
    with pytest.raises(CheckpointError):
        fe.FactorizedEmbedding.load(path)


@pytest.mark.parametrize("payload", ["not json", "[1, 2]", '{"scale": 1}', "[" * 50_000])
def test_npz_layer_metadata_that_lies_is_a_checkpoint_error(payload, tmp_path):
    path = tmp_path / "layer.npz"
    _layer().save(path)
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["__metadata__"] = np.array(payload)
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError):
        fe.FactorizedEmbedding.load(path)


@pytest.mark.parametrize("kind", ["none", "int8", "float16", "bfloat16"])
@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_honest_layer_files_still_round_trip(kind, suffix, tmp_path):
    layer = _layer(kind)
    path = tmp_path / f"layer{suffix}"
    layer.save(path)
    loaded = fe.FactorizedEmbedding.load(path)
    ids = np.arange(20).reshape(4, 5)
    np.testing.assert_array_equal(loaded(ids), layer(ids))
    assert loaded.quantization == layer.quantization
