"""The host's cross-core hand-off probe (transport/examples/xfer_probe.rs, GB/s) that
bench/campaign/run.sh and tcp.sh record around every tutti invocation set and every
peers' repeat: ~10 GB/s normally on the 2-vCPU Zen 4 guest, ~2 in the host's slow
state (bench/RESULTS.md). Shared by summarize.py and summarize_tcp.py."""
import glob, os, re


def print_probes(out):
    probes = []
    for path in sorted(glob.glob(os.path.join(out, 'tutti-*.rep*.txt'))):
        vals = re.findall(r'# probe (before|after): xfer_probe .*?: ([\d.]+) GB/s', open(path).read())
        if vals:
            probes.append((os.path.basename(path)[len('tutti-'):-len('.txt')], ' / '.join(v for _, v in vals)))
    if os.path.exists(os.path.join(out, 'probe.txt')):
        for line in open(os.path.join(out, 'probe.txt')):
            m = re.match(r'(.+?) (before|after): xfer_probe .*?: ([\d.]+) GB/s', line)
            if m:
                probes.append((f'{m.group(1)} {m.group(2)}', m.group(3)))
    if probes:
        print()
        print('Cross-core hand-off probe (xfer_probe 1 MiB, GB/s; before / after):')
        print()
        print('| run | probe |')
        print('|---|---|')
        for name, v in probes:
            print(f'| {name} | {v} |')
