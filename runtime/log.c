/*
 * Logging: one redirectable sink (para_set_log_fn) and its level, the only
 * mutable globals besides the current-worker pointer. Errors and warnings
 * are always delivered; info (2) and debug (3) only up to the level: read
 * once from PARA_VERBOSE (parsed by options.c) on the first call, then set by
 * each para_runtime_create() from attr.verbose.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "para/runtime.h"
#include "util.h"

static para_log_fn log_fn;
static void *log_arg;

void para_set_log_fn(para_log_fn fn, void *arg)
{
    log_fn = fn;
    log_arg = arg;
}

/* The level; relaxed everywhere: a threshold for optional lines, which
 * publishes no other data (a stale value prints or drops one info line). */
static _Atomic int log_level;
static pthread_once_t log_level_once = PTHREAD_ONCE_INIT;

static void read_env_level(void)
{
    atomic_store_explicit(&log_level, para__option_env_level("VERBOSE", 0),
                          memory_order_relaxed);
}

void para__log_set_level(int level)
{
    pthread_once(&log_level_once, read_env_level);
    atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

static int verbose_level(void)
{
    pthread_once(&log_level_once, read_env_level);
    return atomic_load_explicit(&log_level, memory_order_relaxed);
}

static void vlog(int level, const char *fmt, va_list ap)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level > 1 && level > verbose_level())
        return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (log_fn != NULL) {
        log_fn(level, msg, log_arg);
        return;
    }
    fprintf(stderr, "para: %s: %s\n",
            names[level < 0   ? 0
                  : level > 3 ? 3
                              : level],
            msg);
}

void para__log(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void para__panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(0, fmt, ap);
    va_end(ap);
    abort();
}
