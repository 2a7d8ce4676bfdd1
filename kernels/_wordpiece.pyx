"""BERT WordPiece tokenization kernel behind fastembed.WordPiece (no Numba mirror: the exact
Python path in fastembed/_wordpiece_exact.py is its reference).

Texts arrive as one UTF-8 buffer with byte offsets. Per text, in one pass over its code points:
added (special) tokens are matched on the raw bytes; every other character goes through the
per-code-point tables of fastembed/_unicode_tables.py (drop, space, CJK spacing, replacement
by NFD-without-marks and lower case), the pre-tokenizer's whitespace and punctuation split
words, and each word is looked up greedily, longest piece first, in two open-addressing hash
tables over the UTF-8 bytes of the vocabulary (whole vocabulary; continuation pieces with their
"##" prefix removed). A word of more than max_chars characters, or one that cannot be covered,
is the unknown token. The caller validates everything; the kernel still bounds every read by
the buffer and table sizes it is given.

Texts are split into chunks, one OpenMP task per chunk (dynamic schedule); each chunk writes
its ids to its own growable buffer, then the buffers are copied into place.
"""

from cython.parallel cimport parallel, prange
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy

include "_common.pxi"

cdef enum:
    F_REMOVE = 1
    F_TO_SPACE = 2
    F_CJK = 4
    F_MAPPED = 8
    F_SPACE = 16
    F_PUNCT = 32
    F_REORDER = 64
    N_CODE_POINTS = 0x110000
    NEEDS_EXACT = -1
    OUT_OF_MEMORY = -2


cdef struct Vocab:
    const uint8_t* keys       # UTF-8 bytes of every key
    const int64_t* key_start  # key i is keys[key_start[i] : key_start[i + 1]]
    const int32_t* slots      # hash slot -> key index, -1 empty; capacity mask + 1
    const int32_t* ids        # key index -> token id
    uint64_t mask
    int64_t n_keys
    int64_t max_chars         # longest key in characters


cdef struct Tables:
    const uint8_t* flags
    const int32_t* map_offset
    const int32_t* map_pool
    int64_t pool_size
    Vocab whole
    Vocab continuation
    const uint8_t* added           # UTF-8 bytes of the added tokens, longest first
    const int64_t* added_start
    const int32_t* added_ids
    int64_t n_added
    uint8_t added_first[256]       # 1 where an added token starts with that byte
    int32_t unk
    int64_t max_chars
    const int32_t* prefix          # ids before / after every text (special tokens)
    int64_t n_prefix
    const int32_t* suffix
    int64_t n_suffix
    int64_t max_content            # content tokens kept per text, < 0 for all


cdef struct Output:
    int32_t* ids
    int64_t size
    int64_t capacity
    int error


cdef struct Scratch:
    uint8_t* word        # UTF-8 bytes of the current word (at most 4 (max_chars + 1))
    int64_t* char_end    # byte end of each character of the word
    int32_t* pieces      # ids of the word's pieces
    int64_t n_bytes
    int64_t n_chars


cdef inline uint64_t fnv1a(const uint8_t* s, int64_t n) noexcept nogil:
    cdef uint64_t h = 1469598103934665603ULL
    cdef int64_t i
    for i in range(n):
        h = (h ^ s[i]) * 1099511628211ULL
    return h


def hash_bytes(const uint8_t[::1] data):
    """The hash the tables are built with (for tests)."""
    return fnv1a(&data[0] if data.shape[0] else NULL, data.shape[0])


def build_slots(const uint8_t[::1] keys, const int64_t[::1] key_start, int32_t[::1] slots):
    """Fill ``slots`` (power-of-two size, all -1) with the key indices, linear probing."""
    cdef int64_t n_keys = key_start.shape[0] - 1, i, start, length
    cdef uint64_t mask = slots.shape[0] - 1, h
    if n_keys >= slots.shape[0] or slots.shape[0] & (slots.shape[0] - 1):
        raise ValueError("slots must be a power of two larger than the number of keys")
    with nogil:
        for i in range(n_keys):
            start = key_start[i]
            length = key_start[i + 1] - start
            h = fnv1a(&keys[start] if length else NULL, length) & mask
            while slots[h] >= 0:
                h = (h + 1) & mask
            slots[h] = <int32_t>i


cdef inline int32_t lookup(const Vocab* v, const uint8_t* s, int64_t n) noexcept nogil:
    cdef uint64_t h = fnv1a(s, n) & v.mask
    cdef int32_t k
    cdef int64_t start
    while True:
        k = v.slots[h]
        if k < 0:
            return -1
        start = v.key_start[k]
        if v.key_start[k + 1] - start == n and memcmp(v.keys + start, s, n) == 0:
            return v.ids[k]
        h = (h + 1) & v.mask


cdef inline int emit(Output* out, int32_t token) noexcept nogil:
    cdef int32_t* grown
    cdef int64_t capacity
    if out.size == out.capacity:
        capacity = out.capacity * 2 + 64
        grown = <int32_t*>realloc(out.ids, capacity * sizeof(int32_t))
        if grown == NULL:
            out.error = 1
            return 0
        out.ids = grown
        out.capacity = capacity
    out.ids[out.size] = token
    out.size += 1
    return 1


cdef inline int64_t utf8_decode(const uint8_t* s, int64_t n, uint32_t* cp) noexcept nogil:
    """Bytes of the code point at s (1..4); a malformed or cut sequence reads as one byte of U+FFFD."""
    cdef uint8_t b = s[0]
    if b < 0x80:
        cp[0] = b
        return 1
    if b >= 0xC2 and b < 0xE0 and n >= 2 and (s[1] & 0xC0) == 0x80:
        cp[0] = ((b & 0x1F) << 6) | (s[1] & 0x3F)
        return 2
    if b >= 0xE0 and b < 0xF0 and n >= 3 and (s[1] & 0xC0) == 0x80 and (s[2] & 0xC0) == 0x80:
        cp[0] = ((b & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F)
        if cp[0] >= 0x800 and not (0xD800 <= cp[0] <= 0xDFFF):
            return 3
    if b >= 0xF0 and b < 0xF5 and n >= 4 and (s[1] & 0xC0) == 0x80 and (s[2] & 0xC0) == 0x80 \
            and (s[3] & 0xC0) == 0x80:
        cp[0] = ((b & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F)
        if 0x10000 <= cp[0] < N_CODE_POINTS:
            return 4
    cp[0] = 0xFFFD
    return 1


cdef inline int64_t utf8_encode(uint32_t cp, uint8_t* out) noexcept nogil:
    if cp < 0x80:
        out[0] = <uint8_t>cp
        return 1
    if cp < 0x800:
        out[0] = <uint8_t>(0xC0 | (cp >> 6))
        out[1] = <uint8_t>(0x80 | (cp & 0x3F))
        return 2
    if cp < 0x10000:
        out[0] = <uint8_t>(0xE0 | (cp >> 12))
        out[1] = <uint8_t>(0x80 | ((cp >> 6) & 0x3F))
        out[2] = <uint8_t>(0x80 | (cp & 0x3F))
        return 3
    out[0] = <uint8_t>(0xF0 | (cp >> 18))
    out[1] = <uint8_t>(0x80 | ((cp >> 12) & 0x3F))
    out[2] = <uint8_t>(0x80 | ((cp >> 6) & 0x3F))
    out[3] = <uint8_t>(0x80 | (cp & 0x3F))
    return 4


cdef inline void add_char(const Tables* t, Scratch* w, uint32_t cp) noexcept nogil:
    """Append one normalized character to the word (past max_chars only its count grows)."""
    w.n_chars += 1
    if w.n_chars <= t.max_chars:
        w.n_bytes += utf8_encode(cp, w.word + w.n_bytes)
        w.char_end[w.n_chars - 1] = w.n_bytes


cdef int64_t flush_word(const Tables* t, Scratch* w, Output* out, int64_t budget) noexcept nogil:
    """Emit the pieces of the current word (at most ``budget``); returns how many were emitted."""
    cdef int64_t n = w.n_chars, start = 0, end, n_pieces = 0, i, byte_start
    cdef int32_t token
    cdef const Vocab* v
    if n == 0:
        return 0
    w.n_chars = 0
    w.n_bytes = 0
    if budget <= 0:
        return 0
    if n > t.max_chars:
        return emit(out, t.unk)
    while start < n:
        v = &t.whole if start == 0 else &t.continuation
        end = n if n - start <= v.max_chars else start + v.max_chars
        byte_start = w.char_end[start - 1] if start else 0
        token = -1
        while end > start:
            token = lookup(v, w.word + byte_start, w.char_end[end - 1] - byte_start)
            if token >= 0:
                break
            end -= 1
        if token < 0:
            return emit(out, t.unk)
        w.pieces[n_pieces] = token
        n_pieces += 1
        start = end
    if n_pieces > budget:
        n_pieces = budget
    for i in range(n_pieces):
        if not emit(out, w.pieces[i]):
            return i
    return n_pieces


cdef inline int64_t match_added(const Tables* t, const uint8_t* s, int64_t n) noexcept nogil:
    """Index of the longest added token at s, or -1 (added tokens are sorted longest first)."""
    cdef int64_t k, start, length
    for k in range(t.n_added):
        start = t.added_start[k]
        length = t.added_start[k + 1] - start
        if length <= n and memcmp(t.added + start, s, length) == 0:
            return k
    return -1


cdef inline int64_t add_normalized(const Tables* t, Scratch* w, Output* out, uint32_t cp, int64_t budget) noexcept nogil:
    """Feed one normalized character to the pre-tokenizer; returns the tokens emitted."""
    cdef uint8_t f = t.flags[cp]
    cdef int64_t done
    if f & F_SPACE:
        return flush_word(t, w, out, budget)
    if f & F_PUNCT:
        done = flush_word(t, w, out, budget)
        add_char(t, w, cp)
        return done + flush_word(t, w, out, budget - done)
    add_char(t, w, cp)
    return 0


cdef int64_t encode_text(const Tables* t, const uint8_t* s, int64_t n, Scratch* w, Output* out) noexcept nogil:
    """Append the ids of one text to ``out``; returns their number, NEEDS_EXACT or OUT_OF_MEMORY."""
    cdef int64_t i = 0, step, k, m, count = 0, start_size = out.size, budget, j, offset, length
    cdef uint32_t cp, mapped
    cdef uint8_t f
    budget = t.max_content if t.max_content >= 0 else (<int64_t>1 << 62)
    w.n_chars = 0
    w.n_bytes = 0
    for k in range(t.n_prefix):
        emit(out, t.prefix[k])
    while i < n and count < budget:
        if t.n_added and t.added_first[s[i]]:
            k = match_added(t, s + i, n - i)
            if k >= 0:
                count += flush_word(t, w, out, budget - count)
                if count < budget:
                    emit(out, t.added_ids[k])
                    count += 1
                i += t.added_start[k + 1] - t.added_start[k]
                continue
        step = utf8_decode(s + i, n - i, &cp)
        i += step
        f = t.flags[cp]
        if f & F_REORDER:
            out.size = start_size
            return NEEDS_EXACT
        if f & F_REMOVE:
            continue
        if f & F_TO_SPACE:
            count += flush_word(t, w, out, budget - count)
            continue
        if f & F_CJK:
            count += flush_word(t, w, out, budget - count)
        if f & F_MAPPED:
            offset = t.map_offset[cp]
            length = t.map_pool[offset] if 0 <= offset < t.pool_size else 0
            for j in range(length):
                if offset + 1 + j >= t.pool_size:
                    break
                mapped = <uint32_t>t.map_pool[offset + 1 + j]
                if mapped < N_CODE_POINTS:
                    count += add_normalized(t, w, out, mapped, budget - count)
        else:
            count += add_normalized(t, w, out, cp, budget - count)
        if f & F_CJK:
            count += flush_word(t, w, out, budget - count)
    count += flush_word(t, w, out, budget - count)
    for k in range(t.n_suffix):
        emit(out, t.suffix[k])
    if out.error:
        return OUT_OF_MEMORY
    return out.size - start_size


cdef void set_vocab(Vocab* v, const uint8_t[::1] keys, const int64_t[::1] key_start, const int32_t[::1] slots,
                    const int32_t[::1] ids, int64_t max_chars):
    v.keys = &keys[0] if keys.shape[0] else NULL
    v.key_start = &key_start[0]
    v.slots = &slots[0]
    v.ids = &ids[0] if ids.shape[0] else NULL
    v.mask = slots.shape[0] - 1
    v.n_keys = key_start.shape[0] - 1
    v.max_chars = max_chars


def encode_batch(
    const uint8_t[::1] text, const int64_t[::1] text_start, int64_t[::1] counts,
    const uint8_t[::1] flags, const int32_t[::1] map_offset, const int32_t[::1] map_pool,
    const uint8_t[::1] keys, const int64_t[::1] key_start, const int32_t[::1] slots, const int32_t[::1] ids,
    int64_t whole_max_chars,
    const uint8_t[::1] cont_keys, const int64_t[::1] cont_start, const int32_t[::1] cont_slots,
    const int32_t[::1] cont_ids, int64_t cont_max_chars,
    const uint8_t[::1] added, const int64_t[::1] added_start, const int32_t[::1] added_ids,
    int32_t unk, int64_t max_chars, const int32_t[::1] prefix, const int32_t[::1] suffix, int64_t max_content,
    int n_threads,
):
    """Tokenize texts i = 0..len(text_start) - 2 (bytes text[text_start[i]:text_start[i + 1]]).

    Writes each text's id count to counts[i] (-1: the text needs the exact Python path) and
    returns the ids of all texts, concatenated, as an int32 array.
    """
    cdef Tables t
    cdef int64_t n_texts = text_start.shape[0] - 1, n_chunks, c, i, lo, hi, r, total = 0, b
    cdef int error = 0
    if flags.shape[0] != N_CODE_POINTS or map_offset.shape[0] != N_CODE_POINTS:
        raise ValueError("the character tables must cover every code point")
    if counts.shape[0] != n_texts or added_start.shape[0] != added_ids.shape[0] + 1:
        raise ValueError("counts / added tokens do not match")
    if key_start.shape[0] != ids.shape[0] + 1 or cont_start.shape[0] != cont_ids.shape[0] + 1:
        raise ValueError("vocabulary arrays do not match")
    if text_start.shape[0] and (text_start[0] < 0 or text_start[n_texts] > text.shape[0]):
        raise ValueError("text offsets outside the buffer")
    for i in range(n_texts):
        if text_start[i + 1] < text_start[i]:
            raise ValueError("text offsets must be non-decreasing")
    t.flags = &flags[0]
    t.map_offset = &map_offset[0]
    t.map_pool = &map_pool[0] if map_pool.shape[0] else NULL
    t.pool_size = map_pool.shape[0]
    set_vocab(&t.whole, keys, key_start, slots, ids, whole_max_chars)
    set_vocab(&t.continuation, cont_keys, cont_start, cont_slots, cont_ids, cont_max_chars)
    t.added = &added[0] if added.shape[0] else NULL
    t.added_start = &added_start[0]
    t.added_ids = &added_ids[0] if added_ids.shape[0] else NULL
    t.n_added = added_ids.shape[0]
    for i in range(256):
        t.added_first[i] = 0
    for i in range(t.n_added):
        if added_start[i + 1] > added_start[i]:
            t.added_first[added[added_start[i]]] = 1
    t.unk = unk
    t.max_chars = max_chars
    t.prefix = &prefix[0] if prefix.shape[0] else NULL
    t.n_prefix = prefix.shape[0]
    t.suffix = &suffix[0] if suffix.shape[0] else NULL
    t.n_suffix = suffix.shape[0]
    t.max_content = max_content

    n_chunks = min(n_texts, max(1, 16 * n_threads)) if n_texts else 0
    cdef Output* outs = <Output*>malloc((n_chunks + 1) * sizeof(Output))
    cdef int64_t* chunk_first = <int64_t*>malloc((n_chunks + 1) * sizeof(int64_t))
    cdef int64_t* chunk_offset = <int64_t*>malloc((n_chunks + 1) * sizeof(int64_t))
    if outs == NULL or chunk_first == NULL or chunk_offset == NULL:
        free(outs); free(chunk_first); free(chunk_offset)
        raise MemoryError()
    for c in range(n_chunks + 1):
        chunk_first[c] = c * n_texts // n_chunks if n_chunks else 0
        outs[c].ids = NULL
        outs[c].size = 0
        outs[c].capacity = 0
        outs[c].error = 0
    cdef Scratch* w
    cdef int caller_cpu = fe_current_cpu() if n_threads > 1 else -1
    with nogil, parallel(num_threads=n_threads):
        fe_unstack(caller_cpu)
        for c in prange(n_chunks, schedule="dynamic"):
            w = <Scratch*>malloc(sizeof(Scratch))
            lo = text_start[chunk_first[c]]
            hi = text_start[chunk_first[c + 1]]
            outs[c].capacity = (hi - lo) // 3 + 64
            outs[c].ids = <int32_t*>malloc(outs[c].capacity * sizeof(int32_t))
            if w != NULL:
                w.word = <uint8_t*>malloc(4 * (max_chars + 2))
                w.char_end = <int64_t*>malloc((max_chars + 2) * sizeof(int64_t))
                w.pieces = <int32_t*>malloc((max_chars + 2) * sizeof(int32_t))
            if w == NULL or w.word == NULL or w.char_end == NULL or w.pieces == NULL or outs[c].ids == NULL:
                outs[c].error = 1
            else:
                for i in range(chunk_first[c], chunk_first[c + 1]):
                    r = encode_text(&t, &text[0] + text_start[i], text_start[i + 1] - text_start[i], w, &outs[c])
                    if r == OUT_OF_MEMORY:
                        break
                    counts[i] = r
            if w != NULL:
                free(w.word)
                free(w.char_end)
                free(w.pieces)
                free(w)
    for c in range(n_chunks):
        error |= outs[c].error
        chunk_offset[c] = total
        total += outs[c].size
    result = None
    if not error:
        try:
            import numpy as np
            result = np.empty(total, dtype=np.int32)
        except MemoryError:
            error = 1
    if not error:
        write_chunks(result, outs, chunk_offset, n_chunks, n_threads)
    for c in range(n_chunks):
        free(outs[c].ids)
    free(outs); free(chunk_first); free(chunk_offset)
    if error:
        raise MemoryError("out of memory while tokenizing")
    return result


cdef void write_chunks(int32_t[::1] result, Output* outs, int64_t* chunk_offset, int64_t n_chunks, int n_threads):
    cdef int64_t c
    with nogil:
        for c in prange(n_chunks, schedule="static", num_threads=n_threads):
            if outs[c].size:
                memcpy(&result[chunk_offset[c]], outs[c].ids, outs[c].size * sizeof(int32_t))
