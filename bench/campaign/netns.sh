#!/usr/bin/env bash
# bench/campaign/netns.sh - 16 ranks as 4 "hosts" of 4: each host a network namespace
# on a bridge with its own address, the ranks of a namespace sharing a host id
# (TUTTI_HOST_ID), so that they use the window and shm among themselves and TCP between
# namespaces. Measures tutti all_reduce (float32 sum, out of place, time = max over
# ranks) with the flat ring over all 16 ranks (TUTTI_ALGO=ring), hierarchical
# (TUTTI_ALGO=hier: reduce inside each host, ring/tree between the 4 leaders, broadcast
# inside) and the tuner's choice, repeats interleaved; then Open MPI on the same
# namespaces (one orted per namespace, started by an `ip netns exec` launch agent, vader
# inside a namespace and the tcp BTL between them; yielding when idle, as Open MPI does
# by itself when it knows that its processes outnumber the cores) when mpirun.openmpi
# is there.
#
#   heavy bench/campaign/netns.sh [REPEATS]      # default 3; needs root and iproute2
#   SIZES="-b 8 -e 16M -f 4" CONFIGS="hier openmpi" OUT=dir bench/campaign/netns.sh 1
#   (TUTTI_* variables in the environment reach every tutti rank)
#
# Results land in $OUT (default bench/campaign/out-netns-<date>): one file per
# configuration and repeat (rank 0's table), machine.txt; summarize_netns.py prints the
# medians side by side.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
REPEATS=${1:-3}
OUT=${OUT:-$here/out-netns-$(date -u +%Y%m%dT%H%M%SZ)}
HOSTS=4
PER_HOST=4
WORLD=$((HOSTS * PER_HOST))
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
(cd "$root" && cargo build --release -q -p tutti-bench)
bench=$root/target/release/tutti-bench

log() { printf '[netns-campaign %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- the namespaces: tnb<id>-<i> with veth tnv<id>x<i> on bridge tnbr<id> ---------------
id=$$
octet=$((1 + id % 250))
bridge=tnbr$id
bridge_addr=10.214.$octet.254
ns() { echo "tnb$id-$1"; }
addr() { echo "10.214.$octet.$(($1 + 1))"; }
cleanup() {
    for i in $(seq 0 $((HOSTS - 1))); do
        for p in $(ip netns pids "$(ns "$i")" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns del "$(ns "$i")" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
    rm -rf /tmp/ompi-tnb"$id"-* /dev/shm/ompi-tnb"$id"-*
}
trap cleanup EXIT
ip link add "$bridge" type bridge
ip addr add "$bridge_addr/24" dev "$bridge"
ip link set "$bridge" up
for i in $(seq 0 $((HOSTS - 1))); do
    ip netns add "$(ns "$i")"
    ip link add "tnh${id}x$i" type veth peer name "tnv${id}x$i"
    ip link set "tnh${id}x$i" master "$bridge"
    ip link set "tnh${id}x$i" up
    ip link set "tnv${id}x$i" netns "$(ns "$i")"
    ip -n "$(ns "$i")" addr add "$(addr "$i")/24" dev "tnv${id}x$i"
    ip -n "$(ns "$i")" link set "tnv${id}x$i" up
    ip -n "$(ns "$i")" link set lo up
done

{
    echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) ($(nproc) CPUs, family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs) model $(grep -m1 '^model' /proc/cpuinfo | cut -d: -f2 | xargs))"
    echo "# kernel: $(uname -r); commit: $(git -C "$root" rev-parse --short HEAD); $WORLD ranks in $HOSTS namespaces of $PER_HOST on a bridge"
} >"$OUT/machine.txt"

SIZES=${SIZES:-}
# tutti: 16 rank processes, rank r in namespace r/4; rank 0 serves the store on its
# namespace's address. Sizes in three bands so that large sizes run fewer iterations.
tutti_cfg() { # name TUTTI_ALGO
    local name=$1 algo=$2 f="$OUT/tutti-$1.rep$REP.txt" band args port r
    log "tutti $name rep $REP"
    echo "# config: tutti-$name TUTTI_ALGO=$algo date=$(date -u +%Y-%m-%dT%H:%M:%SZ) load=$(cut -d' ' -f1-3 /proc/loadavg)" >"$f"
    local bands=("-b 8 -e 8 -n 2000 -w 200" "-b 64K -e 1M -f 4 -n 100 -w 10" "-b 4M -e 16M -f 4 -n 10 -w 2" "-b 64M -e 64M -n 3 -w 1")
    [ -n "$SIZES" ] && bands=("$SIZES")
    for band in "${bands[@]}"; do
        # Below the ephemeral range (32768-60999), where the links' ports of the
        # previous band may still linger.
        port=$((10000 + RANDOM % 20000))
        # shellcheck disable=SC2206
        args=(all_reduce -d float -o sum -a 3 --no-progress $band)
        local pids=()
        for r in $(seq 0 $((WORLD - 1))); do
            timeout 900 ip netns exec "$(ns $((r / PER_HOST)))" env RANK=$r WORLD_SIZE=$WORLD \
                LOCAL_RANK=$((r % PER_HOST)) LOCAL_WORLD_SIZE=$PER_HOST \
                MASTER_ADDR="$(addr 0)" MASTER_PORT=$port TUTTI_JOB_TOKEN=netns-$id \
                TUTTI_HOST_ID=netns-host-$((r / PER_HOST)) TUTTI_ALGO="$algo" \
                "$bench" "${args[@]}" >"$OUT/.rank$r.out" 2>&1 &
            pids+=($!)
        done
        local failed=0
        for p in "${pids[@]}"; do wait "$p" || failed=1; done
        cat "$OUT/.rank0.out" >>"$f"
        if [ $failed = 1 ]; then
            log "tutti $name: a rank failed (band $band)"
            for r in $(seq 1 $((WORLD - 1))); do sed "s/^/[rank $r] /" "$OUT/.rank$r.out"; done >>"$f"
        fi
    done
    rm -f "$OUT"/.rank*.out
}

# Open MPI: a hostfile of the 4 namespaces, each "host" reached by a launch agent that
# runs orted in it (instead of ssh); the bridge address is the way back to mpirun.
peers=${PEERS_DIR:-$root/../shared/peers}
ompi_bin=$OUT/.mpi_allreduce.openmpi
if command -v mpicc.openmpi >/dev/null && [ -f "$peers/mpi_allreduce.c" ]; then
    mpicc.openmpi -O2 -o "$ompi_bin" "$peers/mpi_allreduce.c" -lm
    agent=$OUT/.netns-agent
    cat >"$agent" <<EOF
#!/bin/sh
# launch agent for mpirun: "agent [options] HOST COMMAND..." -> COMMAND in namespace HOST.
# Every namespace has the same host name, so each gets its own session directory and
# vader backing directory (else their shared-memory files would collide).
while [ \$# -gt 0 ]; do case "\$1" in -*) shift ;; *) break ;; esac; done
host=\$1; shift
mkdir -p "/tmp/ompi-\$host" "/dev/shm/ompi-\$host"
exec ip netns exec "\$host" env OMPI_MCA_orte_tmpdir_base="/tmp/ompi-\$host" \\
    OMPI_MCA_btl_vader_backing_directory="/dev/shm/ompi-\$host" sh -c "\$*"
EOF
    chmod +x "$agent"
    : >"$OUT/.hostfile"
    for i in $(seq 0 $((HOSTS - 1))); do echo "$(ns "$i") slots=$PER_HOST" >>"$OUT/.hostfile"; done
fi
ompi_cfg() {
    local f="$OUT/openmpi-hosts.rep$REP.txt"
    [ -x "$ompi_bin" ] || return 0
    log "openmpi rep $REP"
    echo "# config: openmpi-hosts date=$(date -u +%Y-%m-%dT%H:%M:%SZ) load=$(cut -d' ' -f1-3 /proc/loadavg)" >"$f"
    # shellcheck disable=SC2086
    timeout 900 mpirun.openmpi --allow-run-as-root --oversubscribe -np $WORLD \
        --hostfile "$OUT/.hostfile" --mca plm_rsh_agent "$agent" \
        --mca pml ob1 --mca btl self,vader,tcp --mca btl_tcp_if_include "10.214.$octet.0/24" \
        --mca mpi_yield_when_idle 1 \
        --mca oob_tcp_if_include "10.214.$octet.0/24" \
        "$ompi_bin" ${SIZES:--b 8 -e 64M -f 4} -t 0.5 >>"$f" 2>&1 || log "openmpi rep $REP failed (see $f)"
}

CONFIGS=${CONFIGS:-ring hier auto openmpi}
for REP in $(seq 1 "$REPEATS"); do
    for c in $CONFIGS; do
        case $c in
        ring) tutti_cfg ring ring ;;
        hier) tutti_cfg hier hier ;;
        auto) tutti_cfg auto "" ;;
        openmpi) ompi_cfg ;;
        esac
    done
done
rm -f "$ompi_bin" "$OUT/.netns-agent" "$OUT/.hostfile"
python3 "$here/summarize_netns.py" "$OUT" | tee "$OUT/summary.md"
