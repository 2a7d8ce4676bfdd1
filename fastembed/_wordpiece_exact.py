"""The BERT WordPiece tokenizer written out in Python, step by step as Hugging Face ``tokenizers``
runs it: the truth the kernel (kernels/_wordpiece.pyx) is tested against, and the path it hands a
text to when canonical reordering might matter.

Steps: split off added tokens (leftmost-longest match on the raw text); BertNormalizer (clean
text, space around CJK, NFD with non-spacing marks removed, lower case); BertPreTokenizer (split
at whitespace, punctuation a word of its own); WordPiece (greedy longest match, continuation
pieces with the prefix, the unknown token for a word too long or not covered).
"""

import unicodedata

from . import _unicode_tables as u


def split_added(text, added):
    """[(piece, added token id or None)]: the added tokens found leftmost-longest in ``text``."""
    if not added:
        return [(text, None)]
    by_length = sorted(added.items(), key=lambda item: -len(item[0]))
    parts, start, i = [], 0, 0
    while i < len(text):
        for content, token in by_length:
            if content and text.startswith(content, i):
                if start < i:
                    parts.append((text[start:i], None))
                parts.append((content, token))
                i += len(content)
                start = i
                break
        else:
            i += 1
    if start < len(text):
        parts.append((text[start:], None))
    return parts


def normalize(text, clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True):
    """BertNormalizer on a whole string (code points in, code points out)."""
    chars = [ord(c) for c in text]
    if clean_text:
        chars = [0x20 if c in u.WHITE_SPACE else c for c in chars if not (c in (0, 0xFFFD) or u.is_control(c))]
    if handle_chinese_chars:
        chars = [x for c in chars for x in ((0x20, c, 0x20) if u.is_cjk(c) else (c,))]
    if strip_accents:
        decomposed = _canonical_order([d for c in chars for d in u.decompose(c)])
        chars = [c for c in decomposed if u.category(c) != "Mn"]
    if lowercase:
        chars = [x for c in chars for x in u.lower(c)]
    return chars


def _combining_class(cp):
    return unicodedata.combining(chr(cp)) if u.in_unicode_8(cp) else 0


def _canonical_order(chars):
    """Stable sort of every run of characters with a non-zero combining class, by that class."""
    out, run = [], []
    for c in chars:
        if _combining_class(c):
            run.append(c)
            continue
        out.extend(sorted(run, key=_combining_class))
        run = []
        out.append(c)
    out.extend(sorted(run, key=_combining_class))
    return out


def pre_tokenize(chars):
    """BertPreTokenizer: words of code points."""
    words, word = [], []
    for c in chars:
        if c in u.WHITE_SPACE:
            if word:
                words.append(word)
            word = []
        elif u.is_punctuation(c):
            if word:
                words.append(word)
            words.append([c])
            word = []
        else:
            word.append(c)
    if word:
        words.append(word)
    return words


def wordpiece(word, vocab, unk_id, prefix="##", max_chars=100):
    """Ids of one word: greedy longest match from the left, pieces after the first with ``prefix``."""
    text = "".join(map(chr, word))
    if len(text) > max_chars:
        return [unk_id]
    ids, start = [], 0
    while start < len(text):
        for end in range(len(text), start, -1):
            piece = text[start:end] if start == 0 else prefix + text[start:end]
            if piece in vocab:
                ids.append(vocab[piece])
                start = end
                break
        else:
            return [unk_id]
    return ids


def encode(text, spec, add_special_tokens=False, max_length=None):
    """Ids of one text under a :class:`fastembed._wordpiece.WordPieceSpec`."""
    ids = []
    for piece, token in split_added(text, spec.added_tokens):
        if token is not None:
            ids.append(token)
            continue
        chars = normalize(piece, spec.clean_text, spec.handle_chinese_chars, spec.strip_accents, spec.lowercase)
        for word in pre_tokenize(chars):
            ids.extend(wordpiece(word, spec.vocab, spec.unk_id, spec.prefix, spec.max_chars))
    prefix, suffix = (spec.prefix_ids, spec.suffix_ids) if add_special_tokens else ((), ())
    if max_length is not None:
        ids = ids[: max(max_length - len(prefix) - len(suffix), 0)]
    return [*prefix, *ids, *suffix]
