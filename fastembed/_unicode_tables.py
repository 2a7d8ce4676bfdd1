"""Per-code-point tables of the BERT normalizer and pre-tokenizer, as Hugging Face ``tokenizers``
applies them, built once per option set from :mod:`unicodedata` and cached.

tokenizers takes its character properties from three sources, and so do these tables:

- control, non-spacing mark and punctuation from the ``unicode_categories`` crate, which is
  Unicode 8.0: a character assigned later is none of these to it (``_unicode_data``), and it is
  not decomposed either;
- whitespace and lower case from Rust's standard library: the White_Space property, and full
  lower-case mappings, per character (no final-sigma rule), including the letters newer than
  Python's Unicode database (``NEWER_LOWERCASE``);
- canonical decomposition (NFD) of the characters Unicode 8.0 has, which no later version changes.

Where NFD would leave two surviving combining marks next to each other (canonical reordering
spans characters), the kernel hands the text back to the exact Python path (``REORDER``).
"""

import bisect
import functools
import unicodedata

import numpy as np

from ._unicode_data import PRESENT_IN_8_0

N_CODE_POINTS = 0x110000

REMOVE = 1  # clean_text: dropped (NUL, U+FFFD, controls, format, private use)
TO_SPACE = 2  # clean_text: whitespace becomes " "
CJK = 4  # handle_chinese_chars: " " c " "
MAPPED = 8  # replaced by map_pool[map_offset[cp]]: NFD without marks and/or lower case
SPACE = 16  # pre-tokenizer: splits words and is dropped
PUNCT = 32  # pre-tokenizer: a word of its own
REORDER = 64  # canonical reordering may matter: the exact Python path takes the text

WHITE_SPACE = frozenset(
    [*range(0x9, 0xE), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)
CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
CONTROL_CATEGORIES = frozenset(["Cc", "Cf", "Co", "Cs"])
# lower case of letters added in Unicode 16.0 and 17.0 (UnicodeData.txt), used where the running
# Python's database does not have them yet
NEWER_LOWERCASE = {
    0x1C89: 0x1C8A,
    0xA7CB: 0x0264,
    0xA7CC: 0xA7CD,
    0xA7CE: 0xA7CF,
    0xA7D2: 0xA7D3,
    0xA7D4: 0xA7D5,
    0xA7DA: 0xA7DB,
    0xA7DC: 0x019B,
    **{cp: cp + 0x20 for cp in range(0x10D50, 0x10D66)},  # Garay
    **{cp: cp + 0x1B for cp in range(0x16EA0, 0x16EB9)},  # Beria Erfe
}
# characters of Unicode 8.0 whose general category changed since (8.0's is the one tokenizers uses)
CATEGORY_IN_8_0 = {
    0x1734: "Mn",  # HANUNOO SIGN PAMUDPOD, Mc since 14.0
    0x1885: "Lo",  # MONGOLIAN LETTER ALI GALI BALUDA, Mn since 9.0
    0x1886: "Lo",  # MONGOLIAN LETTER ALI GALI THREE BALUDA, Mn since 9.0
    0xA9BD: "Mc",  # JAVANESE CONSONANT SIGN KERET, Mn since 12.0
    0x166D: "Po",  # CANADIAN SYLLABICS CHI SIGN, So since 12.0
    0x111C9: "Po",  # SHARADA SANDHI MARK, Mn since 12.0
}
HANGUL_SYLLABLES = range(0xAC00, 0xD7A4)  # decomposed by algorithm, so unicodedata.decomposition is empty


def in_unicode_8(cp):
    return bisect.bisect_right(PRESENT_IN_8_0, cp) % 2 == 1


def category(cp):
    """The general category tokenizers sees: Unicode 8.0's ("Cn" for anything assigned later)."""
    if not in_unicode_8(cp):
        return "Cn"
    return CATEGORY_IN_8_0.get(cp) or unicodedata.category(chr(cp))


def is_control(cp):
    return cp not in (0x9, 0xA, 0xD) and category(cp) in CONTROL_CATEGORIES


def is_cjk(cp):
    return any(lo <= cp <= hi for lo, hi in CJK_RANGES)


def is_punctuation(cp):
    return (0x21 <= cp <= 0x2F or 0x3A <= cp <= 0x40 or 0x5B <= cp <= 0x60 or 0x7B <= cp <= 0x7E) or category(
        cp
    ).startswith("P")


def lower(cp):
    """Rust's char::to_lowercase as code points."""
    if unicodedata.category(chr(cp)) == "Cn":
        return [NEWER_LOWERCASE.get(cp, cp)]
    return [ord(c) for c in chr(cp).lower()]


def decompose(cp):
    """NFD of one character as tokenizers computes it (nothing assigned after Unicode 8.0 decomposes)."""
    if not in_unicode_8(cp):
        return [cp]
    return [ord(c) for c in unicodedata.normalize("NFD", chr(cp))]


def normalized(cp, strip_accents, lowercase):
    """What the accent strip and lower case make of one character (code points)."""
    out = [cp]
    if strip_accents:
        out = [c for c in decompose(cp) if category(c) != "Mn"]
    if lowercase:
        out = [c for x in out for c in lower(x)]
    return out


def _candidates():
    """Code points whose normalization may differ from themselves (the rest map to themselves)."""
    for cp in range(N_CODE_POINTS):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if c.lower() != c or unicodedata.decomposition(c) or unicodedata.category(c) == "Mn" or cp in CATEGORY_IN_8_0:
            yield cp
    yield from NEWER_LOWERCASE
    yield from HANGUL_SYLLABLES


@functools.lru_cache(maxsize=8)
def char_tables(clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True):
    """(flags uint8 (0x110000,), map_offset int32 (0x110000,), map_pool int32) for one option set.

    ``map_pool[map_offset[cp]]`` is the length n of cp's replacement and the n code points
    after it are the replacement; map_offset is -1 where a code point stays itself.
    """
    flags = np.zeros(N_CODE_POINTS, np.uint8)
    spaces = np.fromiter(WHITE_SPACE, np.int64)
    flags[spaces] |= SPACE
    ascii_punct = np.r_[0x21:0x30, 0x3A:0x41, 0x5B:0x61, 0x7B:0x7F]
    flags[ascii_punct] |= PUNCT
    in_8 = _present_in_8_mask()
    assigned = np.flatnonzero(in_8)
    categories = _categories(assigned)
    flags[assigned[np.char.startswith(categories, "P")]] |= PUNCT
    if clean_text:
        control = assigned[np.isin(categories, list(CONTROL_CATEGORIES))]
        flags[control] |= REMOVE
        flags[[0, 0xFFFD]] |= REMOVE
        flags[[0x9, 0xA, 0xD]] &= ~np.uint8(REMOVE)
        flags[spaces] |= TO_SPACE
        flags[(flags & REMOVE) != 0] &= ~np.uint8(TO_SPACE)
    if handle_chinese_chars:
        for lo, hi in CJK_RANGES:
            flags[lo : hi + 1] |= CJK
    map_offset = np.full(N_CODE_POINTS, -1, np.int32)
    pool = []
    if strip_accents or lowercase:
        for cp in sorted(set(_candidates_cached())):
            out = normalized(cp, strip_accents, lowercase)
            if out != [cp]:
                map_offset[cp] = len(pool)
                pool.append(len(out))
                pool.extend(out)
                flags[cp] |= MAPPED
                if strip_accents and any(unicodedata.combining(chr(c)) for c in out):
                    flags[cp] |= REORDER
    if strip_accents:
        # a mark that survives the strip (not Mn to tokenizers) and has a combining class
        marks = [cp for cp in assigned_marks() if category(cp) != "Mn"]
        flags[marks] |= REORDER
    return flags, map_offset, np.asarray(pool, dtype=np.int32)


@functools.lru_cache(maxsize=1)
def _candidates_cached():
    return tuple(_candidates())


@functools.lru_cache(maxsize=1)
def assigned_marks():
    """Code points with a non-zero canonical combining class (in the running Python's database)."""
    return tuple(
        cp for cp in range(0x300, N_CODE_POINTS) if not 0xD800 <= cp <= 0xDFFF and unicodedata.combining(chr(cp))
    )


@functools.lru_cache(maxsize=1)
def _present_in_8_mask():
    edges = np.asarray(PRESENT_IN_8_0 + (N_CODE_POINTS,), dtype=np.int64)
    mask = np.zeros(N_CODE_POINTS, bool)
    # an inversion list ending in an unassigned run leaves edges odd: its last start pairs with nothing
    for start, stop in zip(edges[0::2], edges[1::2], strict=False):
        mask[start:stop] = True
    mask[0xD800:0xE000] = False
    return mask


def _categories(code_points):
    categories = np.array([unicodedata.category(chr(cp)) for cp in code_points.tolist()], dtype="<U2")
    for cp, cat in CATEGORY_IN_8_0.items():
        categories[np.searchsorted(code_points, cp)] = cat
    return categories
