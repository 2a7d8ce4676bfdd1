"""Distilling a transformer into a StaticEmbedding (model2vec's recipe), and measuring what the
static model keeps of the full model on real sentences."""

from pathlib import Path

import numpy as np

from ._threads import resolve


def _load_model(model_dir):
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ImportError(
            "distilling needs torch and transformers: pip install torch==2.13.0 transformers "
            "(the pinned torch is a CPU build)"
        ) from exc
    model = transformers.AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    return torch, model.eval()


def token_vectors(model_dir, batch_size=1024, n_threads=None):
    """(V, d) float32: for every vocabulary id t, the mean of the model's last hidden states over
    ``[CLS] t [SEP]``."""
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    cls_id, sep_id = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]"))
    if cls_id is None or sep_id is None:
        raise NotImplementedError(f"{model_dir}: distilling reads BERT-style vocabularies with [CLS] and [SEP]")
    torch, model = _load_model(model_dir)
    n_vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    out = np.empty((n_vocab, model.config.hidden_size), np.float32)
    previous = torch.get_num_threads()
    torch.set_num_threads(resolve(n_threads))
    try:
        with torch.inference_mode():
            for start in range(0, n_vocab, batch_size):
                ids = torch.arange(start, min(start + batch_size, n_vocab))
                batch = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
                hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
                out[start : start + ids.shape[0]] = hidden.float().mean(dim=1).numpy()
    finally:
        torch.set_num_threads(previous)
    return out, tokenizer


def zipf_probabilities(n):
    """p_t = (1 / (t + 2)) / sum: the frequency of token t if ids were in frequency order (model2vec)."""
    inv_rank = 1.0 / np.arange(2, n + 2)
    return inv_rank / inv_rank.sum()


def distill(cls, model_dir, rank, sif_coefficient, batch_size, max_length, n_threads):
    from ._factorize import factorize

    vectors, tokenizer = token_vectors(model_dir, batch_size, n_threads)
    p = zipf_probabilities(vectors.shape[0])
    fac = factorize(vectors, rank, center=True, row_weights=p, n_threads=n_threads)
    table = fac.table * (sif_coefficient / (sif_coefficient + p))[:, None]
    return cls(tokenizer, table.astype(np.float32), normalize=True, max_length=max_length)


def sentence_vectors(model_dir, texts, batch_size=64, n_threads=None):
    """The full model's sentence vectors: mean of the last hidden states over the attention mask,
    L2-normalized (sentence-transformers' all-MiniLM-L6-v2 recipe)."""
    import tokenizers

    tokenizer = tokenizers.Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id("[PAD]") or 0)
    tokenizer.enable_truncation(256)
    torch, model = _load_model(model_dir)
    out = []
    previous = torch.get_num_threads()
    torch.set_num_threads(resolve(n_threads))
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer.encode_batch(texts[start : start + batch_size])
                ids = torch.tensor([e.ids for e in enc])
                mask = torch.tensor([e.attention_mask for e in enc])
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
                summed = (hidden * mask[..., None]).sum(dim=1) / mask.sum(dim=1, keepdim=True)
                out.append(torch.nn.functional.normalize(summed, dim=1).numpy())
    finally:
        torch.set_num_threads(previous)
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), np.float32)


def agreement(static_vectors, full_vectors, k=10):
    """What a static model keeps of the full one on the same texts: the Spearman correlation of
    all pairwise cosine similarities, and the mean overlap of each text's k nearest neighbours."""
    a = static_vectors / np.maximum(np.linalg.norm(static_vectors, axis=1, keepdims=True), 1e-12)
    b = full_vectors / np.maximum(np.linalg.norm(full_vectors, axis=1, keepdims=True), 1e-12)
    sa, sb = a @ a.T, b @ b.T
    upper = np.triu_indices(len(a), 1)

    def ranks(x):
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        return r

    spearman = float(np.corrcoef(ranks(sa[upper]), ranks(sb[upper]))[0, 1])
    np.fill_diagonal(sa, -np.inf)
    np.fill_diagonal(sb, -np.inf)
    na, nb = np.argsort(-sa, axis=1)[:, :k], np.argsort(-sb, axis=1)[:, :k]
    overlap = float(np.mean([len(set(x) & set(y)) / k for x, y in zip(na, nb, strict=True)]))
    return {"spearman": spearman, f"top{k}_overlap": overlap}
