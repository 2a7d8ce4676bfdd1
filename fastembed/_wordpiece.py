"""fastembed.WordPiece: a BERT WordPiece tokenizer on a compiled kernel, giving the ids Hugging
Face ``tokenizers`` gives, as the ragged (ids, offsets) form the pooled lookup takes."""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from . import _unicode_tables, _wordpiece_exact
from . import _validation as v
from ._threads import resolve

BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BLOCK_BYTES = 1 << 25  # texts per kernel call: Ctrl-C is honoured between calls
MAX_CHARS_LIMIT = 1 << 20  # max_input_chars_per_word: the kernel keeps a word buffer of 4x this per thread


def _max_chars(value):
    return v.as_integer(value, "max_input_chars_per_word", low=1, high=MAX_CHARS_LIMIT)


@dataclass(frozen=True)
class WordPieceSpec:
    """Everything that decides the ids: vocabulary, normalizer options, added and special tokens."""

    vocab: dict
    unk_id: int
    clean_text: bool = True
    handle_chinese_chars: bool = True
    strip_accents: bool = True
    lowercase: bool = True
    prefix: str = "##"
    max_chars: int = 100
    added_tokens: dict = field(default_factory=dict)  # content -> id, matched on the raw text
    prefix_ids: tuple = ()  # special tokens around every text when add_special_tokens=True
    suffix_ids: tuple = ()


class WordPiece:
    """A BERT-style WordPiece tokenizer (BertNormalizer, BertPreTokenizer, WordPiece model).

    Build it with :meth:`from_file` (a Hugging Face tokenizer.json), :meth:`from_vocab`
    (a vocab.txt) or :meth:`from_tokens`. Identical ids to ``tokenizers`` (see
    ``tests/test_wordpiece.py``): the per-code-point tables follow the Unicode versions
    tokenizers was built with (fastembed/_unicode_tables.py).
    """

    def __init__(self, spec: WordPieceSpec):
        self.spec = spec
        self._kernel_inputs = None

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_file(cls, path) -> "WordPiece":
        """The tokenizer a tokenizer.json describes (NotImplementedError naming what it uses
        that is not a BERT WordPiece pipeline: another model, normalizer, pre-tokenizer or
        post-processor, added tokens with lstrip / rstrip / single_word / normalized)."""
        path = Path(path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: not a readable tokenizer.json ({error})") from None
        return cls.from_json(spec, name=str(path))

    @classmethod
    def from_json(cls, spec: dict, name: str = "tokenizer.json") -> "WordPiece":
        """The tokenizer of a parsed tokenizer.json (see :meth:`from_file`)."""
        if not isinstance(spec, dict):
            raise ValueError(f"{name}: a tokenizer.json holds a JSON object, got {type(spec).__name__}")
        model = spec.get("model") or {}
        if model.get("type") != "WordPiece":
            raise NotImplementedError(
                f"{name}: a {model.get('type')} model; fastembed.WordPiece reads WordPiece models "
                "(use the tokenizers package for others)"
            )
        normalizer = _normalizer_options(spec.get("normalizer"), name)
        pre = spec.get("pre_tokenizer")
        if (pre or {}).get("type") != "BertPreTokenizer":
            raise NotImplementedError(f"{name}: pre-tokenizer {pre and pre.get('type')}; only BertPreTokenizer")
        vocab = model.get("vocab")
        if not isinstance(vocab, dict) or not all(isinstance(i, int) and i >= 0 for i in vocab.values()):
            raise ValueError(f"{name}: model.vocab must map tokens to ids >= 0")
        unk = model.get("unk_token", "[UNK]")
        if unk not in vocab:
            raise ValueError(f"{name}: the unknown token {unk!r} is not in the vocabulary")
        added = {}
        for token in spec.get("added_tokens") or []:
            flags = [key for key in ("single_word", "lstrip", "rstrip", "normalized") if token.get(key)]
            if flags:
                raise NotImplementedError(f"{name}: added token {token.get('content')!r} with {', '.join(flags)}")
            added[token["content"]] = int(token["id"])
        prefix_ids, suffix_ids = _special_template(spec.get("post_processor"), {**vocab, **added}, name)
        return cls(
            WordPieceSpec(
                vocab=dict(vocab),
                unk_id=int(vocab[unk]),
                prefix=model.get("continuing_subword_prefix", "##"),
                max_chars=_max_chars(model.get("max_input_chars_per_word", 100)),
                added_tokens=added,
                prefix_ids=prefix_ids,
                suffix_ids=suffix_ids,
                **normalizer,
            )
        )

    @classmethod
    def from_vocab(cls, path, lowercase: bool = True, **options) -> "WordPiece":
        """The tokenizer ``BertTokenizerFast(vocab_file=path, do_lower_case=lowercase)`` builds
        from a vocab.txt (one token per line, the line number is the id); ``options`` as in
        :meth:`from_tokens`."""
        text = Path(path).read_text(encoding="utf-8")
        tokens = text.split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        return cls.from_tokens(tokens, lowercase=lowercase, **options)

    @classmethod
    def from_tokens(
        cls,
        tokens: Sequence[str],
        lowercase: bool = True,
        *,
        strip_accents: bool | None = None,
        clean_text: bool = True,
        handle_chinese_chars: bool = True,
        unk_token: str = "[UNK]",
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        special_tokens: Sequence[str] = BERT_SPECIAL_TOKENS,
        max_input_chars_per_word: int = 100,
    ) -> "WordPiece":
        """The tokenizer of a vocabulary given as its tokens in id order. The special tokens
        present in it are matched in the raw text (as tokenizers does); with
        add_special_tokens=True every text becomes [CLS] ... [SEP]."""
        vocab = {token: i for i, token in enumerate(tokens)}  # a repeated token keeps its last id, as tokenizers
        if unk_token not in vocab:
            raise ValueError(f"the vocabulary has no unknown token {unk_token!r}")
        specials = [cls_token, sep_token] if cls_token in vocab and sep_token in vocab else []
        return cls(
            WordPieceSpec(
                vocab=vocab,
                unk_id=vocab[unk_token],
                clean_text=bool(clean_text),
                handle_chinese_chars=bool(handle_chinese_chars),
                strip_accents=bool(lowercase if strip_accents is None else strip_accents),
                lowercase=bool(lowercase),
                max_chars=_max_chars(max_input_chars_per_word),
                added_tokens={t: vocab[t] for t in special_tokens if t in vocab},
                prefix_ids=tuple(vocab[t] for t in specials[:1]),
                suffix_ids=tuple(vocab[t] for t in specials[1:]),
            )
        )

    # ---------------------------------------------------------------- properties

    @property
    def vocab(self) -> dict:
        """token -> id."""
        return self.spec.vocab

    @property
    def unk_id(self) -> int:
        return self.spec.unk_id

    @property
    def lowercase(self) -> bool:
        return self.spec.lowercase

    def token_to_id(self, token: str) -> int | None:
        return self.spec.added_tokens.get(token, self.spec.vocab.get(token))

    def to_json(self) -> dict:
        """A tokenizer.json dict (what BertTokenizerFast writes) that tokenizers loads to the same ids."""
        s = self.spec
        id_to_token = {i: t for t, i in s.vocab.items()}
        specials = [id_to_token[i] for i in (*s.prefix_ids, *s.suffix_ids)]
        single = [{"SpecialToken": {"id": t, "type_id": 0}} for t in specials[: len(s.prefix_ids)]]
        single.append({"Sequence": {"id": "A", "type_id": 0}})
        single += [{"SpecialToken": {"id": t, "type_id": 0}} for t in specials[len(s.prefix_ids) :]]
        template = None
        if specials:
            template = {
                "type": "TemplateProcessing",
                "single": single,
                "pair": single
                + [{"Sequence": {"id": "B", "type_id": 1}}]
                + [{"SpecialToken": {"id": t, "type_id": 1}} for t in specials[len(s.prefix_ids) :]],
                "special_tokens": {t: {"id": t, "ids": [s.vocab[t]], "tokens": [t]} for t in specials},
            }
        return {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [
                {
                    "id": i,
                    "content": t,
                    "single_word": False,
                    "lstrip": False,
                    "rstrip": False,
                    "normalized": False,
                    "special": True,
                }
                for t, i in sorted(s.added_tokens.items(), key=lambda item: item[1])
            ],
            "normalizer": {
                "type": "BertNormalizer",
                "clean_text": s.clean_text,
                "handle_chinese_chars": s.handle_chinese_chars,
                "strip_accents": s.strip_accents,
                "lowercase": s.lowercase,
            },
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": template,
            "decoder": {"type": "WordPiece", "prefix": s.prefix, "cleanup": True},
            "model": {
                "type": "WordPiece",
                "unk_token": id_to_token[s.unk_id],
                "continuing_subword_prefix": s.prefix,
                "max_input_chars_per_word": s.max_chars,
                "vocab": s.vocab,
            },
        }

    def save(self, path) -> None:
        """Write :meth:`to_json` as a tokenizer.json."""
        Path(path).write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")

    # ---------------------------------------------------------------- encoding

    def encode(
        self, text: str, *, add_special_tokens: bool = False, max_length: int | None = None
    ) -> NDArray[np.int32]:
        """Ids of one text, int32 (see :meth:`encode_batch`)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids, _ = self.encode_batch([text], add_special_tokens=add_special_tokens, max_length=max_length)
        return ids

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        add_special_tokens: bool = False,
        max_length: int | None = None,
        n_threads: int | None = None,
    ) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
        """Token ids of every text as (ids, offsets): text b's ids are ``ids[offsets[b]:offsets[b + 1]]``.

        Parameters
        ----------
        texts : sequence of str
        add_special_tokens : bool
            Wrap every text in the post-processor's special tokens ([CLS] ... [SEP] for BERT).
        max_length : int, optional
            Keep at most max_length ids per text, special tokens included (tokenizers'
            truncation: the text's own ids are cut).
        n_threads : int, optional
            OpenMP threads over texts (default: fastembed's thread count).

        Returns
        -------
        ids : ndarray (N,), int32
        offsets : ndarray (len(texts) + 1,), int64
        """
        texts = _as_texts(texts)
        specials = len(self.spec.prefix_ids) + len(self.spec.suffix_ids) if add_special_tokens else 0
        budget = -1
        if max_length is not None:
            max_length = v.as_integer(max_length, "max_length")
            if max_length < specials:
                raise ValueError(f"max_length {max_length} leaves no room for the {specials} special tokens")
            budget = max_length - specials
        encoded = _utf8(texts)
        kernel = _kernel()
        if kernel is None:
            pieces = [_wordpiece_exact.encode(t, self.spec, add_special_tokens, max_length) for t in texts]
            return _concatenate(pieces, len(texts))
        counts = np.empty(len(texts), np.int64)
        chunks, start = [], 0
        for stop in _blocks(encoded):
            chunks.append(
                self._run(kernel, encoded[start:stop], counts[start:stop], add_special_tokens, budget, n_threads)
            )
            start = stop
        ids = np.concatenate(chunks) if len(chunks) != 1 else chunks[0]
        exact = np.flatnonzero(counts < 0)
        if exact.size:
            return self._with_exact(ids, counts, exact, texts, add_special_tokens, max_length)
        offsets = np.zeros(len(texts) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        return ids, offsets

    def _run(self, kernel, encoded, counts, add_special_tokens, budget, n_threads):
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        starts = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum(lengths, out=starts[1:])
        buffer = np.frombuffer(b"".join(encoded) + b"\0", np.uint8)
        k = self._inputs()
        prefix, suffix = (k["prefix"], k["suffix"]) if add_special_tokens else (k["none"], k["none"])
        # a byte of text costs about what 8 elements of a memory-bound pass do (~13 ns measured)
        n_threads = kernel.for_work(resolve(n_threads), int(starts[-1]) * 8)
        return kernel.encode_batch(
            buffer,
            starts,
            counts,
            *k["tables"],
            *k["whole"],
            *k["continuation"],
            *k["added"],
            self.spec.unk_id,
            self.spec.max_chars,
            prefix,
            suffix,
            budget,
            n_threads,
        )

    def _with_exact(self, ids, counts, exact, texts, add_special_tokens, max_length):
        """Splice in the ids of the texts the kernel handed back (canonical reordering)."""
        lengths = counts.copy()
        lengths[exact] = 0
        bounds = np.zeros(len(texts) + 1, np.int64)
        np.cumsum(lengths, out=bounds[1:])
        pieces = [ids[bounds[i] : bounds[i + 1]] for i in range(len(texts))]
        for i in exact.tolist():
            pieces[i] = np.asarray(
                _wordpiece_exact.encode(texts[i], self.spec, add_special_tokens, max_length), np.int32
            )
        return _concatenate(pieces, len(texts))

    def _inputs(self):
        if self._kernel_inputs is None:
            self._kernel_inputs = _kernel_inputs(self.spec)
        return self._kernel_inputs

    def __repr__(self):
        s = self.spec
        return f"WordPiece(vocab={len(s.vocab)}, lowercase={s.lowercase}, strip_accents={s.strip_accents})"


def _normalizer_options(normalizer, name):
    if normalizer is None:
        return dict(clean_text=False, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    if normalizer.get("type") != "BertNormalizer":
        raise NotImplementedError(f"{name}: normalizer {normalizer.get('type')}; only BertNormalizer")
    lowercase = bool(normalizer.get("lowercase", True))
    strip = normalizer.get("strip_accents")
    return dict(
        clean_text=bool(normalizer.get("clean_text", True)),
        handle_chinese_chars=bool(normalizer.get("handle_chinese_chars", True)),
        strip_accents=lowercase if strip is None else bool(strip),
        lowercase=lowercase,
    )


def _special_template(post, vocab, name):
    """(ids before, ids after) the text that the post-processor adds to a single sequence."""
    if post is None:
        return (), ()
    kind = post.get("type")
    if kind == "BertProcessing":
        return (int(post["cls"][1]),), (int(post["sep"][1]),)
    if kind != "TemplateProcessing":
        raise NotImplementedError(f"{name}: post-processor {kind}; only TemplateProcessing and BertProcessing")
    before, after, seen = [], [], False
    specials = post.get("special_tokens") or {}
    for item in post.get("single") or []:
        if "Sequence" in item:
            seen = True
            continue
        token = item["SpecialToken"]["id"]
        ids = specials.get(token, {}).get("ids") or ([vocab[token]] if token in vocab else None)
        if ids is None:
            raise ValueError(f"{name}: special token {token!r} of the post-processor has no id")
        (after if seen else before).extend(int(i) for i in ids)
    return tuple(before), tuple(after)


def _as_texts(texts):
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of str; for one text use encode(text)")
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a sequence of str, got {type(texts).__name__}") from None
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str, got {type(text).__name__}")
    return texts


def _utf8(texts):
    try:
        return [t.encode("utf-8") for t in texts]
    except UnicodeEncodeError:
        for i, t in enumerate(texts):
            try:
                t.encode("utf-8")
            except UnicodeEncodeError as error:
                raise TypeError(f"texts[{i}] is not valid Unicode text ({error.reason} at {error.start})") from None
        raise


def _blocks(encoded):
    """Ends of consecutive runs of texts of about BLOCK_BYTES each."""
    ends, size = [], 0
    for i, text in enumerate(encoded):
        size += len(text)
        if size >= BLOCK_BYTES:
            ends.append(i + 1)
            size = 0
    if not ends or ends[-1] != len(encoded):
        ends.append(len(encoded))
    return ends


def _concatenate(pieces, n):
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum([len(p) for p in pieces], out=offsets[1:])
    ids = np.concatenate([np.asarray(p, np.int32) for p in pieces]) if pieces else np.zeros(0, np.int32)
    return ids.astype(np.int32, copy=False), offsets


def _kernel():
    """The Cython kernel set when it carries the tokenizer's kernel, else None."""
    from . import backends

    k = backends.kernels("cython") if "cython" in backends.available() else None
    return k if k is not None and k.wordpiece is not None else None


def _vocab_table(items):
    """(keys, key_start, slots, ids, longest key in characters) of (token, id) pairs."""
    from . import backends

    k = backends.kernels("cython")
    encoded = [token.encode("utf-8") for token, _ in items]
    keys = np.frombuffer(b"".join(encoded) + b"\0", np.uint8)
    key_start = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(e) for e in encoded], out=key_start[1:])
    slots = np.full(1 << max(4, (2 * len(encoded) + 1).bit_length()), -1, np.int32)
    k.build_slots(keys, key_start, slots)
    ids = np.asarray([i for _, i in items], np.int32)
    return keys, key_start, slots, ids, max((len(t) for t, _ in items), default=0)


def _kernel_inputs(spec):
    flags, map_offset, map_pool = _unicode_tables.char_tables(
        spec.clean_text, spec.handle_chinese_chars, spec.strip_accents, spec.lowercase
    )
    if map_pool.size == 0:
        map_pool = np.zeros(1, np.int32)
    continuation = [
        (t[len(spec.prefix) :], i)
        for t, i in spec.vocab.items()
        if t.startswith(spec.prefix) and len(t) > len(spec.prefix)
    ]
    by_length = sorted(spec.added_tokens.items(), key=lambda item: -len(item[0].encode("utf-8")))
    added = [t.encode("utf-8") for t, _ in by_length]
    added_start = np.zeros(len(added) + 1, np.int64)
    np.cumsum([len(a) for a in added], out=added_start[1:])
    return {
        "tables": (flags, map_offset, map_pool),
        "whole": _vocab_table(list(spec.vocab.items())),
        "continuation": _vocab_table(continuation),
        "added": (
            np.frombuffer(b"".join(added) + b"\0", np.uint8),
            added_start,
            np.asarray([i for _, i in by_length], np.int32),
        ),
        "prefix": np.asarray(spec.prefix_ids, np.int32),
        "suffix": np.asarray(spec.suffix_ids, np.int32),
        "none": np.zeros(0, np.int32),
    }
