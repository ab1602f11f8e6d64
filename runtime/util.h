/* Small internal helpers shared by every runtime module. */
#ifndef PARA_UTIL_H
#define PARA_UTIL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define PARA_CACHELINE 64

#define PARA_LIKELY(x) __builtin_expect(!!(x), 1)
#define PARA_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* For the runtime's small, hot thread-locals (a few words each): the
 * initial-exec model reads them at a fixed offset from the thread pointer,
 * where libpara.so's default (dynamic) model calls __tls_get_addr() on
 * every access; a fused task sets some of them per tile and stage. The
 * cost is a few bytes of the static TLS that the C library keeps for
 * libraries, also when one is loaded with dlopen(). */
#define PARA_TLS_FAST __attribute__((tls_model("initial-exec")))

#define PARA_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PARA_MAX(a, b) ((a) > (b) ? (a) : (b))

/* a * b, or SIZE_MAX when the product does not fit: a byte count that no
 * allocation can satisfy, so the allocator reports PARA_ENOMEM instead of
 * a wrapped-around short buffer. */
static inline size_t para__mul_sat(size_t a, size_t b)
{
    size_t r;
    return __builtin_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

/* Monotonic clock in nanoseconds. */
static inline uint64_t para__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Add to a counter that only its owner thread writes: relaxed load +
 * store, so no lost update and no RMW; readers (after the run, or for
 * statistics) only need an untorn value. */
static inline void para__counter_add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

/* Spin-wait hint for busy loops. */
static inline void para__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Never returns: prints the message through the log and aborts. Used for
 * broken internal invariants only, never for user errors. */
_Noreturn void para__panic(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* Internal invariants (scheduler.c, I1..I6): checked in debug builds (no
 * NDEBUG), compiled out otherwise; a failure panics with the condition. */
#ifndef NDEBUG
#define PARA_DEBUG_ASSERT(cond)                                                \
    ((cond) ? (void)0                                                          \
            : para__panic("invariant broken: %s (%s:%d)", #cond, __FILE__,     \
                          __LINE__))
#else
#define PARA_DEBUG_ASSERT(cond) ((void)0)
#endif

/* Log through the sink set by para_set_log_fn(). level: 0..3. */
void para__log(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* PARA_<name> parsed as the options table (options.c) parses it, for a
 * number or boolean option; @p fallback when unset or bad (a bad value also
 * makes para_runtime_create() fail, naming it). */
int para__option_env_level(const char *name, int fallback);
/* The byte count of option PARA_<name> (K/M/G suffixes; off, none or
 * unlimited: UINT64_MAX), or @p fallback if unset or unparsable. */
uint64_t para__option_env_bytes(const char *name, uint64_t fallback);

/* Info and debug lines print up to this level: PARA_VERBOSE, read once on
 * the first log call, until a runtime is created with attr.verbose. */
void para__log_set_level(int level);

/* xorshift64* for victim selection; state must be non-zero. */
static inline uint64_t para__rand(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

#endif /* PARA_UTIL_H */
