"""Text -> ragged ids for StaticEmbedding: Hugging Face ``tokenizers`` where installed, the package's
own WordPiece (fastembed.text) otherwise. Both give (ids, offsets) without special tokens."""

import json
from pathlib import Path

import numpy as np

from ._ragged import as_ragged
from .text import WordPiece


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` (a private copy: no padding, truncation at ``max_length``)."""

    def __init__(self, tokenizer, max_length):
        import tokenizers

        self.tokenizer = tokenizers.Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        if max_length is None:
            self.tokenizer.no_truncation()
        else:
            self.tokenizer.enable_truncation(max_length)
        model = json.loads(self.tokenizer.to_str())["model"]
        unk = model.get("unk_token")
        self.unk_id = None if unk is None else self.tokenizer.token_to_id(unk)
        self.vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        self.name = f"tokenizers {model.get('type', '?')}"

    def ragged(self, texts):
        return as_ragged(self.tokenizer.encode_batch_fast(texts, add_special_tokens=False))

    def save(self, path):
        self.tokenizer.save(str(path))


class OwnWordPiece:
    """fastembed.text.WordPiece (Python, slower), truncating each text at ``max_length`` tokens."""

    def __init__(self, wordpiece, max_length):
        self.wordpiece = wordpiece
        self.max_length = max_length
        self.unk_id = wordpiece.unk
        self.vocab = wordpiece.vocab
        self.name = "fastembed WordPiece (Python)"

    def ragged(self, texts):
        limit = self.max_length
        return as_ragged([self.wordpiece.encode(t, special_tokens=False)[:limit] for t in texts])

    def save(self, path):
        tokens = sorted(self.vocab, key=self.vocab.get)
        Path(path).write_text(json.dumps(bert_tokenizer_json(tokens, self.wordpiece.lower_case)), encoding="utf-8")


def bert_tokenizer_json(tokens, lower_case=True):
    """A Hugging Face tokenizer.json of a BERT WordPiece vocabulary (what BertTokenizerFast writes)."""
    vocab = {tok: i for i, tok in enumerate(tokens)}
    special = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t in vocab]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": vocab[t],
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for t in special
        ],
        "normalizer": {
            "type": "BertNormalizer",
            "clean_text": True,
            "handle_chinese_chars": True,
            "strip_accents": None,
            "lowercase": lower_case,
        },
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {
            "type": "WordPiece",
            "unk_token": "[UNK]",
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": vocab,
        },
    }


def wordpiece_from_json(path):
    """fastembed.text.WordPiece of a tokenizer.json with a BERT WordPiece model and normalizer;
    NotImplementedError naming what it uses otherwise."""
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    model, normalizer = spec.get("model") or {}, spec.get("normalizer") or {}
    if model.get("type") != "WordPiece":
        raise NotImplementedError(
            f"{path}: a {model.get('type')} model needs the tokenizers package (pip install tokenizers); "
            "fastembed's own tokenizer reads WordPiece"
        )
    if normalizer.get("type") != "BertNormalizer":
        raise NotImplementedError(
            f"{path}: the {normalizer.get('type')} normalizer needs the tokenizers package (pip install tokenizers)"
        )
    vocab = model["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    return WordPiece.from_tokens(
        tokens,
        lower_case=bool(normalizer.get("lowercase", True)),
        max_chars_per_word=int(model.get("max_input_chars_per_word", 100)),
        unk_token=model.get("unk_token", "[UNK]"),
    )


def as_tokenizer(tokenizer, max_length):
    """The adapter for a tokenizer given as a ``tokenizers.Tokenizer``, a fastembed.text.WordPiece,
    a path to a tokenizer.json (HF tokenizers where installed) or to a vocab.txt."""
    if isinstance(tokenizer, (HFTokenizer, OwnWordPiece)):
        return tokenizer
    if isinstance(tokenizer, WordPiece):
        return OwnWordPiece(tokenizer, max_length)
    if type(tokenizer).__module__.startswith("tokenizers"):
        return HFTokenizer(tokenizer, max_length)
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} does not exist")
        if path.suffix == ".json":
            try:
                import tokenizers
            except ImportError:
                return OwnWordPiece(wordpiece_from_json(path), max_length)
            return HFTokenizer(tokenizers.Tokenizer.from_file(str(path)), max_length)
        return OwnWordPiece(WordPiece(path), max_length)
    raise TypeError(
        "tokenizer must be a tokenizers.Tokenizer, a fastembed.text.WordPiece, or the path of a "
        f"tokenizer.json or vocab.txt; got {type(tokenizer).__name__}"
    )


def median_token_length(vocab):
    """model2vec's character budget per token: the median length of the vocabulary's tokens."""
    return int(np.median([len(token) for token in vocab])) if vocab else 1
