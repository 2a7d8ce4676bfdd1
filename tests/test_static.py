"""StaticEmbedding: model2vec's format and vectors, both tokenizers, distillation, the CLI."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastembed as fe
from fastembed import reference
from fastembed.text import real_sentences

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "",
    "Naïve café owners déjà vu: 東京 and emoji 🙂 stay unknown or split!",
    "x" * 5000,  # longer than the character budget
    "Return a new array of given shape and type, without initializing entries.",
]


@pytest.fixture(scope="module")
def static_folder(tmp_path_factory, minilm_dir):
    """A model2vec-format folder: MiniLM's tokenizer, a random 30522 x 24 table, weights."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("m2v")
    shutil.copy(minilm_dir / "tokenizer.json", folder / "tokenizer.json")
    table = rng.standard_normal((30522, 24)).astype(np.float32)
    weights = rng.uniform(0.1, 1.0, 30522)
    fe.io.save_safetensors(folder / "model.safetensors", {"embeddings": table, "weights": weights})
    (folder / "config.json").write_text(json.dumps({"model_type": "model2vec", "normalize": True}))
    return folder, table, weights


def test_vectors_are_the_pooled_lookup_of_the_tokens(static_folder):
    pytest.importorskip("tokenizers")
    folder, table, weights = static_folder
    model = fe.StaticEmbedding.from_model2vec(folder)
    vectors = model.encode(TEXTS, batch_size=2)
    ids, offsets = model.tokenize(TEXTS)
    assert np.diff(offsets).max() <= 512  # truncated at max_length
    truth = reference.pooled_lookup(ids, offsets, table, token_weights=weights, padding_idx=100, normalize=True)
    np.testing.assert_allclose(vectors, truth, atol=2e-6)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 24)
    np.testing.assert_array_equal(vectors[1], 0)  # an empty text
    np.testing.assert_allclose(model.encode(TEXTS[0]), vectors[0])  # one str -> one vector


def test_same_vectors_as_model2vec(static_folder, tmp_path):
    model2vec = pytest.importorskip("model2vec")
    folder, _, _ = static_folder
    theirs = model2vec.StaticModel.from_pretrained(str(folder))
    ours = fe.StaticEmbedding.from_model2vec(folder)
    sentences = TEXTS + real_sentences(300)
    np.testing.assert_allclose(ours.encode(sentences), theirs.encode(sentences, use_multiprocessing=False), atol=1e-6)
    ours.save(tmp_path / "saved")  # a folder model2vec loads, with the same vectors
    again = model2vec.StaticModel.from_pretrained(str(tmp_path / "saved"))
    np.testing.assert_allclose(again.encode(sentences, use_multiprocessing=False), ours.encode(sentences), atol=1e-6)


def test_save_and_load_round_trip_a_factorized_model(minilm_dir, tmp_path):
    rng = np.random.default_rng(1)
    table, proj = rng.standard_normal((30522, 8)).astype(np.float32), rng.standard_normal((8, 16)).astype(np.float32)
    token_map = rng.integers(0, 30522, 30522)
    model = fe.StaticEmbedding(minilm_dir / "tokenizer.json", table, proj, token_map=token_map)
    model.save(tmp_path / "m")
    loaded = fe.StaticEmbedding.from_model2vec(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["normalize"] is True
    np.testing.assert_allclose(loaded.encode(TEXTS), model.encode(TEXTS), atol=1e-5)
    with pytest.raises(ValueError, match="pool by mean"):
        fe.StaticEmbedding(minilm_dir / "tokenizer.json", table, proj, mode="max").save(tmp_path / "x")


def test_one_batch_is_tokenized_on_the_calling_thread(static_folder, monkeypatch):
    """Texts that fit one batch (a query) start no worker thread (starting and joining one cost
    300 us, six times the whole call); several batches tokenize the next on one worker while this
    one is pooled. The vectors are the same either way, and nothing is encoded twice or skipped."""
    from fastembed import _static

    model = fe.StaticEmbedding.from_model2vec(static_folder[0])
    started, tokenized = [], []
    pool, tokenize = _static.ThreadPoolExecutor, model._tokenize
    monkeypatch.setattr(_static, "ThreadPoolExecutor", lambda *a, **k: started.append(1) or pool(*a, **k))
    monkeypatch.setattr(model, "_tokenize", lambda texts: tokenized.append(len(texts)) or tokenize(texts))
    one = model.encode(TEXTS)
    assert started == [] and tokenized == [len(TEXTS)]
    assert model.encode([]).shape == (0, 24) and tokenized == [len(TEXTS)]
    several = model.encode(TEXTS, batch_size=2)
    assert started == [1] and tokenized == [len(TEXTS), 2, 2, 1]
    np.testing.assert_array_equal(one, several)
    np.testing.assert_array_equal(model.encode(TEXTS[0]), one[0])


def test_compiled_wordpiece_gives_the_vectors_of_the_hf_tokenizer(minilm_dir):
    tokenizers = pytest.importorskip("tokenizers")
    from fastembed._tokenizers import HFTokenizer

    rng = np.random.default_rng(2)
    table = rng.standard_normal((30522, 12)).astype(np.float32)
    hf = fe.StaticEmbedding(HFTokenizer(tokenizers.Tokenizer.from_file(str(minilm_dir / "tokenizer.json")), 512), table)
    assert "tokenizers WordPiece" in repr(hf)
    sentences = real_sentences(200) + ["Ünïcödé İstanbul 中文 [MASK] x" * 40]
    for own in (
        fe.StaticEmbedding(minilm_dir / "tokenizer.json", table),
        fe.StaticEmbedding(fe.WordPiece.from_vocab(minilm_dir / "vocab.txt"), table),
        fe.StaticEmbedding(tokenizers.Tokenizer.from_file(str(minilm_dir / "tokenizer.json")), table),
    ):
        assert "fastembed WordPiece" in repr(own)
        np.testing.assert_allclose(own.encode(sentences), hf.encode(sentences), atol=1e-6)


def test_without_tokenizers_package_a_wordpiece_json_is_read_by_fastembed(minilm_dir):
    code = (
        "import sys; sys.modules['tokenizers'] = None\n"
        "import numpy as np, fastembed as fe\n"
        f"m = fe.StaticEmbedding({str(minilm_dir / 'tokenizer.json')!r}, np.ones((30522, 4), np.float32))\n"
        "assert 'fastembed WordPiece' in repr(m), repr(m)\n"
        "print(m.encode(['hello world']).shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert "(1, 4)" in result.stdout


def test_errors(minilm_dir, tmp_path):
    path = minilm_dir / "tokenizer.json"
    with pytest.raises(ValueError, match="ids up to 30521"):
        fe.StaticEmbedding(path, np.ones((100, 4), np.float32))
    with pytest.raises(TypeError, match="tokenizer must be"):
        fe.StaticEmbedding(42, np.ones((100, 4), np.float32))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fe.StaticEmbedding(tmp_path / "missing.json", np.ones((100, 4), np.float32))
    model = fe.StaticEmbedding(path, np.ones((30522, 4), np.float32))
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        model.encode(["a", 3])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        model.encode(["a"], batch_size=0)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        fe.StaticEmbedding.from_model2vec(tmp_path)
    bpe = {"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": None}
    (tmp_path / "bpe.json").write_text(json.dumps(bpe))
    with pytest.raises(NotImplementedError, match="BPE model"):
        fe.WordPiece.from_file(tmp_path / "bpe.json")
    assert model.encode([]).shape == (0, 4)


def test_progress_bar(minilm_dir, capsys):
    model = fe.StaticEmbedding(minilm_dir / "tokenizer.json", np.ones((30522, 4), np.float32))
    model.encode(["a b c"] * 50, batch_size=7, show_progress=True)
    assert "50/50 texts" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm_dir):
    """A small random BERT with MiniLM's vocabulary, saved as a transformers folder."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    folder = tmp_path_factory.mktemp("tiny-bert")
    config = transformers.BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    transformers.BertModel(config).save_pretrained(folder)
    shutil.copy(minilm_dir / "tokenizer.json", folder / "tokenizer.json")
    return folder


def test_distill_follows_the_recipe(tiny_bert):
    from fastembed._distill import token_vectors, zipf_probabilities

    model = fe.StaticEmbedding.distill(tiny_bert, rank=8, batch_size=4096)
    assert model.dim == 8 and model.normalize
    vectors, _ = token_vectors(tiny_bert, batch_size=4096)
    p = zipf_probabilities(len(vectors))
    fac = fe.factorize(vectors, 8, center=True, row_weights=p)
    expected = fac.table * (1e-4 / (1e-4 + p))[:, None]
    ids, offsets = model.tokenize(TEXTS[:1])
    np.testing.assert_allclose(
        model.encode(TEXTS[:1]),
        reference.pooled_lookup(ids, offsets, expected, padding_idx=100, normalize=True),
        atol=1e-5,
    )


def test_cli_encode_and_distill(tiny_bert, static_folder, tmp_path):
    folder, _, _ = static_folder
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[:3] + ["Another line."]), encoding="utf-8")
    cli = [sys.executable, "-m", "fastembed"]
    done = subprocess.run(
        cli + ["encode", str(folder), str(texts), "-o", str(tmp_path / "v.npy")],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr
    vectors = np.load(tmp_path / "v.npy")
    np.testing.assert_allclose(vectors, fe.StaticEmbedding.from_model2vec(folder).encode(TEXTS[:3] + ["Another line."]))
    bad = subprocess.run(
        cli + ["encode", str(folder), str(texts), "-o", str(tmp_path / "v.pt")], capture_output=True, text=True, cwd="/"
    )
    assert bad.returncode == 2 and ".npy" in bad.stderr
    distilled = subprocess.run(
        cli + ["distill", str(tiny_bert), "-o", str(tmp_path / "static"), "--rank", "8", "--check", "40"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert distilled.returncode == 0, distilled.stderr
    assert "Spearman" in distilled.stdout
    assert fe.StaticEmbedding.from_model2vec(tmp_path / "static").dim == 8
