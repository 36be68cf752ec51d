# bench/campaign/probe.sh - sourced by run.sh and tcp.sh: the host's cross-core
# hand-off probe (transport/examples/xfer_probe.rs) and `settle`, which waits for the
# host to leave its slow state. Needs $root and a `log` function.
probe=$root/target/release/examples/xfer_probe
(cd "$root" && cargo build --release -q -p tutti-transport --example xfer_probe)

# One probe line: "xfer_probe 1024 KiB x 500: 9.73 GB/s handed between two threads ...".
probe_line() { "$probe" 1024 500; }

# `settle_on BEST WHAT READER`: waits, for up to SETTLE seconds (default 60; 0: never
# wait), until READER (a command printing one GB/s figure) reads at least half the best
# it has read in this sitting, kept in the variable named BEST. The first call (BEST
# still 0) samples READER for WARM seconds (default 10) first, so that a sitting that
# starts in a slow spell does not take its value as the best (spells last 10-60 s).
# WHAT names the thing in the log.
settle_on() {
    local best_var=$1 what=$2 reader=$3 v i best
    best=${!best_var}
    if [ "$best" = 0 ]; then
        for ((i = 0; i < ${WARM:-10}; i++)); do
            v=$("$reader")
            best=$(awk -v a="$best" -v b="$v" 'BEGIN {print (b > a ? b : a)}')
            sleep 1
        done
    fi
    for ((i = 0; i <= ${SETTLE:-60}; i++)); do
        v=$("$reader")
        best=$(awk -v a="$best" -v b="$v" 'BEGIN {print (b > a ? b : a)}')
        if awk -v v="$v" -v b="$best" 'BEGIN {exit !(v >= b / 2)}'; then
            printf -v "$best_var" '%s' "$best"
            [ "$i" -gt 0 ] && log "$what settled after ${i} s ($v GB/s, best $best)"
            return 0
        fi
        sleep 1
    done
    printf -v "$best_var" '%s' "$best"
    log "$what still slow after ${SETTLE:-60} s ($v GB/s, best $best); measuring anyway"
}

# The host's slow state (bench/RESULTS.md: for 10-20 s, data handed between the two
# vCPUs moves ~5x slower) decides whatever runs in it. Before every measured program,
# tutti's and the peers' alike, `settle` waits for the hand-off probe.
best_probe=0
probe_value() { "$probe" 1024 300 | awk '{print $6}'; }
settle() { settle_on best_probe "host (hand-off probe)" probe_value; }
