"""Scratch buffers reused across calls, one set per thread.

Intermediates of the compiled pipeline (gathered rows, projected distinct rows,
dedupe markers) are tens of MB at ALBERT shapes. A fresh allocation of that size
is fresh pages from the OS on every call; on a VM with transparent huge pages
that cost varied from 2 ms to 100 ms per call. Reusing the buffers removes it.
Each thread keeps its own buffers (re-entrant and thread-safe); ``release()``
frees the calling thread's.
"""

import math
import threading

import numpy as np

_local = threading.local()


def scratch(name, shape, dtype):
    """An uninitialised array of ``shape`` and ``dtype`` backed by this thread's buffer ``name``."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = buffers[name] = np.empty(max(nbytes, 64), dtype=np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def marker(n_rows, dtype):
    """This thread's dedupe marker: ``n_rows`` slots, all -1 (the dedupe kernel restores them)."""
    dtype = np.dtype(dtype)
    markers = getattr(_local, "markers", None)
    if markers is None:
        markers = _local.markers = {}
    current = markers.get(dtype.char)
    if current is None or current.shape[0] < n_rows:
        current = markers[dtype.char] = np.full(max(n_rows, 1024), -1, dtype=dtype)
    return current[:n_rows]


def release():
    """Free the calling thread's scratch buffers."""
    _local.buffers = {}
    _local.markers = {}


PREFAULT_BYTES = 4 << 20


def fresh(shape, dtype, n_threads):
    """A new array that several threads will write first: its pages are touched here, from one
    thread, when it is large. Concurrent first-touch faults from a parallel kernel or BLAS cost
    2-4x the work itself on this class of VM (transparent huge pages with compaction)."""
    out = np.empty(shape, dtype=dtype)
    if n_threads > 1 and out.nbytes >= PREFAULT_BYTES:
        out.reshape(-1).view(np.uint8)[::4096] = 0
    return out
