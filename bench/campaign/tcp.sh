#!/usr/bin/env bash
# bench/campaign/tcp.sh - tutti's TCP all_reduce against Open MPI's tcp BTL and Gloo,
# with the loopback bounds measured in the same sitting, repeats interleaved.
#
#   bench/campaign/tcp.sh [REPEATS]        # default 3; run it under `heavy`
#   OUT=dir FIRST=2 bench/campaign/tcp.sh 1   # one more repeat into the same dir
#   EXTRA="crc-2:2:TUTTI_TCP_CHECKSUM=1 s1-2:2:TUTTI_SOCKETS_PER_PEER=1" ...
#       # more tutti configurations per repeat (name:nranks:ENV=VAL[,ENV=VAL])
#
# Each repeat runs, in this order:
#   1. the peers (../shared/peers/run_all.sh, REPEATS=1, once per configuration of
#      $PEER_CFGS, each after the host has settled): Open MPI tcp and Gloo, 2 and 4
#      ranks (MPICH's tcp with 2 for reference);
#   2. the bounds of plain loopback sockets, without tutti (tcp_bounds): 8-byte
#      ping-pong busy-polling and blocking, a one-way stream of 512 KiB messages and
#      at 64 KiB..16 MiB messages a two-way exchange over one socket and rings of 2
#      and 4 processes over one-way sockets (what plain sockets move at the 2- and
#      4-rank all_reduce's busbw), each with a writer and a reader thread, and for 2
#      the same with one thread per process moving whichever socket can
#      (`exchange-poll`, `ring-poll`: tutti's shape), under the system's congestion
#      control and under reno;
#   3. tutti all_reduce (float32 sum, out of place, time = max over ranks) over tcp
#      with 2 and 4 ranks, sizes 8 B and 64 KiB .. 256 MiB (x4), and with 2 ranks
#      again under the system's congestion control (TUTTI_TCP_CONGESTION=system).
# Results land in $OUT (default bench/campaign/out-tcp-<date>); summarize_tcp.py
# prints the medians and the ratios.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
peers=${PEERS_DIR:-$root/../shared/peers}
REPEATS=${1:-3}
OUT=${OUT:-$here/out-tcp-$(date -u +%Y%m%dT%H%M%SZ)}
PEER_CFGS=${PEER_CFGS:-openmpi-tcp-2 openmpi-tcp-4 gloo-tcp-2 gloo-tcp-4 mpich-tcp-2}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
(cd "$root" && cargo build --release -q -p tutti-bench && cargo build --release -q -p tutti-transport --example tcp_bounds)
bench=$root/target/release/tutti-bench
bounds=$root/target/release/examples/tcp_bounds

log() { printf '[tcp-campaign %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# shellcheck source=bench/campaign/probe.sh
source "$here/probe.sh"
# shellcheck source=bench/campaign/sizes.sh
source "$here/sizes.sh"

{
    echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) CPUs, family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model $(grep -m1 '^model' /proc/cpuinfo | cut -d: -f2 | xargs))"
    echo "# kernel: $(uname -r); congestion control: $(sysctl -n net.ipv4.tcp_congestion_control); commit: $(git -C "$root" rev-parse --short HEAD)"
} >"$OUT/machine.txt"

# The loopback's own slow spells (bench/RESULTS.md, "The TCP slow spell"): plain
# sockets and tutti alike fall to ~1.5 GB/s at every size for 30-60 s, which the
# memory hand-off probe does not see. Before every measured program, after `settle`,
# `tcp_settle` waits the same way for a short plain-socket exchange.
best_tcp=0
tcp_line() { "$bounds" --cc reno exchange-poll 1M 0.2 2>/dev/null | awk '{print $5}'; }
tcp_settle() { settle_on best_tcp "loopback (plain-socket exchange)" tcp_line; }

# The kernel's TCP loss counters (cumulative since boot), written before and after
# every measured program to tcp_counters.txt: a run that retransmits tells a lossy
# spell of the loopback from a slow program.
tcp_counters() {
    nstat -az TcpRetransSegs TcpExtTCPTimeouts TcpExtTCPLossProbes 2>/dev/null |
        awk '!/^#/ {printf "%s=%s ", $1, $2}'
}

# tutti's sizes and iteration counts: sizes.sh (shared with run.sh).
tutti_cfg() { # name nranks [ENV=VAL...]
    local name=$1 n=$2 f
    shift 2
    f="$OUT/tutti-$name.rep$REP.txt"
    settle
    tcp_settle
    log "tutti $name rep $REP"
    {
        echo "# config: tutti-$name $* date=$(date -u +%Y-%m-%dT%H:%M:%SZ) load=$(cut -d' ' -f1-3 /proc/loadavg)"
        echo "# probe before: $(probe_line)"
        echo "tutti-$name rep $REP before: $(tcp_counters)" >>"$OUT/tcp_counters.txt"
        tutti_sizes "$n" env TUTTI_TRANSPORT=tcp "$@" "$bench"
        echo "tutti-$name rep $REP after: $(tcp_counters)" >>"$OUT/tcp_counters.txt"
        echo "# probe after: $(probe_line)"
    } >"$f" 2>&1
}

bounds_run() {
    local f="$OUT/bounds.rep$REP.txt" cc
    log "bounds rep $REP"
    : >"$f"
    for cc in "$(sysctl -n net.ipv4.tcp_congestion_control)" reno; do
        {
            echo "## cc=$cc"
            "$bounds" --cc "$cc" pingpong 8 50000
            "$bounds" --cc "$cc" pingpong-block 8 5000
            "$bounds" --cc "$cc" stream 512K 1
            for size in 64K 256K 512K 1M 4M 16M; do
                "$bounds" --cc "$cc" exchange "$size" 1
                "$bounds" --cc "$cc" exchange-poll "$size" 1
                "$bounds" --cc "$cc" --ranks 2 ring "$size" 1
                "$bounds" --cc "$cc" --ranks 2 ring-poll "$size" 1
                "$bounds" --cc "$cc" --ranks 4 ring "$size" 1
            done
            # A plain-socket one-hop all_reduce (tutti's direct algorithm without
            # the library) with the congestion control tutti picks on loopback.
            if [ "$cc" = reno ]; then
                for size in 64K 256K 1M; do
                    "$bounds" --cc "$cc" --ranks 2 allreduce "$size" 1
                    "$bounds" --cc "$cc" --ranks 4 allreduce "$size" 1
                done
            fi
        } >>"$f" 2>&1
    done
}

FIRST=${FIRST:-1}
for REP in $(seq "$FIRST" $((FIRST + REPEATS - 1))); do
    # One peer configuration at a time, each started once the host has settled, as
    # tutti's are (a single call for all of them let a slow spell take several).
    for cfg in $PEER_CFGS; do
        log "peers $cfg rep $REP"
        settle
        tcp_settle
        echo "peers $cfg rep $REP before: $(probe_line)" >>"$OUT/probe.txt"
        echo "$cfg rep $REP before: $(tcp_counters)" >>"$OUT/tcp_counters.txt"
        RES="$OUT/peers-rep$REP" ONLY="^$cfg\$" SKIP_INSTALL=1 REPEATS=1 bash "$peers/run_all.sh" >>"$OUT/peers-rep$REP.log" 2>&1 || log "peers $cfg rep $REP failed (see log)"
        echo "$cfg rep $REP after: $(tcp_counters)" >>"$OUT/tcp_counters.txt"
        echo "peers $cfg rep $REP after: $(probe_line)" >>"$OUT/probe.txt"
    done
    bounds_run
    tutti_cfg tcp-2 2
    tutti_cfg tcp-4 4
    tutti_cfg tcp-2-syscc 2 TUTTI_TCP_CONGESTION=system
    for x in ${EXTRA:-}; do
        IFS=: read -r xname xn xenv <<<"$x"
        # shellcheck disable=SC2086
        tutti_cfg "$xname" "$xn" ${xenv//,/ }
    done
done
python3 "$here/summarize_tcp.py" "$OUT" | tee "$OUT/summary.md"
