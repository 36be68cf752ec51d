#!/usr/bin/env bash
# bench/campaign/run.sh - tutti vs the peers (Open MPI, MPICH, Gloo), interleaved.
#
#   bench/campaign/run.sh [REPEATS]        # default 3
#   OUT=dir FIRST=4 bench/campaign/run.sh 2   # two more repeats into the same dir
#
# Each repeat runs the peers' suite once (../shared/peers/run_all.sh, REPEATS=1, one
# configuration of $PEER_CFGS at a time, each after the host has settled, as tutti's
# runs are) and then tutti's all_reduce (float32 sum) in the same four
# configurations: shm and tcp, 2 and 4 ranks. Results land in $OUT (default
# bench/campaign/out-<date>); summarize.py turns them into the side-by-side table.
# CONFIGS="shm-2 shm-4" limits tutti's configurations and PEER_CFGS="openmpi-shm-2
# mpich-shm-2" the peers' (names of run_all.sh's results). shmR-2 and shmR-4 run
# shared memory with the buffers in alloc_shared memory (tutti-bench -R 1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=${PEERS_DIR:-$root/../shared/peers}
REPEATS=${1:-3}
OUT=${OUT:-$here/out-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
# Absolute: the peers' script runs in its own directory.
OUT=$(cd "$OUT" && pwd)
bench=$root/target/release/tutti-bench
PEER_CFGS=${PEER_CFGS:-memband-dram-2 openmpi-shm-2 openmpi-tcp-2 openmpi-shm-4 openmpi-tcp-4 mpich-shm-2 mpich-tcp-2 mpich-shm-4 mpich-tcp-4 gloo-tcp-2 gloo-tcp-4}
(cd "$root" && cargo build --release -q -p tutti-bench)

log() { printf '[campaign %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# shellcheck source=bench/campaign/probe.sh
source "$here/probe.sh"
# shellcheck source=bench/campaign/sizes.sh
source "$here/sizes.sh"

tutti_cfg() { # name transport nranks
    local name=$1 transport=$2 n=$3 f="$OUT/tutti-$1.rep$REP.txt"
    local TUTTI_BENCH_FLAGS=""
    if [[ $transport == *R ]]; then
        transport=${transport%R}
        TUTTI_BENCH_FLAGS="-R 1"
    fi
    settle
    log "tutti $name rep $REP"
    {
        echo "# config: tutti-$name  date=$(date -u +%Y-%m-%dT%H:%M:%SZ) load=$(cut -d' ' -f1-3 /proc/loadavg)"
        # The host's cross-core hand-off speed right before and after (the slow state
        # of bench/RESULTS.md shows here as ~2 GB/s instead of ~10).
        echo "# probe before: $(probe_line)"
        tutti_sizes "$n" env TUTTI_TRANSPORT="$transport" "$bench"
        echo "# probe after: $(probe_line)"
    } >"$f" 2>&1
}

FIRST=${FIRST:-1}
for REP in $(seq "$FIRST" $((FIRST + REPEATS - 1))); do
    # One peer configuration at a time, each started once the host has settled (a
    # single call for all of them let a slow spell take several).
    for cfg in $PEER_CFGS; do
        log "peers $cfg rep $REP"
        settle
        echo "peers $cfg rep $REP before: $(probe_line)" >>"$OUT/probe.txt"
        RES="$OUT/peers-rep$REP" ONLY="^$cfg\$" SKIP_INSTALL=1 REPEATS=1 bash "$peers/run_all.sh" >>"$OUT/peers-rep$REP.log" 2>&1 || log "peers $cfg rep $REP failed (see log)"
        echo "peers $cfg rep $REP after: $(probe_line)" >>"$OUT/probe.txt"
    done
    for cfg in ${CONFIGS:-shm-2 shm-4 tcp-2 tcp-4}; do
        tutti_cfg "$cfg" "${cfg%-*}" "${cfg#*-}"
    done
done
python3 "$here/summarize.py" "$OUT" | tee "$OUT/summary.md"
