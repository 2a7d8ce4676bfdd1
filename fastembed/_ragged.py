"""Ragged token ids in one convention: flat ``ids`` plus CSR ``offsets`` of length B + 1.

Sequence b is ``ids[offsets[b]:offsets[b + 1]]``; ``offsets[0] == 0``, the offsets never
decrease and ``offsets[-1] == len(ids)``.
"""

import itertools

import numpy as np

from . import _validation as v


def as_ragged(x, *, name="ids"):
    """Flat ids and CSR offsets of a batch of sequences of different lengths.

    Parameters
    ----------
    x : list of sequences, tuple ``(values, offsets)``, pyarrow list array, list of Encodings, or 2-D array
        - a list of lists (or of 1-D integer arrays): one sequence per entry;
        - a **tuple** ``(values, offsets)``: the CSR form itself, checked (a tuple is always read
          this way; pass a list for a batch of two sequences);
        - a pyarrow ``ListArray``, ``LargeListArray`` or ``ChunkedArray`` of them, of integers:
          without a copy where the layout allows (one chunk, no nulls); a sliced array gives its
          own sequences; null lists or null values are a ValueError;
        - a list of ``tokenizers.Encoding``: their ``ids``;
        - a 2-D integer array (B, L): B sequences of length L.

    Returns
    -------
    ids : ndarray, shape (N,), integer
        The sequences one after another (the given dtype where there is one, int64 for lists).
    offsets : ndarray, shape (B + 1,), int64
        ``ids[offsets[b]:offsets[b + 1]]`` is sequence b.

    Raises
    ------
    TypeError
        Values that are not integers (floats, booleans, objects).
    ValueError
        Offsets that break a CSR rule (the message names it), nulls, a 1-D or 3-D array, an
        unsupported pyarrow type.
    """
    module = type(x).__module__
    if module.startswith("pyarrow"):
        return _from_arrow(x, name)
    if isinstance(x, tuple):
        if len(x) != 2:
            raise ValueError(f"a tuple {name} must be (values, offsets), got {len(x)} items")
        values = v.integer_array(x[0], f"{name} values")
        if values.ndim != 1:
            raise ValueError(f"{name} values must be 1-D, got shape {values.shape}")
        return values, v.as_offsets(x[1], values.shape[0])
    if isinstance(x, (list, range)) or (hasattr(x, "__len__") and not hasattr(x, "shape")):
        return _from_sequences(list(x), name)
    arr = v.integer_array(x, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (B, L), a list of sequences or a (values, offsets) tuple; got shape {arr.shape}"
        )
    batch, length = arr.shape
    return arr.reshape(-1), np.arange(batch + 1, dtype=np.int64) * length


def _from_sequences(sequences, name):
    if sequences and type(sequences[0]).__module__.startswith("tokenizers"):
        sequences = [encoding.ids for encoding in sequences]
    for i, seq in enumerate(sequences):
        if isinstance(seq, (str, bytes)) or not hasattr(seq, "__len__"):
            raise TypeError(f"{name}[{i}] must be a sequence of integers, got {type(seq).__name__}")
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    offsets = np.zeros(len(sequences) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if sequences and all(isinstance(seq, np.ndarray) for seq in sequences):
        parts = [v.integer_array(seq, f"{name}[{i}]") for i, seq in enumerate(sequences)]
        if any(p.ndim != 1 for p in parts):
            raise ValueError(f"every array in {name} must be 1-D")
        return np.concatenate(parts), offsets
    flat = list(itertools.chain.from_iterable(sequences))
    ids = v.integer_array(flat, name) if flat else np.zeros(0, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError(f"{name} must hold sequences of integers, got nested sequences deeper than two levels")
    return ids, offsets


def _from_arrow(x, name):
    import pyarrow as pa

    if isinstance(x, pa.ChunkedArray):
        chunks = [_from_arrow(chunk, name) for chunk in x.chunks]
        if not chunks:
            return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
        if len(chunks) == 1:
            return chunks[0]
        ids = np.concatenate([c[0] for c in chunks])
        starts = np.cumsum([0] + [c[0].shape[0] for c in chunks[:-1]])
        offsets = np.concatenate([[0]] + [c[1][1:] + s for c, s in zip(chunks, starts, strict=True)])
        return ids, offsets.astype(np.int64)
    if not isinstance(x, (pa.ListArray, pa.LargeListArray)):
        raise ValueError(f"{name}: a pyarrow {type(x).__name__} is not a list array (ListArray or LargeListArray)")
    if x.null_count:
        raise ValueError(f"{name} contains {x.null_count} null lists: drop or fill them first")
    child_type = x.type.value_type
    if not pa.types.is_integer(child_type):
        raise TypeError(f"{name} must be lists of integers, got lists of {child_type}")
    offsets = np.asarray(x.offsets)  # a sliced array's own offsets, into the unsliced values
    start, stop = int(offsets[0]), int(offsets[-1])
    values = x.values.slice(start, stop - start)
    if values.null_count:
        raise ValueError(f"{name} contains {values.null_count} null values")
    ids = values.to_numpy(zero_copy_only=True)
    return ids, (offsets - start).astype(np.int64, copy=False)


def positions_from_offsets(offsets, start=0):
    """Positions that restart at every sequence of a packed batch.

    ``positions[n] = start + n - offsets[b]`` for ``offsets[b] <= n < offsets[b + 1]``, for
    ``position_ids=`` in :func:`fastembed.lookup` and :func:`fastembed.factorized_lookup` over
    flat ids.

    Parameters
    ----------
    offsets : array_like of int, shape (B + 1,)
        CSR offsets (see :func:`fastembed.as_ragged`).
    start : int, default 0
        Position of each sequence's first token.

    Returns
    -------
    ndarray, shape (offsets[-1],), int64

    Raises
    ------
    TypeError
        Non-integer offsets or start.
    ValueError
        Offsets that break a CSR rule, a negative start.
    """
    given = v.integer_array(offsets, "offsets")
    n_ids = int(given[-1]) if given.ndim == 1 and given.size else 0
    offsets = v.as_offsets(given, n_ids)
    start = v.as_integer(start, "start", low=0)
    lengths = np.diff(offsets)
    return np.arange(n_ids, dtype=np.int64) - np.repeat(offsets[:-1] - start, lengths)
