#!/usr/bin/env python3
"""Summary of a namespaces campaign directory (bench/campaign/netns.sh): medians over
the repeats of all_reduce on 16 ranks in 4 namespaces - tutti's flat ring, hierarchical
and tuned, and Open MPI on the same namespaces - as time per op (us) and busbw
(GB/s), and the ratios of hierarchical to flat and to Open MPI."""
import glob, os, statistics, sys

out = sys.argv[1]
SIZES = [8, 65536, 262144, 1 << 20, 4 << 20, 16 << 20, 64 << 20]


def label(s):
    return f'{s >> 20}M' if s >= 1 << 20 else (f'{s >> 10}K' if s >= 1024 else f'{s}B')


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, p=2):
    return '-' if x is None else (f'{x:.{p}f}' if x < 1000 else f'{x:.0f}')


def runs(pattern, time_col, bw_col, wrong_col=None):
    """Per repeat: {size: (oop time us, oop busbw)}; reports rows with wrong elements."""
    res = []
    for path in sorted(glob.glob(os.path.join(out, pattern))):
        rows = {}
        for line in open(path):
            if line.startswith('#') or line.startswith('['):
                continue
            f = line.split()
            if len(f) > max(time_col, bw_col) and f[0].isdigit():
                try:
                    rows[int(f[0])] = (float(f[time_col]), float(f[bw_col]))
                except ValueError:
                    continue
                if wrong_col is not None and len(f) > wrong_col and f[wrong_col] not in ('0', 'N/A'):
                    print(f'WRONG ELEMENTS in {path}: {line.strip()}')
        if rows:
            res.append(rows)
    return res


configs = [
    ('tutti flat ring (TUTTI_ALGO=ring)', runs('tutti-ring.rep*.txt', 5, 7, 8)),
    ('tutti hierarchical (TUTTI_ALGO=hier)', runs('tutti-hier.rep*.txt', 5, 7, 8)),
    ('tutti tuned (auto)', runs('tutti-auto.rep*.txt', 5, 7, 8)),
    ('Open MPI (vader in a namespace, tcp between)', runs('openmpi-hosts.rep*.txt', 4, 6)),
]
print('16 ranks = 4 namespaces x 4, float32 sum all_reduce, out of place; median of the')
print('repeats: time per op in us, then busbw in GB/s.')
print()
print('| config | runs | ' + ' | '.join(f'{label(s)} us' for s in SIZES)
      + ' | ' + ' | '.join(f'{label(s)} GB/s' for s in SIZES[1:]) + ' |')
print('|---|---|' + '---|' * (2 * len(SIZES) - 1))
table = {}
for name, rs in configs:
    if not rs:
        continue
    t = [med([r.get(s, (None, None))[0] for r in rs]) for s in SIZES]
    b = [med([r.get(s, (None, None))[1] for r in rs]) for s in SIZES]
    table[name] = (t, b)
    print(f'| {name} | {len(rs)} | ' + ' | '.join(fmt(x) for x in t) + ' | '
          + ' | '.join(fmt(x) for x in b[1:]) + ' |')


def ratio(a, b):
    if a not in table or b not in table:
        return
    ta, tb = table[a][0], table[b][0]
    cells = ['-' if x is None or y is None else f'{y / x:.2f}x' for x, y in zip(ta, tb)]
    print(f'| {a.split(" (")[0]} vs {b.split(" (")[0]} (speedup) | ' + ' | '.join(cells) + ' |')


print()
print('Speedup (time of the second / time of the first):')
print()
print('| pair | ' + ' | '.join(label(s) for s in SIZES) + ' |')
print('|---|' + '---|' * len(SIZES))
ratio('tutti hierarchical (TUTTI_ALGO=hier)', 'tutti flat ring (TUTTI_ALGO=ring)')
ratio('tutti tuned (auto)', 'tutti flat ring (TUTTI_ALGO=ring)')
ratio('tutti tuned (auto)', 'Open MPI (vader in a namespace, tcp between)')
