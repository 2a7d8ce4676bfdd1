"""safetensors and npz: round trips, bfloat16, and clear errors for truncated or hostile files."""

import json
import struct

import numpy as np
import pytest

from fastembed import io


def test_safetensors_round_trip_every_dtype(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "f64": rng.standard_normal((3, 4)),
        "f32": rng.standard_normal((5,)).astype(np.float32),
        "f16": rng.standard_normal((2, 2)).astype(np.float16),
        "i64": np.arange(6).reshape(2, 3),
        "i8": np.arange(-3, 3, dtype=np.int8),
        "u8": np.arange(4, dtype=np.uint8),
        "b": np.array([True, False]),
        "empty": np.zeros((0, 7), np.float32),
        "scalar": np.array(2.5),
        "fortran": np.asfortranarray(rng.standard_normal((3, 5))),
    }
    path = tmp_path / "t.safetensors"
    io.save_safetensors(path, tensors, metadata={"rank": 3})
    loaded = io.load_safetensors(path)
    assert set(loaded) == set(tensors)
    for name, arr in tensors.items():
        assert loaded[name].dtype == arr.dtype and loaded[name].shape == arr.shape
        np.testing.assert_array_equal(loaded[name], arr)
    assert io.read_safetensors_header(path)[1] == {"rank": "3"}


def test_bfloat16_round_trip(tmp_path):
    x = np.array([1.0, -2.5, 3.140625, 1e-3, np.inf, np.nan, 0.0], np.float32)
    bits = io.float32_to_bfloat16(x)
    back = io.bfloat16_to_float32(bits)
    finite = np.isfinite(x)
    np.testing.assert_allclose(back[finite], x[finite], rtol=2**-8)
    assert np.isnan(back[5]) and np.isinf(back[4])
    path = tmp_path / "b.safetensors"
    io.save_safetensors(path, {"w@bf16": bits})
    assert io.read_safetensors_header(path)[0]["w"]["dtype"] == "BF16"
    np.testing.assert_array_equal(io.load_safetensors(path)["w"][finite], back[finite])
    np.testing.assert_array_equal(io.load_safetensors(path, bf16="bits")["w"], bits)


def test_bfloat16_rounds_to_nearest_even():
    # 1 + 2**-8 is halfway between two bfloat16 values: ties go to the even one (1.0)
    assert io.bfloat16_to_float32(io.float32_to_bfloat16(np.float32(1 + 2**-8))) == 1.0
    assert io.bfloat16_to_float32(io.float32_to_bfloat16(np.float32(1 + 3 * 2**-8))) == 1 + 2**-6


def _raw(path, header, data=b""):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.write_bytes(b"\x01\x02"),
        lambda p: p.write_bytes(struct.pack("<Q", 10**12) + b"{}"),
        lambda p: p.write_bytes(struct.pack("<Q", 4) + b"nope"),
        lambda p: p.write_bytes(struct.pack("<Q", 2) + b"[]"),
        lambda p: _raw(p, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8),
        lambda p: _raw(p, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, b"\0" * 16),
        lambda p: _raw(p, {"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, b"\0" * 16),
        lambda p: _raw(p, {"w": {"dtype": "X9", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 16),
        lambda p: _raw(p, {"w": {"dtype": "F32", "shape": [4]}}, b"\0" * 16),
        lambda p: _raw(p, {"w": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}}, b"\0" * 16),
        lambda p: _raw(p, {"__metadata__": {"a": 1}}),
    ],
    ids=[
        "short",
        "huge-header",
        "not-json",
        "not-object",
        "truncated",
        "wrong-size",
        "negative-shape",
        "bad-dtype",
        "no-offsets",
        "overflow-shape",
        "bad-metadata",
    ],
)
def test_malformed_safetensors_get_a_clear_error(tmp_path, make):
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(io.CheckpointError):
        io.load_safetensors(path)


def test_npz_round_trip_and_no_pickle(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, table=np.ones((2, 3), np.float32))
    np.testing.assert_array_equal(io.load_tensors(good)["table"], np.ones((2, 3)))
    evil = tmp_path / "evil.npz"
    np.savez(evil, obj=np.array([{"x": 1}], dtype=object))
    with pytest.raises(io.CheckpointError, match="pickle|Object arrays"):
        io.load_npz(evil)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(io.CheckpointError):
        io.load_npz(junk)
