"""Layers (dense and factorized), their save/load round trips, and the real-checkpoint blocks."""

import numpy as np
import pytest

import fastembed as fe
from fastembed.io import CheckpointError
from util import BACKENDS, assert_matches_reference


@pytest.fixture
def factors():
    rng = np.random.default_rng(0)
    return dict(
        table=rng.standard_normal((50, 6)).astype(np.float32),
        proj=rng.standard_normal((6, 16)).astype(np.float32),
        bias=rng.standard_normal(16).astype(np.float32),
        positional=fe.sinusoidal(32, 16, cache=False),
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_factorized_layer_is_the_fused_lookup(factors, backend):
    layer = fe.FactorizedEmbedding(
        factors["table"], factors["proj"], bias=factors["bias"], scale=4.0, positional=factors["positional"]
    )
    ids = np.random.default_rng(1).integers(0, 50, (3, 20))
    ref = fe.reference.factorized_lookup(
        ids,
        factors["table"],
        factors["proj"],
        scale=4.0,
        bias=factors["bias"],
        pos_table=factors["positional"],
        offset=2,
    )
    mag = fe.reference.factorized_lookup(
        ids,
        np.abs(factors["table"]),
        np.abs(factors["proj"]),
        scale=4.0,
        bias=np.abs(factors["bias"]),
        pos_table=np.abs(factors["positional"]),
        offset=2,
    )
    assert_matches_reference(layer(ids, offset=2, backend=backend), ref, mag, np.float32)
    cached = layer.cache_dense()
    assert cached.dense_cached
    np.testing.assert_allclose(layer(ids, offset=2, backend=backend), ref, atol=1e-4)
    np.testing.assert_allclose(layer.to_embedding()(ids, offset=2, backend=backend), ref, atol=1e-4)
    assert not layer.cache_dense(False).dense_cached


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_save_load_round_trip(tmp_path, factors, suffix):
    layer = fe.FactorizedEmbedding(
        factors["table"], factors["proj"], bias=factors["bias"], scale=0.125, positional=factors["positional"]
    )
    path = tmp_path / f"layer{suffix}"
    layer.save(path)
    back = fe.FactorizedEmbedding.load(path)
    for name in ("table", "proj", "bias", "positional"):
        np.testing.assert_array_equal(getattr(back, name), getattr(layer, name))
    assert back.scale == 0.125 and back.rank == 6
    dense = fe.Embedding(layer.to_dense(), scale=2.0)
    dense.save(tmp_path / f"dense{suffix}")
    np.testing.assert_array_equal(fe.Embedding.load(tmp_path / f"dense{suffix}").table, dense.table)
    assert fe.Embedding.load(tmp_path / f"dense{suffix}").bias is None
    with pytest.raises(CheckpointError, match="not a FactorizedEmbedding"):
        fe.FactorizedEmbedding.load(tmp_path / f"dense{suffix}")


def test_from_dense_with_centering_reconstructs_through_the_lookup():
    rng = np.random.default_rng(2)
    W = (rng.standard_normal((200, 5)) @ rng.standard_normal((5, 24)) + 3.0).astype(np.float64)
    layer = fe.FactorizedEmbedding.from_dense(W, rank=5, center=True)
    ids = np.arange(200)
    np.testing.assert_allclose(layer(ids), W, atol=1e-9)
    assert layer.factorization.relative_error < 1e-10
    assert fe.FactorizedEmbedding.from_dense(W, energy=0.999).rank <= 6


def test_layers_validate_their_parts(factors):
    with pytest.raises(ValueError):
        fe.FactorizedEmbedding(factors["table"], factors["proj"][:3])
    with pytest.raises(ValueError):
        fe.FactorizedEmbedding(factors["table"], factors["proj"].astype(np.float64))
    with pytest.raises(ValueError):
        fe.Embedding(factors["table"], positional=np.zeros((4, 5), np.float32))
    layer = fe.Embedding(factors["table"])
    with pytest.raises(IndexError):
        layer([50])


def _albert(torch):
    from transformers import AlbertConfig, AlbertModel

    torch.manual_seed(0)
    config = AlbertConfig(
        vocab_size=300,
        embedding_size=32,
        hidden_size=96,
        num_attention_heads=4,
        intermediate_size=128,
        num_hidden_layers=1,
        max_position_embeddings=64,
        type_vocab_size=3,
    )
    return config, AlbertModel(config).eval()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("prefix", ["", "albert."])
def test_albert_block_matches_transformers(backend, prefix):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    config, model = _albert(torch)
    sd = {prefix + k: t.numpy() for k, t in model.state_dict().items()}
    block = fe.AlbertEmbedding.from_state_dict(sd, eps=config.layer_norm_eps)
    rng = np.random.default_rng(3)
    ids, types = rng.integers(0, 300, (4, 40)), rng.integers(0, 3, (4, 40))
    positions = rng.integers(0, 64, (4, 40))
    with torch.no_grad():
        emb = model.embeddings(
            input_ids=torch.from_numpy(ids),
            token_type_ids=torch.from_numpy(types),
            position_ids=torch.from_numpy(positions),
        )
        ref = model.encoder.embedding_hidden_mapping_in(emb).numpy()
    out = block(ids, types, positions, backend=backend)
    assert out.shape == (4, 40, 96)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()
    default = block(ids, backend=backend)
    with torch.no_grad():
        ref0 = model.encoder.embedding_hidden_mapping_in(model.embeddings(input_ids=torch.from_numpy(ids))).numpy()
    assert np.abs(default - ref0).max() <= 1e-4 * np.abs(ref0).max()


def test_albert_from_pretrained_folder(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    config, model = _albert(torch)
    model.save_pretrained(tmp_path / "safetensors")
    model.save_pretrained(tmp_path / "bin", safe_serialization=False)
    ids = np.random.default_rng(4).integers(0, 300, (2, 10))
    a = fe.AlbertEmbedding.from_pretrained(tmp_path / "safetensors")(ids)
    b = fe.AlbertEmbedding.from_pretrained(tmp_path / "bin")(ids)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 10, 96)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bert_block_on_real_minilm_matches_transformers(minilm_dir, backend):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from fastembed.text import real_text_ids

    block = fe.BertEmbedding.from_pretrained(minilm_dir)
    ids = real_text_ids(2, 64)
    model = transformers.BertModel.from_pretrained(str(minilm_dir), local_files_only=True).eval()
    with torch.no_grad():
        ref = model.embeddings(input_ids=torch.from_numpy(ids)).numpy()
    out = block(ids, backend=backend)
    assert np.abs(out - ref).max() <= 1e-4 * np.abs(ref).max()


def test_cli_factorize(tmp_path, minilm_dir, capsys):
    from fastembed.__main__ import main

    counts = np.random.default_rng(0).zipf(1.3, 30522).astype(np.float64)
    np.save(tmp_path / "counts.npy", counts)
    out = tmp_path / "f.safetensors"
    assert (
        main(["factorize", str(minilm_dir), "--rank", "64", "--weights", str(tmp_path / "counts.npy"), "-o", str(out)])
        == 0
    )
    report = capsys.readouterr().out
    assert "compression" in report and "weighted relative error" in report
    layer = fe.FactorizedEmbedding.load(out)
    assert layer.rank == 64 and layer.table.shape == (30522, 64)
    assert main(["factorize", str(minilm_dir), "--max-error", "0.5", "-o", str(tmp_path / "g.npz")]) == 0
    with pytest.raises(SystemExit, match="no such file"):
        main(["factorize", str(tmp_path / "missing"), "--rank", "3", "-o", str(tmp_path / "x.npz")])
    with pytest.raises(SystemExit, match="rank must be"):
        main(["factorize", str(minilm_dir), "--rank", "0", "-o", str(tmp_path / "x.npz")])
