/*
 * Every tunable in one table (after mimalloc's options.c): its environment
 * name (PARA_<NAME>), its field in para_runtime_attr_t, its built-in default
 * and a one-line doc. para_runtime_attr_init() applies the defaults, then the
 * environment. Numbers accept K/M/G suffixes (powers of 1024); booleans
 * accept on/off/yes/no/1/0.
 *
 * Policies are listed in one const registry; PARA_POLICY=help prints it.
 *
 * Tests: tests/runtime/test_errors.c (defaults, overrides, bad values).
 */
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

typedef enum {
    OPT_UINT,
    OPT_SIZE,
    OPT_BYTES, /* a size, or off/none/unlimited = SIZE_MAX */
    OPT_U32,
    OPT_INT,
    OPT_STRING
} opt_type;

typedef struct option {
    const char *name; /* PARA_<name> */
    size_t offset;
    opt_type type;
    const char *def;
    const char *doc;
} option;

static const option options[] = {
    {"WORKERS", offsetof(para_runtime_attr_t, workers), OPT_UINT, "0",
     "worker threads; 0 = one per core"},
    {"POLICY", offsetof(para_runtime_attr_t, policy), OPT_STRING, "memaware",
     "scheduling policy: memaware, ws or dhondt ('help' lists them)"},
    {"MEM_BUDGET", offsetof(para_runtime_attr_t, mem_budget), OPT_BYTES, "0",
     "bytes in flight (K/M/G suffixes); 0 = 1/8 of RAM; off = no budget"},
    {"BATCH", offsetof(para_runtime_attr_t, batch_items), OPT_SIZE, "0",
     "source batch size in items; 0 = adaptive"},
    {"BATCH_US", offsetof(para_runtime_attr_t, target_batch_us), OPT_U32, "100",
     "work per adaptive batch, microseconds"},
    {"MAX_BATCHES", offsetof(para_runtime_attr_t, max_batches), OPT_UINT, "0",
     "live batches before sources wait; 0 = 8 per worker"},
    {"VERBOSE", offsetof(para_runtime_attr_t, verbose), OPT_INT, "0",
     "log level: 0 errors and warnings, 2 info, 3 debug"},
    {"PIN", offsetof(para_runtime_attr_t, pin), OPT_STRING, "cores",
     "worker placement: cores, pus (hardware threads) or none"},
    {"DEVICE", offsetof(para_runtime_attr_t, device), OPT_STRING, "auto",
     "device of kernel nodes: auto, none, cpu, P:D or part of a name"},
    {"DEVICE_TIMEOUT", offsetof(para_runtime_attr_t, device_timeout_ms),
     OPT_UINT, "10000",
     "device watchdog, ms: a launch longer than this (and 20x its expected "
     "time) loses the device; 0 = off"},
    {"DEVICE_FALLBACK", offsetof(para_runtime_attr_t, device_fallback), OPT_INT,
     "1", "a failing device hands kernel nodes to their CPU function"},
    {"TRACE", offsetof(para_runtime_attr_t, trace), OPT_STRING, "",
     "write each run's event trace (Chrome JSON) to this file; empty = off"},
    {"TRACE_EVENTS", offsetof(para_runtime_attr_t, trace_events), OPT_SIZE,
     "256K", "trace events kept per worker and run; the rest are counted"},
    {"PROGRESS", offsetof(para_runtime_attr_t, progress), OPT_STRING, "auto",
     "progress line on stderr: auto (if a terminal), on or off"},
};

static int parse_number(const char *s, unsigned long long *out)
{
    if (strcasecmp(s, "on") == 0 || strcasecmp(s, "yes") == 0) {
        *out = 1;
        return 0;
    }
    if (strcasecmp(s, "off") == 0 || strcasecmp(s, "no") == 0) {
        *out = 0;
        return 0;
    }
    if (!isdigit((unsigned char)*s))
        return PARA_EINVAL;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return PARA_EINVAL;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        shift = 10;
        end++;
        break;
    case 'M':
        shift = 20;
        end++;
        break;
    case 'G':
        shift = 30;
        end++;
        break;
    default:
        break;
    }
    if (*end != '\0' || (shift != 0 && v > (~0ull >> shift)))
        return PARA_EINVAL;
    *out = v << shift;
    return 0;
}

static int set_option(para_runtime_attr_t *attr, const option *o,
                      const char *value)
{
    char *field = (char *)attr + o->offset;
    if (o->type == OPT_STRING) {
        *(const char **)(void *)field = value;
        return 0;
    }
    if (o->type == OPT_BYTES &&
        (strcasecmp(value, "off") == 0 || strcasecmp(value, "none") == 0 ||
         strcasecmp(value, "unlimited") == 0)) {
        *(size_t *)(void *)field = SIZE_MAX;
        return 0;
    }
    unsigned long long v;
    if (parse_number(value, &v) != 0)
        return PARA_EINVAL;
    switch (o->type) {
    case OPT_UINT:
        if (v > 0xFFFFFFFFull)
            return PARA_EINVAL;
        *(unsigned *)(void *)field = (unsigned)v;
        break;
    case OPT_U32:
        if (v > 0xFFFFFFFFull)
            return PARA_EINVAL;
        *(uint32_t *)(void *)field = (uint32_t)v;
        break;
    case OPT_INT:
        if (v > 1000)
            return PARA_EINVAL;
        *(int *)(void *)field = (int)v;
        break;
    case OPT_SIZE:
    case OPT_BYTES:
        *(size_t *)(void *)field = (size_t)v;
        break;
    case OPT_STRING:
        break;
    }
    return 0;
}

int para_runtime_attr_init(para_runtime_attr_t *attr)
{
    if (attr == NULL)
        return PARA_EINVAL;
    memset(attr, 0, sizeof *attr);
    attr->struct_size = sizeof *attr;
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (set_option(attr, &options[i], options[i].def) != 0)
            para__panic("option %s: bad built-in default", options[i].name);

    int rc = 0;
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        char env[64];
        snprintf(env, sizeof env, "PARA_%s", options[i].name);
        const char *value = getenv(env);
        if (value == NULL || *value == '\0')
            continue;
        if (set_option(attr, &options[i], value) != 0) {
            para__log(1, "%s=%s does not parse; keeping %s (%s)", env, value,
                      options[i].def, options[i].doc);
            rc = PARA_EINVAL;
        } else {
            para__log(2, "%s=%s", env, value);
        }
    }
    return rc;
}
