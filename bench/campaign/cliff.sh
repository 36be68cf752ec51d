#!/usr/bin/env bash
# bench/campaign/cliff.sh - the no-cliff check of issue 18: point-to-point and
# all_reduce bandwidth from 4 KiB to 256 MiB (factor 2), shm, 2 and 4 ranks.
#
#   bench/campaign/cliff.sh [REPEATS]      # default 3; OUT=dir to choose the output
#
# Each repeat runs tutti-p2p (group API, one-way and bidirectional) with 2 and 4 ranks and
# tutti-bench all_reduce (float32 sum) with 2 and 4 ranks, each program started once
# the host is out of its slow state (probe.sh's settle; the probe before and after each
# goes to probe.txt). Before the repeats, cache_sweep measures how much data the cores
# keep in cache together (cache.txt). cliff.py takes the median per size and checks
# the rule: up to the cache size, every size's bandwidth is at least 0.8x the best
# smaller size's; it judges each size both by message size against the nominal
# last-level cache and by the job's working set against the measured cache.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
REPEATS=${1:-3}
OUT=${OUT:-$here/out-cliff-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
(cd "$root" && cargo build --release -q -p tutti-bench &&
    cargo build --release -q -p tutti-transport --example cache_sweep)
bin=$root/target/release
log() { printf '[cliff %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
# shellcheck source=bench/campaign/probe.sh
source "$here/probe.sh"
# One measured program: settle, probe, run, probe.
measured() {
    local name=$1
    shift
    settle
    echo "$name before: $(probe_line)" >>"$OUT/probe.txt"
    "$@"
    echo "$name after: $(probe_line)" >>"$OUT/probe.txt"
}
{
    grep -m1 'model name' /proc/cpuinfo
    lscpu | grep -E '^(L2|L3) cache'
    lscpu | grep Flags
} >"$OUT/machine.txt"
log "cache sweep"
measured "cache sweep" "$bin/examples/cache_sweep" >"$OUT/cache.txt"
for REP in $(seq 1 "$REPEATS"); do
    for n in 2 4; do
        log "p2p n=$n rep $REP"
        measured "p2p $n rep $REP" env TUTTI_TRANSPORT=shm "$bin/tutti-p2p" --transport shm --nranks "$n" -b 4K -e 256M -f 2 -t 0.2 >"$OUT/p2p-$n.rep$REP.txt" 2>&1
    done
    for n in 2 4; do
        log "all_reduce n=$n rep $REP"
        # In-cache sizes with enough iterations to average over the scheduler's
        # time slices (4 ranks share 2 cores), then the rest.
        measured "all_reduce $n rep $REP" env TUTTI_TRANSPORT=shm "$bin/tutti-bench" all_reduce --nranks "$n" -d float -o sum -a 3 --no-progress \
            -b 4K -e 4M -f 2 -n 200 -w 20 >"$OUT/all_reduce-$n.rep$REP.txt" 2>&1
        measured "all_reduce $n rep $REP (8M-256M)" env TUTTI_TRANSPORT=shm "$bin/tutti-bench" all_reduce --nranks "$n" -d float -o sum -a 3 --no-progress \
            -b 8M -e 256M -f 2 -n 20 -w 3 >>"$OUT/all_reduce-$n.rep$REP.txt" 2>&1
    done
done
python3 "$here/cliff.py" "$OUT" | tee "$OUT/summary.md"
