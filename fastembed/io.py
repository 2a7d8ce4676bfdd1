"""Reading and writing tensors: safetensors (the format checkpoints use) and npz.

The safetensors reader is plain numpy and checks everything a truncated or
hostile file could get wrong (header size, JSON, dtypes, shapes, offsets)
before it reads data; npz files are read with ``allow_pickle=False``.
"""

import contextlib
import json
import math
import os
import stat
import struct
from collections.abc import Iterable, Mapping

import numpy as np

SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # bit patterns; see load_safetensors(bf16=...)
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NUMPY_TO_SAFETENSORS = {dt: name for name, dt in SAFETENSORS_DTYPES.items() if name != "BF16"}
MAX_HEADER_BYTES = 100 * 2**20
MAX_DIMS = 32  # numpy 1.x's limit; no checkpoint tensor comes close


class CheckpointError(ValueError):
    """A tensor file that is truncated, malformed or not what it claims to be."""


def bfloat16_to_float32(bits):
    """float32 values of bfloat16 bit patterns (uint16): exact, since bfloat16 is float32's top half."""
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bfloat16(x):
    """bfloat16 bit patterns (uint16) of float32 values, rounded to nearest even; NaN stays NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + (0x7FFF + ((u >> 16) & 1))) >> 16
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    return np.where(nan, (u >> 16) | 0x40, rounded).astype(np.uint16)


@contextlib.contextmanager
def _open_regular(path):
    """``path`` opened for binary reading, or CheckpointError when it is not a readable regular
    file (a FIFO, a device or a directory would block or read forever)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot open ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CheckpointError(f"{path}: not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        raise CheckpointError(f"duplicate keys {duplicated}")
    return dict(pairs)


def read_safetensors_header(path):
    """(header dict without __metadata__, metadata dict, data start offset, file size).

    Every entry is checked: a known dtype, a shape of at most MAX_DIMS non-negative integers,
    data_offsets inside the data section matching the shape, and the entries tiling the data
    section without overlap (the format forbids overlapping or holed buffers). Anything else,
    including duplicate keys and absurd nesting, is a CheckpointError.
    """
    with _open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path}: too short for a safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise CheckpointError(f"{path}: header length {n} does not fit a {size}-byte file")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: header has {exc}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: header is not valid JSON ({type(exc).__name__}: {exc})"[:500]) from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: __metadata__ must map strings to strings")
    data_size = size - 8 - n
    for name, info in header.items():
        _check_entry(path, name, info, data_size)
    _check_tiling(path, header, data_size)
    return header, metadata, 8 + n, size


def _is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def _check_entry(path, name, info, data_size):
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise CheckpointError(f"{path}: entry {name!r} is malformed")
    dtype = info["dtype"]
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPES:
        raise CheckpointError(f"{path}: entry {name!r} has unknown dtype {dtype!r}"[:500])
    shape, offsets = info["shape"], info["data_offsets"]
    if not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(_is_int(s) and s >= 0 for s in shape)):
        raise CheckpointError(f"{path}: entry {name!r} has a bad shape {shape!r}"[:500])
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(o) for o in offsets)):
        raise CheckpointError(f"{path}: entry {name!r} has bad data_offsets {offsets!r}"[:500])
    begin, end = offsets
    expected = math.prod(shape) * SAFETENSORS_DTYPES[dtype].itemsize
    if not 0 <= begin <= end <= data_size or end - begin != expected:
        raise CheckpointError(
            f"{path}: entry {name!r} needs {expected} bytes at {offsets}, the data section has {data_size}"[:500]
        )


def _check_tiling(path, header, data_size):
    """The entries' byte ranges, in order, must cover the data section exactly once."""
    position = 0
    for name, info in sorted(header.items(), key=lambda item: tuple(item[1]["data_offsets"])):
        begin, end = info["data_offsets"]
        if begin != position:
            what = "overlaps the entry before it" if begin < position else f"leaves bytes {position}..{begin} unused"
            raise CheckpointError(f"{path}: entry {name!r} at {info['data_offsets']} {what}")
        position = end
    if position != data_size:
        raise CheckpointError(f"{path}: the data section has {data_size - position} bytes after the last entry")


def load_safetensors(
    path: str | os.PathLike, names: Iterable[str] | None = None, *, bf16: str = "float32"
) -> dict[str, np.ndarray]:
    """Tensors of a safetensors file as numpy arrays.

    Parameters
    ----------
    path : str or os.PathLike
    names : iterable of str, optional
        Load only these tensors (KeyError for a missing one).
    bf16 : {"float32", "bits"}
        BF16 tensors as exact float32 values, or as their uint16 bit patterns.

    Returns
    -------
    dict of str to ndarray
        The file's ``__metadata__`` is read by :func:`read_safetensors_header`.

    Raises
    ------
    CheckpointError
        Truncated or malformed file.
    """
    header, _, start, _ = read_safetensors_header(path)
    wanted = list(header) if names is None else list(names)
    tensors = {}
    with _open_regular(path) as fh:
        for name in wanted:
            if name not in header:
                raise KeyError(f"{path}: no tensor {name!r}")
            info = header[name]
            begin, end = info["data_offsets"]
            fh.seek(start + begin)
            buf = fh.read(end - begin)
            if len(buf) != end - begin:
                raise CheckpointError(f"{path}: truncated while reading {name!r}")
            arr = np.frombuffer(buf, dtype=SAFETENSORS_DTYPES[info["dtype"]]).reshape(info["shape"])
            if info["dtype"] == "BF16" and bf16 == "float32":
                arr = bfloat16_to_float32(arr)
            tensors[name] = arr.astype(arr.dtype.newbyteorder("="), copy=True)
    return tensors


def save_safetensors(
    path: str | os.PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, object] | None = None
) -> None:
    """Write ``tensors`` (str -> ndarray) as a safetensors file, with string ``metadata``.

    A tensor under a name ending in ``@bf16`` is taken as uint16 bfloat16 bit
    patterns and stored as BF16 under the name without the suffix.
    """
    header, chunks, offset = {}, [], 0
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        stored = name
        if name.endswith("@bf16"):
            stored, code = name[: -len("@bf16")], "BF16"
            arr = arr.astype("<u2")
        else:
            arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            code = _NUMPY_TO_SAFETENSORS.get(arr.dtype)
            if code is None:
                raise ValueError(f"cannot store dtype {arr.dtype} of {name!r} in safetensors")
        data = np.ascontiguousarray(arr).tobytes()
        header[stored] = {"dtype": code, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for data in chunks:
            fh.write(data)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays of an .npz file (no pickle: object arrays are refused)."""
    with _open_regular(path) as fh:
        try:
            with np.load(fh, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except Exception as exc:  # OSError, ValueError, zipfile.BadZipFile, EOFError ...
            raise CheckpointError(f"{path}: not a readable npz file ({exc})") from None


def load_tensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tensors of a .safetensors or .npz file, by its extension."""
    path = os.fspath(path)
    if path.endswith(".npz"):
        return load_npz(path)
    return load_safetensors(path)
