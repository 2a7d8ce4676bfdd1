"""The truth: every public computation written as a formula, in float64.

Lookups (dense, factorized, pooled), sinusoidal tables, the rotary embedding and its frequencies
under every scaling, the BERT and ALBERT embedding blocks (LayerNorm), and factorize's optimum.

These functions validate nothing and are not fast; they define what every
backend must compute (tests compare each backend against them, as
bottleneck's ``slow`` functions do).
"""

import numpy as np


def positions_rows(ids_shape, offset=0, position_ids=None):
    """The pos_table row for each id: ``offset + l`` along the last axis, or ``position_ids``."""
    if position_ids is not None:
        return np.broadcast_to(np.asarray(position_ids, dtype=np.int64), ids_shape)
    length = ids_shape[-1] if ids_shape else 1
    sequence = offset + np.arange(length, dtype=np.int64)
    return np.broadcast_to(sequence if ids_shape else sequence[0], ids_shape)


def factorized_lookup(ids, table, proj, scale=1.0, bias=None, pos_table=None, offset=0, position_ids=None):
    """float64 ``(table[ids] @ proj) * scale + bias + pos_table[position]``, shape ids.shape + (d,)."""
    ids = np.asarray(ids, dtype=np.int64)
    projected = np.asarray(table, dtype=np.float64)[ids] @ np.asarray(proj, dtype=np.float64)
    return _add_terms(projected, ids.shape, scale, bias, pos_table, offset, position_ids)


def lookup(ids, table, scale=1.0, bias=None, pos_table=None, offset=0, position_ids=None):
    """float64 ``table[ids] * scale + bias + pos_table[position]``, shape ids.shape + (d,)."""
    ids = np.asarray(ids, dtype=np.int64)
    rows = np.asarray(table, dtype=np.float64)[ids]
    return _add_terms(rows, ids.shape, scale, bias, pos_table, offset, position_ids)


def _add_terms(rows, ids_shape, scale, bias, pos_table, offset, position_ids):
    result = rows * float(scale)
    if bias is not None:
        result = result + np.asarray(bias, dtype=np.float64)
    if pos_table is not None:
        pos = np.asarray(pos_table, dtype=np.float64)
        result = result + pos[positions_rows(ids_shape, offset, position_ids)]
    return result


def rope(x, positions, style="neox", rotary_dim=None, inv_freq=None, base=10000.0, attention=1.0, axes=None):
    """float64 rotary embedding from its definition, pair by pair: for pair i at position p,
    theta = p * inv_freq[i] (default base^(-2i/rotary_dim)) and (a, b) -> (a cos - b sin,
    b cos + a sin), cos and sin times ``attention``. Pairs are (i, i + half) for "neox", (2i, 2i+1)
    for "gptj"; features from rotary_dim on pass through. ``positions`` broadcast to x.shape[:-1];
    with ``axes`` (multimodal RoPE) positions has a leading axis of 3 and pair i takes its
    position from ``positions[axes[i]]``."""
    x = np.asarray(x, dtype=np.float64)
    rotary_dim = x.shape[-1] if rotary_dim is None else rotary_dim
    if inv_freq is None:
        inv_freq = float(base) ** (-np.arange(0, rotary_dim, 2) / rotary_dim)
    out = x.copy()
    half = rotary_dim // 2
    positions = np.asarray(positions, dtype=np.float64)
    for i in range(half):
        p = positions if axes is None else positions[axes[i]]
        theta = np.broadcast_to(p, x.shape[:-1]) * inv_freq[i]
        c, s = np.cos(theta) * attention, np.sin(theta) * attention
        first, second = (i, i + half) if style == "neox" else (2 * i, 2 * i + 1)
        a, b = x[..., first], x[..., second]
        out[..., first] = a * c - b * s
        out[..., second] = b * c + a * s
    return out


def mrope_axes(half, section, interleaved=False):
    """The position axis (0 t, 1 h, 2 w) of each frequency, index by index: consecutive sections
    [t, h, w] (Qwen2-VL), or interleaved t h w t h w ... while the h and w sections last (Qwen3-VL)."""
    t, h, w = section
    axes = []
    for i in range(half):
        if not interleaved:
            axes.append(0 if i < t else 1 if i < t + h else 2)
        elif i % 3 == 1 and i // 3 < h:
            axes.append(1)
        elif i % 3 == 2 and i // 3 < w:
            axes.append(2)
        else:
            axes.append(0)
    return axes


def rope_frequencies(dim, base=10000.0, scaling=None, seq_len=None):
    """float64 (inv_freq, attention_factor) of every rope type, frequency by frequency, from the
    published formulas (the papers' reference code, which transformers follows)."""
    scaling = dict(scaling or {})
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    base = float(scaling.get("rope_theta", base))
    half = dim // 2
    plain = [base ** (-2.0 * i / dim) for i in range(half)]
    factor = scaling.get("factor")
    if factor is None and "max_position_embeddings" in scaling and "original_max_position_embeddings" in scaling:
        factor = scaling["max_position_embeddings"] / scaling["original_max_position_embeddings"]
    if kind == "default":
        return np.array(plain), 1.0
    if kind == "linear":  # positional interpolation: positions / factor
        return np.array([f / factor for f in plain]), 1.0
    if kind == "dynamic":
        m = scaling["max_position_embeddings"]
        s = max(seq_len or m, m)
        new_base = base * (factor * s / m - (factor - 1)) ** (dim / (dim - 2))
        return np.array([new_base ** (-2.0 * i / dim) for i in range(half)]), 1.0
    if kind == "ntk":
        b = scaling.get("mixed_b")
        if b is None:
            return np.array([(base * factor) ** (-2.0 * i / dim) / factor ** (2.0 / dim) for i in range(half)]), 1.0
        a = np.log(factor) / half**b
        return np.array([plain[i] / np.exp(a * (i + 1) ** b) for i in range(half)]), 1.0
    if kind == "proportional":
        rotated = int(scaling.get("partial_rotary_factor", 1.0) * dim // 2)
        return np.array([plain[i] if i < rotated else 0.0 for i in range(half)]) / scaling.get("factor", 1.0), 1.0
    if kind == "longrope":
        original = scaling["original_max_position_embeddings"]
        chosen = scaling["long_factor"] if seq_len and seq_len > original else scaling["short_factor"]
        attention = scaling.get("attention_factor")
        if attention is None:
            attention = 1.0 if factor <= 1 else float(np.sqrt(1 + np.log(factor) / np.log(original)))
        return np.array([plain[i] / chosen[i] for i in range(half)]), attention
    if kind == "llama3":
        original = scaling["original_max_position_embeddings"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        result = []
        for f in plain:
            wavelength = 2 * np.pi / f
            if wavelength < original / high:  # high frequency: kept
                result.append(f)
            elif wavelength > original / low:  # low frequency: interpolated
                result.append(f / factor)
            else:  # between: blended by how many rotations fit the original context
                smooth = (original / wavelength - low) / (high - low)
                result.append((1 - smooth) * f / factor + smooth * f)
        return np.array(result), 1.0
    if kind == "yarn":
        return _yarn_frequencies(dim, base, scaling, factor, plain)
    raise ValueError(f"reference.rope_frequencies: unknown rope type {kind!r}")


def _yarn_frequencies(dim, base, scaling, factor, plain):
    """YaRN (Peng et al. 2023, the authors' code): frequencies completing fewer than beta_slow
    rotations over the original context are interpolated, more than beta_fast kept, a linear
    ramp over the dimension index between; attention factor 0.1 ln(s) + 1."""
    original = scaling["original_max_position_embeddings"]
    half = dim // 2

    def dimension_of(rotations):  # the dimension index whose wavelength fits `rotations` times
        return dim * np.log(original / (rotations * 2 * np.pi)) / (2 * np.log(base))

    low = dimension_of(scaling.get("beta_fast") or 32)
    high = dimension_of(scaling.get("beta_slow") or 1)
    if scaling.get("truncate", True):
        low, high = np.floor(low), np.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if high == low:
        high = high + 0.001
    result = []
    for i in range(half):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)  # 0: keep, 1: interpolate
        result.append(plain[i] * (1 - ramp) + plain[i] / factor * ramp)

    def mscale(s, m=1.0):
        return 1.0 if s <= 1 else 0.1 * m * np.log(s) + 1.0

    attention = scaling.get("attention_factor")
    if attention is None:
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention = mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)
    return np.array(result), float(attention)


def sinusoidal(positions, d, layout="interleaved", base=10000.0, endpoint=False):
    """float64 sinusoidal table from the published formulas (one row per position):

    - "interleaved" (Vaswani; DistilBERT's create_sinusoidal_embeddings): column j holds
      sin (j even) or cos (j odd) of p / base^(2 (j // 2) / d);
    - "concat" (Marian, GPT-J): the sines of the even columns' angles, then the cosines of the odd
      ones (sin gets the extra column for odd d);
    - "concat", endpoint=True (fairseq, tensor2tensor): h = d // 2 frequencies
      exp(-i log(base) / (h - 1)), [sin | cos], a zero column for odd d.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1)
    if layout == "concat" and endpoint:
        half = d // 2
        step = np.log(base) / (half - 1) if half > 1 else 0.0
        angles = positions[:, None] * np.exp(np.arange(half, dtype=np.float64) * -step)[None, :]
        out = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
        return np.concatenate([out, np.zeros((positions.size, d % 2))], axis=1)
    angles = positions[:, None] / np.power(base, 2 * (np.arange(d) // 2) / d)[None, :]
    out = np.empty_like(angles)
    if layout == "interleaved":
        out[:, 0::2] = np.sin(angles[:, 0::2])
        out[:, 1::2] = np.cos(angles[:, 1::2])
    else:
        sines = (d + 1) // 2
        out[:, :sines] = np.sin(angles[:, 0::2])
        out[:, sines:] = np.cos(angles[:, 1::2])
    return out


def pooled_lookup(
    ids,
    offsets,
    table,
    proj=None,
    mode="mean",
    weights=None,
    token_weights=None,
    token_map=None,
    padding_idx=None,
    scale=1.0,
    bias=None,
    normalize=False,
):
    """float64 pooled lookup over flat ``ids`` and CSR ``offsets``, bag by bag, from its definition
    (see :func:`fastembed.pooled_lookup`); shape (B, d)."""
    ids = np.asarray(ids, dtype=np.int64)
    table = np.asarray(table, dtype=np.float64)
    proj = None if proj is None else np.asarray(proj, dtype=np.float64)
    d = table.shape[1] if proj is None else proj.shape[1]
    n_vocab = table.shape[0] if token_map is None else len(token_map)
    padding = None if padding_idx is None else padding_idx % n_vocab
    out = np.zeros((len(offsets) - 1, d))
    for b in range(len(offsets) - 1):
        vectors = []
        for n in range(offsets[b], offsets[b + 1]):
            token = int(ids[n])
            if token == padding:
                continue
            row = table[token if token_map is None else int(token_map[token])]
            if proj is not None and mode == "max":
                row = row @ proj
            w = 1.0 if weights is None else float(weights[n])
            w *= 1.0 if token_weights is None else float(token_weights[token])
            vectors.append(w * row)
        if vectors:
            stacked = np.array(vectors)
            pooled = {
                "sum": stacked.sum(axis=0),
                "mean": stacked.mean(axis=0),
                "sqrtn": stacked.sum(axis=0) / np.sqrt(len(vectors)),
                "max": stacked.max(axis=0),
            }[mode]
            out[b] = pooled if proj is None or mode == "max" else pooled @ proj
    out = out * float(scale)
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float64)
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = np.where(norms > 0, out / np.where(norms > 0, norms, 1), out)
    return out


def embedding_block(
    ids,
    word,
    position,
    token_type,
    gamma,
    beta,
    eps=1e-12,
    token_type_ids=None,
    position_ids=None,
    mapping=None,
    mapping_bias=None,
):
    """float64 BERT embedding block, and ALBERT's with ``mapping``:
    ``x = word[ids] + token_type[types] + position[positions]`` (types 0 and positions 0..L-1 by
    default), ``y = (x - mean(x)) / sqrt(var(x) + eps) * gamma + beta`` over the last axis, then for
    ALBERT ``y @ mapping.T + mapping_bias``; shape ids.shape + (d,) (ALBERT: + (H,))."""
    ids = np.asarray(ids, dtype=np.int64)
    types = np.zeros(ids.shape, np.int64) if token_type_ids is None else np.asarray(token_type_ids, np.int64)
    rows = positions_rows(ids.shape, 0, position_ids)
    word, position, token_type = (np.asarray(t, dtype=np.float64) for t in (word, position, token_type))
    x = word[ids] + token_type[np.broadcast_to(types, ids.shape)] + position[rows]
    mean = x.mean(axis=-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(variance + eps) * np.asarray(gamma, np.float64) + np.asarray(beta, np.float64)
    if mapping is None:
        return y
    return y @ np.asarray(mapping, np.float64).T + np.asarray(mapping_bias, np.float64)


def factorize(W, rank, row_weights=None, center=False):
    """float64 optimum of ``min sum_i w_i ||W_i - mu - (table @ proj)_i||^2`` over rank-``rank``
    factors (Eckart-Young with row weights inside the fit), from a full SVD.

    ``mu`` is the weighted mean row when ``center`` (else 0); with ``X = diag(sqrt(w)) (W - mu)``
    and ``X = U S V^T``, the optimum is ``mu + (W - mu) V_r V_r^T``: every row (weight 0 included)
    projected on the top ``rank`` right singular vectors.

    Returns
    -------
    dense : (V, d) float64, the optimal reconstruction ``mu + (W - mu) V_r V_r^T``
    singular_values : (min(V, d),) float64, all of X's, descending
    optimal_relative_error : float, ``||X - X_r||_F / ||diag(sqrt(w)) W||_F``
    """
    W = np.asarray(W, dtype=np.float64)
    w = np.ones(W.shape[0]) if row_weights is None else np.asarray(row_weights, dtype=np.float64)
    mu = (w @ W) / w.sum() if center else np.zeros(W.shape[1])
    X = np.sqrt(w)[:, None] * (W - mu)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    basis = vt[:rank]
    dense = mu + (W - mu) @ basis.T @ basis
    optimal = float(np.sqrt(np.sum(s[rank:] ** 2)) / np.linalg.norm(np.sqrt(w)[:, None] * W))
    return dense, s, optimal
