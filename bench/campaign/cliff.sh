#!/usr/bin/env bash
# bench/campaign/cliff.sh - the no-cliff check of issue 18: point-to-point and
# all_reduce bandwidth from 4 KiB to 256 MiB (factor 2), shm, 2 and 4 ranks.
#
#   bench/campaign/cliff.sh [REPEATS]      # default 3; OUT=dir to choose the output
#
# Each repeat runs tutti-p2p (group API, one-way and bidirectional) with 2 ranks and
# tutti-bench all_reduce (float32 sum) with 2 and 4 ranks. cliff.py takes the median
# per size and checks the rule: up to the last-level cache size, every size's
# bandwidth is at least 0.8x the best smaller size's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
REPEATS=${1:-3}
OUT=${OUT:-$here/out-cliff-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
(cd "$root" && cargo build --release -q -p tutti-bench)
bin=$root/target/release
log() { printf '[cliff %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
{
    grep -m1 'model name' /proc/cpuinfo
    lscpu | grep -E '^(L2|L3) cache'
    lscpu | grep Flags
} >"$OUT/machine.txt"
for REP in $(seq 1 "$REPEATS"); do
    log "p2p rep $REP"
    TUTTI_TRANSPORT=shm "$bin/tutti-p2p" --transport shm --nranks 2 -b 4K -e 256M -f 2 -t 0.2 >"$OUT/p2p-2.rep$REP.txt" 2>&1
    for n in 2 4; do
        log "all_reduce n=$n rep $REP"
        TUTTI_TRANSPORT=shm "$bin/tutti-bench" all_reduce --nranks "$n" -d float -o sum -a 3 --no-progress \
            -b 4K -e 256M -f 2 -n 20 -w 3 >"$OUT/all_reduce-$n.rep$REP.txt" 2>&1
    done
done
python3 "$here/cliff.py" "$OUT" | tee "$OUT/summary.md"
