"""Inputs that tests/fuzz_kernels.py found, kept as regression tests."""

import os

import numpy as np
import pytest

import fastembed as fe


def _rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.parametrize("backend", fe.backends.available())
def test_huge_count_fails_fast_without_materialising_positions(backend):
    """fuzz: sinusoidal(2**31 - 1, 6) built a 17 GB arange of positions before the 51 GB table failed
    (libFuzzer out-of-memory). Now the output is allocated first and positions are made per block."""
    before = _rss()
    with pytest.raises(MemoryError):
        fe.sinusoidal(2**31 - 1, 6, backend=backend)
    with pytest.raises(MemoryError):
        fe.rope_cos_sin(2**40, 64, backend=backend)
    assert _rss() - before < 64 * 2**20


def test_counts_past_the_position_limit_are_index_errors():
    with pytest.raises(IndexError):
        fe.sinusoidal(2**41, 4)


def test_large_count_is_filled_block_by_block():
    from fastembed import _positional as positional

    old = positional.FILL_CHUNK_ROWS
    positional.FILL_CHUNK_ROWS = 100  # force several blocks
    try:
        blocks = fe.sinusoidal(1050, 10, cache=False)
    finally:
        positional.FILL_CHUNK_ROWS = old
    np.testing.assert_array_equal(blocks, fe.sinusoidal(1050, 10, cache=False))
    cos, sin = fe.rope_cos_sin(1050, 8)
    np.testing.assert_allclose(cos, np.cos(np.arange(1050)[:, None] * 10000.0 ** (-np.arange(0, 8, 2) / 8)), atol=1e-14)
