/*
 * Every tunable in one table (after mimalloc's options.c): its environment
 * name (PARA_<NAME>), its field in para_runtime_attr_t (or none: a variable
 * read by a device back-end), its built-in default, the values it accepts
 * and a one-line doc. para_runtime_attr_init() applies the defaults, then
 * the environment. Numbers accept K/M/G suffixes (powers of 1024); booleans
 * accept on/off/yes/no/1/0.
 *
 * A variable that does not parse, or lies outside its range, is an error,
 * never a silent default: para_runtime_attr_init() returns PARA_EINVAL, and
 * para_runtime_create() re-checks the environment and the fields and fails
 * with PARA_EINVAL and a message naming the variable (or field) and the
 * values it accepts.
 *
 * Policies are listed in one const registry; PARA_POLICY=help prints it.
 *
 * Tests: tests/runtime/test_errors.c (defaults, overrides, bad values).
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
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
    OPT_BOOL, /* on/off/yes/no/1/0, stored as bool */
    OPT_STRING
} opt_type;

#define NO_FIELD                                                               \
    SIZE_MAX /* read by a back-end, not a para_runtime_attr_t field */

typedef struct option {
    const char *name; /* PARA_<name> */
    size_t offset;    /* in para_runtime_attr_t, or NO_FIELD */
    opt_type type;
    const char *def;
    /* Numbers: the accepted range. Strings: words, '|'-separated, of which
     * the value must be one (lower case); NULL = any text. */
    unsigned long long min, max;
    const char *words;
    const char *accepts; /* the accepted values, for messages */
    const char *doc;
} option;

#define MAX_BATCH_ITEMS (1ull << 24)

static const option options[] = {
    {"WORKERS", offsetof(para_runtime_attr_t, workers), OPT_UINT, "0", 0,
     PARA__TOPOLOGY_MAX_WORKERS, NULL, "0 (one per core) to 65536",
     "worker threads; 0 = one per core"},
    {"POLICY", offsetof(para_runtime_attr_t, policy), OPT_STRING, "memaware", 0,
     0, NULL, "memaware, ws, dhondt or help",
     "scheduling policy: memaware, ws or dhondt ('help' lists them)"},
    {"MEM_BUDGET", offsetof(para_runtime_attr_t, mem_budget), OPT_BYTES, "0", 0,
     SIZE_MAX, NULL,
     "a byte count with an optional K, M or G suffix (0 = 1/8 of RAM), "
     "or off, none, unlimited",
     "bytes in flight (K/M/G suffixes); 0 = 1/8 of RAM; off = no budget"},
    {"BATCH", offsetof(para_runtime_attr_t, batch_items), OPT_SIZE, "0", 0,
     MAX_BATCH_ITEMS, NULL, "0 (adaptive) to 16M items",
     "source batch size in items; 0 = adaptive"},
    {"BATCH_US", offsetof(para_runtime_attr_t, target_batch_us), OPT_U32, "100",
     1, 1000000, NULL, "1 to 1000000 microseconds",
     "work per adaptive batch, microseconds"},
    {"MAX_BATCHES", offsetof(para_runtime_attr_t, max_batches), OPT_UINT, "0",
     0, 1u << 20, NULL, "0 (8 per worker) to 1M",
     "live batches before sources wait; 0 = 8 per worker"},
    {"VERBOSE", offsetof(para_runtime_attr_t, verbose), OPT_INT, "0", 0, 3,
     NULL, "0, 1, 2 or 3", "log level: 0 errors and warnings, 2 info, 3 debug"},
    {"PIN", offsetof(para_runtime_attr_t, pin), OPT_STRING, "cores", 0, 0,
     "cores|pus|none", "cores, pus or none",
     "worker placement: cores, pus (hardware threads) or none"},
    {"DEVICE", offsetof(para_runtime_attr_t, device), OPT_STRING, "auto", 0, 0,
     NULL,
     "auto, none, cpu, P:D, part of a device or platform name, sim:L:R, or a "
     "comma-separated list of these and all, gpu, accelerator, cpu-cl",
     "devices of kernel nodes: auto, none, cpu, P:D, part of a name, "
     "sim:L:R; a list (a,b), all or a type (gpu)"},
    {"DEVICE_TIMEOUT", offsetof(para_runtime_attr_t, device_timeout_ms),
     OPT_UINT, "10000", 0, 3600000, NULL, "0 (off) to 3600000 milliseconds",
     "device watchdog, ms: a launch longer than this (and 20x its expected "
     "time) loses the device; 0 = off"},
    {"DEVICE_FALLBACK", offsetof(para_runtime_attr_t, device_fallback),
     OPT_BOOL, "1", 0, 1, NULL, "on, off, yes, no, 1 or 0",
     "a failing device hands kernel nodes to their CPU function"},
    {"TRACE", offsetof(para_runtime_attr_t, trace), OPT_STRING, "", 0, 0, NULL,
     "a file path (empty = off)",
     "write each run's event trace (Chrome JSON) to this file; empty = off"},
    {"TRACE_EVENTS", offsetof(para_runtime_attr_t, trace_events), OPT_SIZE,
     "256K", 1, 1ull << 26, NULL, "1 to 64M events",
     "trace events kept per worker and run; the rest are counted"},
    {"PROGRESS", offsetof(para_runtime_attr_t, progress), OPT_STRING, "auto", 0,
     0, "auto|on|off|yes|no|1|0", "auto, on, off, yes, no, 1 or 0",
     "progress line on stderr: auto (if a terminal), on or off"},
    {"MIXED", NO_FIELD, OPT_STRING, "auto", 0, 0, "auto|device|cpu",
     "auto, device or cpu",
     "MIXED kernel nodes: split by measured speed (auto), or every batch on "
     "the device, or on the CPU (for tests and comparisons)"},
    {"RESIDENT", NO_FIELD, OPT_BOOL, "1", 0, 1, NULL,
     "on, off, yes, no, 1 or 0",
     "device-resident edges: a kernel node's output stays on the device "
     "for the next kernel node there (off: every launch copies in and out)"},
    {"CHAIN", NO_FIELD, OPT_BOOL, "1", 0, 1, NULL, "on, off, yes, no, 1 or 0",
     "device-resident chains: a launch whose outputs all stay on the device "
     "hands them on when it begins, so the next kernel is enqueued behind "
     "it (off: when it completes)"},
    {"DEVICE_BUDGET", NO_FIELD, OPT_BYTES, "0", 0, SIZE_MAX, NULL,
     "a byte count with an optional K, M or G suffix (0 = half the device's "
     "memory), or off, none, unlimited",
     "memaware: device bytes batches may hold on a device (resident edges); "
     "0 = half its memory"},
    {"PINNED", NO_FIELD, OPT_STRING, "auto", 0, 0, "auto|on|off|yes|no|1|0",
     "auto, on, off, yes, no, 1 or 0",
     "host staging of launches in pinned memory (CL_MEM_ALLOC_HOST_PTR); "
     "unset = on for GPUs and accelerators"},
    {"FUSE", NO_FIELD, OPT_BOOL, "1", 0, 1, NULL, "on, off, yes, no, 1 or 0",
     "fused CPU chains: a chain of parallel maps and filters runs in one "
     "task, tile by tile, and a fan-out into such chains in one task per "
     "batch; off = one task per node and batch"},
    {"CL_TRACE", NO_FIELD, OPT_BOOL, "0", 0, 1, NULL,
     "on, off, yes, no, 1 or 0",
     "OpenCL back-end: log every OpenCL call it makes"},
    {"CACHE_DIR", NO_FIELD, OPT_STRING, "", 0, 0, NULL, "a directory path",
     "OpenCL back-end: kernel binary cache (default $XDG_CACHE_HOME/para)"},
};

#define N_OPTIONS (sizeof options / sizeof options[0])

static const option *find_option(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(options[i].name, name) == 0)
            return &options[i];
    return NULL;
}

static int parse_bool(const char *s, unsigned long long *out)
{
    if (strcasecmp(s, "on") == 0 || strcasecmp(s, "yes") == 0 ||
        strcmp(s, "1") == 0) {
        *out = 1;
        return 0;
    }
    if (strcasecmp(s, "off") == 0 || strcasecmp(s, "no") == 0 ||
        strcmp(s, "0") == 0) {
        *out = 0;
        return 0;
    }
    return PARA_EINVAL;
}

/* A decimal number with an optional K/M/G suffix; nothing else. */
static int parse_number(const char *s, unsigned long long *out)
{
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

static bool word_in(const char *value, const char *words)
{
    size_t len = strlen(value);
    for (const char *w = words; *w != '\0';) {
        const char *bar = strchr(w, '|');
        size_t wlen = bar != NULL ? (size_t)(bar - w) : strlen(w);
        if (wlen == len && strncmp(value, w, len) == 0)
            return true;
        w += wlen + (bar != NULL);
    }
    return false;
}

/* Parse @p value for @p o; on success stores it into @p attr (when the
 * option has a field and attr is not NULL). */
static int set_option(para_runtime_attr_t *attr, const option *o,
                      const char *value)
{
    char *field =
        attr != NULL && o->offset != NO_FIELD ? (char *)attr + o->offset : NULL;
    if (o->type == OPT_STRING) {
        if (o->words != NULL && !word_in(value, o->words))
            return PARA_EINVAL;
        if (field != NULL)
            *(const char **)(void *)field = value;
        return 0;
    }
    unsigned long long v;
    if (o->type == OPT_BYTES &&
        (strcasecmp(value, "off") == 0 || strcasecmp(value, "none") == 0 ||
         strcasecmp(value, "unlimited") == 0))
        v = SIZE_MAX;
    else if ((o->type == OPT_BOOL ? parse_bool(value, &v)
                                  : parse_number(value, &v)) != 0)
        return PARA_EINVAL;
    if (v < o->min || v > o->max)
        return PARA_EINVAL;
    if (field == NULL)
        return 0;
    switch (o->type) {
    case OPT_UINT:
        *(unsigned *)(void *)field = (unsigned)v;
        break;
    case OPT_U32:
        *(uint32_t *)(void *)field = (uint32_t)v;
        break;
    case OPT_INT:
        *(int *)(void *)field = (int)v;
        break;
    case OPT_BOOL:
        *(bool *)(void *)field = v != 0;
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

static const char *env_of(const option *o, char *buf, size_t len)
{
    snprintf(buf, len, "PARA_%s", o->name);
    const char *value = getenv(buf);
    return value != NULL && *value != '\0' ? value : NULL;
}

static void bad_env_msg(const option *o, const char *value, char *msg,
                        size_t len)
{
    snprintf(msg, len, "PARA_%s=%s does not parse; accepted: %s (%s)", o->name,
             value, o->accepts, o->doc);
}

int para_runtime_attr_init(para_runtime_attr_t *attr)
{
    if (attr == NULL)
        return PARA_EINVAL;
    memset(attr, 0, sizeof *attr);
    attr->struct_size = sizeof *attr;
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (set_option(attr, &options[i], options[i].def) != 0)
            para__panic("option %s: bad built-in default", options[i].name);

    int rc = 0;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char env[64];
        const char *value = env_of(&options[i], env, sizeof env);
        if (value == NULL)
            continue;
        if (set_option(attr, &options[i], value) != 0) {
            char msg[512];
            bad_env_msg(&options[i], value, msg, sizeof msg);
            para__log(0, "%s", msg);
            rc = PARA_EINVAL; /* the default is kept for this one */
        } else {
            para__log(2, "%s=%s", env, value);
        }
    }
    return rc;
}

int para__options_check_env(char *msg, size_t msg_len)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char env[64];
        const char *value = env_of(&options[i], env, sizeof env);
        if (value != NULL && set_option(NULL, &options[i], value) != 0) {
            bad_env_msg(&options[i], value, msg, msg_len);
            return PARA_EINVAL;
        }
    }
    return 0;
}

/* The range check of one numeric field, named by field and variable. */
static int check_field(const char *field, const char *name,
                       unsigned long long v, char *msg, size_t msg_len)
{
    const option *o = find_option(name);
    if (v >= o->min && v <= o->max)
        return 0;
    snprintf(msg, msg_len,
             "para_runtime_attr_t.%s = %llu is out of range; accepted: %s "
             "(PARA_%s)",
             field, v, o->accepts, o->name);
    return PARA_EINVAL;
}

int para__options_check_attr(const para_runtime_attr_t *a, char *msg,
                             size_t msg_len)
{
    if (a->verbose < 0) {
        snprintf(msg, msg_len, "para_runtime_attr_t.verbose is negative");
        return PARA_EINVAL;
    }
    int rc = check_field("workers", "WORKERS", a->workers, msg, msg_len);
    if (rc == 0)
        rc = check_field("batch_items", "BATCH", a->batch_items, msg, msg_len);
    if (rc == 0)
        rc = check_field("target_batch_us", "BATCH_US", a->target_batch_us, msg,
                         msg_len);
    if (rc == 0)
        rc = check_field("max_batches", "MAX_BATCHES", a->max_batches, msg,
                         msg_len);
    if (rc == 0)
        rc = check_field("verbose", "VERBOSE", (unsigned)a->verbose, msg,
                         msg_len);
    if (rc == 0)
        rc = check_field("trace_events", "TRACE_EVENTS", a->trace_events, msg,
                         msg_len);
    if (rc == 0)
        rc = check_field("device_timeout_ms", "DEVICE_TIMEOUT",
                         a->device_timeout_ms, msg, msg_len);
    return rc;
}

para__mixed_mode para__options_mixed(void)
{
    char env[64];
    const char *value = env_of(find_option("MIXED"), env, sizeof env);
    if (value != NULL && strcmp(value, "device") == 0)
        return PARA__MIXED_DEVICE;
    if (value != NULL && strcmp(value, "cpu") == 0)
        return PARA__MIXED_CPU;
    return PARA__MIXED_AUTO;
}

uint64_t para__option_env_bytes(const char *name, uint64_t fallback)
{
    const option *o = find_option(name);
    char env[64];
    const char *value = o != NULL ? env_of(o, env, sizeof env) : NULL;
    unsigned long long v;
    if (value == NULL)
        return fallback;
    if (strcasecmp(value, "off") == 0 || strcasecmp(value, "none") == 0 ||
        strcasecmp(value, "unlimited") == 0)
        return UINT64_MAX;
    if (parse_number(value, &v) != 0)
        return fallback;
    return v;
}

int para__options_pinned(void)
{
    char env[64];
    const char *v = env_of(find_option("PINNED"), env, sizeof env);
    if (v == NULL || strcmp(v, "auto") == 0)
        return -1;
    return strcmp(v, "on") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "1") == 0;
}

int para__option_env_level(const char *name, int fallback)
{
    const option *o = find_option(name);
    char env[64];
    const char *value = o != NULL ? env_of(o, env, sizeof env) : NULL;
    unsigned long long v;
    if (value == NULL ||
        (o->type == OPT_BOOL ? parse_bool(value, &v)
                             : parse_number(value, &v)) != 0 ||
        v < o->min || v > o->max)
        return fallback;
    return (int)v;
}
