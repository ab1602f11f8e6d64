/*
 * para-host-probe: how dear it is, on this host now, to move cache lines
 * between two CPUs. A virtual machine's host can change that within
 * seconds and for minutes at a time (BENCHMARKS.md, sessions 9 and 10), and
 * para's figures that depend on it (w3's serial sink, w12's short runs)
 * move with it; run this beside a measurement to say which state it saw.
 *
 *   para-host-probe [CPU_A CPU_B]     (default: 0 1)
 *
 * It prints one JSON line:
 *   pingpong_ns     one cache line bounced between the two CPUs (a
 *                   release store answered by the other side's acquire
 *                   load), per round trip, the median of 5 rounds of
 *                   20,000 round trips;
 *   write_local_ms  CPU A writing 80 MB through a ring of 16 buffers of
 *                   227 KiB (w3's batch size) that A itself read last;
 *   write_remote_ms the same, each buffer read by CPU B between two of
 *                   A's writes (a batch read by a sink on the other core,
 *                   then reused by its producer). Only A's store loops
 *                   are timed; the best of 3 rounds each;
 *   fault_us        the first touch of a fresh 4 KiB page (8 MiB of
 *                   anonymous memory, huge pages refused), per page, the
 *                   median of 3 rounds: what memory the C library gave
 *                   back to the kernel costs when it is used again.
 *
 * On the development VM (2 vCPUs, AMD EPYC Zen 4): 55-85 ns, 2.8-5 ms and
 * about 5 ms in the host's normal state; 335-415 ns, the same local
 * writes, and 19-39 ms remote in its slow state; a page fault about 15 us
 * (a bare-metal Linux host takes well under 1 us).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define RING 16
#define BUF_WORDS (227 * 1024 / 8)
#define TOTAL_WORDS ((size_t)80 * 1000 * 1000 / 8)
#define PP_TRIPS 20000
#define PP_ROUNDS 5

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/*
 * Shared between the two threads. Memory orders: `ball` and each `full`
 * flag hand data from one thread to the other, so each hand-over is a
 * release store and each take an acquire load (the taker then sees every
 * write before the store). `stop` only ends the helper's loop: relaxed.
 */
static struct {
    _Alignas(64) _Atomic uint64_t ball;  /* ping-pong: odd A->B, even B->A */
    _Alignas(64) _Atomic int full[RING]; /* 1: buffer i is B's to read */
    _Alignas(64) _Atomic int stop;
    int cpu_b;
    uint64_t *buf[RING];
    uint64_t sink_b; /* B's sums (B writes, A reads after the join) */
} shared;

static void *helper(void *arg)
{
    (void)arg;
    if (pin(shared.cpu_b) != 0) /* checked by main(): not expected */
        abort();
    /* Ping-pong: answer every odd value with the next even one. */
    for (uint64_t want = 1; want < 2 * (uint64_t)PP_TRIPS * PP_ROUNDS;
         want += 2) {
        while (atomic_load_explicit(&shared.ball, memory_order_acquire) != want)
            ;
        atomic_store_explicit(&shared.ball, want + 1, memory_order_release);
    }
    /* Reader: read every buffer A hands over, in ring order, and give it
     * back. */
    uint64_t s = 0;
    for (size_t i = 0;; i = (i + 1) % RING) {
        while (atomic_load_explicit(&shared.full[i], memory_order_acquire) ==
               0) {
            if (atomic_load_explicit(&shared.stop, memory_order_relaxed))
                goto out;
            /* Sleep rather than spin: a busy neighbour vCPU can slow A's
             * stores by itself, which is not what is measured here. */
            nanosleep(&(struct timespec){0, 20000}, NULL);
        }
        const uint64_t *p = shared.buf[i];
        for (size_t k = 0; k < BUF_WORDS; k++)
            s += p[k] * p[k];
        atomic_store_explicit(&shared.full[i], 0, memory_order_release);
    }
out:
    shared.sink_b = s;
    return NULL;
}

/* A CPU number this process may name in a cpu_set_t. */
static bool parse_cpu(const char *text, int *cpu)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < 0 || v >= CPU_SETSIZE)
        return false;
    *cpu = (int)v;
    return true;
}

static volatile uint64_t sums_kept; /* so that the reads stay */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pingpong_ns(void)
{
    double r[PP_ROUNDS];
    uint64_t v = 0;
    for (int round = 0; round < PP_ROUNDS; round++) {
        double t0 = now_s();
        for (int i = 0; i < PP_TRIPS; i++) {
            atomic_store_explicit(&shared.ball, ++v, memory_order_release);
            while (atomic_load_explicit(&shared.ball, memory_order_acquire) !=
                   v + 1)
                ;
            v++;
        }
        r[round] = (now_s() - t0) * 1e9 / PP_TRIPS;
    }
    qsort(r, PP_ROUNDS, sizeof r[0], cmp_double);
    return r[PP_ROUNDS / 2];
}

/* A writes 80 MB through the ring; with @p remote each buffer goes to B
 * to be read after it is written, else A reads it itself. *next counts
 * the buffers handed to B (B takes them in ring order). Returns the
 * seconds of A's store loops. */
static double write_ring(int remote, size_t *next)
{
    double stores = 0;
    uint64_t sum = 0, value = 1;
    for (size_t done = 0; done < TOTAL_WORDS; done += BUF_WORDS) {
        size_t i = (remote ? (*next)++ : done / BUF_WORDS) % RING;
        while (atomic_load_explicit(&shared.full[i], memory_order_acquire))
            ; /* B still reads it */
        uint64_t *p = shared.buf[i];
        double t0 = now_s();
        for (size_t k = 0; k < BUF_WORDS; k++)
            p[k] = value + k;
        stores += now_s() - t0;
        value += BUF_WORDS;
        if (remote)
            atomic_store_explicit(&shared.full[i], 1, memory_order_release);
        else
            for (size_t k = 0; k < BUF_WORDS; k++)
                sum += p[k] * p[k];
    }
    for (size_t i = 0; i < RING; i++) /* B is done with the ring */
        while (atomic_load_explicit(&shared.full[i], memory_order_acquire))
            ;
    sums_kept += sum;
    return stores;
}

#define FAULT_BYTES ((size_t)8 << 20)
#define PAGE_BYTES 4096

/* Microseconds per first touch of a 4 KiB page, the median of 3 rounds of
 * FAULT_BYTES each; a negative value if the memory could not be mapped. */
static double fault_us(void)
{
    double us[3];
    for (int round = 0; round < 3; round++) {
        volatile unsigned char *p =
            mmap(NULL, FAULT_BYTES, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return -1;
        /* A huge page would fault 512 pages' worth at once. */
        (void)madvise((void *)p, FAULT_BYTES, MADV_NOHUGEPAGE);
        double t0 = now_s();
        for (size_t i = 0; i < FAULT_BYTES; i += PAGE_BYTES)
            p[i] = 1;
        us[round] = 1e6 * (now_s() - t0) / (double)(FAULT_BYTES / PAGE_BYTES);
        munmap((void *)p, FAULT_BYTES);
    }
    double lo = us[0] < us[1] ? us[0] : us[1];
    double hi = us[0] < us[1] ? us[1] : us[0];
    return us[2] < lo ? lo : us[2] > hi ? hi : us[2];
}

int main(int argc, char **argv)
{
    int cpu_a = 0;
    shared.cpu_b = 1;
    if ((argc != 1 && argc != 3) ||
        (argc == 3 &&
         (!parse_cpu(argv[1], &cpu_a) || !parse_cpu(argv[2], &shared.cpu_b) ||
          cpu_a == shared.cpu_b))) {
        fprintf(stderr, "usage: %s [CPU_A CPU_B] (two different CPUs)\n",
                argv[0]);
        return 2;
    }
    for (size_t i = 0; i < RING; i++) {
        shared.buf[i] = aligned_alloc(64, BUF_WORDS * 8);
        if (shared.buf[i] == NULL) {
            fprintf(stderr, "para-host-probe: out of memory\n");
            return 1;
        }
        memset(shared.buf[i], 0, BUF_WORDS * 8);
    }
    /* Both CPUs checked here: a helper that cannot run where asked would
     * leave the ping-pong without an answer. */
    if (pin(shared.cpu_b) != 0 || pin(cpu_a) != 0) {
        fprintf(stderr, "para-host-probe: cannot run on CPUs %d and %d\n",
                cpu_a, shared.cpu_b);
        return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, helper, NULL) != 0) {
        fprintf(stderr, "para-host-probe: cannot start a thread\n");
        return 1;
    }
    double pp = pingpong_ns();
    double local = 1e9, remote = 1e9;
    size_t next = 0;
    for (int round = 0; round < 3; round++) {
        double l = write_ring(0, &next), r = write_ring(1, &next);
        local = l < local ? l : local;
        remote = r < remote ? r : remote;
    }
    atomic_store_explicit(&shared.stop, 1, memory_order_relaxed);
    pthread_join(t, NULL);
    double fault = fault_us();
    if (fault < 0) {
        fprintf(stderr, "para-host-probe: cannot map %zu bytes\n", FAULT_BYTES);
        return 1;
    }
    printf("{\"cpus\":[%d,%d],\"pingpong_ns\":%.0f,\"write_local_ms\":%.2f,"
           "\"write_remote_ms\":%.2f,\"fault_us\":%.2f}\n",
           cpu_a, shared.cpu_b, pp, 1e3 * local, 1e3 * remote, fault);
    for (size_t i = 0; i < RING; i++)
        free(shared.buf[i]);
    sums_kept += shared.sink_b;
    return 0;
}
