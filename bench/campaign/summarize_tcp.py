#!/usr/bin/env python3
"""Summary of a TCP campaign directory (bench/campaign/tcp.sh): medians over the
repeats of tutti's and the peers' all_reduce (8-byte time per op, busbw at every size
from 64 KiB to 256 MiB), the ratios the targets are stated in, and the bounds of plain
loopback sockets measured in the same sitting."""
import glob, os, re, statistics, sys

out = sys.argv[1]
SIZES = [65536, 262144, 1 << 20, 4 << 20, 16 << 20, 64 << 20, 256 << 20]


def label(s):
    return f'{s >> 20}M' if s >= 1 << 20 else f'{s >> 10}K'


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, p=2):
    return '-' if x is None else (f'{x:.{p}f}' if x < 1000 else f'{x:.0f}')


def tutti_runs(cfg):
    """Per repeat: {size: (oop time us, oop busbw)}; reports rows with wrong elements."""
    runs = []
    for path in sorted(glob.glob(os.path.join(out, f'tutti-{cfg}.rep*.txt'))):
        rows = {}
        for line in open(path):
            f = line.split()
            if len(f) >= 13 and f[0].isdigit() and not line.startswith('#'):
                rows[int(f[0])] = (float(f[5]), float(f[7]))
                if f[8] not in ('0', 'N/A') or f[12] not in ('0', 'N/A'):
                    print(f'WRONG ELEMENTS in {path}: {line.strip()}')
        runs.append(rows)
    return runs


def peer_runs(name):
    runs = []
    for path in sorted(glob.glob(os.path.join(out, 'peers-rep*', f'{name}.txt'))):
        cur = None
        for line in open(path):
            if line.startswith('## run'):
                cur = {}
                runs.append(cur)
            elif cur is not None and not line.startswith('#'):
                f = line.split()
                if len(f) >= 7 and f[0].isdigit():
                    cur[int(f[0])] = (float(f[4]), float(f[6]))
    return runs


def row(runs):
    lat = med([r.get(8, (None, None))[0] for r in runs])
    return lat, [med([r.get(s, (None, None))[1] for r in runs]) for s in SIZES]


table = {}
print('Median of the repeats: "8B us" = time per back-to-back 8-byte all_reduce, then busbw in GB/s.')
print()
print('| config | runs | 8B us | ' + ' | '.join(label(s) for s in SIZES) + ' |')
print('|---|---|---|' + '---|' * len(SIZES))
for n in (2, 4):
    entries = [(f'tutti tcp {n}', tutti_runs(f'tcp-{n}'))]
    if n == 2:
        entries.append(('tutti tcp 2, system cc', tutti_runs('tcp-2-syscc')))
    for peer in (f'openmpi-tcp-{n}', f'gloo-tcp-{n}', f'mpich-tcp-{n}'):
        entries.append((peer, peer_runs(peer)))
    for name, runs in entries:
        if not runs:
            continue
        table[name] = row(runs)
        lat, bws = table[name]
        bold = '**' if name.startswith('tutti') else ''
        print(f'| {bold}{name}{bold} | {len(runs)} | {fmt(lat)} | ' + ' | '.join(fmt(b) for b in bws) + ' |')

extra = sorted({os.path.basename(f).split('.rep')[0][len('tutti-'):]
                for f in glob.glob(os.path.join(out, 'tutti-*.rep*.txt'))}
               - {'tcp-2', 'tcp-4', 'tcp-2-syscc'})
for cfg in extra:
    runs = tutti_runs(cfg)
    lat, bws = row(runs)
    print(f'| tutti {cfg} | {len(runs)} | {fmt(lat)} | ' + ' | '.join(fmt(b) for b in bws) + ' |')

print()
print('Ratios: busbw tutti / peer (target >= 1.5 against Open MPI, >= 3 against Gloo); '
      '8-byte latency peer / tutti (target >= 1, i.e. tutti no slower):')
print()
print('| config | 8B latency | ' + ' | '.join(label(s) for s in SIZES) + ' |')
print('|---|---|' + '---|' * len(SIZES))
for n in (2, 4):
    t = table.get(f'tutti tcp {n}')
    for peer in (f'openmpi-tcp-{n}', f'gloo-tcp-{n}'):
        p = table.get(peer)
        if not t or not p:
            continue
        lat = fmt(p[0] / t[0]) + 'x' if p[0] and t[0] else '-'
        cells = [fmt(a / b) + 'x' if a and b else '-' for a, b in zip(t[1], p[1])]
        print(f'| tcp {n} vs {peer} | {lat} | ' + ' | '.join(cells) + ' |')

print()
print('Bounds of plain loopback sockets (tcp_bounds, no tutti), median of the repeats:')
print()
bounds = {}
for path in sorted(glob.glob(os.path.join(out, 'bounds.rep*.txt'))):
    cc = None
    for line in open(path):
        m = re.match(r'## cc=(\S+)', line)
        if m:
            cc = m.group(1)
            continue
        m = re.match(r'(\S+) (\d+) B.*?(half round trip|GB/s)', line)
        if not m:
            continue
        mode = m.group(1)
        procs = re.search(r'\((\d+) processes', line)
        if mode in ('ring', 'ring-poll') and procs:
            mode = f'{mode}{procs.group(1)}'
        mesh = re.search(r', (\d+) processes', line)
        if mode == 'allreduce' and mesh:
            mode = f'allreduce{mesh.group(1)}'
        v = re.search(r'half round trip ([\d.]+) us', line) or re.search(r'([\d.]+) GB/s', line)
        bounds.setdefault((cc, mode, int(m.group(2))), []).append(float(v.group(1)))
print('| congestion control | test | median | unit |')
print('|---|---|---|---|')
for (cc, mode, size), vs in bounds.items():
    unit = ('us (half round trip)' if mode.startswith('pingpong')
            else 'GB/s busbw' if mode.startswith('allreduce') else 'GB/s per direction')
    print(f'| {cc} | {mode} {size} B | {fmt(med(vs))} | {unit} |')

# What plain sockets move at each size, as all_reduce busbw. A 2-rank all_reduce of
# S bytes sends S each way (the ring's two halves, or the direct exchange), so its
# busbw (= S / t) compares with what each side of a plain two-way transfer sends per
# second: `exchange` (one socket written and read at once, a writer and a reader
# thread per side) and `ring2` (two sockets, each carrying one direction); the
# `-poll` forms do the same with one thread per process (tutti's shape). A 4-rank
# ring sends 1.5 S out of each rank in t, busbw = 1.5 S / t: it compares with
# `ring4`, what each of 4 processes in a plain socket ring sends per second.
# `allreduceN` is a whole all_reduce on plain sockets (N processes, one hop, lock-step,
# float32 sum in rank order: tutti's direct algorithm without the library), its busbw
# as nccl-tests defines it: the bound for the sizes where the tuner picks direct.
def bnd(cc, mode, size):
    return med(bounds.get((cc, mode, size), []))


ccs = sorted({cc for (cc, _, _) in bounds})
if any(bnd(cc, 'exchange', s) for cc in ccs for s in SIZES):
    print()
    print('Plain sockets at each size (GB/s sent per process; see the comment in '
          'summarize_tcp.py), Open MPI x 1.5 (the target) and tutti, same sitting:')
    print()
    print('| ranks | row | ' + ' | '.join(label(s) for s in SIZES) + ' |')
    print('|---|---|' + '---|' * len(SIZES))
    for n, modes in ((2, ('exchange', 'exchange-poll', 'ring2', 'ring-poll2', 'allreduce2')),
                     (4, ('ring4', 'allreduce4'))):
        for cc in ccs:
            for mode in modes:
                vals = [bnd(cc, mode, s) for s in SIZES]
                if any(vals):
                    print(f'| {n} | plain sockets, {mode}, {cc} | ' + ' | '.join(fmt(v) for v in vals) + ' |')
        o = table.get(f'openmpi-tcp-{n}')
        t = table.get(f'tutti tcp {n}')
        if o:
            print(f'| {n} | 1.5 x Open MPI | ' + ' | '.join(fmt(1.5 * b if b else None) for b in o[1]) + ' |')
        if t:
            print(f'| {n} | tutti | ' + ' | '.join(fmt(b) for b in t[1]) + ' |')

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from probes import print_probes  # noqa: E402

print_probes(out)
