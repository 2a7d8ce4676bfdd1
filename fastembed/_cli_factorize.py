"""``fastembed factorize``: factorize a checkpoint's word-embedding matrix and report the result."""

import sys
import time
from pathlib import Path

import numpy as np

EMBEDDING_KEYS = (
    "word_embeddings.weight",
    "embed_tokens.weight",
    "wte.weight",
    "shared.weight",
    "tok_embeddings.weight",
)


def add_arguments(parser):
    parser.add_argument(
        "model", help="model folder (config.json + model.safetensors / pytorch_model.bin) or a tensor file"
    )
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--rank", type=int, help="rank r of the factors")
    size.add_argument("--energy", type=float, help="keep this fraction of the squared singular values")
    size.add_argument("--max-error", type=float, help="largest relative Frobenius error allowed")
    parser.add_argument("--weights", help=".npy of per-token weights (e.g. counts) for a frequency-weighted fit")
    parser.add_argument("--method", choices=["svd", "randomized"], default="svd")
    parser.add_argument("--center", action="store_true", help="fit the mean row into a bias")
    parser.add_argument("--key", help="name of the embedding tensor (default: found by its name)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quantize",
        choices=["int8", "float16", "bfloat16"],
        help="store the token table compactly; the report adds the error this costs",
    )
    parser.add_argument("-o", "--output", required=True, help="output file: .safetensors or .npz")
    parser.add_argument("--plot", help="PNG of the singular-value spectrum and error against rank (needs matplotlib)")


def find_embedding(tensors, key=None):
    """(name, matrix) of the word-embedding table in a state dict."""
    if key is not None:
        if key not in tensors:
            raise SystemExit(f"fastembed factorize: no tensor {key!r}; 2-D tensors: {_matrices(tensors)}")
        return key, tensors[key]
    for suffix in EMBEDDING_KEYS:
        for name, arr in tensors.items():
            if name.endswith(suffix) and np.ndim(arr) == 2:
                return name, arr
    raise SystemExit(
        f"fastembed factorize: no word-embedding matrix found; pass --key (2-D tensors: {_matrices(tensors)})"
    )


def _matrices(tensors):
    return [name for name, arr in tensors.items() if np.ndim(arr) == 2][:10]


class Progress:
    def __init__(self, stream=sys.stderr):
        self.stream, self.start = stream, time.perf_counter()

    def __call__(self, message):
        print(f"[{time.perf_counter() - self.start:7.2f}s] {message}", file=self.stream, flush=True)


def run(args, out=sys.stdout):
    from ._blocks import load_state_dict
    from ._factorize import factorize
    from ._layers import FactorizedEmbedding
    from .io import CheckpointError

    if not str(args.output).endswith((".safetensors", ".npz")):
        raise SystemExit(f"fastembed factorize: -o {args.output}: the output must end in .safetensors or .npz")
    if args.plot:
        try:
            import matplotlib  # noqa: F401 - checked before the work, used by plot_spectrum
        except ImportError:
            raise SystemExit("fastembed factorize: --plot needs matplotlib (pip install matplotlib)") from None
    progress = Progress()
    progress(f"loading {args.model}")
    try:
        tensors = load_state_dict(args.model)
    except (CheckpointError, OSError) as exc:
        raise SystemExit(f"fastembed factorize: {exc}") from None
    name, W = find_embedding(tensors, args.key)
    W = np.asarray(W)
    if W.dtype not in (np.float32, np.float64):
        W = W.astype(np.float32)
    progress(f"{name}: {W.shape[0]} x {W.shape[1]} {W.dtype}")
    weights = None
    if args.weights:
        weights = np.load(args.weights, allow_pickle=False)
    progress(
        f"factorizing ({args.method}{', weighted' if weights is not None else ''}{', centred' if args.center else ''})"
    )
    try:
        fac = factorize(
            W,
            args.rank,
            energy=args.energy,
            max_error=args.max_error,
            method=args.method,
            row_weights=weights,
            center=args.center,
            seed=args.seed,
        )
    except (ValueError, TypeError) as exc:
        raise SystemExit(f"fastembed factorize: {exc}") from None
    optimum = fac.report.optimal_relative_error
    if optimum is None:
        progress("computing the optimum for the report (exact method)")
        optimum = factorize(W, fac.rank, row_weights=weights, center=args.center).report.optimal_relative_error
    layer = FactorizedEmbedding(fac.table, fac.proj, bias=fac.bias)
    quantized_report = None
    if args.quantize:
        progress(f"quantizing the table to {args.quantize}")
        layer = layer.astype_float32() if W.dtype != np.float32 else layer
        layer = layer.quantize(args.quantize)
        from ._factorize import error_report

        quantized_report = error_report(W, layer.table.dequantize(), layer.proj, layer.bias, row_weights=weights)
    progress(f"writing {args.output}")
    layer.save(args.output)
    before, after = W.size, fac.n_parameters()
    rows = [
        ("tensor", name),
        ("shape", f"{W.shape[0]} x {W.shape[1]}"),
        ("rank", f"{fac.rank}"),
        ("parameters before", f"{before:,}"),
        ("parameters after", f"{after:,}"),
        ("compression", f"{before / after:.2f}x"),
        ("relative error", f"{fac.relative_error:.6f}"),
        ("optimal error at this rank", f"{optimum:.6f}"),
        ("worst row error", f"{fac.report.worst_row_error:.6f}"),
        ("mean row cosine", f"{fac.report.mean_cosine:.6f}"),
    ]
    if weights is not None:
        rows.append(("weighted relative error", f"{fac.report.weighted_relative_error:.6f}"))
    if quantized_report is not None:
        added = quantized_report.relative_error - fac.relative_error
        rows += [
            ("quantization", args.quantize),
            ("relative error, quantized", f"{quantized_report.relative_error:.6f} (+{added:.6f} from quantization)"),
            ("bytes before", f"{W.nbytes:,}"),
            ("bytes after", f"{layer.nbytes():,} ({W.nbytes / layer.nbytes():.2f}x smaller)"),
        ]
    rows.append(("written", str(Path(args.output))))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}", file=out)
    if args.plot:
        progress(f"plotting {args.plot}")
        plot_spectrum(W, weights, args.center, fac.rank, args.plot)
    return fac


def plot_spectrum(W, weights, center, rank, path):
    """Singular values and the optimal relative error against rank, with the chosen rank marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("fastembed factorize: --plot needs matplotlib (pip install matplotlib)") from None
    from ._factorize import factorize

    full = factorize(W, min(W.shape), row_weights=weights, center=center)
    s = full.all_singular_values
    total = float(np.sum(s**2)) + (
        0.0 if full.bias is None else float(np.sum(np.asarray(W, np.float64) ** 2) - np.sum(s**2))
    )
    tail = np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]])
    error = np.sqrt(np.maximum(tail, 0) / total)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.semilogy(np.arange(1, s.size + 1), s)
    ax1.axvline(rank, color="C3", ls="--", label=f"rank {rank}")
    ax1.set(xlabel="index", ylabel="singular value", title="spectrum")
    ax1.legend()
    ax2.plot(np.arange(s.size + 1), error)
    ax2.axvline(rank, color="C3", ls="--")
    ax2.set(xlabel="rank", ylabel="optimal relative error", title="error against rank", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
