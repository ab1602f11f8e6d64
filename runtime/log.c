/*
 * Logging: one redirectable sink (para_set_log_fn), the only mutable global
 * besides the current-worker pointer (all other state lives in a runtime,
 * so that several runtimes in one process never share anything). Errors and
 * warnings are always delivered; info (2) and debug (3) only up to
 * PARA_VERBOSE.
 */
#include <stdarg.h>
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

static int verbose_level(void)
{
    const char *v = getenv("PARA_VERBOSE");
    return v != NULL ? atoi(v) : 0;
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
