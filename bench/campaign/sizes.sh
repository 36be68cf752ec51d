# bench/campaign/sizes.sh - sourced by run.sh and tcp.sh: tutti's all_reduce at the
# campaign's sizes.
#
# `tutti_sizes NRANKS COMMAND...` runs `COMMAND... all_reduce $TUTTI_BENCH_FLAGS`
# (float32 sum, time = max over ranks) at 8 B and 64 KiB .. 256 MiB (x4). The iteration counts time every
# size for about 0.1 s or more, as the peers' harness does (mpi_allreduce.c and
# gloo_allreduce.py: 0.5 s per size, at most 10000 iterations; tcp_bounds: 1 s).
# With the counts used until 2026-11-30 (400 or 1000 at 64 KiB .. 1 MiB) tutti's
# 64 KiB point was timed for 2-25 ms; over TCP with 2 ranks it read 25.2-28.5 us per
# op with 1000-2000 iterations and 24.2-25.5 with 10000-20000, same binary, calm host
# (bench/RESULTS.md, sixth session).
#
# The 8-byte run warms up for 20000 ops (~80 ms with 4 ranks on 2 cores) before its
# 20000 timed ones: a fresh launch runs its first tens of milliseconds slower while the
# scheduler spreads the ranks over the cores (4 ranks: 2.4-3.3 us per op after 20000
# warm-up ops, 2.7-5.6 after 2000; bench/RESULTS.md), and the peers' harness times its
# 8-byte latency in processes that have been running for seconds.
tutti_sizes() {
    local n=$1
    shift
    # shellcheck disable=SC2206 # TUTTI_BENCH_FLAGS: extra flags, split on spaces
    local run=("$@" all_reduce --nranks "$n" -d float -o sum -a 3 --no-progress ${TUTTI_BENCH_FLAGS:-})
    "${run[@]}" -b 8 -e 8 -n 20000 -w 20000
    "${run[@]}" -b 64K -e 64K -n 10000 -w 50
    "${run[@]}" -b 256K -e 1M -f 4 -n 2000 -w 20
    "${run[@]}" -b 4M -e 16M -f 4 -n 100 -w 4
    "${run[@]}" -b 64M -e 256M -f 4 -n 6 -w 1
}
