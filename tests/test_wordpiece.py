"""fastembed.WordPiece against Hugging Face tokenizers: every code point through the normalizer and
pre-tokenizer tables, real corpora (the standard library's docstrings, licence texts, a
multilingual sample), hypothesis-generated Unicode, special tokens and truncation, the exact
Python path, threads, and what is refused."""

import functools
import json
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastembed as fe
from fastembed import _unicode_tables as u
from fastembed import _wordpiece, _wordpiece_exact
from fastembed.models import minilm_dir
from fastembed.text import english_corpus

tokenizers = pytest.importorskip("tokenizers")

MINILM = minilm_dir() / "tokenizer.json"

MULTILINGUAL = [
    "Ünïcödé façade naïve café — résumé, jalapeño, Ångström, Øresund, ß, Œuvre",
    "İstanbul IĞDIR ıi Σίσυφος ΣΑΣ ὈΔΥΣΣΕΎΣ final σ ς",
    "中文字符测试，日本語のテキスト、한국어 텍스트입니다 각 갂 ㄱㅏ",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３ ﬁ ﬂ ﬃ Ⅻ ① ㎏",
    "emoji 😀👍🏽👨‍👩‍👧‍👦 🇩🇪 ❤️ ✈︎ 🥰",
    "control \x00\x01\x07\x0b\x0c\x1b\x7f\x85\u200b\u200d\u2028\u2029\ufeff\ufffd end",
    "combining a\u0301e\u0300o\u0302u\u0308 n\u0303\u0323 q\u0307\u0323 \u0301\u0301 Z\u0336a\u0337l\u0338g\u0489o",
    "Arabic العربية مُحَمَّد Hebrew עִבְרִית Devanagari हिन्दी Thai ภาษาไทย Tamil தமிழ்",
    "whitespace\u00a0nbsp\u2003em\u3000ideographic\u1680ogham\u202fnarrow\ttab\nnewline\r\n",
    "punct ¿¡«»‹›„“”‘’‚…‰′″‴※‼⁇⁈⁉ — – ‐ ‒ § ¶ † ‡ • ‣ $+<=>^`|~ ¢£¥€",
    "longword " + "x" * 99 + " " + "y" * 100 + " " + "z" * 101 + " " + "antidisestablishmentarianism" * 5,
    "[CLS] [SEP][MASK][PAD][UNK] [mask] [CLS][CLS] x[SEP]y [ SEP ]",
    "private \ue000\uf8ff\U000f0000 unassigned \u0378\U0001fffe new \u0890 \u1734 \u1885 \u166d \U000111c9",
    "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐀𝐁𝐂 ∑∫∂√∞≠≤≥ ⟨x⟩",
    "",
    "   \t\n  ",
]


@pytest.fixture(scope="module")
def ours():
    return fe.WordPiece.from_file(MINILM)


@pytest.fixture(scope="module")
def hf():
    return hf_tokenizer(json.loads(MINILM.read_text()))


def hf_tokenizer(spec):
    tokenizer = tokenizers.Tokenizer.from_str(json.dumps(spec))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def variant(lowercase, strip_accents, clean_text=True, handle_chinese_chars=True):
    """MiniLM's vocabulary under other normalizer options: (fastembed, tokenizers)."""
    spec = json.loads(MINILM.read_text())
    spec["normalizer"] = {
        "type": "BertNormalizer",
        "clean_text": clean_text,
        "handle_chinese_chars": handle_chinese_chars,
        "strip_accents": strip_accents,
        "lowercase": lowercase,
    }
    return fe.WordPiece.from_json(spec), hf_tokenizer(spec)


def assert_same_ids(wordpiece, tokenizer, texts, **kwargs):
    ids, offsets = wordpiece.encode_batch(texts, **kwargs)
    assert ids.dtype == np.int32 and offsets.dtype == np.int64 and offsets.shape == (len(texts) + 1,)
    special = kwargs.get("add_special_tokens", False)
    if kwargs.get("max_length") is not None:
        tokenizer.enable_truncation(kwargs["max_length"])
    try:
        theirs = [e.ids for e in tokenizer.encode_batch_fast(texts, add_special_tokens=special)]
    finally:
        tokenizer.no_truncation()
    lengths = np.array([len(t) for t in theirs], np.int64)
    flat = np.fromiter((i for t in theirs for i in t), np.int64, int(lengths.sum()))
    if np.array_equal(np.diff(offsets), lengths) and np.array_equal(ids, flat):
        return
    for i, expected in enumerate(theirs):
        got = ids[offsets[i] : offsets[i + 1]].tolist()
        assert got == expected, (i, texts[i][:200], got[:20], expected[:20])


# ---------------------------------------------------------------- every code point


@pytest.mark.parametrize(
    "options",
    [(True, True, True, True), (True, True, False, False), (False, False, True, True)],
    ids=["uncased", "cased", "no-clean-no-cjk"],
)
def test_every_code_point_normalizes_as_tokenizers(options):
    clean, cjk, strip, lower = options
    normalizer = tokenizers.normalizers.BertNormalizer(
        clean_text=clean, handle_chinese_chars=cjk, strip_accents=strip, lowercase=lower
    )
    flags, map_offset, pool = u.char_tables(*options)
    mismatches = []
    for cp in range(u.N_CODE_POINTS):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        f = flags[cp]
        if f & u.REMOVE:
            expected = ""
        elif f & u.TO_SPACE:
            expected = " "
        else:
            body = [cp] if not f & u.MAPPED else pool[map_offset[cp] + 1 : map_offset[cp] + 1 + pool[map_offset[cp]]]
            expected = "".join(map(chr, body))
            expected = f" {expected} " if f & u.CJK else expected
        if normalizer.normalize_str(chr(cp)) != expected:
            mismatches.append(hex(cp))
    assert not mismatches, mismatches[:20]


def test_every_code_point_pre_tokenizes_as_tokenizers():
    pre = tokenizers.pre_tokenizers.BertPreTokenizer()
    flags, _, _ = u.char_tables()
    mismatches = []
    for cp in range(u.N_CODE_POINTS):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        words = [w for w, _ in pre.pre_tokenize_str("a" + chr(cp) + "b")]
        kind = {2: "space", 3: "punct", 1: "char"}[len(words)]
        ours = "space" if flags[cp] & u.SPACE else "punct" if flags[cp] & u.PUNCT else "char"
        if kind != ours:
            mismatches.append((hex(cp), kind, ours))
    assert not mismatches, mismatches[:20]


# ---------------------------------------------------------------- corpora


def licence_texts():
    paths = sorted(Path("/usr/share/common-licenses").glob("*")) + [
        Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt"
    ]
    texts = []
    for path in paths:
        try:
            texts.extend(p for p in path.read_text(encoding="utf-8", errors="replace").split("\n\n") if p.strip())
        except (OSError, IsADirectoryError):
            continue
    return texts


@functools.lru_cache(maxsize=1)
def stdlib_docstrings():
    """Every docstring of every module, class and function of the standard library, as written."""
    import ast
    import warnings

    root, docs = Path(sysconfig.get_paths()["stdlib"]), []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.relative_to(root).parts:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # invalid escapes in old modules
                tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        for node in [tree, *ast.walk(tree)]:
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    docs.append(doc)
    return tuple(docs)


def test_standard_library_docstrings(ours, hf):
    docs = list(stdlib_docstrings())
    assert len(docs) > 10_000
    assert_same_ids(ours, hf, docs)
    cased = variant(False, False)
    assert_same_ids(*cased, docs)


def test_licence_texts(ours, hf):
    texts = licence_texts()
    assert texts, "no licence text found"
    assert_same_ids(ours, hf, texts)


@pytest.mark.parametrize(
    "options",
    [(True, None), (False, False), (True, False), (False, True)],
    ids=["uncased", "cased", "lower-keep-accents", "strip-keep-case"],
)
def test_multilingual_sample(options):
    wordpiece, tokenizer = variant(*options)
    assert_same_ids(wordpiece, tokenizer, MULTILINGUAL)
    assert_same_ids(wordpiece, tokenizer, MULTILINGUAL, add_special_tokens=True)
    for max_length in (2, 3, 7, 64):
        assert_same_ids(wordpiece, tokenizer, MULTILINGUAL, add_special_tokens=True, max_length=max_length)
    assert_same_ids(wordpiece, tokenizer, MULTILINGUAL, max_length=5)
    wordpiece_raw, tokenizer_raw = variant(*options, clean_text=False, handle_chinese_chars=False)
    assert_same_ids(wordpiece_raw, tokenizer_raw, MULTILINGUAL)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(min_size=0, max_size=60), min_size=1, max_size=8))
def test_hypothesis_unicode_uncased(texts):
    assert_same_ids(_uncased[0], _uncased[1], texts)
    assert_same_ids(_uncased[0], _uncased[1], texts, add_special_tokens=True, max_length=9)


@settings(max_examples=250, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=60), min_size=1, max_size=8))
def test_hypothesis_unicode_cased(texts):
    assert_same_ids(_cased[0], _cased[1], texts)


_uncased = (fe.WordPiece.from_file(MINILM), hf_tokenizer(json.loads(MINILM.read_text())))
_cased = variant(False, False)


def test_exact_python_path_is_the_same_tokenizer(ours, hf):
    texts = MULTILINGUAL + english_corpus(min_chars=1)[:500]
    expected = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    assert [_wordpiece_exact.encode(t, ours.spec) for t in texts] == expected


def test_without_the_kernel_the_exact_path_runs(ours, hf, monkeypatch):
    monkeypatch.setattr(_wordpiece, "_kernel", lambda: None)
    assert_same_ids(ours, hf, MULTILINGUAL, add_special_tokens=True, max_length=12)


def test_canonical_reordering_of_surviving_marks():
    """Musical combining marks (Mc, combining classes 216 and 226) survive the accent strip, and
    NFD puts them in class order: the kernel hands such text to the exact path."""
    word = "a\U0001d165\U0001d16d"  # canonical order
    tokens = ["[UNK]", "[CLS]", "[SEP]", "b", word]
    wordpiece = fe.WordPiece.from_tokens(tokens)
    tokenizer = hf_tokenizer(wordpiece.to_json())
    texts = ["a\U0001d16d\U0001d165 b", word, "b a\u0301\U0001d16d\u0323\U0001d165"]
    assert_same_ids(wordpiece, tokenizer, texts)
    assert wordpiece.encode(texts[0]).tolist() == [4, 3]


# ---------------------------------------------------------------- API


def test_from_vocab_and_to_json_round_trip(ours, hf):
    from_vocab = fe.WordPiece.from_vocab(minilm_dir() / "vocab.txt")
    assert from_vocab.spec == ours.spec
    again = hf_tokenizer(ours.to_json())
    assert_same_ids(ours, again, MULTILINGUAL, add_special_tokens=True)


def test_encode_one_and_empty_batches(ours, hf):
    assert ours.encode("Hello, world!").tolist() == hf.encode("Hello, world!", add_special_tokens=False).ids
    assert ours.encode("Hello", add_special_tokens=True).tolist() == [101, 7592, 102]
    ids, offsets = ours.encode_batch([])
    assert ids.shape == (0,) and offsets.tolist() == [0]
    ids, offsets = ours.encode_batch(np.array(["a b", "c"]))
    assert offsets.tolist() == [0, 2, 3]


@pytest.mark.parametrize("n_threads", [1, 2, 3, 10**6])
def test_ids_do_not_depend_on_the_thread_count(ours, n_threads):
    docs = english_corpus(min_chars=1)[:4000]
    expected = ours.encode_batch(docs, n_threads=1)
    got = ours.encode_batch(docs, n_threads=n_threads)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_blocks_of_texts_join_up(ours, monkeypatch):
    docs = english_corpus(min_chars=1)[:2000]
    expected = ours.encode_batch(docs)
    monkeypatch.setattr(_wordpiece, "BLOCK_BYTES", 1000)
    got = ours.encode_batch(docs)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


@pytest.mark.parametrize(
    "texts,kwargs,exc,match",
    [
        ("one string", {}, TypeError, "sequence of str"),
        (["a", b"bytes"], {}, TypeError, r"texts\[1\] must be a str"),
        (["a", None], {}, TypeError, r"texts\[1\]"),
        (["ok", "lone \ud800 surrogate"], {}, TypeError, r"texts\[1\] is not valid Unicode"),
        (["a"], {"max_length": 1, "add_special_tokens": True}, ValueError, "no room"),
        (["a"], {"max_length": 2.5}, TypeError, "max_length"),
        (42, {}, TypeError, "sequence of str"),
    ],
)
def test_bad_texts(ours, texts, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ours.encode_batch(texts, **kwargs)


def _spec(**changes):
    spec = json.loads(MINILM.read_text())
    for key, value in changes.items():
        spec[key] = value
    return spec


@pytest.mark.parametrize(
    "spec,match",
    [
        (_spec(model={"type": "BPE", "vocab": {}, "merges": []}), "BPE model"),
        (_spec(model={"type": "Unigram", "vocab": []}), "Unigram model"),
        (_spec(normalizer={"type": "Sequence", "normalizers": []}), "normalizer Sequence"),
        (_spec(pre_tokenizer={"type": "Whitespace"}), "pre-tokenizer Whitespace"),
        (_spec(post_processor={"type": "RobertaProcessing"}), "post-processor RobertaProcessing"),
        (_spec(added_tokens=[{"id": 5, "content": "<x>", "lstrip": True}]), "lstrip"),
        (_spec(added_tokens=[{"id": 5, "content": "<x>", "normalized": True}]), "normalized"),
    ],
)
def test_unsupported_tokenizer_json_is_named(spec, match):
    with pytest.raises(NotImplementedError, match=match):
        fe.WordPiece.from_json(spec)


def test_bad_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a readable tokenizer.json"):
        fe.WordPiece.from_file(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="unknown token"):
        fe.WordPiece.from_tokens(["a", "b"])
    for bad in (0, -5, 2**40):
        with pytest.raises(ValueError, match="max_input_chars_per_word must be in"):
            fe.WordPiece.from_tokens(["[UNK]"], max_input_chars_per_word=bad)
    spec = _spec()
    spec["model"] = dict(spec["model"], unk_token="<unk>")
    with pytest.raises(ValueError, match="unknown token '<unk>'"):
        fe.WordPiece.from_json(spec)


def test_static_embedding_runs_without_tokenizers():
    import subprocess

    code = (
        "import sys; sys.modules['tokenizers'] = None\n"
        "import numpy as np, fastembed as fe\n"
        f"m = fe.StaticEmbedding({str(MINILM)!r}, np.ones((30522, 4), np.float32))\n"
        "print(repr(m)); print(m.encode(['hello world', 'Ünïcödé']).shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert "fastembed WordPiece" in result.stdout and "(2, 4)" in result.stdout
