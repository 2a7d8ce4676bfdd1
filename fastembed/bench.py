"""Side-by-side timing report: ``python -m fastembed.bench [--json F] [--png F] [--quick]``.

Every method is timed in the same run on the same data, output into a
preallocated buffer, and reported as ratios against torch written as a user
writes it, torch at its best, and numpy, with the machine's measured roofline
(sgemm GFLOP/s, memory write bandwidth) and the share of the bound each
method reaches.
"""

import argparse
import contextlib
import json
import platform
import subprocess
import sys
import time

import numpy as np

from . import backends
from ._bench_cases import (
    FACTORIZE_RANK,
    LOOKUP_CASES,
    ROPE_QUICK,
    ROPE_SHAPE,
    ROPE_STEP_DIM,
    ROPE_STEP_HEADS,
    SHAPES,
    SINUSOIDAL_QUICK,
    SINUSOIDAL_SHAPE,
    STEP_BATCHES,
    STEP_POSITION,
    STEP_SHAPE,
    dense,
    factorize_methods,
    lookup_data,
    lookup_methods,
    minilm_table,
    rope_methods,
    rope_step_methods,
    sinusoidal_methods,
    step_methods,
)
from ._bench_goals import (
    Goal,
    compute_seconds,
    copy_rate,
    evaluate,
    read_write_seconds,
    strongest_peer,
    write_rate,
    write_seconds,
)
from ._peer_simd import format_peer_simd, peer_simd
from ._threads import available_cores
from ._timing import wall_times


def best_time(fn, repeat=15, min_seconds=0.2, settle=0.1):
    """Smallest wall time of ``fn()`` over ``repeat`` runs (at least min_seconds in all), after
    ``settle`` seconds in which thread pools still spinning from the method timed before (OpenBLAS
    spins ~70 ms after a call) go idle, so that they do not take the cores from this one. The wait
    is a busy one: after a sleep, a VM's scheduler often stacks a woken OpenMP worker on the
    calling thread's CPU for a second or more, which slows any 2-thread library 3-5x."""
    _busy_wait(settle)
    return min(wall_times(fn, repeat, min_seconds, most=4 * repeat))


def _rotations(names, rounds):
    """The order of each of ``rounds`` interleaved rounds: every name, starting one further on."""
    for r in range(rounds):
        yield names[r % len(names) :] + names[: r % len(names)]


def interleaved_best_times(methods, rounds=3, repeat=15, min_seconds=0.2):
    """``{name: best time}`` of every method, timed in ``rounds`` interleaved rounds (each round
    every method in turn, the order rotating, ``best_time`` with ``min_seconds``) and the best of
    all rounds kept. A VM's speed drifts by tens of percent over seconds (a neighbour, the host's
    clocks); timing each method once, one after the other, would put that drift into the ratios
    between methods."""
    best = dict.fromkeys(methods, float("inf"))
    for order in _rotations(list(methods), rounds):
        for name in order:
            time_of = best_time(methods[name], repeat=max(3, repeat // rounds), min_seconds=min_seconds)
            best[name] = min(best[name], time_of)
    return best


def interleaved_median_times(methods, rounds=3, repeat=5, min_seconds=0.02, settle=0.1):
    """``{name: median time}`` of every method over ``rounds`` interleaved rounds (the order
    rotating), each round at least ``repeat`` calls and ``min_seconds`` of them after ``settle``
    seconds (as in ``best_time``) and a warm-up call. Under contention the best time is luck and
    the median is what a caller sees; and the contention has phases (where the scheduler has put
    the other process, and our threads), which interleaving spreads over every method alike.
    Timed one method after the other, 11 calls each, the Zen 4 VM's 1 x 128 medians with one core
    busy came out at 0.63, 0.18 and 0.18 ms for the same method in three blocks, ONNX Runtime's at
    0.25, 0.14 and 0.25."""
    samples = {name: [] for name in methods}
    for order in _rotations(list(methods), rounds):
        for name in order:
            _busy_wait(settle)
            samples[name] += wall_times(methods[name], repeat, min_seconds)
    return {name: float(np.median(times)) for name, times in samples.items()}


@contextlib.contextmanager
def one_core_busy():
    """Another process spinning on one core for the duration of the block (yields False, and
    spins nothing, on a single-core machine): the contention of a shared server."""
    if available_cores() < 2:
        yield False
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let the scheduler place it
        yield True
    finally:
        spinner.kill()
        spinner.wait()


def _busy_wait(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def roofline(quick=False):
    """The machine's limits, measured: sgemm GFLOP/s (numpy's BLAS, 2 x 2048^3 per call), peak
    float32 FMA GFLOP/s (independent vector multiply-add chains on every core; None without the
    Cython kernels or a SIMD FMA unit), and memory write and copy GB/s (``MemoryProbe``). Each case
    measures the memory rates again in its own rounds: its bounds use those."""
    n = 1024 if quick else 2048
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    c = np.empty_like(a)
    t = best_time(lambda: np.matmul(a, a, out=c), repeat=5)
    probe = MemoryProbe.shared()
    rates = probe.rates(interleaved_best_times({**probe.methods("write"), **probe.methods("copy")}, rounds=1))
    peak, isa = _fma_peak(available_cores())
    return {"sgemm_gflops": 2 * n**3 / t / 1e9, "fma_gflops": peak, "fma_isa": isa, "tiles": _tile_shape(), **rates}


def _tile_shape():
    """The fused kernel's micro-tile here, rows x vectors: 'AVX-512 8x3' or '4x6' (by CPU kind),
    'AVX2 4x3', or 'none'."""
    try:
        from ._kernels import _project
    except ImportError:
        return "none"
    width = backends.simd_width()
    if width == 512:
        rows, vectors = _project.tile_shape512()
        return f"AVX-512 {rows}x{vectors}"
    shape = "AVX2 4x3" if width == 256 else "none"
    widest = backends.simd_capped_below(width)
    if widest is not None:
        shape += f" (capped by FASTEMBED_SIMD: the CPU runs {backends.simd_name(widest)})"
    return shape


class MemoryProbe:
    """Memory write and copy rates, timed among a case's methods in the same interleaved rounds, so
    that the case's bounds see the memory the methods saw (on the Zen 4 VM the write rate swung
    between about 28 and 55 GB/s from minute to minute). Write: a fill of 256 MB; copy: numpy
    copyto of 256 MB into another 256 MB, counted as reads + writes; each the fastest of one thread,
    one thread per core (numpy's fill and copyto release the GIL) and streaming stores on every core
    (``stream_probe``: the kernels stream large outputs, which a plain store's read of each line
    would otherwise put below the bound). The buffers lie far beyond the caches, also with --quick."""

    PREFIX = "memory "
    _instance = None

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self.dst = np.ones(256 * 2**20 // 4, np.float32)  # written once: the pages are mapped
        self.src = np.ones_like(self.dst)
        self.pool = ThreadPoolExecutor(available_cores())
        self.dst_parts = np.array_split(self.dst, available_cores())
        self.src_parts = np.array_split(self.src, available_cores())

    @classmethod
    def shared(cls):
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def methods(self, kind):
        """{name: callable} of the probe ``kind`` ("write" or "copy"), to time among a case's methods."""
        if kind == "write":
            one, every = (lambda: self.dst.fill(1.0)), (lambda: list(self.pool.map(_fill_one, self.dst_parts)))
        else:
            one = lambda: np.copyto(self.dst, self.src)  # noqa: E731
            every = lambda: list(self.pool.map(np.copyto, self.dst_parts, self.src_parts))  # noqa: E731
        methods = {f"{self.PREFIX}{kind}, one thread": one, f"{self.PREFIX}{kind}, every core": every}
        try:
            from ._kernels._rows import stream_probe
        except ImportError:
            return methods
        dst, src = self.dst.view(np.uint8), (self.src.view(np.uint8) if kind == "copy" else None)
        methods[f"{self.PREFIX}{kind}, streamed"] = lambda: stream_probe(dst, src, available_cores())
        return methods

    def rates(self, times):
        """{"write_gbs": ..., "copy_gbs": ...} of the probes in ``times`` (those measured), which are
        removed from ``times``."""
        best = {}
        for name in [n for n in times if n.startswith(self.PREFIX)]:
            kind = name[len(self.PREFIX) :].split(",")[0]
            best[kind] = min(best.get(kind, float("inf")), times.pop(name))
        moved = {"write": self.dst.nbytes, "copy": 2 * self.dst.nbytes}
        return {f"{kind}_gbs": moved[kind] / t / 1e9 for kind, t in best.items()}


def _fill_one(part):
    part.fill(1.0)


def _fma_peak(n_threads, steps=2_000_000):
    try:
        from ._kernels._project import fma_probe
    except ImportError:
        return None, None
    width = backends.simd_width() or 512  # the tiles' width (FASTEMBED_SIMD), or the CPU's widest
    flops, isa = fma_probe(steps, n_threads, width)
    if not flops:
        return None, None

    def rate(threads):
        return flops / n_threads * threads / best_time(lambda: fma_probe(steps, threads, width), repeat=5) / 1e9

    return all_core_rate(rate, n_threads), isa


def all_core_rate(rate, n_threads, attempts=3):
    """The best of up to ``attempts`` measurements ``rate(n_threads)``, stopping at one that reaches
    0.8 x n_threads x ``rate(1)``: a VM that stacks two threads on one CPU for a second or more
    halves the probe on every repeat of a measurement (the Zen 4 VM: 118 against 236 GFLOP/s, below
    numpy's sgemm rate of 173, every compute floor doubled and the caps below the ratios reached)."""
    one, best = rate(1), 0.0
    for _ in range(attempts):
        best = max(best, rate(n_threads))
        if n_threads == 1 or best >= 0.8 * n_threads * one:
            break
    return best


def lookup_case(case, quick=False):
    """Every lookup method and peer on one ``fastembed._bench_cases.LookupCase``: best times idle,
    medians with one core busy, and what the bounds need (flops, distinct rows, output bytes)."""
    data = lookup_data(case, quick)
    V, r, d = SHAPES[case.shape]
    B, L = data.ids.shape
    # torch.compile takes tens of seconds to compile each shape: full runs only
    methods = lookup_methods(case, data, compile_torch=not quick)
    probe = MemoryProbe.shared()
    rounds, repeat = (2, 6) if quick else (3, 15)
    times = interleaved_best_times({**methods, **probe.methods("write")}, rounds, repeat)
    rates = probe.rates(times)
    with one_core_busy() as busy:
        busy_times = interleaved_median_times(methods, *((2, 3) if quick else (3, 5))) if busy else {}
    kernel = _materialized_kernel_time(data.ids, dense(case.shape), data.scale, data.pos_table[:L], data.out, quick)
    n = B * L
    distinct = len(np.unique(data.ids))
    return {
        "case": case.name,
        "ids": case.ids,
        "shape": dict(V=V, r=r, d=d, B=B, L=L),
        "distinct_fraction": distinct / n,
        "flops_all": 2.0 * n * r * d,
        "flops_distinct": 2.0 * distinct * r * d,
        "bytes_out": 4.0 * n * d,
        "seconds": times,
        **rates,  # the memory write rate in this case's rounds
        "seconds_one_core_busy": busy_times,
        "materialized_kernel_seconds": kernel,
    }


def _materialized_kernel_time(ids, dense, scale, pos_table, out, quick):
    """The materialized lookup's kernel step alone (the pipeline's gather on the Cython backend, same
    thread choice), without the Python call around it: validation, dispatch, output checks."""
    if "cython" not in backends.available():
        return None
    from ._pipeline import gather
    from ._threads import get_num_threads

    k = backends.kernels("cython")
    flat = np.ascontiguousarray(ids.reshape(-1), dtype=np.int64)
    rows = np.tile(np.arange(ids.shape[-1], dtype=np.int64), flat.size // ids.shape[-1])
    out2d = out.reshape(flat.size, -1)
    n_threads = get_num_threads()
    repeat = 5 if quick else 15
    return best_time(lambda: gather(k, dense, flat, n_threads, scale, None, pos_table, rows, out2d), repeat=repeat)


def positional_cases(quick=False):
    """The sinusoidal table and RoPE, each method timed in interleaved rounds with the memory probe
    of its bound (writes; reads + writes)."""
    n, d = SINUSOIDAL_QUICK if quick else SINUSOIDAL_SHAPE
    shape = ROPE_QUICK if quick else ROPE_SHAPE
    x_bytes = 4.0 * np.prod(shape)
    probe = MemoryProbe.shared()
    # Many short rounds: the Zen 4 VM's memory ran in phases of seconds at ~48 and ~80 GB/s (a
    # streamed copy), and in 3 rounds of 0.2 s a method could miss every fast phase that its bound's
    # probe caught (RoPE "auto" 2.96 ms beside "cython", the same kernel, at 1.81, the bound 1.66).
    rounds, repeat, least = (2, 6, 0.2) if quick else (9, 27, 0.05)
    sinusoidal = interleaved_best_times(
        {**sinusoidal_methods(n, d), **probe.methods("write")}, rounds, repeat, min_seconds=least
    )
    sinusoidal_rates = probe.rates(sinusoidal)
    # inductor compiles for tens of seconds: full runs only
    rope_and_probe = {**rope_methods(shape, compile_torch=not quick), **probe.methods("copy")}
    rope = interleaved_best_times(rope_and_probe, rounds, repeat, min_seconds=least)
    rope_rates = probe.rates(rope)
    return [
        {"case": f"sinusoidal {n}x{d}", "bytes_out": 4.0 * n * d, "seconds": sinusoidal, **sinusoidal_rates},
        {"case": f"rope {shape}", "bytes_read_write": 2 * x_bytes, "seconds": rope, **rope_rates},
    ]


def step_cases(quick=False):
    """One decoding step per batch of STEP_BATCHES, ids (B, 1) at position STEP_POSITION, and one
    decoding step's rotation (``rope_step_methods``) per batch: fastembed's call with ``offset=``
    and the peers, in interleaved rounds (best times, calls back to back)."""
    rounds, repeat = (2, 30) if quick else (3, 60)
    lookups = [
        {
            "case": f"{STEP_SHAPE} decoding step B={batch}",
            "what": f"ids (B, 1) at position {STEP_POSITION}, offset=",
            "seconds": interleaved_best_times(step_methods(batch, compile_torch=not quick), rounds, repeat),
        }
        for batch in STEP_BATCHES
    ]
    rotations = [
        {
            "case": f"rope decoding step B={batch}",
            "what": f"x (B, {ROPE_STEP_HEADS}, 1, {ROPE_STEP_DIM}) float32, the position advancing from "
            f"{STEP_POSITION}, offset=; peers index a kept cos/sin table",
            "seconds": interleaved_best_times(rope_step_methods(batch, compile_torch=not quick), rounds, repeat),
        }
        for batch in STEP_BATCHES
    ]
    return lookups + rotations


def format_steps(report):
    """The decoding steps' table: each method's best time and its ratio to the strongest peer."""
    lines = []
    for case in report.get("steps", []):
        s = case["seconds"]
        strongest, theirs = strongest_peer(s)
        lines.append(
            f"{case['case']} ({case.get('what', f'ids (B, 1) at position {STEP_POSITION}, offset=')})"
            + (f"; strongest peer here: {strongest}" if strongest else "")
        )
        for method, t in sorted(s.items(), key=lambda kv: kv[1]):
            ratio = f"{theirs / t:8.2f}x vs strongest peer" if strongest else ""
            lines.append(f"  {method:24s} {t * 1e6:9.2f} us {ratio}")
        lines.append("")
    return lines


def factorize_case(quick=False):
    try:
        W, source = minilm_table(), "all-MiniLM-L6-v2 30522x384"
    except FileNotFoundError:
        W, source = np.random.default_rng(0).standard_normal((30522, 384), dtype=np.float32), "random 30522x384"
    methods = factorize_methods(W, FACTORIZE_RANK, full_svd=not quick)
    full_svd = {m: methods.pop(m) for m in list(methods) if m == "numpy full SVD"}  # seconds a call: once
    seconds = interleaved_best_times(methods, rounds=2 if quick else 3, repeat=6 if quick else 9)
    seconds.update({m: best_time(f, repeat=1, min_seconds=0) for m, f in full_svd.items()})
    return {"case": f"factorize rank {FACTORIZE_RANK} ({source})", "seconds": seconds}


_FIRST_CALL = """
import json, sys, time
start = time.perf_counter()
import numpy as np
import fastembed
imported = time.perf_counter()
table = np.ones((100, 8), np.float32); proj = np.ones((8, 16), np.float32)
pos = np.zeros((32, 16), np.float32); ids = np.arange(64).reshape(2, 32)
backend = sys.argv[1]
t0 = time.perf_counter()
fastembed.factorized_lookup(ids, table, proj, pos_table=pos, backend=backend)
t1 = time.perf_counter()
fastembed.factorized_lookup(ids, table, proj, pos_table=pos, backend=backend)
t2 = time.perf_counter()
print(json.dumps({"import": imported - start, "first": t1 - t0, "second": t2 - t1}))
"""


def first_calls():
    """Seconds for ``import fastembed`` and a first and second small lookup, each in a fresh
    interpreter: the default backend, and Numba with its on-disk cache as it is and empty."""
    import os
    import subprocess
    import tempfile

    runs = {"auto": {}}
    if "numba" in backends.available():
        runs["numba (disk cache as is)"] = {}
        runs["numba (empty cache: compiles)"] = {"NUMBA_CACHE_DIR": None}
    results = {}
    for name, extra in runs.items():
        with tempfile.TemporaryDirectory() as empty:
            env = dict(os.environ, **{k: (v or empty) for k, v in extra.items()})
            backend = "numba" if name.startswith("numba") else "auto"
            done = subprocess.run(
                [sys.executable, "-c", _FIRST_CALL, backend], env=env, capture_output=True, text=True, check=True
            )
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def static_cases(quick=False):
    """Pooled lookups over real-text CSR ids and StaticEmbedding.encode end to end, with the peers
    (torch EmbeddingBag, model2vec) where installed; None without the MiniLM package."""
    from . import _bench_static as cases

    n = 10_000 if quick else 100_000
    try:
        ids, offsets = cases.ragged_ids(n)
    except (FileNotFoundError, ImportError) as exc:
        return {"skipped": str(exc)}
    repeat = 3 if quick else 7
    pooled = {name: best_time(f, repeat=repeat, min_seconds=0) for name, f in cases.pooled_methods(n).items()}
    in_order = cases.rows_in_order(n)
    rows_in_order = best_time(in_order, repeat=repeat, min_seconds=0)
    encode_methods = cases.encode_methods(n)
    # interleaved: timed one after the other, a drift of the VM's speed during fastembed's few
    # tenths of a second had put its ratio to model2vec anywhere between 14x and 21x
    encode = interleaved_best_times(encode_methods, rounds=2, repeat=2 if quick else 6)
    query = interleaved_best_times(cases.query_methods(), rounds=3, repeat=15, min_seconds=0.02 if quick else 0.2)
    tokenize = {
        name: best_time(f, repeat=2 if quick else 3, min_seconds=0) for name, f in cases.tokenize_methods(n).items()
    }
    same = None
    if "model2vec encode" in encode_methods:
        same = float(np.max(np.abs(encode_methods["fastembed encode"]() - encode_methods["model2vec encode"]())))
    return {
        "sentences": n,
        "tokens": int(ids.shape[0]),
        "d": cases.D,
        "r": cases.R,
        "pooled_seconds": pooled,
        "rows_in_order_seconds": rows_in_order,
        "encode_seconds": encode,
        "query_seconds": query,
        "tokenize_seconds": tokenize,
        "max_difference_to_model2vec": same,
    }


def collect(quick=False):
    report = {
        "quick": quick,
        "machine": {
            "python": platform.python_version(),
            "cores": available_cores(),
            "processor": platform.processor(),
            **roofline(quick),
        },
        "lookup": [lookup_case(case, quick) for case in LOOKUP_CASES],
        "steps": step_cases(quick),
        "positional": positional_cases(quick),
        "factorize": factorize_case(quick),
        "static": static_cases(quick),
        "first_call": first_calls(),
    }
    report["machine"]["peer_simd"] = peer_simd()  # after the cases: they load torch and ONNX Runtime
    return report


def _static_bounds(machine, static):
    """Seconds of the pooled cases at their bounds: the same number of dense rows read in table
    order (the caches' and prefetchers' best case, measured), and the factorized bags' projection
    (B x r x d FMAs) at the sgemm rate."""
    n_bags = static["sentences"]
    rows = static["rows_in_order_seconds"]
    projection = 2 * n_bags * static["r"] * static["d"] / (machine["sgemm_gflops"] * 1e9)
    return rows, projection


def format_static(report):
    static = report.get("static") or {}
    if "pooled_seconds" not in static:
        return [f"static embeddings: skipped ({static.get('skipped', 'not measured')})", ""]
    rows, projection = _static_bounds(report["machine"], static)
    n = static["sentences"]
    lines = [
        f"pooled lookup, mean over {n} real sentences ({static['tokens']} WordPiece tokens, "
        f"{static['tokens'] / n:.1f} per sentence), d={static['d']}; bounds: as many dense rows read in table "
        f"order {rows * 1e3:.1f} ms, factorized projection at the sgemm rate {projection * 1e3:.1f} ms",
    ]
    for name, t in sorted(static["pooled_seconds"].items(), key=lambda kv: kv[1]):
        lines.append(f"  {name:28s} {t * 1e3:9.2f} ms {static['tokens'] / t / 1e6:8.1f} M tokens/s")
    lines.append(f"StaticEmbedding.encode end to end, {n} sentences, per-token weights, normalized")
    for name, t in sorted(static["encode_seconds"].items(), key=lambda kv: kv[1]):
        lines.append(f"  {name:28s} {t:9.3f} s  {n / t:10,.0f} sentences/s")
    if static.get("max_difference_to_model2vec") is not None:
        lines.append(f"  largest difference to model2vec's vectors: {static['max_difference_to_model2vec']:.1e}")
    if static.get("query_seconds"):  # reports before 2026-12-07 have none
        lines.append("StaticEmbedding.encode of one query (a str): a search's latency")
        for name, t in sorted(static["query_seconds"].items(), key=lambda kv: kv[1]):
            lines.append(f"  {name:28s} {t * 1e6:9.1f} us")
    lines.append(f"tokenizing {n} sentences (MiniLM's WordPiece, no special tokens)")
    for name, t in sorted(static.get("tokenize_seconds", {}).items(), key=lambda kv: kv[1]):
        lines.append(f"  {name:28s} {t:9.3f} s  {n / t:10,.0f} sentences/s")
    lines.append("")
    return lines


def static_goals(report):
    """Goals of the static-embedding cases (fastembed._bench_static.GOALS)."""
    from ._bench_static import GOALS

    static = report.get("static") or {}
    if "pooled_seconds" not in static:
        return []
    pooled, encode = static["pooled_seconds"], static["encode_seconds"]
    tokenize = static.get("tokenize_seconds", {})
    rows, projection = _static_bounds(report["machine"], static)
    bag = pooled.get("torch EmbeddingBag(mean)")
    model2vec = (encode.get("model2vec encode"), encode["fastembed encode"], encode["fastembed tokenizer alone"])
    measured = {
        GOALS[0][0]: (bag, pooled["fastembed dense"], rows),
        GOALS[1][0]: (bag, pooled["fastembed factorized r=64"], projection),
        GOALS[2][0]: model2vec,
        GOALS[3][0]: model2vec,
        GOALS[4][0]: (
            tokenize.get("tokenizers encode_batch_fast"),
            tokenize.get("fastembed WordPiece"),
            tokenize.get("UTF-8 encode and join"),
        ),
    }
    out = []
    for case, metric, threshold, bound in GOALS:
        peer, ours, limit = measured[case]
        if peer is None or ours is None:
            continue
        ratio, cap = peer / ours, peer / limit
        out.append(
            Goal(
                f"{case}: >= {threshold:g}{metric}",
                ratio >= threshold,
                f"{ratio:.2f}x ({ours * 1e3:.1f} ms vs {peer * 1e3:.1f} ms); {bound}: {limit * 1e3:.1f} ms, "
                f"at most {cap:.2f}x",
                ratio < threshold and cap < threshold,
            )
        )
    return out


def _bounds(machine, case):
    """Seconds the case takes at the sgemm rate, at the FMA peak (None if unmeasured) and at the write rate."""
    peak = machine.get("fma_gflops")
    fma = case["flops_all"] / (peak * 1e9) if peak else None
    return compute_seconds(machine, case), fma, write_seconds(machine, case)


def format_report(report):
    m = report["machine"]
    peak = f"{m['fma_gflops']:.0f} GFLOP/s ({m['fma_isa']})" if m.get("fma_gflops") else "not measured"
    lines = [
        f"machine: {m['cores']} cores, sgemm (numpy's BLAS) {m['sgemm_gflops']:.0f} GFLOP/s, FMA peak {peak}, "
        f"tiles {m.get('tiles', 'not recorded')}, "
        f"writes {m['write_gbs']:.1f} GB/s, copies {m.get('copy_gbs', float('nan')):.1f} GB/s (python {m['python']})",
        "compute bound = all tokens' projection flops at the sgemm rate; FMA bound = the same at the FMA peak",
    ]
    if m.get("peer_simd"):
        lines.insert(1, format_peer_simd(m["peer_simd"]))
    lines.append("")
    for case in report["lookup"]:
        s = case["seconds"]
        shape = case["shape"]
        compute, fma, memory = _bounds(m, case)
        user = s.get("torch (user)")
        lines.append(
            f"{case['case']} B={shape['B']} L={shape['L']} V={shape['V']} r={shape['r']} d={shape['d']}, "
            f"{case['ids']} ids ({case['distinct_fraction']:.0%} distinct); bounds: compute {compute * 1e3:.2f} ms"
            + (f", FMA {fma * 1e3:.2f} ms" if fma else "")
            + f", output writes {memory * 1e3:.2f} ms ({write_rate(m, case):.1f} GB/s in this case's rounds)"
        )
        strongest, theirs = strongest_peer(s)
        lines.append(f"  strongest peer here: {strongest} ({theirs * 1e3:.3f} ms)")
        header = (
            "method",
            "ms",
            "vs strongest peer",
            "vs torch user",
            "vs numpy",
            "compute bound",
            "FMA bound",
            "write bound",
        )
        lines.append("  {:24s} {:>9s} {:>18s} {:>14s} {:>9s} {:>14s} {:>10s} {:>12s}".format(*header))
        for method, t in sorted(s.items(), key=lambda kv: kv[1]):
            vs_user = f"{user / t:.2f}x" if user else "-"
            fma_share = f"{fma / t:.0%}" if fma else "-"
            lines.append(
                f"  {method:24s} {t * 1e3:9.3f} {theirs / t:17.2f}x {vs_user:>14s} {s['numpy'] / t:8.2f}x "
                f"{compute / t:13.0%} {fma_share:>10s} {memory / t:11.0%}"
            )
        lines.append("")
    lines.extend(format_steps(report))
    lines.extend(format_static(report))
    lines.append("first call, each in a fresh interpreter (ms): import / first lookup / second lookup")
    for name, t in report.get("first_call", {}).items():
        lines.append(f"  {name:32s} {t['import'] * 1e3:8.1f} {t['first'] * 1e3:10.2f} {t['second'] * 1e3:10.3f}")
    lines.append("")
    for case in report["positional"] + [report["factorize"]]:
        s = case["seconds"]
        base = max(s.values())
        bound = ""
        if "bytes_out" in case:
            bound = f"; write bound {write_seconds(m, case) * 1e3:.2f} ms ({write_rate(m, case):.1f} GB/s)"
        elif "bytes_read_write" in case:
            bound = f"; read+write bound {read_write_seconds(m, case) * 1e3:.2f} ms ({copy_rate(m, case):.1f} GB/s)"
        lines.append(case["case"] + bound)
        for method, t in sorted(s.items(), key=lambda kv: kv[1]):
            lines.append(f"  {method:24s} {t * 1e3:9.3f} ms {base / t:8.2f}x vs slowest")
        lines.append("")
    return "\n".join(lines)


def goals(report):
    """A Goal (goal, met, evidence, bound) for each performance goal the report measured: the rows of
    ``fastembed._bench_goals.TARGETS`` and of ``fastembed._bench_static.GOALS``."""
    return evaluate(report) + static_goals(report)


def format_goals(report):
    quick = " (--quick: smaller shapes and fewer repeats than the goals name; indicative only)"
    lines = ["goals" + (quick if report.get("quick") else "") + ":"]
    for goal in goals(report):
        verdict = "met" if goal.met else ("bound" if goal.bound else "MISSED")
        lines.append(f"  [{verdict}] {goal.goal}: {goal.evidence}")
    lines.append("  ([bound]: missed, and the bound named in the evidence makes the goal unreachable here)")
    return "\n".join(lines)


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = report["lookup"]
    fig, axes = plt.subplots(1, len(cases), figsize=(4 * len(cases), 4))
    for ax, case in zip(np.atleast_1d(axes), cases, strict=True):
        items = sorted(case["seconds"].items(), key=lambda kv: kv[1])
        ax.barh([k for k, _ in items], [v * 1e3 for _, v in items], color="C0")
        ax.set_title(f"{case['case']}\n{case['ids']} ids", fontsize=9)
        ax.set_xlabel("ms (lower is better)")
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastembed.bench", description=__doc__)
    parser.add_argument("--json", help="write the measurements as JSON")
    parser.add_argument("--png", help="write a bar chart of the lookup cases")
    parser.add_argument("--quick", action="store_true", help="smaller shapes, fewer repeats")
    args = parser.parse_args(argv)
    from .__main__ import source_tree_without_kernels

    refusal = source_tree_without_kernels()
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    report = collect(args.quick)
    print(format_report(report))
    print(format_goals(report))
    if args.json:
        report["goals"] = [
            {"goal": g.goal, "met": bool(g.met), "evidence": g.evidence, "prevented_by_bound": bool(g.bound)}
            for g in goals(report)
        ]
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    if args.png:
        plot(report, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
