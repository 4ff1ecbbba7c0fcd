"""Figures of interleaved benchmark rounds, shared by the bench scripts' embedded Python.

Each script runs its contenders round by round (round 1: A, B, C; round 2: A, B, C; …) and
keeps one sample per contender and round. A figure is the median of those samples with their
min–max beside it; a comparison is the ratio of two medians, and it is called a tie when the
two min–max ranges overlap: the rounds did not separate the contenders.

    import sys; sys.path.insert(0, "bench"); import stats
    stats.cell([9.1, 9.8, 9.4])              # '9.40 (9.10–9.80)'
    stats.ratio([12, 13, 12.5], [10, 11])    # '1.19×'
    stats.ratio([10, 11, 12], [10.5, 11])    # '1.02× (tie)'
"""

import statistics


def median(xs):
    """The median of the samples, or None when there are none."""
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=None):
    """A number for a table: thousands separated from 100 on, else `digits` (2) decimals."""
    if x is None:
        return "—"
    if digits is None:
        digits = 0 if abs(x) >= 100 else 2
    return f"{x:,.{digits}f}"


def span(xs, digits=None):
    """'min–max' of the samples, '—' when there are none."""
    xs = [x for x in xs if x is not None]
    return f"{fmt(min(xs), digits)}–{fmt(max(xs), digits)}" if xs else "—"


def cell(xs, digits=None, unit=""):
    """'median (min–max)' of the samples; just the median when there is one sample."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    if digits is None:
        digits = 0 if abs(median(xs)) >= 100 else 2
    if len(xs) == 1:
        return f"{fmt(xs[0], digits)}{unit}"
    return f"{fmt(median(xs), digits)}{unit} ({span(xs, digits)})"


def is_tie(a, b):
    """True when the min–max ranges of the two sample lists overlap."""
    a = [x for x in a if x is not None]
    b = [x for x in b if x is not None]
    return bool(a and b) and min(a) <= max(b) and min(b) <= max(a)


def ratio(a, b, digits=2):
    """'1.17×' (median of a / median of b), with ' (tie)' when the ranges overlap; '—' when a
    side has no samples or b's median is 0; 'baseline' when a is b (the row compared with)."""
    if a is b:
        return "baseline"
    ma, mb = median(a), median(b)
    if ma is None or not mb:
        return "—"
    text = f"{ma / mb:.{digits}f}×"
    return f"{text} (tie)" if is_tie(a, b) else text


def steal_line(pct, rounds):
    """The sentence on the host's steal time over the pass and how the rounds were run."""
    try:
        value = f"{float(pct):.1f}%"
    except (TypeError, ValueError):
        value = "unknown"
    return (f"{rounds} interleaved rounds (each round runs every contender once, in turn); medians "
            f"with min–max in brackets; a ratio marked (tie) is one whose two min–max ranges overlap. "
            f"Steal time over the pass (CPU the host gave to its other guests, both cores): {value} "
            f"of all CPU time; above about 1% the spread says more about the host than about the tools.")
