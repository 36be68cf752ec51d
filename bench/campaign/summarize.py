#!/usr/bin/env python3
"""Side-by-side summary of a campaign directory: tutti and the peers, median over the
repeats (the peers' own summarize.py logic for their files: '8B mean' and busbw at
every size from 64 KiB to 256 MiB, factor 4), with the ratios the targets are stated in."""
import glob, os, re, statistics, sys

out = sys.argv[1]

def tutti_rows(path):
    """(size -> (oop time us, oop busbw)) from a tutti-bench (nccl-tests) table."""
    rows = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 13 and f[0].isdigit() and not line.startswith('#'):
            rows[int(f[0])] = (float(f[5]), float(f[7]))
    return rows

def peer_rows(path):
    """Per run: (8B mean us, size -> busbw) from the peers' result file."""
    runs, cur = [], None
    for line in open(path):
        if line.startswith('## run'):
            cur = {'mean8': None, 'bw': {}}
            runs.append(cur)
        elif cur is not None and not line.startswith('#'):
            f = line.split()
            if len(f) >= 7 and f[0].isdigit():
                size = int(f[0])
                # mpi_allreduce.c / gloo_allreduce.py rows:
                # size count type redop time_us algbw busbw #wrong iters
                if size == 8:
                    cur['mean8'] = float(f[4])
                cur['bw'][size] = float(f[6])
    return runs

sizes = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20]

def label(b):
    return f'{b >> 20}MiB' if b >= 1 << 20 else f'{b >> 10}KiB'
# shmR: shared memory with the buffers from alloc_shared (tutti-bench -R 1).
configs = ['shm-2', 'shm-4', 'shmR-2', 'shmR-4', 'tcp-2', 'tcp-4']
peer_map = {'shm-2': ['openmpi-shm-2', 'mpich-shm-2'], 'shm-4': ['openmpi-shm-4', 'mpich-shm-4'],
            'shmR-2': ['openmpi-shm-2', 'mpich-shm-2'], 'shmR-4': ['openmpi-shm-4', 'mpich-shm-4'],
            'tcp-2': ['openmpi-tcp-2', 'mpich-tcp-2', 'gloo-tcp-2'], 'tcp-4': ['openmpi-tcp-4', 'mpich-tcp-4', 'gloo-tcp-4']}

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt(x, p=2):
    return '-' if x is None else (f'{x:.{p}f}' if x < 1000 else f'{x:.0f}')

print('| config | runs | 8B mean us | ' + ' | '.join('busbw ' + label(b) for b in sizes) + ' |')
print('|---|---|---|' + '---|' * len(sizes))
table = {}
for cfg in configs:
    files = sorted(glob.glob(os.path.join(out, f'tutti-{cfg}.rep*.txt')))
    if not files:
        continue
    runs = [tutti_rows(f) for f in files]
    lat = med([r.get(8, (None, None))[0] for r in runs])
    bws = [med([r.get(s, (None, None))[1] for r in runs]) for s in sizes]
    table['tutti-' + cfg] = (lat, bws)
    print(f'| tutti-{cfg} | {len(runs)} | {fmt(lat)} | ' + ' | '.join(fmt(b) for b in bws) + ' |')
    for peer in peer_map[cfg]:
        pruns = []
        for f in sorted(glob.glob(os.path.join(out, 'peers-rep*', f'{peer}.txt'))):
            pruns += peer_rows(f)
        if not pruns:
            continue
        lat = med([r['mean8'] for r in pruns])
        bws = [med([r['bw'].get(s) for r in pruns]) for s in sizes]
        table[peer] = (lat, bws)
        print(f'| {peer} | {len(pruns)} | {fmt(lat)} | ' + ' | '.join(fmt(b) for b in bws) + ' |')

print()
print('Ratios (tutti / best peer of the same transport and rank count; latency: best peer / tutti, so > 1 means tutti is faster):')
print()
print('| config | 8B latency | ' + ' | '.join(label(b) for b in sizes) + ' |')
print('|---|---|' + '---|' * len(sizes))
for cfg in configs:
    t = table.get('tutti-' + cfg)
    ps = [table[p] for p in peer_map[cfg] if p in table]
    if not t or not ps:
        continue
    best_lat = min(p[0] for p in ps if p[0] is not None)
    cells = [fmt(best_lat / t[0]) + 'x' if t[0] else '-']
    for i in range(len(sizes)):
        best = max((p[1][i] for p in ps if p[1][i] is not None), default=None)
        cells.append(fmt(t[1][i] / best) + 'x' if best and t[1][i] else '-')
    print(f'| {cfg} | ' + ' | '.join(cells) + ' |')


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probes import print_probes  # noqa: E402

print_probes(out)
