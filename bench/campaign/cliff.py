#!/usr/bin/env python3
"""No-cliff check of a cliff.sh directory (issue 18, point 4): median over the repeats
per size, then each size's bandwidth against the best smaller size's (>= 0.8x passes)
for as long as the data fits the cache. Beyond the cache a drop to the memory plateau
is fine. "Fits the cache" is judged two ways, both printed:
- by message size against the nominal last-level cache (sysfs, machine.txt): the
  rule's wording;
- by the job's working set (the bytes it touches: buffers of every rank and the
  windows) against the cache that cache_sweep measured on the same host (cache.txt):
  what the cores can keep in cache together, which on a virtual machine sharing its
  L3 with other guests is less than the nominal size."""
import glob, os, re, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probes import print_probes  # noqa: E402

out = sys.argv[1]
UNITS = {'B': 1, 'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30}
# The point-to-point ring a rank writes into its peer's window (TUTTI_P2P_RING_BYTES).
RING = 512 << 10
# Each rank's window: two buffers of TUTTI_WINDOW_BYTES (512 KiB by default).
WINDOW = 2 * (512 << 10)


def p2p_window(size):
    """Messages in flight per bandwidth window of tutti-p2p (its window_for): the
    asynchronous API owns a buffer per message, so the sender cycles through this
    many send buffers and the receiver through as many receive buffers (osu_bw
    reuses one of each; an owned-buffer API cannot)."""
    return max(1, min(16, (256 << 20) // max(size, 1)))


def llc_bytes():
    try:
        for line in open(os.path.join(out, 'machine.txt')):
            m = re.match(r'L3 cache:\s*([\d.]+)\s*(KiB|MiB|GiB)', line)
            if m:
                return int(float(m.group(1)) * UNITS[m.group(2)])
    except OSError:
        pass
    return 32 << 20


def measured_cache():
    """The cache_sweep verdict (bytes), or None without cache.txt."""
    try:
        m = re.search(r'measured cache (\d+) MiB', open(os.path.join(out, 'cache.txt')).read())
        return int(m.group(1)) << 20 if m else None
    except OSError:
        return None


def p2p_rows(path):
    """size -> (one-way GB/s, bidirectional GB/s) from a tutti-p2p table; with two
    pairs (4 ranks) one way is the mean of the pairs' (columns bw and bw[1]) and
    both ways the first pair's."""
    rows = {}
    for line in open(path):
        f = line.split()
        if len(f) in (5, 7) and f[1] in UNITS and re.match(r'^[\d.]+$', f[0]):
            one = float(f[3]) if len(f) == 5 else (float(f[3]) + float(f[6])) / 2
            rows[int(float(f[0]) * UNITS[f[1]])] = (one, float(f[4]))
    return rows


def bench_rows(path):
    """size -> (out-of-place busbw, in-place busbw) from a tutti-bench (nccl-tests) table."""
    rows = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 13 and f[0].isdigit() and not line.startswith('#'):
            rows[int(f[0])] = (float(f[7]), float(f[11]))
    return rows


def label(b):
    for u in ('GiB', 'MiB', 'KiB'):
        if b >= UNITS[u] and b % UNITS[u] == 0:
            return f'{b // UNITS[u]} {u}'
    return f'{b} B'


def check(name, series, llc, cache, ws):
    """series: size -> median GB/s; ws: size -> working set. Prints the table and
    returns the failures under each reading: (by message size, by working set)."""
    sizes = sorted(s for s in series if s >= 4096)
    print(f'### {name}\n')
    head = f'by message size (L3 {label(llc)})'
    if cache:
        head += f' | working set | by working set (measured {label(cache)})'
    print(f'| size | GB/s (median) | best smaller | ratio | {head} |')
    print('|---|---|---|---|---|' + ('---|---|' if cache else ''))
    best, fails = None, ([], [])

    def verdict(r, fits, k):
        if r is None:
            return 'first'
        if not fits:
            return 'beyond cache'
        if r >= 0.8:
            return 'ok'
        fails[k].append((name, s, r))
        return 'CLIFF'

    for s in sizes:
        v = series[s]
        r = None if best is None else v / best
        cols = [verdict(r, s <= llc, 0)]
        if cache:
            cols += [label(ws(s)) if ws(s) % 1024 == 0 else f'{ws(s)} B', verdict(r, ws(s) <= cache, 1)]
        ratio = '-' if r is None else f'{r:.2f}x'
        print(f'| {label(s)} | {v:.2f} | {"-" if best is None else f"{best:.2f}"} | {ratio} | ' + ' | '.join(cols) + ' |')
        best = v if best is None else max(best, v)
    print()
    return fails


def median_series(files, parse, pick):
    runs = [parse(f) for f in files]
    sizes = sorted({s for r in runs for s in r})
    return {s: statistics.median([pick(r[s]) for r in runs if s in r]) for s in sizes}


llc, cache = llc_bytes(), measured_cache()
print(f'Last-level cache (sysfs): {label(llc)}.')
if cache:
    sweep = [l.strip() for l in open(os.path.join(out, 'cache.txt')) if l.startswith('cache_sweep')]
    print(f'Measured cache (cache_sweep, cache.txt): {label(cache)}: {sweep[-1]}')
print()
fails = ([], [])


def add(f):
    fails[0].extend(f[0])
    fails[1].extend(f[1])


for n in (2, 4):
    p2p = sorted(glob.glob(os.path.join(out, f'p2p-{n}.rep*.txt')))
    if p2p:
        # One way: every pair's sender's and receiver's buffers (a window of them,
        # p2p_window) and the ring between them; both ways: twice that.
        pairs = n // 2
        add(check(f'tutti-p2p, {n} ranks, one way ({len(p2p)} runs)',
                  median_series(p2p, p2p_rows, lambda x: x[0]), llc, cache,
                  lambda s, k=pairs: k * (2 * p2p_window(s) * s + RING)))
        add(check(f'tutti-p2p, {n} ranks, bidirectional ({len(p2p)} runs)',
                  median_series(p2p, p2p_rows, lambda x: x[1]), llc, cache,
                  lambda s, k=pairs: 2 * k * (2 * p2p_window(s) * s + RING)))
for n in (2, 4):
    files = sorted(glob.glob(os.path.join(out, f'all_reduce-{n}.rep*.txt')))
    if files:
        # Every rank's input and output (one buffer in place) and window.
        add(check(f'all_reduce float32 sum, {n} ranks, out-of-place busbw ({len(files)} runs)',
                  median_series(files, bench_rows, lambda x: x[0]), llc, cache,
                  lambda s, n=n: n * (2 * s + WINDOW)))
        add(check(f'all_reduce float32 sum, {n} ranks, in-place busbw ({len(files)} runs)',
                  median_series(files, bench_rows, lambda x: x[1]), llc, cache,
                  lambda s, n=n: n * (s + WINDOW)))


def say(f):
    if not f:
        return 'no cliff'
    names = list(dict.fromkeys(n for n, _, _ in f))
    return 'CLIFFS: ' + '; '.join(
        f'{n}: ' + ', '.join(f'{label(s)} ({r:.2f}x)' for m, s, r in f if m == n) for n in names)


print(f'Verdict by message size up to the L3 ({label(llc)}): {say(fails[0])}')
if cache:
    print(f'Verdict by working set up to the measured cache ({label(cache)}): {say(fails[1])}')
print_probes(out)
