# Included by the kernel modules with a latency path (Cython `include`): what such a path reads off the
# buffers of its arguments to prove a call is the simple case, before it runs without any Python check.

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer


cdef object _ndarray = np.ndarray  # read per argument on every call: a module attribute lookup less

cdef enum:
    FE_F32 = 1
    FE_F64 = 2
    FE_I32 = 3
    FE_I64 = 4


cdef int _buffer_kind(Py_buffer* b) noexcept:
    cdef const char* f = b.format
    if f == NULL:
        return 0
    if f[0] == b'@' or f[0] == b'=' or f[0] == b'<':
        f += 1
    if f[0] == 0 or f[1] != 0:
        return 0
    if f[0] == b'f' and b.itemsize == 4:
        return FE_F32
    if f[0] == b'd' and b.itemsize == 8:
        return FE_F64
    if (f[0] == b'i' or f[0] == b'l' or f[0] == b'q') and b.itemsize == 4:
        return FE_I32
    if (f[0] == b'l' or f[0] == b'q') and b.itemsize == 8:
        return FE_I64
    return 0


cdef bint _apart(Py_buffer* a, Py_buffer* b) noexcept:
    """True when two C-contiguous buffers share no byte."""
    cdef const char* a0 = <const char*>a.buf
    cdef const char* b0 = <const char*>b.buf
    return a.len == 0 or b.len == 0 or a0 + a.len <= b0 or b0 + b.len <= a0


cdef bint _same_shape(Py_buffer* a, Py_buffer* b) noexcept:
    """True when two buffers have the same shape."""
    cdef int k
    if a.ndim != b.ndim:
        return False
    for k in range(a.ndim):
        if a.shape[k] != b.shape[k]:
            return False
    return True


cdef bint _is_ids(Py_buffer* b) noexcept:
    """int32 or int64 ids of at least one dimension."""
    cdef int kind = _buffer_kind(b)
    return b.ndim >= 1 and (kind == FE_I32 or kind == FE_I64)


cdef bint _out_fits(Py_buffer* bo, Py_buffer* bi, Py_ssize_t d, int kind) noexcept:
    """out is of kind ``kind`` and shape ids.shape + (d,)."""
    cdef int i
    if _buffer_kind(bo) != kind or bo.ndim != bi.ndim + 1 or bo.shape[bi.ndim] != d:
        return False
    for i in range(bi.ndim):
        if bo.shape[i] != bi.shape[i]:
            return False
    return True


cdef bint _copy_ids(Py_buffer* bi, int64_t* rows, Py_ssize_t n, Py_ssize_t V) noexcept nogil:
    """rows[:n] = the ids, each read once into this private copy; True when every one is in [0, V).
    The copy is what the kernel reads: another thread writing to the ids cannot put an unchecked
    index in front of it."""
    cdef const int32_t* ids32 = <const int32_t*>bi.buf
    cdef const int64_t* ids64 = <const int64_t*>bi.buf
    cdef bint narrow = bi.itemsize == 4
    cdef int64_t bad = 0
    cdef Py_ssize_t i
    for i in range(n):
        rows[i] = ids32[i] if narrow else ids64[i]
        bad |= (rows[i] < 0) | (rows[i] >= V)
    return bad == 0


cdef void _sequence_positions(int64_t* q_rows, Py_ssize_t n, Py_ssize_t L, Py_ssize_t offset) noexcept nogil:
    """q_rows[i] = offset + i % L: the pos_table row of each id (its position along the last axis of
    ids, counted from ``offset``)."""
    cdef Py_ssize_t i, j
    for i in range(n // L):
        for j in range(L):
            q_rows[i * L + j] = offset + j


cdef Py_ssize_t _offset_within(offset, Py_buffer* bq, bint has_q, Py_ssize_t L):
    """The first position when the rows offset .. offset + L - 1 are rows of pos (``offset`` a
    Python int, 0 when there is no pos), else -1: the general path checks and reports the rest."""
    if type(offset) is not int or offset < 0:
        return -1
    if not has_q:
        return 0 if offset == 0 else -1
    if offset > bq.shape[0] - L:
        return -1
    return offset


cdef bint _bias_fits(bias, Py_buffer* bb, bint has_b, Py_ssize_t d, int kind) noexcept:
    """No bias, or a C-contiguous (d,) vector of kind ``kind`` whose buffer ``bb`` holds."""
    if bias is None:
        return True
    return has_b and bb.ndim == 1 and _buffer_kind(bb) == kind and bb.shape[0] == d


cdef Py_ssize_t _terms_fit(bias, offset, Py_buffer* bi, Py_buffer* bq, bint has_q, Py_buffer* bb, bint has_b,
                          Py_buffer* bo, bint has_o, Py_ssize_t d, int kind):
    """The first row of pos a call adds (``offset``) when pos, bias and out fit ids ``bi`` with
    output rows of d values of kind ``kind``, and out shares no byte with ids, pos or bias; else
    -1. Whether out overlaps the tables is the caller's to check."""
    cdef Py_ssize_t first
    if has_q and (bq.ndim != 2 or _buffer_kind(bq) != kind or bq.shape[1] != d):
        return -1
    first = _offset_within(offset, bq, has_q, bi.shape[bi.ndim - 1])
    if first < 0 or not _bias_fits(bias, bb, has_b, d, kind):
        return -1
    if has_o and not (_out_fits(bo, bi, d, kind) and _apart(bo, bi) and (not has_q or _apart(bo, bq))
                      and (not has_b or _apart(bo, bb))):
        return -1
    return first


cdef bint _position_ids_fit(position_ids, offset, Py_buffer* bn, bint* has_n, Py_buffer* bi, bint has_q,
                            Py_buffer* bo, bint has_o):
    """No position ids, or (pos given, offset 0) a C-contiguous int32/int64 array of the ids'
    shape, sharing no byte with out, whose buffer ``bn`` then holds (``has_n``, for the caller to
    release). Whether each is in [0, n_pos) is checked on the private copy the kernel reads."""
    if position_ids is None:
        return True
    if not has_q or type(position_ids) is not _ndarray or type(offset) is not int or offset != 0:
        return False
    has_n[0] = _get_buffer(position_ids, bn, False)
    return has_n[0] and _is_ids(bn) and _same_shape(bn, bi) and (not has_o or _apart(bo, bn))


cdef bint _get_term_buffers(pos, bias, out, Py_buffer* bq, Py_buffer* bb, Py_buffer* bo,
                            bint* has_q, bint* has_b, bint* has_o):
    """Acquire the C-contiguous buffers of pos, bias and out (out writable), those not None, up to
    the first that has none: ``has_*`` say which are held, for the caller to release. True when
    every one given is held."""
    has_q[0] = pos is not None and _get_buffer(pos, bq, False)
    if pos is not None and not has_q[0]:
        return False
    has_b[0] = bias is not None and _get_buffer(bias, bb, False)
    if bias is not None and not has_b[0]:
        return False
    has_o[0] = out is not None and _get_buffer(out, bo, True)
    return out is None or has_o[0]


cdef bint _get_buffer(obj, Py_buffer* view, bint writable):
    """Acquire ``obj``'s C-contiguous buffer (writable if asked); False when it has none such."""
    try:
        PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (PyBUF_WRITABLE if writable else 0))
    except (BufferError, ValueError, TypeError):  # numpy: ValueError for a non-contiguous view
        return False
    return True


cdef bint _simple_arguments(ids, table, pos, out, bias, scale, double* value):
    """numpy arrays (pos, out and bias may be None) and a Python float or int scale, stored in
    ``value`` (never a numpy scalar or a bool, whose checks the general path owns)."""
    cdef object t
    for t in (ids, table, pos, out, bias):
        if t is not None and type(t) is not _ndarray:
            return False
    if ids is None or table is None or not (type(scale) is float or type(scale) is int):
        return False
    value[0] = scale
    return True


cdef int _thread_count(threads_for, work) except -1:
    """A latency path's thread count: ``threads_for`` itself when it is an int (at least 1; the
    caller knew it without the work's size), else ``threads_for(work)``."""
    return max(1, <int>threads_for) if type(threads_for) is int else threads_for(work)


cdef inline void _release(Py_buffer* view, bint held):
    if held:
        PyBuffer_Release(view)
