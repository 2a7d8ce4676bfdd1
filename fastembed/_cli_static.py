"""``fastembed encode`` and ``fastembed distill``: static sentence embeddings from the command line."""

import sys
import time
from pathlib import Path

import numpy as np


def add_encode_arguments(parser):
    parser.add_argument("model", type=Path, help="a model2vec folder (model.safetensors, tokenizer.json, config.json)")
    parser.add_argument("texts", type=Path, help="a UTF-8 text file, one text per line")
    parser.add_argument("-o", "--output", type=Path, required=True, help="vectors as .npy (n x d float32)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--progress", action="store_true", help="a progress bar on stderr")


def add_distill_arguments(parser):
    parser.add_argument("model", type=Path, help="a transformer folder (config.json, weights, tokenizer.json)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder for the model2vec-format model")
    parser.add_argument("--rank", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--check",
        type=int,
        default=0,
        metavar="N",
        help="compare the static model with the full one on N real English sentences (stdlib docstrings)",
    )


def _fail(command, message):
    print(f"fastembed {command}: {message}", file=sys.stderr)
    return 2


def run_encode(args):
    from ._static import StaticEmbedding

    if args.output.suffix != ".npy":
        return _fail("encode", f"-o must end in .npy, got {args.output}")
    try:
        model = StaticEmbedding.from_model2vec(args.model)
        texts = args.texts.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, KeyError, ValueError, NotImplementedError, UnicodeDecodeError) as exc:
        return _fail("encode", exc)
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=args.batch_size, show_progress=args.progress, n_threads=args.threads)
    elapsed = time.perf_counter() - start
    np.save(args.output, vectors)
    rate = len(texts) / max(elapsed, 1e-9)
    print(
        f"encoded {len(texts)} texts -> {args.output} {vectors.shape} float32 in {elapsed:.2f} s ({rate:,.0f} texts/s)"
    )
    return 0


def run_distill(args):
    from ._static import StaticEmbedding

    if args.check and args.check < 3:
        return _fail("distill", "--check needs at least 3 sentences")
    start = time.perf_counter()
    try:
        model = StaticEmbedding.distill(args.model, rank=args.rank, n_threads=args.threads)
    except (FileNotFoundError, OSError, ValueError, NotImplementedError, ImportError) as exc:
        return _fail("distill", exc)
    model.save(args.output)
    print(f"distilled {args.model} -> {args.output}: {model} in {time.perf_counter() - start:.1f} s")
    if args.check:
        from ._distill import agreement, sentence_vectors
        from .text import real_sentences

        texts = real_sentences(args.check)
        full = sentence_vectors(args.model, texts, n_threads=args.threads)
        kept = agreement(model.encode(texts), full)
        print(
            f"against the full model on {len(texts)} real sentences: Spearman of pairwise cosines "
            f"{kept['spearman']:.3f}, top-10 neighbour overlap {kept['top10_overlap']:.3f}"
        )
    return 0
