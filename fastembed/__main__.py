"""``fastembed`` / ``python -m fastembed``: the demo, factorizing checkpoints, and build info."""

import argparse
import sys


def info():
    """Lines describing this install, for bug reports."""
    import platform

    import numpy as np

    from . import __version__, backends
    from ._threads import available_cores, blas_num_threads, get_num_threads, serial_reason

    lines = [
        f"fastembed {__version__} (distribution fastembed-kernels)",
        f"python {platform.python_version()} on {platform.machine()} {platform.system()}",
        f"numpy {np.__version__}",
        f"backends available: {', '.join(backends.available())}",
        f"cython kernels built with OpenMP: {backends.openmp_enabled()}",
        f"fused lookup micro-tiles on this CPU: {backends.simd_name(backends.simd_width())}{_simd_capped()}",
        f"threads: fastembed {get_num_threads()}, cores {available_cores()}, BLAS {blas_num_threads()}",
        f"serial kernels: {serial_reason() or 'no'}",
    ]
    try:
        import numba

        lines.append(f"numba {numba.__version__}, NUMBA_NUM_THREADS {numba.config.NUMBA_NUM_THREADS}")
    except ImportError:
        lines.append("numba not importable")
    from threadpoolctl import threadpool_info

    from ._eigen import lapacke

    steps = lapacke()
    lines.append(
        "exact factorize eigensolver: "
        + (f"LAPACK dsytrd/dstedc/dormtr from {steps.path}" if steps else "np.linalg.eigh (no LAPACKE *64_ found)")
    )
    for lib in threadpool_info():
        api, version, threads = lib.get("internal_api"), lib.get("version"), lib["num_threads"]
        lines.append(f"threadpool {lib['user_api']}: {api} {version} ({threads} threads)")
    return lines


def _simd_capped():
    """' (capped by FASTEMBED_SIMD ...; the CPU has ...)' when the tiles run narrower than the CPU allows."""
    from . import backends

    widest = backends.simd_capped_below(backends.simd_width())
    if widest is None:
        return ""
    return f" (capped by FASTEMBED_SIMD / FASTEMBED_DISABLE_SIMD; the CPU has {backends.simd_name(widest)})"


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(prog="fastembed", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastembed {__version__}")
    parser.add_argument("--info", action="store_true", help="print backends, threads, BLAS and OpenMP, then exit")
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="factorize all-MiniLM-L6-v2's embeddings and time the fused lookup")
    demo.add_argument("--rank", type=int, default=128)
    demo.add_argument("--batch", type=int, default=32)
    demo.add_argument("--length", type=int, default=128)
    sub.add_parser("info", help="same as --info")
    from ._cli_factorize import add_arguments

    add_arguments(sub.add_parser("factorize", help="factorize a checkpoint's word-embedding matrix into E @ P"))
    from ._cli_static import add_distill_arguments, add_encode_arguments

    add_encode_arguments(sub.add_parser("encode", help="texts (one per line) -> vectors.npy with a static model"))
    add_distill_arguments(sub.add_parser("distill", help="distill a transformer folder into a static model"))
    return parser


def source_tree_without_kernels():
    """A message when this fastembed is a source checkout's folder without its compiled kernels
    (``python -m fastembed`` run from the repository root imports it), else None. An editable
    install (``pip install -e . --no-build-isolation``) has its kernels and passes."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if not (root / "setup.py").is_file() or not (root / "kernels").is_dir():
        return None
    spec = importlib.util.find_spec("fastembed._kernels")
    locations = [Path(p).resolve() for p in (spec.submodule_search_locations or [])] if spec else []
    if any(root == p or root in p.parents for p in locations):  # this tree's own (editable) kernels
        return None
    return (
        f"fastembed: this is the source tree's fastembed/ ({root}), imported because Python looks in the "
        "current folder first, and it has no compiled kernels: everything would quietly run on numpy. "
        "Install the package (pip install .) and run the installed command (fastembed ...), or run "
        "python -m fastembed from another folder; for development: pip install -e . --no-build-isolation"
    )


def main(argv=None):
    refusal = source_tree_without_kernels()
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.info or args.command == "info":
        print("\n".join(info()))
        return 0
    if args.command == "demo":
        from ._demo import run

        try:
            run(rank=args.rank, batch=args.batch, length=args.length)
        except (FileNotFoundError, ValueError, TypeError) as exc:
            print(f"fastembed demo: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command in ("encode", "distill"):
        from . import _cli_static as cli_static

        return cli_static.run_encode(args) if args.command == "encode" else cli_static.run_distill(args)
    if args.command == "factorize":
        from ._cli_factorize import run

        run(args)
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
