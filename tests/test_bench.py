"""The report script's arithmetic: bounds, ratios and the goals verdicts, on a synthetic report
(the real timings are measured by ``python -m fastembed.bench``, which CI runs with --quick)."""

import json

import pytest

from fastembed import bench


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
    m.update(fma_isa="avx512f", write_gbs=32.0)
    a, x = bench.ALBERT, bench.XXLARGE
    peers = {"numpy": 0.02, "torch (user)": 0.05, "torch (best)": 0.019}
    return {
        "machine": m,
        "lookup": [
            _case("albert-base", "text", 32, 512, a, dict(peers, **{"fastembed auto": 0.003}), 0.1),
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
    return {goal.split(":")[0]: met for goal, met, _ in bench.goals(report)}


def test_goals_follow_the_measurements():
    # compute bound of the uniform case: 2 * 16384 * 128 * 768 / 250e9 = 12.9 ms
    ok = _verdicts(_report(auto_uniform=0.0129 * 1.2, materialized_latency=15e-6))
    assert all(ok.values()), ok
    bad = _verdicts(_report(auto_uniform=0.0129 * 1.3, materialized_latency=30e-6))
    assert not bad["uniform 32x512"]
    assert not bad["1x128 materialized"]
    assert bad["real-text 32x512"] and bad["1x128"]


def test_report_text_and_json_are_written(tmp_path, monkeypatch):
    report = _report(0.008, 15e-6)
    text = bench.format_report(report)
    assert "FMA peak 500 GFLOP/s (avx512f)" in text and "first call" in text
    assert "[met] uniform 32x512" in bench.format_goals(report)
    assert "indicative only" not in bench.format_goals(report)
    assert "indicative only" in bench.format_goals(dict(report, quick=True))
    monkeypatch.setattr(bench, "collect", lambda quick=False: report)
    out = tmp_path / "r.json"
    assert bench.main(["--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert {g["goal"].split(":")[0] for g in saved["goals"]} >= {"uniform 32x512", "1x128 materialized"}


@pytest.mark.parametrize("missing", ["fma_gflops"])
def test_report_without_an_fma_probe(missing):
    report = _report(0.008, 15e-6)
    report["machine"][missing] = None
    assert "not measured" in bench.format_report(report)
    assert _verdicts(report)["uniform 32x512"]
