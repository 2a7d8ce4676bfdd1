"""What :func:`fastembed.apply_rope` needs, read from a transformers ``config.json`` dict."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from . import _validation as v
from ._rope_frequencies import ROPE_TYPES, check_rotary_dim, rope_frequencies

LAYER_TYPES = ("full_attention", "sliding_attention")
# model types whose config class defaults rope_interleave to True (latent attention, pairs (2i, 2i+1))
INTERLEAVED_BY_DEFAULT = ("deepseek_v3", "glm4_moe_lite", "mistral4", "sarvam_mla", "youtu", "axk1")
# types older checkpoints write that transformers maps onto the ones above
LEGACY_TYPES = {"su": "longrope", "mrope": "default"}


@dataclass(frozen=True)
class RopeConfig(Mapping):
    """The rotary settings of one attention layer type.

    A mapping of the keyword arguments :func:`fastembed.apply_rope` takes
    (``rotary_dim``, ``base``, ``scaling``, ``style``, ``mrope_section``,
    ``mrope_interleaved``), so ``apply_rope(q, **config)`` applies it; ``head_dim``
    is an attribute only.
    """

    head_dim: int
    rotary_dim: int
    base: float
    scaling: dict = field(default_factory=dict)
    style: str = "neox"
    mrope_section: tuple | None = None
    mrope_interleaved: bool = False

    _KEYS = ("rotary_dim", "base", "scaling", "style", "mrope_section", "mrope_interleaved")

    def __getitem__(self, key):
        if key not in self._KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._KEYS)

    def __len__(self):
        return len(self._KEYS)

    @property
    def rope_type(self):
        return self.scaling.get("rope_type", "default")

    def frequencies(self, seq_len=None):
        """(inv_freq (rotary_dim / 2,), attention_factor) at sequence length ``seq_len``."""
        return rope_frequencies(self.rotary_dim, self.base, self.scaling, seq_len)


def rope_config(config, layer_type=None):
    """Read the rotary settings of a model from its ``config.json`` (a dict).

    Parameters
    ----------
    config : dict or transformers.PretrainedConfig
        The whole model config. The rope parameters come from ``rope_parameters`` (the newer
        form, carrying ``rope_theta``, possibly nested per layer type) or the legacy
        ``rope_scaling`` (``type`` or ``rope_type``) with ``rope_theta`` beside it; a
        multimodal config's ``text_config`` is read when the top level has none.
        ``head_dim`` is ``head_dim`` (``qk_rope_head_dim`` for DeepSeek's latent attention,
        ``global_head_dim`` for Gemma 4's full-attention layers), else hidden_size /
        num_attention_heads; rotary_dim = int(head_dim * partial_rotary_factor), except
        for "proportional", which spans the whole head.
    layer_type : str, optional
        "full_attention" or "sliding_attention" (or another key of a nested
        ``rope_parameters``): required when the parameters are nested.

    Returns
    -------
    RopeConfig
        head_dim, rotary_dim, base, scaling (the rope parameters with the context lengths
        the scheme reads), style ("gptj" when ``rope_interleave`` is set, as DeepSeek-V3's
        default; transformers then returns the rotated pairs de-interleaved, which
        ``rope_permutation(rotary_dim, "gptj", "neox")`` reproduces), and
        mrope_section / mrope_interleaved for the Qwen-VL models.
    """
    if not isinstance(config, Mapping) and hasattr(config, "to_dict"):
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict read from config.json, got {type(config).__name__}")
    config = _text_config(config)
    params, nested = _rope_parameters(config, layer_type)
    kind = params.get("rope_type", params.get("type")) or "default"
    kind = LEGACY_TYPES.get(kind, kind)
    if kind == "yarn" and config.get("model_type") == "phi3" and "long_factor" in params:
        kind = "longrope"  # Phi-3 checkpoints wrote their long/short factors under "yarn"
    if kind not in ROPE_TYPES:
        raise ValueError(f"unknown rope type {kind!r}; supported: {', '.join(ROPE_TYPES)}")
    scaling = {key: value for key, value in params.items() if key != "type"}
    scaling["rope_type"] = kind
    if config.get("max_position_embeddings") is not None:  # "dynamic" and implied factors read the model's
        scaling["max_position_embeddings"] = config["max_position_embeddings"]
    if kind in ("yarn", "llama3", "longrope"):
        if not nested and config.get("original_max_position_embeddings") is not None:
            # Phi-3 keeps its pretraining length beside the parameters, and it wins there
            scaling["original_max_position_embeddings"] = config["original_max_position_embeddings"]
        scaling.setdefault("original_max_position_embeddings", config.get("max_position_embeddings"))
    base = _base(config, params)
    scaling["rope_theta"] = base
    factor = params.get("partial_rotary_factor", config.get("partial_rotary_factor"))
    if factor is not None:
        factor = v.as_real(factor, "partial_rotary_factor", above=0)
        scaling["partial_rotary_factor"] = factor
    head_dim = _head_dim(config, layer_type)
    rotary_dim = head_dim if kind == "proportional" or factor is None else int(head_dim * factor)
    check_rotary_dim(rotary_dim, f"rotary dimension (head_dim {head_dim} x partial_rotary_factor {factor})")
    section = params.get("mrope_section")
    return RopeConfig(
        head_dim=head_dim,
        rotary_dim=rotary_dim,
        base=base,
        scaling=scaling,
        style="gptj" if config.get("rope_interleave", config.get("model_type") in INTERLEAVED_BY_DEFAULT) else "neox",
        mrope_section=None if section is None else tuple(int(s) for s in section),
        mrope_interleaved=bool(params.get("mrope_interleaved", False)),
    )


def _text_config(config):
    """The language model's part of a multimodal config (Qwen-VL's ``text_config``)."""
    text = config.get("text_config")
    if isinstance(text, Mapping) and not any(
        key in config for key in ("rope_parameters", "rope_scaling", "rope_theta")
    ):
        return text
    return config


def _rope_parameters(config, layer_type):
    """(the rope parameter dict of ``layer_type``, whether the config nests them per layer type)."""
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if not isinstance(params, Mapping):
        raise TypeError(f"rope_parameters must be a dict, got {type(params).__name__}")
    labels = set(config.get("layer_types") or ()) | set(LAYER_TYPES)
    nested = [key for key in params if key in labels and isinstance(params[key], Mapping)]
    if not nested:
        if layer_type == "sliding_attention" and config.get("rope_local_base_freq") is not None:
            # Gemma 3's older form: its rope_scaling is the full-attention layers'; local layers
            # rotate unscaled with their own base
            return {"rope_type": "default", "rope_theta": config["rope_local_base_freq"]}, False
        return dict(params), False
    if layer_type is None:
        raise ValueError(f"this config has rope parameters per layer type; pass layer_type= one of {nested}")
    if layer_type not in nested:
        raise ValueError(f"layer_type {layer_type!r} is not in this config's rope parameters {nested}")
    return dict(params[layer_type]), True


def _base(config, params):
    if params.get("rope_theta") is not None:
        return v.as_real(params["rope_theta"], "rope_theta", above=1)
    return v.as_real(config.get("rope_theta", 10000.0), "rope_theta", above=1)


def _head_dim(config, layer_type):
    for key in (("global_head_dim",) if layer_type == "full_attention" else ()) + ("qk_rope_head_dim", "head_dim"):
        if config.get(key):
            return v.as_integer(config[key], key)
    try:
        return v.as_integer(config["hidden_size"], "hidden_size") // v.as_integer(
            config["num_attention_heads"], "num_attention_heads"
        )
    except KeyError as missing:
        raise ValueError(f"config has neither head_dim nor {missing.args[0]}") from None
