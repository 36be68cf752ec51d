#!/usr/bin/env python3
"""No-cliff check of a cliff.sh directory (issue 18, point 4): median over the repeats
per size, then, up to the last-level cache size, each size's bandwidth against the best
smaller size's (>= 0.8x passes). Beyond the cache a drop to the memory plateau is fine."""
import glob, os, re, statistics, sys

out = sys.argv[1]
UNITS = {'B': 1, 'KiB': 1 << 10, 'MiB': 1 << 20, 'GiB': 1 << 30}

def llc_bytes():
    try:
        for line in open(os.path.join(out, 'machine.txt')):
            m = re.match(r'L3 cache:\s*([\d.]+)\s*(KiB|MiB|GiB)', line)
            if m:
                return int(float(m.group(1)) * UNITS[m.group(2)])
    except OSError:
        pass
    return 32 << 20

def p2p_rows(path):
    """size -> (one-way GB/s, bidirectional GB/s) from a tutti-p2p table."""
    rows = {}
    for line in open(path):
        f = line.split()
        if len(f) == 5 and f[1] in UNITS and re.match(r'^[\d.]+$', f[0]):
            rows[int(float(f[0]) * UNITS[f[1]])] = (float(f[3]), float(f[4]))
    return rows

def bench_rows(path):
    """size -> out-of-place busbw from a tutti-bench (nccl-tests) table."""
    rows = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 13 and f[0].isdigit() and not line.startswith('#'):
            rows[int(f[0])] = float(f[7])
    return rows

def label(b):
    for u in ('GiB', 'MiB', 'KiB'):
        if b >= UNITS[u] and b % UNITS[u] == 0:
            return f'{b // UNITS[u]} {u}'
    return f'{b} B'

def check(name, series, llc):
    """series: size -> median GB/s. Prints the table and returns the failures."""
    sizes = sorted(s for s in series if s >= 4096)
    print(f'### {name}\n')
    print('| size | GB/s (median) | best smaller | ratio | verdict |')
    print('|---|---|---|---|---|')
    best, fails = None, []
    for s in sizes:
        v = series[s]
        if best is None:
            verdict, ratio = 'first', '-'
        else:
            r = v / best
            ratio = f'{r:.2f}x'
            if s > llc:
                verdict = 'beyond LLC'
            elif r >= 0.8:
                verdict = 'ok'
            else:
                verdict = 'CLIFF'
                fails.append((name, s, r))
        print(f'| {label(s)} | {v:.2f} | {"-" if best is None else f"{best:.2f}"} | {ratio} | {verdict} |')
        if s <= llc:
            best = v if best is None else max(best, v)
    print()
    return fails

def median_series(files, parse, pick):
    runs = [parse(f) for f in files]
    sizes = sorted({s for r in runs for s in r})
    return {s: statistics.median([pick(r[s]) for r in runs if s in r]) for s in sizes}

llc = llc_bytes()
print(f'Last-level cache: {label(llc)} (sizes above it may drop to the memory plateau).\n')
fails = []
p2p = sorted(glob.glob(os.path.join(out, 'p2p-2.rep*.txt')))
if p2p:
    fails += check(f'tutti-p2p, 2 ranks, one way ({len(p2p)} runs)', median_series(p2p, p2p_rows, lambda x: x[0]), llc)
    fails += check(f'tutti-p2p, 2 ranks, bidirectional ({len(p2p)} runs)', median_series(p2p, p2p_rows, lambda x: x[1]), llc)
for n in (2, 4):
    files = sorted(glob.glob(os.path.join(out, f'all_reduce-{n}.rep*.txt')))
    if files:
        fails += check(f'all_reduce float32 sum, {n} ranks, busbw ({len(files)} runs)', median_series(files, bench_rows, lambda x: x), llc)
print('Verdict: ' + ('no cliff' if not fails else 'CLIFFS at ' + ', '.join(f'{n}: {label(s)} ({r:.2f}x)' for n, s, r in fails)))
