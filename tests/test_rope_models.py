"""RoPE for the model families in use: every rope type against the float64 reference and against
transformers, real configs read by rope_config, multimodal (Qwen-VL) positions and sections,
per-row offsets, and the precision of the phases at long positions."""

import importlib
import json

import numpy as np
import pytest

import fastembed as fe
from fastembed import reference
from util import BACKENDS, hf_rope_frequencies

LONG = [1.0 + 0.9 * i for i in range(32)]
SHORT = [1.0 + 0.03 * i for i in range(32)]

TYPES = [
    {"rope_type": "default"},
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "dynamic", "factor": 2.0, "max_position_embeddings": 64},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
    {"rope_type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "mscale": 1.0, "mscale_all_dim": 1.0},
    {"rope_type": "yarn", "max_position_embeddings": 8192, "original_max_position_embeddings": 2048, "truncate": False},
    {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64,
    },
    {
        "rope_type": "longrope",
        "long_factor": LONG,
        "short_factor": SHORT,
        "original_max_position_embeddings": 256,
        "max_position_embeddings": 8192,
    },
    {
        "rope_type": "longrope",
        "long_factor": LONG,
        "short_factor": SHORT,
        "original_max_position_embeddings": 256,
        "factor": 2.0,
        "attention_factor": 1.3,
    },
    {"rope_type": "proportional", "partial_rotary_factor": 0.25},
    {"rope_type": "proportional", "partial_rotary_factor": 0.5, "factor": 2.0},
    {"rope_type": "ntk", "factor": 4.0},
    {"rope_type": "ntk", "factor": 4.0, "mixed_b": 0.75},
]
TYPE_IDS = [
    "-".join(
        [t["rope_type"]] + sorted(k for k in t if k in ("mscale", "truncate", "attention_factor", "mixed_b", "factor"))
    )
    for t in TYPES
]


@pytest.mark.parametrize("scaling", TYPES, ids=TYPE_IDS)
@pytest.mark.parametrize("seq_len", [None, 100, 5000])
def test_every_type_matches_the_reference(scaling, seq_len):
    ours, attention = fe.rope_frequencies(64, base=10000.0, scaling=scaling, seq_len=seq_len)
    truth, truth_attention = reference.rope_frequencies(64, 10000.0, scaling, seq_len)
    np.testing.assert_allclose(ours, truth, rtol=1e-13, atol=0)
    assert attention == pytest.approx(truth_attention, rel=1e-14)


def test_longrope_switches_lists_past_the_original_context():
    scaling = TYPES[7]
    short, attention = fe.rope_frequencies(64, scaling=scaling, seq_len=256)
    long, long_attention = fe.rope_frequencies(64, scaling=scaling, seq_len=257)
    plain, _ = fe.rope_frequencies(64)
    np.testing.assert_allclose(short, plain / SHORT, rtol=1e-15)
    np.testing.assert_allclose(long, plain / LONG, rtol=1e-15)
    assert attention == long_attention == pytest.approx(np.sqrt(1 + np.log(32) / np.log(256)))
    x = np.ones((1, 300, 64))
    rotated = fe.apply_rope(x, scaling=scaling)  # 300 positions: the long list for all of them
    expected = reference.rope(x, np.arange(300), inv_freq=long, attention=attention)
    np.testing.assert_allclose(rotated, expected, atol=1e-12)


def test_proportional_keeps_the_unrotated_pairs_exact():
    x = np.random.default_rng(0).standard_normal((2, 7, 32))
    got = fe.apply_rope(x, scaling={"rope_type": "proportional", "partial_rotary_factor": 0.25})
    # 4 of the 16 pairs rotate: features 0..3 with 16..19; the rest are copied bit for bit
    kept = np.r_[4:16, 20:32]
    np.testing.assert_array_equal(got[..., kept], x[..., kept])
    assert not np.allclose(got[..., :4], x[..., :4])


HF_TYPES = [(s, i) for s, i in zip(TYPES, TYPE_IDS, strict=True) if s["rope_type"] not in ("default", "ntk")]


@pytest.mark.parametrize("scaling", [s for s, _ in HF_TYPES], ids=[i for _, i in HF_TYPES])
@pytest.mark.parametrize("seq_len", [100, 5000])
def test_every_type_matches_transformers_init_functions(scaling, seq_len):
    dim = 64
    theirs, their_attention = hf_rope_frequencies(scaling, dim, 10000.0, seq_len)
    ours, attention = fe.rope_frequencies(dim, scaling=scaling, seq_len=seq_len)
    np.testing.assert_allclose(ours, theirs, rtol=2e-6, atol=0)  # theirs is float32
    assert attention == pytest.approx(their_attention, rel=1e-6)


# ---------------------------------------------------------------- real configs


def load(name):
    from fastembed.models import model_config

    return model_config(name)


ROTARY_CLASSES = {
    "llama": ("llama", "LlamaRotaryEmbedding"),
    "phi3": ("phi3", "Phi3RotaryEmbedding"),
    "deepseek_v3": ("deepseek_v3", "DeepseekV3RotaryEmbedding"),
    "gemma3_text": ("gemma3", "Gemma3RotaryEmbedding"),
    "qwen2_vl": ("qwen2_vl", "Qwen2VLRotaryEmbedding"),
    "qwen3_vl_text": ("qwen3_vl", "Qwen3VLTextRotaryEmbedding"),
}


def hf_rotary(raw):
    """transformers' rotary embedding module built from a config.json dict."""
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    text = json.loads(json.dumps(raw.get("text_config", raw)))
    model_type = text["model_type"]
    config_class = (
        transformers.Qwen2VLTextConfig if model_type == "qwen2_vl" else transformers.CONFIG_MAPPING[model_type]
    )
    module, name = ROTARY_CLASSES[model_type]
    modeling = importlib.import_module(f"transformers.models.{module}.modeling_{module}")
    return getattr(modeling, name)(config=config_class(**text)), modeling


MODELS = [
    ("llama3_1_8b", None, "llama3", 128, 128),
    ("phi3_5_mini", None, "longrope", 96, 96),
    ("deepseek_v3", None, "yarn", 64, 64),
    ("gemma3_4b_text", "full_attention", "linear", 256, 256),
    ("gemma3_4b_text", "sliding_attention", "default", 256, 256),
    ("gemma3_nested", "full_attention", "linear", 256, 256),
    ("gemma3_nested", "sliding_attention", "default", 256, 256),
    ("qwen2_vl_7b", None, "default", 128, 128),
    ("qwen3_vl_8b", None, "default", 128, 128),
]


@pytest.mark.parametrize("name,layer_type,kind,head_dim,rotary_dim", MODELS)
@pytest.mark.parametrize("positions", [np.arange(100), np.array([0, 5, 4095, 4100, 9000])], ids=["short", "long"])
def test_real_configs_rotate_as_transformers(name, layer_type, kind, head_dim, rotary_dim, positions):
    """cos/sin and the rotation of q, from the config.json alone, against the model's own module."""
    torch = pytest.importorskip("torch")
    raw = load(name)
    config = fe.rope_config(raw, layer_type=layer_type)
    assert (config.rope_type, config.head_dim, config.rotary_dim) == (kind, head_dim, rotary_dim)
    rotary, modeling = hf_rotary(raw)
    position_ids = torch.from_numpy(positions)[None]
    multimodal = config.mrope_section is not None
    if multimodal:
        position_ids = position_ids[None].expand(3, 1, -1)
    q = np.random.default_rng(1).standard_normal((1, 2, positions.size, head_dim)).astype(np.float32)
    kwargs = {"layer_type": layer_type} if layer_type else {}
    cos, sin = rotary(torch.from_numpy(q), position_ids, **kwargs)
    grid = np.broadcast_to(positions, (3, positions.size)) if multimodal else positions
    ours_cos, ours_sin = fe.rope_cos_sin(
        grid,
        config.rotary_dim,
        base=config.base,
        scaling=config.scaling,
        seq_len=int(positions.max()) + 1,
        mrope_section=config.mrope_section,
        mrope_interleaved=config.mrope_interleaved,
    )
    # transformers forms the angle p * inv_freq in float32: off by up to ~p 2^-24 rad
    tol = 1e-6 + 1.2e-7 * positions.max()
    np.testing.assert_allclose(np.concatenate([ours_cos, ours_cos], -1), cos.numpy()[0], atol=tol)
    np.testing.assert_allclose(np.concatenate([ours_sin, ours_sin], -1), sin.numpy()[0], atol=tol)
    if name == "deepseek_v3":
        theirs, _ = modeling.apply_rotary_pos_emb_interleave(torch.from_numpy(q), torch.from_numpy(q), cos, sin)
        ours = fe.apply_rope(q, positions=positions, **config)[..., fe.rope_permutation(head_dim, "gptj", "neox")]
    else:
        theirs, _ = modeling.apply_rotary_pos_emb(torch.from_numpy(q), torch.from_numpy(q), cos, sin)
        ours = fe.apply_rope(q, positions=grid[:, None, None] if multimodal else positions, **config)
    np.testing.assert_allclose(ours, theirs.numpy(), atol=4 * tol * np.abs(q).max())
    # and against the float64 truth, to float32 rounding
    inv_freq, attention = reference.rope_frequencies(rotary_dim, config.base, config.scaling, int(positions.max()) + 1)
    truth = reference.rope(q, positions, config.style, rotary_dim, inv_freq, attention=attention)
    np.testing.assert_allclose(
        ours if name != "deepseek_v3" else fe.apply_rope(q, positions=positions, **config),
        truth,
        atol=3e-6 * np.abs(q).max(),
    )


def test_legacy_phi3_su_reads_as_longrope():
    su, longrope = fe.rope_config(load("phi3_vision_128k")), fe.rope_config(load("phi3_5_mini"))
    assert su.rope_type == longrope.rope_type == "longrope"
    for seq_len in (4096, 4097):
        np.testing.assert_array_equal(su.frequencies(seq_len)[0], longrope.frequencies(seq_len)[0])
    inv_freq, attention = longrope.frequencies(5000)
    assert attention == pytest.approx(np.sqrt(1 + np.log(32) / np.log(4096)))


def test_rope_config_reads_every_form():
    llama = fe.rope_config(load("llama3_1_8b"))
    assert dict(llama) == {
        "rotary_dim": 128,
        "base": 500000.0,
        "scaling": llama.scaling,
        "style": "neox",
        "mrope_section": None,
        "mrope_interleaved": False,
    }
    assert llama.scaling["original_max_position_embeddings"] == 8192
    deepseek = fe.rope_config(load("deepseek_v3"))
    assert (deepseek.style, deepseek.rotary_dim) == ("gptj", 64)
    assert fe.rope_config(dict(load("deepseek_v3"), rope_interleave=False)).style == "neox"
    qwen3 = fe.rope_config(load("qwen3_vl_8b"))
    assert (qwen3.mrope_section, qwen3.mrope_interleaved, qwen3.base) == ((24, 20, 20), True, 5000000.0)
    assert fe.rope_config(load("qwen2_vl_7b")).mrope_section == (16, 24, 24)
    gemma_local = fe.rope_config(load("gemma3_4b_text"), layer_type="sliding_attention")
    assert (gemma_local.base, gemma_local.rope_type) == (10000.0, "default")
    partial = fe.rope_config(
        {"hidden_size": 2560, "num_attention_heads": 32, "partial_rotary_factor": 0.4, "rope_theta": 10000.0}
    )
    assert (partial.head_dim, partial.rotary_dim) == (80, 32)
    gemma4 = {
        "head_dim": 256,
        "global_head_dim": 512,
        "hidden_size": 2048,
        "num_attention_heads": 8,
        "layer_types": ["sliding_attention", "full_attention"],
        "rope_parameters": {
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1e6},
        },
    }
    full = fe.rope_config(gemma4, layer_type="full_attention")
    assert (full.head_dim, full.rotary_dim, full.rope_type, full.base) == (512, 512, "proportional", 1e6)
    assert np.count_nonzero(full.frequencies()[0]) == 64
    assert fe.rope_config(gemma4, layer_type="sliding_attention").head_dim == 256


def test_proportional_matches_transformers():
    torch = pytest.importorskip("torch")
    rope_utils = pytest.importorskip("transformers.modeling_rope_utils")
    from transformers import LlamaConfig

    params = {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1e6}
    hf = LlamaConfig(hidden_size=4096, num_attention_heads=8, head_dim=512, rope_parameters=dict(params))
    theirs, _ = rope_utils.ROPE_INIT_FUNCTIONS["proportional"](hf, torch.device("cpu"))
    ours = fe.rope_config({"head_dim": 512, "hidden_size": 4096, "num_attention_heads": 8, "rope_parameters": params})
    np.testing.assert_allclose(ours.frequencies()[0], theirs.double().numpy(), rtol=2e-6, atol=0)


@pytest.mark.parametrize(
    "config,layer_type,exc,match",
    [
        (
            {"head_dim": 64, "rope_scaling": {"rope_type": "longrope2"}},
            None,
            ValueError,
            "longrope2.*supported: default",
        ),
        (load("gemma3_nested"), None, ValueError, "layer_type"),
        (load("gemma3_nested"), "chunked_attention", ValueError, "chunked_attention"),
        ({"rope_theta": 10000.0}, None, ValueError, "head_dim"),
        ({"head_dim": 64, "partial_rotary_factor": 0.3}, None, ValueError, "rotary dimension"),
        ({"head_dim": 64, "rope_theta": "big"}, None, TypeError, "rope_theta"),
        ("config.json", None, TypeError, "dict"),
    ],
)
def test_rope_config_errors(config, layer_type, exc, match):
    with pytest.raises(exc, match=match):
        fe.rope_config(config, layer_type=layer_type)


# ---------------------------------------------------------------- multimodal


def layout():
    """Two sequences: text, an image of 4 x 6 patches, text, a 2-frame video; the second left-padded."""
    types = np.array([[0, 0, 0] + [1] * 6 + [0, 0] + [2] * 4 + [0], [0] * 6 + [0, 0, 0] + [1] * 6 + [0]])
    mask = np.ones_like(types)
    mask[1, :6] = 0
    images = np.array([[1, 4, 6], [1, 4, 6]])
    videos = np.array([[2, 2, 4]])
    return types, mask, images, videos


def hf_rope_index(types, mask, images, videos, merge, tokens_per_second, seconds):
    torch = pytest.importorskip("torch")
    qwen = pytest.importorskip("transformers.models.qwen2_5_vl.modeling_qwen2_5_vl")
    from types import SimpleNamespace

    model = SimpleNamespace(
        config=SimpleNamespace(
            vision_config=SimpleNamespace(spatial_merge_size=merge, tokens_per_second=tokens_per_second)
        )
    )
    model.get_vision_position_ids = lambda *a, **k: qwen.Qwen2_5_VLModel.get_vision_position_ids(model, *a, **k)
    ids = torch.zeros(types.shape, dtype=torch.long)
    positions, deltas = qwen.Qwen2_5_VLModel.get_rope_index(
        model,
        ids,
        torch.from_numpy(types),
        torch.from_numpy(images),
        torch.from_numpy(videos),
        second_per_grid_ts=torch.tensor(seconds),
        attention_mask=torch.from_numpy(mask),
    )
    return positions.numpy(), deltas.numpy()[:, 0]


def test_mrope_positions_match_transformers_get_rope_index():
    types, mask, images, videos = layout()
    theirs, their_deltas = hf_rope_index(types, mask, images, videos, 2, 2, [0.5])
    ours, deltas = fe.mrope_positions(
        types, images, videos, spatial_merge_size=2, video_time_intervals=[2 * 0.5], attention_mask=mask
    )
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(deltas, their_deltas)
    single, delta = fe.mrope_positions(types[0], images[:1], videos, spatial_merge_size=2)
    assert single.shape == (3, types.shape[1]) and delta.shape == ()


def test_mrope_positions_layout_by_hand():
    types = np.array([0, 0, 1, 1, 1, 1, 0])
    positions, delta = fe.mrope_positions(types, [[1, 4, 4]], spatial_merge_size=2)
    np.testing.assert_array_equal(positions, [[0, 1, 2, 2, 2, 2, 4], [0, 1, 2, 2, 3, 3, 4], [0, 1, 2, 3, 2, 3, 4]])
    assert delta == 5 - 7


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(token_types=[0, 1, 1, 0], image_grid_thw=[[1, 2, 4]]), ValueError, "does not match its grid"),
        (dict(token_types=[0, 1, 1, 0]), ValueError, "more image runs"),
        (dict(token_types=[0, 0], image_grid_thw=[[1, 2, 2]]), ValueError, "more grids"),
        (dict(token_types=[0, 3]), ValueError, "0 \\(text\\)"),
        (dict(token_types=[0.0, 1.0]), TypeError, "token_types"),
        (dict(token_types=[0, 1], image_grid_thw=[[1, 2]]), ValueError, "shape \\(n, 3\\)"),
        (dict(token_types=[0, 2], video_grid_thw=[[1, 2, 2]], video_time_intervals=[1, 2]), ValueError, "intervals"),
        (dict(token_types=[0, 0], attention_mask=[1]), ValueError, "attention_mask"),
    ],
)
def test_mrope_positions_errors(kwargs, exc, match):
    kwargs.setdefault("spatial_merge_size", 1)
    with pytest.raises(exc, match=match):
        fe.mrope_positions(**kwargs)


@pytest.mark.parametrize("name", ["qwen2_vl_7b", "qwen3_vl_8b"])
def test_mrope_rotation_matches_transformers(name):
    """Multimodal positions through the model's own rotary module and apply_rotary_pos_emb."""
    torch = pytest.importorskip("torch")
    raw = load(name)
    config = fe.rope_config(raw)
    rotary, modeling = hf_rotary(raw)
    types, mask, images, videos = layout()
    positions, _ = fe.mrope_positions(types, images, videos, spatial_merge_size=2, attention_mask=mask)
    q = np.random.default_rng(2).standard_normal((2, 3, types.shape[1], 128)).astype(np.float32)
    cos, sin = rotary(torch.from_numpy(q), torch.from_numpy(positions))
    theirs, _ = modeling.apply_rotary_pos_emb(torch.from_numpy(q), torch.from_numpy(q), cos, sin)
    ours = fe.apply_rope(q, positions=positions[:, :, None, :], **config)
    np.testing.assert_allclose(ours, theirs.numpy(), atol=2e-5)
    axes = reference.mrope_axes(64, config.mrope_section, config.mrope_interleaved)
    truth = reference.rope(q, positions[:, :, None, :], inv_freq=config.frequencies()[0], axes=axes, base=config.base)
    np.testing.assert_allclose(ours, truth, atol=3e-6 * np.abs(q).max())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("section,interleaved", [((2, 3, 3), False), ((4, 2, 2), True), ((0, 8, 0), False)])
def test_mrope_against_reference(backend, dtype, section, interleaved):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 9, 20)).astype(dtype)
    positions = rng.integers(0, 3000, (3, 2, 1, 9))
    got = fe.apply_rope(
        x, positions=positions, rotary_dim=16, mrope_section=section, mrope_interleaved=interleaved, backend=backend
    )
    axes = reference.mrope_axes(8, section, interleaved)
    expected = reference.rope(x, positions, rotary_dim=16, axes=axes)
    np.testing.assert_allclose(got, expected, atol=2e-5 if dtype == np.float32 else 1e-11)
    cos, sin = fe.rope_cos_sin(positions, 16, mrope_section=section, mrope_interleaved=interleaved, backend=backend)
    theta = np.stack([positions[a] for a in axes], -1) * 10000.0 ** (-np.arange(0, 16, 2) / 16)
    np.testing.assert_allclose(cos, np.cos(theta), atol=1e-12)
    np.testing.assert_allclose(sin, np.sin(theta), atol=1e-12)


def test_mrope_with_text_positions_is_plain_rope():
    x = np.random.default_rng(4).standard_normal((2, 5, 16))
    text = np.broadcast_to(np.arange(5), (3, 2, 5))
    np.testing.assert_allclose(fe.apply_rope(x, positions=text, mrope_section=[2, 3, 3]), fe.apply_rope(x), atol=1e-15)
    np.testing.assert_array_equal(fe.apply_rope(x, offset=3, mrope_section=[2, 3, 3]), fe.apply_rope(x, offset=3))


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(positions=np.zeros((2, 5), int), mrope_section=[2, 3, 3]), ValueError, "shape \\(3, ...\\)"),
        (dict(positions=np.zeros((3, 2, 5), int), mrope_section=[2, 3, 2]), ValueError, "add up to"),
        (dict(positions=np.zeros((3, 2, 5), int), mrope_section=[2, 3]), ValueError, "three integers"),
        (dict(positions=np.zeros((3, 2, 5), int), mrope_section=[2.0, 3, 3]), TypeError, "three integers"),
        (dict(positions=np.zeros((3, 4, 5), int), mrope_section=[2, 3, 3]), ValueError, "do not broadcast"),
        (dict(positions=np.zeros((3, 2, 5), int), mrope_section=[0, 5, 3], mrope_interleaved=True), ValueError, "fit"),
        (dict(mrope_interleaved=True), ValueError, "needs an mrope_section"),
        (dict(positions=np.full((3, 2, 5), -1), mrope_section=[2, 3, 3]), IndexError, "outside"),
    ],
)
def test_mrope_errors(kwargs, exc, match):
    x = np.zeros((2, 5, 16))
    out = np.full_like(x, 7.0)
    with pytest.raises(exc, match=match):
        fe.apply_rope(x, out=out, **kwargs)
    assert (out == 7.0).all()


# ---------------------------------------------------------------- per-row offsets


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_per_row_offsets(backend, dtype):
    """Left-padded decoding: every sequence of the batch has its own cache length."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 2, 16)).astype(dtype)  # (B, heads, new tokens, head_dim)
    lengths = np.array([7, 0, 123456], dtype=np.int32)
    got = fe.apply_rope(x, offset=lengths, backend=backend)
    positions = lengths[:, None, None] + np.arange(2)
    np.testing.assert_array_equal(got, fe.apply_rope(x, positions=positions, backend=backend))
    expected = reference.rope(x, positions)
    np.testing.assert_allclose(got, expected, atol=2e-6 if dtype == np.float32 else 1e-12)
    three_d = fe.apply_rope(x[:, 0], offset=lengths, backend=backend)
    np.testing.assert_array_equal(three_d, got[:, 0])


@pytest.mark.parametrize(
    "offset,exc,match",
    [
        (np.array([1, 2]), ValueError, "one offset per batch row"),
        (np.array([[1, 2, 3]]), ValueError, "one offset per batch row"),
        (np.array([1.0, 2.0, 3.0]), TypeError, "offset"),
        (np.array([1, -1, 3]), IndexError, "outside"),
        (np.array([1, 2, 2**40]), IndexError, "outside"),
    ],
)
def test_per_row_offset_errors(offset, exc, match):
    x = np.zeros((3, 4, 2, 16))
    with pytest.raises(exc, match=match):
        fe.apply_rope(x, offset=offset)
    with pytest.raises(ValueError, match="one offset per batch row"):
        fe.apply_rope(np.zeros((2, 16)), offset=np.array([1, 2]))
    with pytest.raises(ValueError, match="either offset or positions"):
        fe.apply_rope(x, offset=np.array([1, 2, 3]), positions=np.arange(2))


# ---------------------------------------------------------------- scaling dict conveniences


def test_scaling_dict_carries_theta_and_partial_factor():
    x = np.random.default_rng(6).standard_normal((1, 4, 40))
    scaling = {"rope_type": "default", "rope_theta": 1e6, "partial_rotary_factor": 0.4}
    np.testing.assert_array_equal(fe.apply_rope(x, scaling=scaling), fe.apply_rope(x, rotary_dim=16, base=1e6))
    with pytest.raises(ValueError, match="disagrees"):
        fe.apply_rope(x, scaling=scaling, rotary_dim=20)
    rotary_part = np.ascontiguousarray(x[..., :16])  # x holding only the rotated features
    np.testing.assert_array_equal(
        fe.apply_rope(rotary_part, scaling=scaling, rotary_dim=16), fe.apply_rope(x, scaling=scaling)[..., :16]
    )
    with pytest.raises(ValueError, match="disagree"):
        fe.apply_rope(x, scaling=scaling, base=5e5)


def test_unknown_rope_type_names_the_supported_ones():
    with pytest.raises(ValueError, match="unknown rope type 'su2'; supported: default, linear, dynamic, yarn"):
        fe.apply_rope(np.zeros((2, 8)), scaling={"type": "su2"})
    with pytest.raises(ValueError, match="short_factor must have rotary_dim / 2 = 4"):
        fe.rope_frequencies(
            8,
            scaling={
                "rope_type": "longrope",
                "long_factor": [1] * 4,
                "short_factor": [1] * 3,
                "original_max_position_embeddings": 4,
                "factor": 2,
            },
        )
    with pytest.raises(ValueError, match="needs 'long_factor'"):
        fe.rope_frequencies(8, scaling={"rope_type": "longrope", "original_max_position_embeddings": 4, "factor": 2})


# ---------------------------------------------------------------- precision at long positions


def _bfloat16(a):
    """Round float32 values to bfloat16 (nearest even), returned as float32."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.astype(np.uint32).view(np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_phases_stay_exact_at_long_positions_where_input_dtype_phases_fail(backend):
    """Positions 2^17 .. 2^20: float32 and bfloat16-valued inputs are rotated to float32 rounding
    of the float64 truth; phases built in the input dtype (p.float() * inv_freq, or in bfloat16
    as a model cast to bfloat16 does) are off by O(1)."""
    rng = np.random.default_rng(7)
    positions = np.array([2**17, 2**17 + 1, 300_001, 2**19 + 7, 2**20 - 1, 2**20])
    inv_freq = 10000.0 ** (-np.arange(0, 128, 2) / 128)
    for values in (rng.standard_normal((1, 6, 128)).astype(np.float32), _bfloat16(rng.standard_normal((1, 6, 128)))):
        truth = reference.rope(values, positions)
        ours = fe.apply_rope(values, positions=positions, backend=backend)
        assert np.abs(ours - truth).max() < 2e-6 * np.abs(values).max()
        for phase_dtype in ("float32", "bfloat16"):
            angle = np.float32(positions)[:, None] * np.float32(inv_freq)
            if phase_dtype == "bfloat16":
                angle = _bfloat16(_bfloat16(positions.astype(np.float32))[:, None] * _bfloat16(inv_freq))
            cos, sin = np.cos(angle.astype(np.float64)), np.sin(angle.astype(np.float64))
            low = reference.rope(values, np.zeros(6, int))  # identity, then rotate with the low-precision phases
            a, b = low[..., :64], low[..., 64:]
            naive = np.concatenate([a * cos - b * sin, b * cos + a * sin], -1)
            error = np.abs(naive - truth).max() / np.abs(values).max()
            assert error > (1e-3 if phase_dtype == "float32" else 0.5), (phase_dtype, error)
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(_bfloat16(rng.standard_normal((1, 6, 128))))
    theta = torch.from_numpy(positions).to(torch.bfloat16)[:, None] * torch.from_numpy(inv_freq).to(torch.bfloat16)
    assert (theta.double().numpy() - positions[:, None] * inv_freq).__abs__().max() > 100  # torch's own bfloat16 phases
    assert np.abs(fe.apply_rope(x, positions=positions) - reference.rope(x.numpy(), positions)).max() < 2e-6 * 4
