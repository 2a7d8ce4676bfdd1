"""Wall-clock timing shared by the report (fastembed.bench) and the demo."""

import time


def wall_times(fn, repeat, min_seconds=0.0, most=None):
    """Seconds of each call of ``fn()``, after one untimed warm-up call: at least ``repeat`` calls,
    more until they took ``min_seconds`` in all, at most ``most`` (None: no limit)."""
    fn()
    times, spent = [], 0.0
    while len(times) < repeat or spent < min_seconds:
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        spent += elapsed
        if most is not None and len(times) >= most:
            break
    return times
