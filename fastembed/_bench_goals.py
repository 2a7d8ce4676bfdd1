"""The report's performance goals as rows of data, and the one evaluation that reads them.

Each goal is a :class:`Target`: the case it is measured on, the metric, the threshold (written here
once; the goal's label is made from it) and, for a ratio to another method, the peer. A metric
returns the measured value, its evidence and, where a bound of the machine caps what any method can
reach, that cap: a goal missed beyond its cap is reported as prevented by the bound, not missed.
"""

from typing import NamedTuple

AUTO = "fastembed auto"
BEST_FASTEMBED = "best fastembed"  # the fastest fastembed method of the case


class Target(NamedTuple):
    label: str  # what is measured, e.g. "uniform 32x512"
    case: str  # a key of ``cases(report)``: "albert-base uniform", "rope", "factorize", ...
    metric: str  # a key of METRICS
    threshold: float
    peer: str | None = None  # the other method of a ratio ("x peer")
    method: str = AUTO  # fastembed's method measured
    cap: str | None = None  # the machine's bound that caps what any method reaches: a key of CAPS


class Goal(NamedTuple):
    goal: str
    met: bool
    evidence: str
    bound: bool = False  # missed, and the machine's bound named in the evidence prevents it


TARGETS = [
    # against the strongest peer of the same run, idle and with one core busy
    Target("uniform 32x512", "albert-base uniform", "x strongest peer", 1.3, cap="floor"),
    Target("real text 32x512", "albert-base text", "x strongest peer", 2.0, cap="floor"),
    Target("real text 32x512", "albert-base text", "x output-write bound", 1.5, cap="floor"),
    Target("1x128", "albert-base latency uniform", "x strongest peer", 1.3, cap="floor"),
    Target("uniform 32x512 with one core busy", "albert-base uniform", "x strongest peer, one core busy", 1.0),
    Target("real text 32x512 with one core busy", "albert-base text", "x strongest peer, one core busy", 1.0),
    Target("1x128 with one core busy", "albert-base latency uniform", "x strongest peer, one core busy", 1.0),
    Target("rope", "rope", "x peer", 1.5, peer="torch.compile"),
    Target("rope", "rope", "x read+write bound", 1.3),
    Target("factorize MiniLM rank 128 exact", "factorize", "x peer", 2.0, "numpy float64 Gram + eigh", "fastembed svd"),
    # against torch as a user writes it, numpy, and the machine's bounds
    Target("real-text 32x512", "albert-base text", "x peer", 6.0, peer="torch (user)"),
    Target("real-text 32x512", "albert-base text", "ms", 5.0),
    Target("uniform 32x512", "albert-base uniform", "x peer", 2.2, peer="torch (user)"),
    Target("uniform 32x512", "albert-base uniform", "x compute bound", 1.25),
    Target("1x128", "albert-base latency uniform", "x peer", 1.5, peer="torch (user)"),
    Target(
        "1x128 materialized",
        "albert-base latency uniform",
        "x output-write bound",
        1.5,
        method="fastembed materialized",
    ),
    Target("d=4096 r=256", "xxlarge uniform", "x peer", 1.0, peer="torch (best)"),
    Target("d=4096 r=256", "xxlarge uniform", "x peer", 1.0, peer="numpy"),
    Target("auto, every lookup case", "lookup", "worst x peer", 1.0, peer="numpy"),
    Target("sinusoidal 32768x768", "sinusoidal", "x peer", 20.0, "numpy float64", BEST_FASTEMBED),
    Target("rope (4,32,1024,128)", "rope", "x peer", 4.0, "torch (user)", BEST_FASTEMBED),
    Target("first call of the default backend (no JIT compile)", "first call", "ms", 20.0),
    Target("factorize 30522x384 rank 128 exact", "factorize", "ms", 60.0, method="fastembed svd"),
]


def cases(report):
    """Each measured case of a report under the key a Target names."""
    found = {f"{c['case']} {c['ids']}": c for c in report["lookup"]}
    found["lookup"] = report["lookup"]
    for case in report["positional"]:
        found[case["case"].split(" ")[0]] = case
    found["factorize"] = report["factorize"]
    first = (report.get("first_call") or {}).get("auto")
    if first:
        found["first call"] = {"seconds": {AUTO: first["first"]}, "second": first["second"]}
    return found


def _seconds(case, method):
    s = case["seconds"]
    if method == BEST_FASTEMBED:
        mine = {k: v for k, v in s.items() if k.startswith("fastembed")}
        return min(mine.values()) if mine else None
    return s.get(method)


def strongest_peer(seconds):
    """(name, seconds) of the fastest method that is not fastembed's, or (None, None)."""
    peers = {k: v for k, v in seconds.items() if not k.startswith("fastembed")}
    return min(peers.items(), key=lambda kv: kv[1]) if peers else (None, None)


def floor_seconds(machine, case):
    """The least time any method can take on this machine: the projection of every token at the
    FMA peak, or, skipping repeats, of the distinct rows followed by the output writes (the
    writes need the projected rows), whichever is less. The sgemm rate stands in for an
    unmeasured FMA peak."""
    rate = (machine.get("fma_gflops") or machine["sgemm_gflops"]) * 1e9
    return min(case["flops_all"] / rate, case["flops_distinct"] / rate + write_seconds(machine, case))


def write_rate(machine, case):
    """GB/s of memory writes: measured in the case's own rounds where it was, else the machine's."""
    return case.get("write_gbs") or machine["write_gbs"]


def copy_rate(machine, case):
    """GB/s of a memory copy, reads + writes: the case's own where measured, else the machine's."""
    return case.get("copy_gbs") or machine.get("copy_gbs") or write_rate(machine, case)


def write_seconds(machine, case):
    return case["bytes_out"] / (write_rate(machine, case) * 1e9)


def read_write_seconds(machine, case):
    """Seconds to read and write ``case['bytes_read_write']`` at the measured copy rate (reads + writes)."""
    return case["bytes_read_write"] / (copy_rate(machine, case) * 1e9)


def compute_seconds(machine, case):
    return case["flops_all"] / (machine["sgemm_gflops"] * 1e9)


# Each metric: (template of the goal's words, "at least" or "at most", measure(machine, case, target)
# returning (value, evidence, cap) or None when the case lacks what it needs; cap is the best value
# the machine's bound allows, None when no bound applies).
def _x_peer(machine, case, t):
    mine, theirs = _seconds(case, t.method), case["seconds"].get(t.peer)
    if mine is None or theirs is None:
        return None
    return theirs / mine, f"{theirs / mine:.2f}x ({mine * 1e3:.3f} vs {theirs * 1e3:.3f} ms)", None


def _x_strongest_peer(machine, case, t):
    peer, theirs = strongest_peer(case["seconds"])
    mine = _seconds(case, t.method)
    if peer is None or mine is None:
        return None
    evidence = f"{theirs / mine:.2f}x {peer} ({mine * 1e3:.3f} vs {theirs * 1e3:.3f} ms)"
    if t.cap is None:
        return theirs / mine, evidence, None
    floor = CAPS[t.cap](machine, case)
    cap = theirs / floor
    evidence += f"; {t.cap} {floor * 1e3:.3f} ms ({CAP_WORDS[t.cap]}) caps it at {cap:.2f}x"
    return theirs / mine, evidence, cap


def _x_strongest_peer_busy(machine, case, t):
    busy = case.get("seconds_one_core_busy") or {}
    peer, theirs = strongest_peer(busy)
    if peer is None or t.method not in busy:
        return None
    mine = busy[t.method]
    idle = case["seconds"]
    evidence = (
        f"{theirs / mine:.2f}x {peer} (medians {mine * 1e3:.3f} vs {theirs * 1e3:.3f} ms; "
        f"idle {idle[t.method] * 1e3:.3f} vs {idle.get(peer, float('nan')) * 1e3:.3f} ms)"
    )
    return theirs / mine, evidence, None


def _over_bound(bound, name):
    def measure(machine, case, t):
        mine = _seconds(case, t.method)
        if mine is None:
            return None
        limit = bound(machine, case)
        evidence = f"{mine / limit:.2f}x ({mine * 1e3:.3f} ms vs {limit * 1e3:.3f} ms {name})"
        if t.cap is None:
            return mine / limit, evidence, None
        cap = CAPS[t.cap](machine, case) / limit
        return mine / limit, evidence + f"; the {t.cap} ({CAP_WORDS[t.cap]}) is {cap:.2f}x", cap

    return measure


def _ms(machine, case, t):
    mine = _seconds(case, t.method)
    if mine is None:
        return None
    extra = f" (second call {case['second'] * 1e3:.2f} ms)" if "second" in case else ""
    return mine * 1e3, f"{mine * 1e3:.2f} ms{extra}", None


def _worst_x_peer(machine, lookups, t):
    ratios = [(c["seconds"][t.peer] / c["seconds"][t.method], c) for c in lookups if t.peer in c["seconds"]]
    if not ratios:
        return None
    ratio, worst = min(ratios, key=lambda rc: rc[0])
    return ratio, f"worst case {worst['case']} {worst['ids']}: {ratio:.2f}x {t.peer}", None


METRICS = {
    "x peer": ("at least {threshold:g}x {peer}", "at least", _x_peer),
    "x strongest peer": ("vs the strongest peer: >= {threshold:g}x", "at least", _x_strongest_peer),
    "x strongest peer, one core busy": ("at least {threshold:g}x every peer", "at least", _x_strongest_peer_busy),
    "x output-write bound": (
        "within {threshold:g}x of the output-write bound",
        "at most",
        _over_bound(write_seconds, "at the write rate"),
    ),
    "x compute bound": (
        "within {threshold:g}x of the compute bound",
        "at most",
        _over_bound(compute_seconds, "at the sgemm rate"),
    ),
    "x read+write bound": (
        "within {threshold:g}x of the read+write bound",
        "at most",
        _over_bound(read_write_seconds, "at the measured copy rate"),
    ),
    "ms": ("under {threshold:g} ms", "at most", _ms),
    "worst x peer": ("at least {threshold:g}x {peer} in every case", "at least", _worst_x_peer),
}
CAPS = {"floor": floor_seconds}
CAP_WORDS = {"floor": "every token projected at the FMA peak, or the distinct rows and then the output writes"}


def goal_label(target):
    template = METRICS[target.metric][0]
    words = template.format(threshold=target.threshold, peer=target.peer)
    return f"{target.label} {words}" if target.metric == "x strongest peer" else f"{target.label}: {words}"


def evaluate(report, targets=TARGETS):
    """A Goal for each target whose case and methods the report measured."""
    machine, found, out = report["machine"], cases(report), []
    for target in targets:
        case = found.get(target.case)
        if case is None:
            continue
        _, direction, measure = METRICS[target.metric]
        measured = measure(machine, case, target)
        if measured is None:
            continue
        value, evidence, cap = measured
        at_least = direction == "at least"
        met = value >= target.threshold if at_least else value <= target.threshold
        prevented = cap is not None and not met and (cap < target.threshold if at_least else cap > target.threshold)
        out.append(Goal(goal_label(target), bool(met), evidence, bool(prevented)))
    return out
