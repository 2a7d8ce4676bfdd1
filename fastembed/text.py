"""Real text that ships with Python, and its token ids: the standard library's docstrings through
BERT's uncased WordPiece (fastembed.WordPiece over the packaged all-MiniLM-L6-v2 vocabulary), for
demos and benchmarks that need the statistics of real text."""

from pathlib import Path

import numpy as np


def real_text_ids(batch, length, vocab_path=None):
    """(batch, length) ids of real English, packed with no padding: consecutive
    stdlib docstrings, each as [CLS] ... [SEP], cut into rows.

    ``vocab_path`` defaults to the vocabulary of the packaged all-MiniLM-L6-v2.
    """
    if vocab_path is None:
        from .models import minilm_dir

        vocab_path = minilm_dir() / "vocab.txt"
    from ._wordpiece import WordPiece

    tokenizer = WordPiece.from_vocab(vocab_path)
    need, parts, have = batch * length, [], 0
    docs = english_corpus()
    for start in range(0, len(docs), 256):
        ids, _ = tokenizer.encode_batch(docs[start : start + 256], add_special_tokens=True)
        parts.append(ids)
        have += ids.size
        if have >= need:
            break
    stream = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    if stream.size < need:
        stream = np.resize(stream, need)
    return stream[:need].astype(np.int64).reshape(batch, length)


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


def real_sentences(n):
    """``n`` English sentences from the standard library's docstrings (stdlib only, fixed order)."""
    import re

    sentences = []
    for doc in english_corpus():
        sentences.extend(s for s in re.split(r"(?<=[.!?])\s+", doc) if len(s) > 20)
        if len(sentences) >= n:
            break
    return sentences[:n]
