/*
 * A deterministic web-server log for examples/log_stats.c and para-bench
 * w9: line k is
 *
 *     <timestamp> <GET|POST|PUT> /api/v1/items/<p> <status> <latency>ms
 *
 * plus, for one line in ten, a query string of 100 to 380 characters;
 * p, the method, the status (200, 201, 404, 500, 503) and the latency
 * (1..3000 ms) come from xorshift64 seeded with 42, so every run sees the
 * same text. Lines are 40 to 450 bytes. Also the parser and the aggregate
 * both programs compute, so that they agree by construction.
 */
#ifndef PARA_EXAMPLES_LOGGEN_H
#define PARA_EXAMPLES_LOGGEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOGGEN_MAX_LINE 512
#define LOGGEN_BINS 64
#define LOGGEN_STATUSES 6 /* 200 201 404 500 503 other */

static inline uint64_t loggen_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Line @p k into @p buf (LOGGEN_MAX_LINE bytes), '\n' included; returns
 * its length. */
static inline size_t loggen_line(uint64_t *rng, uint64_t k, char *buf)
{
    static const char *const methods[] = {"GET", "POST", "PUT"};
    static const int statuses[] = {200, 201, 404, 500, 503};
    uint64_t p = loggen_next(rng) % 1000000;
    const char *m = methods[loggen_next(rng) % 3];
    int status = statuses[loggen_next(rng) % 5];
    unsigned latency = 1 + (unsigned)(loggen_next(rng) % 3000);
    uint64_t ts = 1764489600000ull + k * 7;
    int n = snprintf(buf, LOGGEN_MAX_LINE, "%llu %s /api/v1/items/%llu",
                     (unsigned long long)ts, m, (unsigned long long)p);
    if (loggen_next(rng) % 10 == 0) {
        size_t q = 100 + (size_t)(loggen_next(rng) % 281);
        buf[n++] = '?';
        for (size_t i = 0; i < q - 1; i++)
            buf[n++] = (char)((i % 8 == 7) ? '&' : 'a' + (k + i) % 26);
    }
    n += snprintf(buf + n, LOGGEN_MAX_LINE - (size_t)n, " %d %ums\n", status,
                  latency);
    return (size_t)n;
}

/* Write @p lines lines to @p f; 0 or -1. */
static inline int loggen_write(FILE *f, uint64_t lines)
{
    uint64_t rng = 42;
    char buf[LOGGEN_MAX_LINE];
    for (uint64_t k = 0; k < lines; k++) {
        size_t n = loggen_line(&rng, k, buf);
        if (fwrite(buf, 1, n, f) != n)
            return -1;
    }
    return 0;
}

/* One parsed line. */
typedef struct log_rec {
    uint32_t status;
    uint32_t latency_ms;
    uint64_t path_hash; /* FNV-1a of the path, query excluded */
} log_rec;

/* Parse @p len bytes at @p s; 0, or -1 for a malformed line. */
static inline int loggen_parse(const char *s, size_t len, log_rec *r)
{
    const char *end = s + len;
    const char *sp = memchr(s, ' ', len); /* after the timestamp */
    if (sp == NULL)
        return -1;
    const char *path = memchr(sp + 1, ' ', (size_t)(end - sp - 1));
    if (path == NULL)
        return -1;
    path++;
    uint64_t h = 1469598103934665603ull;
    const char *c = path;
    while (c < end && *c != ' ' && *c != '?') {
        h = (h ^ (unsigned char)*c) * 1099511628211ull;
        c++;
    }
    while (c < end && *c != ' ')
        c++;
    if (c == end)
        return -1;
    uint32_t status = 0, lat = 0;
    for (c++; c < end && *c >= '0' && *c <= '9'; c++)
        status = status * 10 + (uint32_t)(*c - '0');
    if (c == end || *c != ' ')
        return -1;
    for (c++; c < end && *c >= '0' && *c <= '9'; c++)
        lat = lat * 10 + (uint32_t)(*c - '0');
    r->status = status;
    r->latency_ms = lat;
    r->path_hash = h;
    return 0;
}

/* The aggregate of the lines that pass the filter (status >= 500 or
 * latency > 1000 ms): a count per status and a latency histogram. */
typedef struct log_stats {
    uint64_t lines; /* kept lines */
    uint64_t by_status[LOGGEN_STATUSES];
    uint64_t hist[LOGGEN_BINS]; /* latency 1..3000 ms in 64 bins */
    uint64_t path_sum;          /* sum of path hashes (a checksum) */
} log_stats;

static inline int loggen_keep(const log_rec *r)
{
    return r->status >= 500 || r->latency_ms > 1000;
}

static inline void loggen_add(log_stats *st, const log_rec *r)
{
    static const uint32_t codes[] = {200, 201, 404, 500, 503};
    unsigned s = LOGGEN_STATUSES - 1;
    for (unsigned i = 0; i < 5; i++)
        if (r->status == codes[i])
            s = i;
    unsigned bin = r->latency_ms == 0
                       ? 0
                       : (unsigned)((r->latency_ms - 1) * LOGGEN_BINS / 3000);
    if (bin >= LOGGEN_BINS)
        bin = LOGGEN_BINS - 1;
    st->lines++;
    st->by_status[s]++;
    st->hist[bin]++;
    st->path_sum += r->path_hash;
}

static inline void loggen_merge(log_stats *a, const log_stats *b)
{
    a->lines += b->lines;
    a->path_sum += b->path_sum;
    for (unsigned i = 0; i < LOGGEN_STATUSES; i++)
        a->by_status[i] += b->by_status[i];
    for (unsigned i = 0; i < LOGGEN_BINS; i++)
        a->hist[i] += b->hist[i];
}

/* The whole job in one plain loop: read blocks, split lines, parse,
 * filter, aggregate. 0, or -1 (unreadable file, malformed line). */
static inline int loggen_seq_file(const char *path, log_stats *st)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    memset(st, 0, sizeof *st);
    size_t cap = (size_t)1 << 20, have = 0;
    char *buf = malloc(cap);
    int rc = buf != NULL ? 0 : -1;
    while (rc == 0) {
        size_t got = fread(buf + have, 1, cap - have, f);
        have += got;
        size_t pos = 0;
        for (;;) {
            char *nl = memchr(buf + pos, '\n', have - pos);
            if (nl == NULL && (got != 0 || pos == have))
                break; /* more to read, or nothing left */
            size_t stop = nl != NULL ? (size_t)(nl - buf) : have;
            log_rec r;
            if (loggen_parse(buf + pos, stop - pos, &r) != 0) {
                rc = -1;
                break;
            }
            if (loggen_keep(&r))
                loggen_add(st, &r);
            pos = nl != NULL ? stop + 1 : have;
        }
        if (got == 0)
            break;
        if (pos == 0 && have == cap) { /* a line longer than the buffer */
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                rc = -1;
                break;
            }
            buf = nb;
            cap *= 2;
            continue;
        }
        memmove(buf, buf + pos, have - pos);
        have -= pos;
    }
    free(buf);
    fclose(f);
    return rc;
}

#endif /* PARA_EXAMPLES_LOGGEN_H */
