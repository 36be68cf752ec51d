// bench/campaign/xchg.c - how fast two cores hand each other data, as the 2-rank
// window all_reduce does: each round, each thread copies CHUNK bytes of its own
// source into its slot (one of two, alternating), posts a flag, waits for the
// other's, and copies the other's slot into a private buffer. Prints the bytes
// received per second per thread. MODE 0 reads with memcpy, 1 with an AVX-512 loop
// (PF > 0: software prefetch PF bytes ahead). bench/RESULTS.md (Intel sitting) has
// the figures.
//
//   gcc -O2 -march=native -pthread -o /tmp/xchg bench/campaign/xchg.c
//   /tmp/xchg CHUNK_KIB ROUNDS MODE PF        # e.g. /tmp/xchg 256 2000 0 0
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static size_t CH;
static int ROUNDS, MODE, PF;
static volatile uint64_t flag[2][16] __attribute__((aligned(128)));
static volatile uint64_t done[2][16] __attribute__((aligned(128)));
static char *slot[2][2];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void vcopy(char *d, const char *s, size_t n) {
    for (size_t i = 0; i < n; i += 256) {
        if (PF)
            for (int k = 0; k < 256; k += 64) _mm_prefetch(s + i + PF + k, _MM_HINT_T0);
        __m512i a = _mm512_loadu_si512(s + i), b = _mm512_loadu_si512(s + i + 64);
        __m512i c = _mm512_loadu_si512(s + i + 128), e = _mm512_loadu_si512(s + i + 192);
        _mm512_storeu_si512(d + i, a);
        _mm512_storeu_si512(d + i + 64, b);
        _mm512_storeu_si512(d + i + 128, c);
        _mm512_storeu_si512(d + i + 192, e);
    }
}

static void *run(void *arg) {
    int me = (int)(long)arg, pe = 1 - me;
    char *src = aligned_alloc(4096, CH), *dst = aligned_alloc(4096, CH);
    memset(src, me + 1, CH);
    memset(dst, 0, CH);
    for (int r = 1; r <= ROUNDS; r++) {
        memcpy(slot[me][r & 1], src, CH);
        __atomic_store_n(&flag[me][0], r, __ATOMIC_RELEASE);
        while (__atomic_load_n(&flag[pe][0], __ATOMIC_ACQUIRE) < (uint64_t)r) _mm_pause();
        if (MODE == 0)
            memcpy(dst, slot[pe][r & 1], CH);
        else
            vcopy(dst, slot[pe][r & 1], CH);
        __atomic_store_n(&done[me][0], r, __ATOMIC_RELEASE);
        // The slot written next round must have been read by the other thread.
        while (__atomic_load_n(&done[pe][0], __ATOMIC_ACQUIRE) < (uint64_t)r - 1) _mm_pause();
    }
    return (void *)(long)dst[CH / 2];
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s CHUNK_KIB ROUNDS MODE PF\n", argv[0]);
        return 2;
    }
    CH = (size_t)atoi(argv[1]) << 10;
    ROUNDS = atoi(argv[2]);
    MODE = atoi(argv[3]);
    PF = atoi(argv[4]);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            slot[i][j] = aligned_alloc(4096, CH + 8192);
            memset(slot[i][j], 0, CH + 8192);
        }
    pthread_t t[2];
    double t0 = now();
    for (long i = 0; i < 2; i++) pthread_create(&t[i], 0, run, (void *)i);
    for (int i = 0; i < 2; i++) pthread_join(t[i], 0);
    double dt = now() - t0;
    printf("xchg %zu KiB mode %d pf %d: %.2f GB/s received per thread\n", CH >> 10, MODE, PF,
           (double)CH * ROUNDS / dt / 1e9);
    return 0;
}
