"""Wall-clock timing shared by the report (fastembed.bench) and the demo."""

import time


def wall_times(fn, repeat):
    """Seconds of each of ``repeat`` calls of ``fn()``, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
