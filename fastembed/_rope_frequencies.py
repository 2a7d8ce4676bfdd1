"""RoPE inverse frequencies and attention factors for every rope type of the model configs.

Each scheme takes the rotary width ``dim`` (even), ``base`` (rope_theta) and the
scheme's parameters (a config's ``rope_parameters`` / ``rope_scaling`` dict) and
returns ``(inv_freq (dim / 2,) float64, attention_factor)``, the values
transformers' ``ROPE_INIT_FUNCTIONS`` compute (in float64 here, float32 there).
"""

import math

import numpy as np

from . import _validation as v

ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "llama3", "longrope", "proportional", "ntk")
SCALINGS = ROPE_TYPES  # the name this tuple had before the newer types


def check_rotary_dim(dim, name="rotary_dim"):
    """``dim`` as a Python int: TypeError unless an integer, ValueError unless even and >= 2."""
    return v.as_integer(dim, name, low=2, even=True)


def rope_type(scaling):
    """The scheme a scaling dict names (``rope_type``, else the legacy ``type``, else "default")."""
    if scaling is None:
        return "default"
    if not isinstance(scaling, dict):
        raise TypeError(f"scaling must be a dict like a config's rope_scaling, got {type(scaling).__name__}")
    kind = scaling.get("rope_type", scaling.get("type")) or "default"
    if kind not in ROPE_TYPES:
        raise ValueError(f"unknown rope type {kind!r}; supported: {', '.join(ROPE_TYPES)}")
    return kind


def _param(scaling, key, default=None, required=False, above=None):
    """``scaling[key]`` as a finite float (> ``above`` when given); ``default`` when absent."""
    kind = rope_type(scaling)
    if key in scaling and scaling[key] is not None:
        return v.as_real(scaling[key], f"rope scaling {kind!r} {key}", above=above)
    if required:
        raise ValueError(f"rope scaling {kind!r} needs {key!r}")
    return default


def _factor_or_extension(scaling):
    """``factor``, else max_position_embeddings / original_max_position_embeddings (Phi-3, DeepSeek-V3)."""
    if scaling.get("factor") is not None:
        return _param(scaling, "factor", above=0)
    if scaling.get("max_position_embeddings") is None:
        raise ValueError(f"rope scaling {rope_type(scaling)!r} needs 'factor' (or max_position_embeddings)")
    return _param(scaling, "max_position_embeddings", above=0) / _param(
        scaling, "original_max_position_embeddings", required=True, above=0
    )


def rope_frequencies(dim, base=10000.0, scaling=None, seq_len=None):
    """(inv_freq, attention_factor) for ``dim`` rotary features (see :func:`fastembed.rope_frequencies`)."""
    dim = check_rotary_dim(dim)
    kind = rope_type(scaling)
    base = v.as_real(base, "base")
    if not base > 1:
        raise ValueError(f"base must be > 1, got {base}")
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
    inv_freq = 1.0 / base**exponents
    if kind == "default":
        return inv_freq, 1.0
    if kind == "proportional":
        return _proportional(scaling, dim, base, exponents), 1.0
    if kind == "longrope":
        return _longrope(scaling, dim, base, exponents, seq_len)
    if kind == "yarn":
        return _yarn(scaling, dim, base, exponents, _factor_or_extension(scaling))
    factor = _param(scaling, "factor", required=True, above=0)
    if kind == "linear":
        return inv_freq / factor, 1.0
    if kind == "dynamic":
        max_pos = _param(scaling, "max_position_embeddings", required=True, above=0)
        length = max(int(seq_len or max_pos), max_pos)
        base = base * ((factor * length / max_pos) - (factor - 1)) ** (dim / (dim - 2))
        return 1.0 / base**exponents, 1.0
    if kind == "ntk":
        return _ntk(scaling, dim, base, exponents, factor), 1.0
    return _llama3(scaling, inv_freq, factor), 1.0


def _yarn(scaling, dim, base, exponents, factor):
    original = _param(scaling, "original_max_position_embeddings", required=True, above=0)

    def mscale(scale, m=1.0):
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = _param(scaling, "attention_factor", above=0)
    if attention is None:
        m, m_all = _param(scaling, "mscale"), _param(scaling, "mscale_all_dim")
        attention = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)
        if not (math.isfinite(attention) and attention > 0):
            raise ValueError(
                f"rope scaling 'yarn' mscale {m} / mscale_all_dim {m_all} give attention factor {attention}"
            )
    beta_fast = _param(scaling, "beta_fast", above=0) or 32
    beta_slow = _param(scaling, "beta_slow", above=0) or 1

    def correction_dim(rotations):
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    extrapolation = 1 - ramp
    pos_freqs = base**exponents
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, float(attention)


def _llama3(scaling, inv_freq, factor):
    low = _param(scaling, "low_freq_factor", required=True, above=0)
    high = _param(scaling, "high_freq_factor", required=True, above=low)
    old = _param(scaling, "original_max_position_embeddings", required=True, above=0)
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > old / low, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = ~(wavelen < old / high) & ~(wavelen > old / low)
    return np.where(medium, smoothed, scaled)


def _factor_list(scaling, key, half):
    values = scaling.get(key)
    if values is None:
        raise ValueError(f"rope scaling 'longrope' needs {key!r}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"rope scaling 'longrope' {key} must be a list of numbers") from None
    if arr.shape != (half,):
        raise ValueError(f"rope scaling 'longrope' {key} must have rotary_dim / 2 = {half} entries, got {arr.shape}")
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"rope scaling 'longrope' {key} must be finite and > 0")
    return arr


def _longrope(scaling, dim, base, exponents, seq_len):
    """Phi-3: per-frequency divisors, the long list past the original context, else the short one."""
    original = _param(scaling, "original_max_position_embeddings", required=True, above=0)
    long_factor = _factor_list(scaling, "long_factor", dim // 2)
    short_factor = _factor_list(scaling, "short_factor", dim // 2)
    factor = _factor_or_extension(scaling)
    attention = _param(scaling, "attention_factor", above=0)
    if attention is None:
        attention = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original))
    divisors = long_factor if seq_len and seq_len > original else short_factor
    return 1.0 / (divisors * base**exponents), float(attention)


def _proportional(scaling, dim, base, exponents):
    """Gemma 4: the first partial_rotary_factor of the pairs rotate with base^(-2i/dim), the rest not."""
    proportion = _param(scaling, "partial_rotary_factor", 1.0, above=0)
    if proportion > 1:
        raise ValueError(f"rope scaling 'proportional' partial_rotary_factor must be <= 1, got {proportion}")
    rotated = int(proportion * dim // 2)
    inv_freq = np.zeros(dim // 2)
    inv_freq[:rotated] = 1.0 / base ** exponents[:rotated]
    return inv_freq / _param(scaling, "factor", 1.0, above=0)


def _ntk(scaling, dim, base, exponents, factor):
    """Static NTK-aware scaling as vLLM's rope type "ntk" defines it: the base times factor and
    every frequency divided by factor^(2/dim); with ``mixed_b``, frequency i (from 1) divided by
    exp(a i^b), a = log(factor) / (dim/2)^b."""
    mixed_b = _param(scaling, "mixed_b", above=0)
    if mixed_b is None:
        return 1.0 / (base * factor) ** exponents / factor ** (2.0 / dim)
    a = math.log(factor) / (dim / 2) ** mixed_b
    return 1.0 / base**exponents / np.exp(a * np.arange(1, dim // 2 + 1, dtype=np.float64) ** mixed_b)
