# bench/campaign/probe.sh - sourced by run.sh and tcp.sh: the host's cross-core
# hand-off probe (transport/examples/xfer_probe.rs) and `settle`, which waits for the
# host to leave its slow state. Needs $root and a `log` function.
probe=$root/target/release/examples/xfer_probe
(cd "$root" && cargo build --release -q -p tutti-transport --example xfer_probe)

# One probe line: "xfer_probe 1024 KiB x 500: 9.73 GB/s handed between two threads ...".
probe_line() { "$probe" 1024 500; }

# The host's slow state (bench/RESULTS.md: for 10-20 s, data handed between the two
# vCPUs moves ~5x slower) decides whatever runs in it. Before every measured program,
# tutti's and the peers' alike, wait until the hand-off probe reads at least half the
# best value seen in this sitting, for up to SETTLE seconds (default 60; 0: never wait).
# The first call has no best yet: it samples the probe for WARM seconds (default 10)
# first, so that a sitting that starts in a slow spell does not take its value as the
# best (slow spells last 10-20 s).
best_probe=0
settle() {
    local v i
    if [ "$best_probe" = 0 ]; then
        for ((i = 0; i < ${WARM:-10}; i++)); do
            v=$("$probe" 1024 300 | awk '{print $6}')
            best_probe=$(awk -v a="$best_probe" -v b="$v" 'BEGIN {print (b > a ? b : a)}')
            sleep 1
        done
    fi
    for ((i = 0; i <= ${SETTLE:-60}; i++)); do
        v=$("$probe" 1024 300 | awk '{print $6}')
        best_probe=$(awk -v a="$best_probe" -v b="$v" 'BEGIN {print (b > a ? b : a)}')
        if awk -v v="$v" -v b="$best_probe" 'BEGIN {exit !(v >= b / 2)}'; then
            [ "$i" -gt 0 ] && log "host settled after ${i} s (probe $v GB/s, best $best_probe)"
            return 0
        fi
        sleep 1
    done
    log "host still slow after ${SETTLE:-60} s (probe $v GB/s, best $best_probe); measuring anyway"
}
