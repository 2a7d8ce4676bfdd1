"""Real token ids without a tokenizer dependency: BERT's uncased WordPiece.

This follows BertTokenizer (basic tokenization: clean, lower-case, strip
accents, split CJK characters and punctuation; then greedy longest-match
WordPiece with "##" continuations) closely enough to give the same ids as
the Hugging Face tokenizer on ordinary English (tests compare the two where
``tokenizers`` is installed). It exists for demos and benchmarks that need
the id statistics of real text.
"""

import unicodedata
from pathlib import Path

import numpy as np


def _is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp):
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _clean(text):
    out = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or (unicodedata.category(ch).startswith("C") and ch not in "\t\n\r"):
            continue
        out.append(" " if ch.isspace() else f" {ch} " if _is_cjk(cp) else ch)
    return "".join(out)


def basic_tokenize(text, lower_case=True):
    """Words and punctuation marks of ``text``, as BERT's BasicTokenizer splits them."""
    words = []
    for word in _clean(text).split():
        if lower_case:
            word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
        current = []
        for ch in word:
            if _is_punctuation(ch):
                if current:
                    words.append("".join(current))
                    current = []
                words.append(ch)
            else:
                current.append(ch)
        if current:
            words.append("".join(current))
    return words


class WordPiece:
    """An uncased BERT WordPiece tokenizer over a ``vocab.txt`` (one token per line)."""

    def __init__(self, vocab_path, lower_case=True, max_chars_per_word=100):
        tokens = Path(vocab_path).read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        self._setup(tokens, lower_case, max_chars_per_word, "[UNK]")

    @classmethod
    def from_tokens(cls, tokens, lower_case=True, max_chars_per_word=100, unk_token="[UNK]"):
        """The tokenizer of a vocabulary given as its tokens in id order."""
        self = cls.__new__(cls)
        self._setup(list(tokens), lower_case, max_chars_per_word, unk_token)
        return self

    def _setup(self, tokens, lower_case, max_chars_per_word, unk_token):
        self.vocab = {tok: i for i, tok in enumerate(tokens)}
        self.lower_case = lower_case
        self.max_chars = max_chars_per_word
        if unk_token not in self.vocab:
            raise ValueError(f"the vocabulary has no unknown token {unk_token!r}")
        self.unk = self.vocab[unk_token]
        self.cls, self.sep, self.pad = (self.vocab.get(t, self.unk) for t in ("[CLS]", "[SEP]", "[PAD]"))

    def _word_ids(self, word):
        if len(word) > self.max_chars:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return ids

    def encode(self, text, special_tokens=True):
        """Token ids of ``text`` ([CLS] ... [SEP] when ``special_tokens``)."""
        ids = [i for word in basic_tokenize(text, self.lower_case) for i in self._word_ids(word)]
        return [self.cls, *ids, self.sep] if special_tokens else ids

    def batch(self, texts, length):
        """(len(texts), length) int64 ids: each text encoded, truncated, padded with [PAD]."""
        out = np.full((len(texts), length), self.pad, dtype=np.int64)
        for row, text in zip(out, texts, strict=True):
            ids = self.encode(text)
            if len(ids) > length:
                ids = ids[: length - 1] + [self.sep]
            row[: len(ids)] = ids
        return out


def real_text_ids(batch, length, vocab_path=None):
    """(batch, length) ids of real English, packed with no padding: consecutive
    stdlib docstrings, each as [CLS] ... [SEP], cut into rows.

    ``vocab_path`` defaults to the vocabulary of the packaged all-MiniLM-L6-v2.
    """
    if vocab_path is None:
        from .models import minilm_dir

        vocab_path = minilm_dir() / "vocab.txt"
    tokenizer = WordPiece(vocab_path)
    need, stream = batch * length, []
    for doc in english_corpus():
        stream.extend(tokenizer.encode(doc))
        if len(stream) >= need:
            break
    if len(stream) < need:
        stream = (stream * (need // max(len(stream), 1) + 1))[:need]
    return np.asarray(stream[:need], dtype=np.int64).reshape(batch, length)


def english_corpus(min_chars=200, max_texts=None):
    """Real English prose that ships with Python: docstrings of the standard library's
    modules, classes and functions, read with ``ast`` (nothing is imported), in a fixed order."""
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef))]
        for node in nodes:
            doc = ast.get_docstring(node)
            if doc and len(doc) >= min_chars:
                texts.append(" ".join(doc.split()))
                if max_texts is not None and len(texts) >= max_texts:
                    return texts
    return texts
