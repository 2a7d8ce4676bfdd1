"""The report script's arithmetic: bounds, ratios and the goals verdicts, on a synthetic report
(the real timings are measured by ``python -m fastembed.bench``, which CI runs with --quick)."""

import json
import sys

import numpy as np
import pytest

from fastembed import bench
from fastembed._bench_cases import SHAPES
from fastembed._bench_goals import TARGETS, goal_label
from util import COMPILED


def _case(name, ids, B, L, shape, seconds, distinct=1.0):
    n = B * L
    return {
        "case": name,
        "ids": ids,
        "shape": dict(shape, B=B, L=L),
        "distinct_fraction": distinct,
        "flops_all": 2.0 * n * shape["r"] * shape["d"],
        "flops_distinct": 2.0 * distinct * n * shape["r"] * shape["d"],
        "bytes_out": 4.0 * n * shape["d"],
        "seconds": seconds,
    }


def _report(auto_uniform, materialized_latency):
    m = {"python": "3", "cores": 2, "processor": "x", "sgemm_gflops": 250.0, "fma_gflops": 500.0}
    m.update(fma_isa="avx512f", tiles="AVX-512 8x3", write_gbs=32.0)
    a, x = ({"V": V, "r": r, "d": d} for V, r, d in (SHAPES["albert-base"], SHAPES["xxlarge"]))
    peers = {"numpy": 0.022, "torch (user)": 0.05, "torch (best)": 0.021}
    return {
        "machine": m,
        "lookup": [
            _case("albert-base", "text", 32, 512, a, dict(peers, **{"fastembed auto": 0.002}), 0.1),
            _case("albert-base", "uniform", 32, 512, a, dict(peers, **{"fastembed auto": auto_uniform})),
            _case(
                "albert-base latency",
                "uniform",
                1,
                128,
                a,
                {
                    "numpy": 1.3e-4,
                    "torch (user)": 1.5e-4,
                    "fastembed auto": 7e-5,
                    "fastembed materialized": materialized_latency,
                },
            ),
            _case("xxlarge", "uniform", 8, 512, x, {**peers, "fastembed auto": 0.015, "torch (best)": 0.04}),
        ],
        "positional": [
            {
                "case": "sinusoidal 32768x768",
                "bytes_out": 1e8,
                "seconds": {"numpy float64": 0.27, "fastembed cython": 0.005},
            }
        ],
        "factorize": {"case": "factorize", "seconds": {"fastembed svd": 0.05, "fastembed randomized": 0.25}},
        "first_call": {"auto": {"import": 0.07, "first": 0.002, "second": 5e-5}},
    }


def _verdicts(report):
    return {g.goal.split(":")[0]: g.met for g in bench.goals(report)}


def test_goals_follow_the_measurements():
    # compute bound of the uniform case: 2 * 16384 * 128 * 768 / 250e9 = 12.9 ms
    ok = _verdicts(_report(auto_uniform=0.0129 * 1.2, materialized_latency=15e-6))
    assert all(ok.values()), ok
    bad = _verdicts(_report(auto_uniform=0.0129 * 1.3, materialized_latency=30e-6))
    assert not bad["uniform 32x512"]
    assert not bad["1x128 materialized"]
    assert bad["real-text 32x512"] and bad["1x128"]


@pytest.mark.skipif("cython" not in COMPILED, reason="the tile shapes are the Cython kernel's")
def test_the_machine_line_names_the_tiles_in_force(monkeypatch):
    """The report's machine line reads the tile shape from the kernel (tile_shape512 follows
    tile_rows512), so it names 4 x 6 when those run, whatever the CPU, and says when FASTEMBED_SIMD
    caps the tiles below the CPU's widest."""
    from fastembed import backends
    from fastembed._kernels import _project

    previous = _project.tile_rows512()
    monkeypatch.setattr(backends, "simd_width", lambda: 512)
    try:
        for rows512, shape in ((8, (8, 3)), (4, (4, 6))):
            _project.tile_rows512(rows512)
            assert _project.tile_shape512() == shape
            assert bench._tile_shape() == f"AVX-512 {shape[0]}x{shape[1]}"
    finally:
        _project.tile_rows512(previous)
    monkeypatch.setattr(backends, "simd_width", lambda: 256)
    capped = " (capped by FASTEMBED_SIMD: the CPU runs AVX-512)" if _project.simd_width() == 512 else ""
    assert bench._tile_shape() == "AVX2 4x3" + capped
    monkeypatch.setattr(backends, "simd_width", lambda: 0)
    widest = {512: "AVX-512", 256: "AVX2"}.get(_project.simd_width())
    assert bench._tile_shape() == "none" + (f" (capped by FASTEMBED_SIMD: the CPU runs {widest})" if widest else "")


def test_report_text_and_json_are_written(tmp_path, monkeypatch):
    report = _report(0.008, 15e-6)
    text = bench.format_report(report)
    assert "FMA peak 500 GFLOP/s (avx512f), tiles AVX-512 8x3" in text and "first call" in text
    assert bench._tile_shape() in ("AVX-512 8x3", "AVX-512 4x6", "AVX2 4x3", "none")
    assert "[met] uniform 32x512" in bench.format_goals(report)
    assert "indicative only" not in bench.format_goals(report)
    assert "indicative only" in bench.format_goals(dict(report, quick=True))
    monkeypatch.setattr(bench, "collect", lambda quick=False: report)
    out = tmp_path / "r.json"
    assert bench.main(["--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert {g["goal"].split(":")[0] for g in saved["goals"]} >= {"uniform 32x512", "1x128 materialized"}


def test_peer_goals_name_the_bound_that_prevents_them():
    report = _report(0.008, 15e-6)
    latency = report["lookup"][2]
    # 1x128 at the FMA peak: 2 * 128 * 128 * 768 / 500e9 = 50.3 us, so 1.3x a 60 us peer (46 us) is out of reach
    latency["seconds"].update({"onnxruntime": 60e-6, "fastembed auto": 55e-6})
    found = {g.goal.split(":")[0]: g for g in bench.goals(report)}
    goal = found["1x128 vs the strongest peer"]
    assert not goal.met and goal.bound and "onnxruntime" in goal.evidence and "caps it at 1.19x" in goal.evidence
    assert "[bound] 1x128 vs the strongest peer" in bench.format_goals(report)
    latency["seconds"]["onnxruntime"] = 80e-6  # cap 1.6x; 80 / 55 = 1.45x: met
    assert {g.goal: g.met for g in bench.goals(report)}[goal.goal]
    latency["seconds"]["fastembed auto"] = 75e-6  # reachable and missed: MISSED, not bound
    again = {g.goal: g for g in bench.goals(report)}[goal.goal]
    assert not again.met and not again.bound


def test_one_core_busy_goals_compare_medians_with_every_peer():
    report = _report(0.008, 15e-6)
    uniform = report["lookup"][1]
    uniform["seconds_one_core_busy"] = {"numpy": 0.03, "torch (best)": 0.012, "fastembed auto": 0.011}
    found = {g.goal: g for g in bench.goals(report)}
    assert found["uniform 32x512 with one core busy: at least 1x every peer"].met
    uniform["seconds_one_core_busy"]["fastembed auto"] = 0.013
    found = {g.goal: g for g in bench.goals(report)}
    assert not found["uniform 32x512 with one core busy: at least 1x every peer"].met


def test_rope_and_factorize_goals_against_their_peers():
    report = _report(0.008, 15e-6)
    report["machine"]["copy_gbs"] = 40.0
    # 2 * 4 * 16.8M floats = 134 MB read and written: 3.36 ms at 40 GB/s
    report["positional"].append(
        {
            "case": "rope (4, 32, 1024, 128)",
            "bytes_read_write": 2 * 4.0 * 4 * 32 * 1024 * 128,
            "seconds": {"fastembed auto": 4.0e-3, "torch.compile": 7.0e-3, "torch (user)": 0.05},
        }
    )
    report["factorize"]["seconds"]["numpy float64 Gram + eigh"] = 0.09
    by_goal = {g.goal: g.met for g in bench.goals(report)}
    assert by_goal["rope: at least 1.5x torch.compile"]
    assert by_goal["rope: within 1.3x of the read+write bound"]  # 4.0 / 3.36 = 1.19x
    assert not by_goal["factorize MiniLM rank 128 exact: at least 2x numpy float64 Gram + eigh"]  # 1.8x
    report["positional"][-1]["seconds"]["fastembed auto"] = 4.5e-3  # 1.34x the bound
    assert not {g.goal: g.met for g in bench.goals(report)}["rope: within 1.3x of the read+write bound"]


@pytest.mark.parametrize("missing", ["fma_gflops"])
def test_report_without_an_fma_probe(missing):
    report = _report(0.008, 15e-6)
    report["machine"][missing] = None
    assert "not measured" in bench.format_report(report)
    assert _verdicts(report)["uniform 32x512"]


def test_each_goal_is_one_row_and_its_words_come_from_its_threshold():
    labels = [goal_label(t) for t in TARGETS]
    assert len(set(labels)) == len(labels)
    for target, label in zip(TARGETS, labels, strict=True):
        assert f"{target.threshold:g}" in label
    # a threshold changed in its row changes the verdict and the words, nowhere else
    report = _report(0.008, 15e-6)
    row = next(t for t in TARGETS if t.label == "1x128" and t.peer == "torch (user)")
    (goal,) = bench.evaluate(report, [row])
    assert goal.met  # 150 / 70 us = 2.1x
    (goal,) = bench.evaluate(report, [row._replace(threshold=2.5)])
    assert not goal.met and "2.5x" in goal.goal


def test_interleaved_rounds_time_every_method_in_every_round(monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "best_time", lambda fn, repeat, min_seconds: fn() or calls[-1][1])
    methods = {name: (lambda name=name: calls.append((name, len(calls) + 1))) for name in "abc"}
    best = bench.interleaved_best_times(methods, rounds=3, repeat=9)
    assert [name for name, _ in calls] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert best == {"a": 1, "b": 2, "c": 3}  # the smallest "time" each method had over its rounds


def test_busy_medians_take_every_method_in_every_round(monkeypatch):
    """Under contention each method is timed in every round (the order rotating), at least
    ``repeat`` calls a round after a warm-up, and its median over all rounds is kept."""
    clock, calls = [0.0], []
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])

    def method(name, seconds):
        def call():
            calls.append(name)
            clock[0] += seconds.pop(0) if len(seconds) > 1 else seconds[0]

        return call

    # a: one slow call in its first round; b: slow in every round but the last
    methods = {"a": method("a", [1.0, 9.0, 1.0]), "b": method("b", [5.0] * 8 + [2.0])}
    medians = bench.interleaved_median_times(methods, rounds=3, repeat=2, min_seconds=0, settle=0)
    assert calls == [name for name in "abbaab" for _ in range(3)]  # a warm-up and 2 timed calls a round
    assert medians == {"a": 1.0, "b": 5.0}


def test_fma_peak_is_measured_again_when_the_threads_shared_a_cpu():
    """An all-core probe far below the cores' one-thread rate (threads stacked on one CPU) is taken
    again, at most three times, and the best is kept."""
    stacked = iter([120.0, 118.0, 236.0, 119.0])
    assert bench.all_core_rate(lambda n: 118.0 if n == 1 else next(stacked), 2) == 236.0
    stacked = iter([120.0, 118.0, 119.0, 236.0])
    assert bench.all_core_rate(lambda n: 118.0 if n == 1 else next(stacked), 2) == 120.0  # three tries
    assert bench.all_core_rate(lambda n: 118.0 if n == 1 else 200.0, 2) == 200.0  # 85%: no retry
    assert bench.all_core_rate(lambda n: 118.0, 1) == 118.0


def test_bounds_use_the_memory_rates_measured_in_the_case_own_rounds():
    """A case's write and copy rates, measured among its methods, replace the machine's probe."""
    report = _report(0.008, 15e-6)
    text = report["lookup"][0]  # 32 x 512 x 768 float32 out = 50.3 MB: 1.57 ms at 32 GB/s
    rows = [t for t in TARGETS if t.metric == "x output-write bound" and t.case == "albert-base text"]
    (goal,) = bench.evaluate(report, rows)
    assert "1.573 ms at the write rate" in goal.evidence
    text["write_gbs"] = 16.0
    (goal,) = bench.evaluate(report, rows)
    assert "3.146 ms at the write rate" in goal.evidence
    assert "16.0 GB/s in this case's rounds" in bench.format_report(report)
    rope = {"case": "rope", "bytes_read_write": 4e8, "seconds": {"fastembed auto": 0.01}}
    report["machine"]["copy_gbs"] = 40.0
    assert bench.read_write_seconds(report["machine"], rope) == pytest.approx(0.01)
    assert bench.read_write_seconds(report["machine"], dict(rope, copy_gbs=80.0)) == pytest.approx(0.005)


def test_memory_probe_rates_are_taken_out_of_the_case_times():
    probe = bench.MemoryProbe.__new__(bench.MemoryProbe)
    probe.dst = np.zeros(1000, np.float32)  # 4000 bytes
    expected = {"memory write, one thread", "memory write, every core"}
    if "cython" in COMPILED:
        expected.add("memory write, streamed")  # the kernels' streaming stores
    assert set(bench.MemoryProbe.methods(probe, "write")) == expected
    times = {
        "fastembed auto": 1.0,
        "memory write, one thread": 4e-6,
        "memory write, every core": 2e-6,
        "memory copy, one thread": 8e-6,
    }
    rates = probe.rates(times)
    assert times == {"fastembed auto": 1.0}
    assert rates == {"write_gbs": pytest.approx(2.0), "copy_gbs": pytest.approx(1.0)}


@pytest.mark.skipif("cython" not in COMPILED, reason="the streaming probe is a Cython kernel")
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_stream_probe_copies_and_zeroes_every_byte(threads):
    from fastembed._kernels._rows import stream_probe

    rng = np.random.default_rng(3)
    for n in (0, 1, 63, 64, 65, 1000, 4097):
        for start in (0, 1, 16, 33):
            src = rng.integers(1, 255, n + start, dtype=np.uint8)[start:]
            buf = np.full(n + 2 * 64 + start, 7, np.uint8)
            dst = buf[64 + start : 64 + start + n]
            stream_probe(dst, src, threads)
            np.testing.assert_array_equal(dst, src)
            stream_probe(dst, None, threads)
            assert not dst.any()
            assert (buf[: 64 + start] == 7).all() and (buf[64 + start + n :] == 7).all()


def test_static_benchmark_model_folder_is_removed_at_exit(minilm_dir):
    import subprocess
    import sys
    from pathlib import Path

    code = "from fastembed import _bench_static as s; print(s.model_folder())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    folder = Path(done.stdout.strip())
    assert folder.name.startswith("fastembed-bench-static-")
    assert not folder.exists()


def test_decoding_steps_table_ranks_methods_against_the_strongest_peer():
    report = {"steps": [{"case": "albert-base decoding step B=1", "seconds": {"fastembed auto": 8e-6, "numpy": 1e-5}}]}
    lines = bench.format_steps(report)
    assert lines[0].startswith("albert-base decoding step B=1") and "strongest peer here: numpy" in lines[0]
    assert "fastembed auto" in lines[1] and "8.00 us" in lines[1] and "1.25x vs strongest peer" in lines[1]
    assert bench.format_steps({}) == []


@pytest.mark.parametrize("batch", [1, 8])
def test_decoding_step_methods_all_write_the_same_step(batch):
    """Every method of the report's decoding step writes (table[ids] @ proj) * scale + pos[100]."""
    from fastembed import _bench_cases as cases
    from fastembed import reference

    table, proj, ids, pos, scale = cases.step_data(batch)
    expected = reference.factorized_lookup(ids, table, proj, scale=scale, pos_table=pos, offset=cases.STEP_POSITION)
    out = np.empty(expected.shape, np.float32)
    methods = cases.step_methods(batch, compile_torch=False, out=out)
    assert "fastembed auto" in methods and "numpy" in methods
    for name, run in methods.items():
        out[...] = np.nan
        run()
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4, err_msg=name)


def test_rope_decoding_steps_are_described_in_the_table():
    what = "x (B, 32, 1, 128) float32, the position advancing"
    report = {"steps": [{"case": "rope decoding step B=1", "what": what, "seconds": {"fastembed auto": 1e-5}}]}
    assert bench.format_steps(report)[0] == f"rope decoding step B=1 ({what})"


@pytest.mark.parametrize("batch", [1, 8])
def test_rope_decoding_step_methods_all_rotate_the_same_steps(batch):
    """Every method of the report's RoPE decoding step rotates x at positions 100, 101, ... (the
    float64 truth), one position further each call."""
    from fastembed import _bench_cases as cases
    from fastembed import reference

    out = np.empty((batch, cases.ROPE_STEP_HEADS, 1, cases.ROPE_STEP_DIM), np.float32)
    methods = cases.rope_step_methods(batch, compile_torch=False, out=out)
    assert {"fastembed auto", "numpy"} <= set(methods)
    x = np.random.default_rng(3).standard_normal(out.shape, dtype=np.float32)
    inv_freq = 10000.0 ** (-np.arange(0, cases.ROPE_STEP_DIM, 2) / cases.ROPE_STEP_DIM)
    for name, run in methods.items():
        for position in (cases.STEP_POSITION, cases.STEP_POSITION + 1):
            out[...] = np.nan
            run()
            expected = reference.rope(x, np.full(out.shape[:-1], position), "neox", out.shape[-1], inv_freq)
            np.testing.assert_allclose(out, expected, atol=2e-5, err_msg=f"{name} at {position}")


def test_a_peer_kept_alone_keeps_its_buffers_alive():
    """asv keeps only the method it times: ONNX Runtime's callable holds the output buffer its
    binding writes into (without it, a step's fresh buffer was freed and the heap corrupted)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import gc
    import weakref

    from fastembed._peers import lookup_peers

    rng = np.random.default_rng(0)
    E, P = rng.standard_normal((50, 8)).astype(np.float32), rng.standard_normal((8, 16)).astype(np.float32)
    pos, ids = rng.standard_normal((4, 16)).astype(np.float32), rng.integers(0, 50, (2, 3))
    out = np.zeros((2, 3, 16), np.float32)
    alive = weakref.ref(out)
    run = lookup_peers(E, P, pos, 1.5, ids, out, compile_torch=False)["onnxruntime"]
    del out
    gc.collect()
    assert alive() is not None
    run()
    np.testing.assert_allclose(alive(), (E[ids] @ P) * 1.5 + pos[:3], rtol=1e-5, atol=1e-5)


def test_the_report_says_which_simd_each_peer_runs(monkeypatch, tmp_path):
    from fastembed import _peer_simd as ps

    assert ps.numpy_simd({"AVX2": True, "AVX512F": False, "AVX512_SKX": False}) == "AVX2"
    assert ps.numpy_simd({"AVX2": True, "AVX512F": True, "AVX512_SKX": True}) == "AVX-512"
    assert ps.numpy_simd({"ASIMD": True}) == "NEON" and ps.numpy_simd({}) == "baseline"
    assert ps.numpy_simd() in ("AVX-512", "AVX2", "NEON", "baseline")  # numpy's own table reads
    info = [
        {"user_api": "blas", "internal_api": "openblas", "architecture": "Zen"},
        {"user_api": "openmp", "internal_api": "openmp"},
        {"user_api": "blas", "internal_api": "mkl"},
        {"user_api": "blas", "internal_api": "openblas", "architecture": "Zen"},
    ]
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "AVX2")
    assert ps.blas_libraries(info) == ["openblas Zen", "mkl (MKL_ENABLE_INSTRUCTIONS=AVX2)"]
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f\n")
    flags = ps.cpu_flags(str(cpuinfo))
    assert {"avx2", "fma", "avx512f"} <= flags and ps.cpu_flags(str(tmp_path / "none")) == frozenset()
    monkeypatch.setitem(sys.modules, "onnxruntime", object())
    assert ps.onnxruntime_simd(flags) == "AVX-512 (MLAS, by CPUID)"
    assert ps.onnxruntime_simd(flags - {"avx512f"}) == "AVX2 (MLAS, by CPUID)"
    monkeypatch.delitem(sys.modules, "onnxruntime")
    assert ps.onnxruntime_simd(flags) is None  # not loaded by the report: not listed
    levels = ps.peer_simd(flags)
    assert levels["numpy"] == ps.numpy_simd() and "onnxruntime" not in levels
    report = _report(0.008, 15e-6)
    simd = {"numpy": "AVX2", "BLAS": "openblas Zen", "onnxruntime": "AVX-512 (MLAS, by CPUID)"}
    report["machine"]["peer_simd"] = simd
    lines = bench.format_report(report).splitlines()
    assert lines[1] == (
        "peers' SIMD (FASTEMBED_SIMD caps none of them): numpy AVX2, BLAS openblas Zen, "
        "onnxruntime AVX-512 (MLAS, by CPUID)"
    )
    del report["machine"]["peer_simd"]  # a report saved before the line existed
    assert not any(line.startswith("peers' SIMD") for line in bench.format_report(report).splitlines())


def _asv_common():
    """benchmarks/common.py of the source tree (absent from an sdist or wheel test run: skipped)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "common.py"
    if not path.is_file():
        pytest.skip("no benchmarks/ beside tests/")
    spec = importlib.util.spec_from_file_location("fastembed_asv_common", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_asv_setup_builds_each_benchmarks_callable_once_per_process():
    # asv_runner >= 0.3 runs setup before every timed call: the callable (and its buffers) must be
    # the one built the first time, not rebuilt on fresh memory for each call
    prepared = _asv_common().prepared
    built = []

    class Step:
        @prepared
        def setup(self, method, batch):
            built.append((type(self).__name__, method, batch))
            n_built = len(built)
            return lambda: (method, batch, n_built)

    class Other(Step):
        pass

    first, again, other_params, other_class = Step(), Step(), Step(), Other()
    first.setup("numpy", 1)
    again.setup("numpy", 1)
    other_params.setup("numpy", 8)
    other_class.setup("numpy", 1)
    assert again.run is first.run and first.run() == ("numpy", 1, 1)
    assert other_params.run is not first.run and other_params.run() == ("numpy", 8, 2)
    assert other_class.run is not first.run
    assert built == [("Step", "numpy", 1), ("Step", "numpy", 8), ("Other", "numpy", 1)]


def test_asv_setup_that_skips_is_not_cached():
    prepared = _asv_common().prepared
    calls = []

    class Missing:
        @prepared
        def setup(self, method):
            calls.append(method)
            raise NotImplementedError("peer not installed")

    for _ in range(2):
        with pytest.raises(NotImplementedError):
            Missing().setup("onnxruntime")
    assert calls == ["onnxruntime", "onnxruntime"]


def test_torch_compile_keeps_inductor_caches_apart_per_aten_capability(monkeypatch):
    # inductor's cache keys leave ATEN_CPU_CAPABILITY out: 8-float loops cached under avx2 corrupted
    # the heap of a later uncapped run on AVX-512 (torch 2.13.0), so capped runs get a folder apart
    import os
    import types

    from fastembed import _peers

    compiled = []
    monkeypatch.setitem(
        sys.modules, "torch", types.SimpleNamespace(compile=lambda fn, dynamic: compiled.append(dynamic) or fn)
    )
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)

    def fn():
        return 1

    assert _peers.torch_compile(fn) is fn
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ  # uncapped: inductor's own default
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    _peers.torch_compile(fn)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"].endswith("-aten-avx2")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/the/callers/own")
    _peers.torch_compile(fn)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/the/callers/own"
    assert compiled == [False, False, False]


def test_inductor_cache_dir_names_the_capability():
    from fastembed._peers import inductor_cache_dir

    assert inductor_cache_dir("AVX2", "/tmp/torchinductor_u/") == "/tmp/torchinductor_u-aten-avx2"
    assert inductor_cache_dir("avx512/../x", "/c") == "/c-aten-avx512____x"
