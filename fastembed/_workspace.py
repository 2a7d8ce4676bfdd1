"""Scratch buffers reused across calls, one set per thread and per nesting level.

Intermediates of the compiled pipeline (gathered rows, projected distinct rows,
dedupe markers) are tens of MB at ALBERT shapes. A fresh allocation of that size
is fresh pages from the OS on every call; on a VM with transparent huge pages
that cost varied from 2 ms to 100 ms per call. Reusing the buffers removes it.

Each thread keeps its own buffers, and each frame (one public call, ``enter`` to ``leave``) its
own level of them, so a call made while another is in progress on the same thread (a signal handler, a
callback) never sees the outer call's scratch. When the outermost frame ends, buffers larger
than ``KEEP_BYTES`` are freed, so one huge call does not leave its scratch resident.
``release()`` frees the calling thread's buffers.
"""

import math
import threading

import numpy as np


class _Frames(threading.local):
    """This thread's frames: class defaults, as getattr on a missing attribute of a thread-local
    costs ~0.4 us (an exception raised and caught) on every call."""

    depth = 0  # frames open
    large = False  # a buffer past KEEP_BYTES was handed out in the outermost frame
    buffers = None  # per level: {key: array}
    markers = None


_local = _Frames()
KEEP_BYTES = 64 << 20  # the largest buffer kept between calls: DIRECT_CHUNK_BYTES of _pipeline bounds the usual ones


def _level(kind):
    """This thread's buffers of ``kind`` ("buffers" or "markers") for the innermost active frame."""
    levels = getattr(_local, kind)
    if levels is None:
        levels = [{}]
        setattr(_local, kind, levels)
    level = max(_local.depth - 1, 0)
    while len(levels) <= level:
        levels.append({})
    return levels[level]


def enter():
    """Open the scratch frame of one call; returns the token for :func:`leave`. A frame opened
    inside another on the same thread gets buffers of its own, freed when it ends; the outermost
    frame keeps its buffers of up to KEEP_BYTES."""
    depth = _local.depth
    _local.depth = depth + 1
    return depth


def leave(depth):
    """Close the frame :func:`enter` opened (call it in a ``finally``)."""
    _local.depth = depth
    if depth > 0:
        for kind in ("buffers", "markers"):
            del (getattr(_local, kind) or [])[depth:]
    elif _local.large:
        _local.large = False
        for kind in ("buffers", "markers"):
            for level in (getattr(_local, kind) or [])[:1]:
                for key in [key for key, buf in level.items() if buf.nbytes > KEEP_BYTES]:
                    del level[key]


def _allocated(buf):
    if buf.nbytes > KEEP_BYTES:
        _local.large = True
    return buf


def scratch(name, shape, dtype):
    """An uninitialised array of ``shape`` and ``dtype`` backed by this frame's buffer ``name``."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buffers = _level("buffers")
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = buffers[name] = _allocated(np.empty(max(nbytes, 64), dtype=np.uint8))
    return buf[:nbytes].view(dtype).reshape(shape)


def marker(n_rows, dtype):
    """This thread's dedupe marker: ``n_rows`` slots, all -1 (the dedupe kernel restores them)."""
    dtype = np.dtype(dtype)
    markers = _level("markers")
    current = markers.get(dtype.char)
    if current is None or current.shape[0] < n_rows:
        current = markers[dtype.char] = _allocated(np.full(max(n_rows, 1024), -1, dtype=dtype))
    return current[:n_rows]


def release():
    """Free the calling thread's scratch buffers (those of calls in progress stay theirs)."""
    for kind in ("buffers", "markers"):
        levels = getattr(_local, kind)
        if levels and not _local.depth:
            setattr(_local, kind, [{}])


PREFAULT_BYTES = 4 << 20


def fresh(shape, dtype, n_threads):
    """A new array that several threads will write first: its pages are touched here, from one
    thread, when it is large. Concurrent first-touch faults from a parallel kernel or BLAS cost
    2-4x the work itself on this class of VM (transparent huge pages with compaction)."""
    out = np.empty(shape, dtype=dtype)
    if n_threads > 1 and out.nbytes >= PREFAULT_BYTES:
        out.reshape(-1).view(np.uint8)[::4096] = 0
    return out
