"""Text -> ragged ids for StaticEmbedding: fastembed.WordPiece (the compiled kernel) for every
BERT WordPiece tokenizer, Hugging Face ``tokenizers`` for the rest. Both give (ids, offsets)
without special tokens, truncated at ``max_length`` tokens."""

import json
from pathlib import Path

import numpy as np

from ._ragged import as_ragged
from ._wordpiece import WordPiece


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


class CompiledWordPiece:
    """fastembed.WordPiece, truncating each text at ``max_length`` tokens."""

    def __init__(self, wordpiece, max_length):
        self.wordpiece = wordpiece
        self.max_length = max_length
        self.unk_id = wordpiece.unk_id
        self.vocab = {**wordpiece.vocab, **wordpiece.spec.added_tokens}
        self.name = "fastembed WordPiece"

    def ragged(self, texts):
        return self.wordpiece.encode_batch(texts, max_length=self.max_length)

    def save(self, path):
        self.wordpiece.save(path)


def as_tokenizer(tokenizer, max_length):
    """The adapter for a tokenizer given as a fastembed.WordPiece, a ``tokenizers.Tokenizer``
    (read into fastembed.WordPiece when it is a BERT WordPiece pipeline) or the path of a
    tokenizer.json or vocab.txt (a tokenizer.json that is not WordPiece needs ``tokenizers``)."""
    if isinstance(tokenizer, (HFTokenizer, CompiledWordPiece)):
        return tokenizer
    if isinstance(tokenizer, WordPiece):
        return CompiledWordPiece(tokenizer, max_length)
    if type(tokenizer).__module__.startswith("tokenizers"):
        try:
            return CompiledWordPiece(WordPiece.from_json(json.loads(tokenizer.to_str())), max_length)
        except NotImplementedError:
            return HFTokenizer(tokenizer, max_length)
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} does not exist")
        if path.suffix != ".json":
            return CompiledWordPiece(WordPiece.from_vocab(path), max_length)
        try:
            return CompiledWordPiece(WordPiece.from_file(path), max_length)
        except NotImplementedError as unsupported:
            try:
                import tokenizers
            except ImportError:
                raise NotImplementedError(f"{unsupported}; pip install tokenizers to read it") from None
            return HFTokenizer(tokenizers.Tokenizer.from_file(str(path)), max_length)
    raise TypeError(
        "tokenizer must be a fastembed.WordPiece, a tokenizers.Tokenizer, or the path of a "
        f"tokenizer.json or vocab.txt; got {type(tokenizer).__name__}"
    )


def median_token_length(vocab):
    """model2vec's character budget per token: the median length of the vocabulary's tokens."""
    return int(np.median([len(token) for token in vocab])) if vocab else 1
