/*
 * Event trace: lanes of fixed-size events recorded without locks, exported
 * after each run as Chrome trace-event JSON (Perfetto, chrome://tracing) and
 * read back by tools/para_trace.c to draw an SVG timeline.
 *
 * Recording
 *   Each lane (trace.h) has one writer. An event is 32 bytes: two
 *   timestamps, an item count, a node index and a kind-specific word. Tasks,
 *   source pulls, parking and device launches are recorded once, at their
 *   end, with both their start and end times (the scheduler already reads the
 *   clock around a task for its statistics, so a task costs no extra clock
 *   read), which makes every recorded start have its end by construction.
 *   A full lane stops recording and counts what it drops (trace.h says why).
 *
 * Runs
 *   para_run() empties every lane before the workers start
 *   (para__trace_run_begin) and, once they have all left the run, snapshots
 *   the graph's node names (para__trace_run_end) and writes the file named by
 *   PARA_TRACE. So a trace file always holds the last run; para_trace_write()
 *   writes it again elsewhere.
 *
 * Format (one object; every event has pid 1, or in a trace merged over
 * MPI ranks, pid rank + 1: para__trace_write_part())
 *   {"traceEvents":[
 *     {"name":"process_name","ph":"M","pid":1,"tid":0,"args":{"name":
 *      "para"}},
 *     {"name":"process_sort_index",...,"args":{"sort_index":1}},
 *     {"name":"thread_name","ph":"M","pid":1,"tid":10,"args":{"name":
 *      "para-cpu-0","lane":"cpu","index":0,"slot":0,"events":N,"dropped":D}},
 *     {"name":"spin200","cat":"task","ph":"X","pid":1,"tid":10,
 *      "ts":12.345,"dur":6.789,"args":{"node":1,"items":32,"out":32}},
 *     {"name":"i","cat":"source",...,"args":{"node":0,"items":32}},
 *     {"name":"parked","cat":"park","ph":"X",...},
 *     {"name":"steal","cat":"steal","ph":"i","s":"t",...,
 *      "args":{"victim":1}},
 *     {"name":"kernel","cat":"device","ph":"X","tid":1000,...,
 *      "args":{"node":2,"items":4096,"bytes":65536,"device":0}}],
 *    "displayTimeUnit":"ns",
 *    "otherData":{"producer":"para","version":"0.1.0"},
 *    "para":{"format":1,"workers":2,"run":1,"run_ns":123,"dropped":0,
 *            "nodes":[{"index":0,"name":"i","kind":"source"},...]}}
 *   Times are microseconds since the run started, with nanosecond
 *   decimals. CPU lanes have tid 10 + worker id; device lane k (in order of
 *   registration) has tid 1000 + 100 k + slot, where overlapping launches get
 *   distinct slots.
 *
 * Tests: tests/runtime/test_trace.c (events of known runs, full lanes,
 * device lanes, the SVG of tools/para_trace.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "scheduler.h"
#include "trace.h"

#define CPU_TID_BASE 10u
#define DEVICE_TID_BASE 1000u
#define DEVICE_TID_STRIDE 100u
#define MAX_SLOTS 64u

int para__trace_create(para__trace **out, const char *path, size_t cap)
{
    *out = NULL;
    para__trace *tr = calloc(1, sizeof *tr);
    if (tr == NULL)
        return PARA_ENOMEM;
    if (path != NULL && *path != '\0') {
        tr->path = strdup(path);
        if (tr->path == NULL) {
            free(tr);
            return PARA_ENOMEM;
        }
    }
    tr->cap = cap != 0 ? cap : 1;
    pthread_mutex_init(&tr->lock, NULL);
    atomic_init(&tr->n_lanes, 0);
    *out = tr;
    return 0;
}

static void free_nodes(para__trace *tr)
{
    for (unsigned i = 0; i < tr->n_nodes; i++)
        free(tr->nodes[i].name);
    free(tr->nodes);
    tr->nodes = NULL;
    tr->n_nodes = 0;
}

void para__trace_destroy(para__trace *tr)
{
    if (tr == NULL)
        return;
    /* relaxed: no lane is added concurrently with destruction. */
    unsigned n = atomic_load_explicit(&tr->n_lanes, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        free(tr->lanes[i]->ev);
        free(tr->lanes[i]);
    }
    free_nodes(tr);
    pthread_mutex_destroy(&tr->lock);
    free(tr->path);
    free(tr);
}

para__trace_lane *para__trace_lane_add(para__trace *tr, para__lane_kind kind,
                                       unsigned index, const char *name)
{
    if (tr == NULL)
        return NULL;
    size_t bytes = (sizeof(para__trace_lane) + PARA_CACHELINE - 1) &
                   ~(size_t)(PARA_CACHELINE - 1);
    para__trace_lane *l = aligned_alloc(PARA_CACHELINE, bytes);
    para__trace_event *ev =
        tr->cap <= SIZE_MAX / sizeof *ev ? malloc(tr->cap * sizeof *ev) : NULL;
    if (l == NULL || ev == NULL) {
        para__log(1,
                  "trace: no memory for lane '%s' (%zu events); it is "
                  "not traced",
                  name, tr->cap);
        free(l);
        free(ev);
        return NULL;
    }
    memset(l, 0, sizeof *l);
    atomic_init(&l->len, 0);
    atomic_init(&l->dropped, 0);
    l->cap = tr->cap;
    l->ev = ev;
    l->kind = kind;
    l->index = index;
    snprintf(l->name, sizeof l->name, "%s", name);

    pthread_mutex_lock(&tr->lock);
    /* relaxed: n_lanes is only stored under tr->lock, which we hold. */
    unsigned n = atomic_load_explicit(&tr->n_lanes, memory_order_relaxed);
    if (n == PARA__TRACE_MAX_LANES) {
        pthread_mutex_unlock(&tr->lock);
        para__log(1, "trace: more than %d lanes; '%s' is not traced",
                  PARA__TRACE_MAX_LANES, name);
        free(ev);
        free(l);
        return NULL;
    }
    tr->lanes[n] = l;
    /* release: publish the lane before the count; pairs with the acquire
     * loads of n_lanes by readers that do not take the lock. */
    atomic_store_explicit(&tr->n_lanes, n + 1, memory_order_release);
    pthread_mutex_unlock(&tr->lock);
    return l;
}

void para__trace_run_begin(para__trace *tr, unsigned workers)
{
    if (tr == NULL)
        return;
    pthread_mutex_lock(&tr->lock);
    /* relaxed: n_lanes only changes under tr->lock. */
    unsigned n = atomic_load_explicit(&tr->n_lanes, memory_order_relaxed);
    for (unsigned i = 0; i < n; i++) {
        /* relaxed: no owner records between runs; the run's publication
         * (rt->lock in para__scheduler_execute) orders these stores before
         * the owners' next loads. */
        atomic_store_explicit(&tr->lanes[i]->len, 0, memory_order_relaxed);
        atomic_store_explicit(&tr->lanes[i]->dropped, 0, memory_order_relaxed);
    }
    tr->workers = workers;
    tr->run_t0 = para__now_ns();
    tr->run_t1 = tr->run_t0;
    pthread_mutex_unlock(&tr->lock);
}

int para__trace_run_end(para__trace *tr, const para_graph_t *g)
{
    if (tr == NULL)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&tr->lock);
    tr->run_t1 = para__now_ns();
    tr->runs++;
    free_nodes(tr);
    tr->nodes = calloc(g->n_nodes ? g->n_nodes : 1, sizeof *tr->nodes);
    if (tr->nodes == NULL) {
        rc = PARA_ENOMEM;
        goto out;
    }
    for (unsigned i = 0; i < g->n_nodes; i++) {
        tr->nodes[i].name = strdup(g->nodes[i]->name);
        tr->nodes[i].kind = para__node_kind_name(g->nodes[i]);
        tr->n_nodes = i + 1;
        if (tr->nodes[i].name == NULL) {
            rc = PARA_ENOMEM;
            goto out;
        }
    }
out:
    pthread_mutex_unlock(&tr->lock);
    return rc;
}

/* ---- export ------------------------------------------------------------- */

/* A buffered writer: formatting by hand is several times faster than
 * fprintf, and export time counts against the run that precedes it. */
typedef struct writer {
    FILE *f;
    size_t len;
    bool failed;
    unsigned pid; /* the events' process */
    int64_t base; /* a timestamp is its event's time minus base (>= 0) */
    char buf[1 << 16];
} writer;

static void w_flush(writer *w)
{
    if (w->len > 0 && fwrite(w->buf, 1, w->len, w->f) != w->len)
        w->failed = true;
    w->len = 0;
}

static void w_mem(writer *w, const char *s, size_t n)
{
    if (sizeof w->buf - w->len < n) {
        w_flush(w);
        if (n > sizeof w->buf) {
            if (fwrite(s, 1, n, w->f) != n)
                w->failed = true;
            return;
        }
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void w_str(writer *w, const char *s)
{
    w_mem(w, s, strlen(s));
}

static void w_u64(writer *w, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    w_mem(w, tmp + i, sizeof tmp - i);
}

/* Nanoseconds as microseconds with three decimals. */
static void w_us(writer *w, uint64_t ns)
{
    w_u64(w, ns / 1000);
    unsigned frac = (unsigned)(ns % 1000);
    char tmp[4] = {'.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
                   (char)('0' + frac % 10)};
    w_mem(w, tmp, sizeof tmp);
}

/* A JSON string literal, quotes included. */
static void w_json_str(writer *w, const char *s)
{
    w_mem(w, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            w_mem(w, esc, 2);
        } else if (*p < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            w_mem(w, esc, 6);
        } else {
            w_mem(w, (const char *)p, 1);
        }
    }
    w_mem(w, "\"", 1);
}

static void w_node_name(writer *w, const para__trace *tr, unsigned node,
                        const char *fallback)
{
    if (node < tr->n_nodes)
        w_json_str(w, tr->nodes[node].name);
    else
        w_json_str(w, fallback);
}

/* A fused task's name: "fused head..last" (fuse.h). */
static void w_fused_name(writer *w, const para__trace *tr,
                         const para__trace_event *e)
{
    unsigned last = (unsigned)((e->aux >> 8) & PARA__TRACE_NO_NODE);
    char name[160];
    snprintf(name, sizeof name, "fused %s..%s",
             e->node < tr->n_nodes ? tr->nodes[e->node].name : "?",
             last < tr->n_nodes ? tr->nodes[last].name : "?");
    w_json_str(w, name);
}

static void w_pid_tid(writer *w, unsigned tid)
{
    w_str(w, ",\"pid\":");
    w_u64(w, w->pid);
    w_str(w, ",\"tid\":");
    w_u64(w, tid);
}

static void w_lane_meta(writer *w, const para__trace_lane *l, unsigned tid,
                        unsigned slot, uint64_t events, uint64_t dropped)
{
    char name[48];
    if (slot == 0)
        snprintf(name, sizeof name, "%s", l->name);
    else
        snprintf(name, sizeof name, "%s.%u", l->name, slot);
    w_str(w, "{\"name\":\"thread_name\",\"ph\":\"M\"");
    w_pid_tid(w, tid);
    w_str(w, ",\"args\":{\"name\":");
    w_json_str(w, name);
    w_str(w, l->kind == PARA__LANE_CPU ? ",\"lane\":\"cpu\",\"index\":"
                                       : ",\"lane\":\"device\",\"index\":");
    w_u64(w, l->index);
    w_str(w, ",\"slot\":");
    w_u64(w, slot);
    w_str(w, ",\"events\":");
    w_u64(w, events);
    w_str(w, ",\"dropped\":");
    w_u64(w, dropped);
    w_str(w, "}},\n{\"name\":\"thread_sort_index\",\"ph\":\"M\"");
    w_pid_tid(w, tid);
    w_str(w, ",\"args\":{\"sort_index\":");
    w_u64(w, tid);
    w_str(w, "}},\n");
}

/* `,"args":{"node":N`: the opening of an event's arguments. */
static void w_args_node(writer *w, uint64_t node)
{
    w_str(w, ",\"args\":{\"node\":");
    w_u64(w, node);
}

/* `,"key":v`: one more argument. */
static void w_field(writer *w, const char *key, uint64_t v)
{
    w_str(w, ",\"");
    w_str(w, key);
    w_str(w, "\":");
    w_u64(w, v);
}

static void w_event(writer *w, const para__trace *tr, const para__trace_lane *l,
                    const para__trace_event *e, unsigned tid)
{
    int64_t rel = (int64_t)e->t0 - w->base;
    uint64_t t0 = rel > 0 ? (uint64_t)rel : 0;
    uint64_t dur = e->t1 > e->t0 ? e->t1 - e->t0 : 0;
    w_str(w, "{\"name\":");
    switch (e->kind) {
    case PARA__TEV_TASK:
        w_node_name(w, tr, e->node, "task");
        w_str(w, ",\"cat\":\"task\"");
        break;
    case PARA__TEV_SOURCE:
        w_node_name(w, tr, e->node, "source");
        w_str(w, ",\"cat\":\"source\"");
        break;
    case PARA__TEV_STEAL:
        w_str(w, "\"steal\",\"cat\":\"steal\"");
        break;
    case PARA__TEV_PARK:
        w_str(w, "\"parked\",\"cat\":\"park\"");
        break;
    case PARA__TEV_DEVICE:
        w_node_name(w, tr, e->node, "launch");
        w_str(w, ",\"cat\":\"device\"");
        break;
    case PARA__TEV_COPY_IN:
        w_str(w, "\"copy in\",\"cat\":\"transfer\"");
        break;
    case PARA__TEV_COPY_OUT:
        w_str(w, "\"copy out\",\"cat\":\"transfer\"");
        break;
    case PARA__TEV_FUSED:
        w_fused_name(w, tr, e);
        w_str(w, ",\"cat\":\"fused\"");
        break;
    default:
        w_str(w, "\"unknown\",\"cat\":\"unknown\"");
        break;
    }
    if (e->kind == PARA__TEV_STEAL)
        w_str(w, ",\"ph\":\"i\",\"s\":\"t\"");
    else
        w_str(w, ",\"ph\":\"X\"");
    w_pid_tid(w, tid);
    w_str(w, ",\"ts\":");
    w_us(w, t0);
    if (e->kind != PARA__TEV_STEAL) {
        w_str(w, ",\"dur\":");
        w_us(w, dur);
    }
    switch (e->kind) {
    case PARA__TEV_TASK:
        w_args_node(w, e->node);
        w_field(w, "items", e->items);
        w_field(w, "out", e->aux);
        break;
    case PARA__TEV_SOURCE:
        w_args_node(w, e->node);
        w_field(w, "items", e->items);
        break;
    case PARA__TEV_FUSED:
        w_args_node(w, e->node);
        w_field(w, "last", (e->aux >> 8) & PARA__TRACE_NO_NODE);
        w_field(w, "stages", e->aux & 255u);
        w_field(w, "items", e->items);
        break;
    case PARA__TEV_STEAL:
        w_str(w, ",\"args\":{\"victim\":");
        w_u64(w, e->aux);
        break;
    case PARA__TEV_DEVICE:
        w_args_node(w, e->node);
        w_field(w, "items", e->items);
        w_field(w, "bytes", e->aux);
        w_field(w, "device", l->index);
        break;
    case PARA__TEV_COPY_IN:
    case PARA__TEV_COPY_OUT:
        w_args_node(w, e->node);
        w_field(w, "bytes", e->aux);
        w_field(w, "device", l->index);
        break;
    default:
        w_str(w, "},\n");
        return;
    }
    w_str(w, "}},\n");
}

static int cmp_t0(const void *a, const void *b)
{
    const para__trace_event *x = a, *y = b;
    return x->t0 < y->t0 ? -1 : x->t0 > y->t0;
}

/* A device lane: launches sorted by start, overlapping ones on separate
 * slots (greedy: the lowest slot free at the launch's start). */
static int w_device_lane(writer *w, const para__trace *tr,
                         const para__trace_lane *l, uint64_t n,
                         uint64_t dropped, unsigned tid_base)
{
    para__trace_event *ev = malloc((n ? n : 1) * sizeof *ev);
    unsigned char *slot_of = malloc(n ? n : 1);
    if (ev == NULL || slot_of == NULL) {
        free(ev);
        free(slot_of);
        return PARA_ENOMEM;
    }
    memcpy(ev, l->ev, n * sizeof *ev);
    qsort(ev, n, sizeof *ev, cmp_t0);
    uint64_t slot_end[MAX_SLOTS] = {0};
    unsigned slots = 1;
    for (uint64_t i = 0; i < n; i++) {
        unsigned s = 0;
        while (s < MAX_SLOTS - 1 && s < slots && slot_end[s] > ev[i].t0)
            s++;
        if (s == slots)
            slots++;
        slot_end[s] = ev[i].t1;
        slot_of[i] = (unsigned char)s;
    }
    for (unsigned s = 0; s < slots; s++)
        w_lane_meta(w, l, tid_base + s, s, s == 0 ? n : 0,
                    s == 0 ? dropped : 0);
    for (uint64_t i = 0; i < n; i++)
        w_event(w, tr, l, &ev[i], tid_base + slot_of[i]);
    free(slot_of);
    free(ev);
    return 0;
}

static writer *writer_new(FILE *f, unsigned pid, int64_t base)
{
    writer *w = malloc(sizeof *w);
    if (w == NULL)
        return NULL;
    w->f = f;
    w->len = 0;
    w->failed = false;
    w->pid = pid;
    w->base = base;
    return w;
}

/* Flush and free @p w; @p rc, or -EIO if a write failed. */
static int writer_end(writer *w, int rc)
{
    w_flush(w);
    if (rc == 0 && w->failed)
        rc = -EIO;
    free(w);
    return rc;
}

/* One process's part: its name, its lanes' metadata and events, each
 * element followed by ",\n". Caller holds tr->lock. */
static int w_part(writer *w, const para__trace *tr, const char *name,
                  uint64_t *dropped_total)
{
    int rc = 0;
    w_str(w, "{\"name\":\"process_name\",\"ph\":\"M\"");
    w_pid_tid(w, 0);
    w_str(w, ",\"args\":{\"name\":");
    w_json_str(w, name);
    w_str(w, "}},\n{\"name\":\"process_sort_index\",\"ph\":\"M\"");
    w_pid_tid(w, 0);
    w_str(w, ",\"args\":{\"sort_index\":");
    w_u64(w, w->pid);
    w_str(w, "}},\n");
    /* relaxed: n_lanes only changes under tr->lock, which we hold. */
    unsigned n_lanes = atomic_load_explicit(&tr->n_lanes, memory_order_relaxed);
    unsigned device_lanes = 0;
    for (unsigned i = 0; i < n_lanes && rc == 0; i++) {
        const para__trace_lane *l = tr->lanes[i];
        /* acquire: see every event below len; pairs with the release store
         * in para__trace_put(). */
        uint64_t n = atomic_load_explicit(&l->len, memory_order_acquire);
        /* relaxed: a count; a stale value only under-reports drops of a
         * lane still recording. */
        uint64_t dropped =
            atomic_load_explicit(&l->dropped, memory_order_relaxed);
        *dropped_total += dropped;
        if (l->kind == PARA__LANE_DEVICE) {
            rc = w_device_lane(w, tr, l, n, dropped,
                               DEVICE_TID_BASE +
                                   DEVICE_TID_STRIDE * device_lanes);
            device_lanes++;
            continue;
        }
        unsigned tid = CPU_TID_BASE + l->index;
        w_lane_meta(w, l, tid, 0, n, dropped);
        for (uint64_t k = 0; k < n; k++)
            w_event(w, tr, l, &l->ev[k], tid);
    }
    return rc;
}

/* The end of the file: the closing event (at @p end_ns), the array's end
 * and the "para" object (with "ranks" when @p ranks is not 0). Caller
 * holds tr->lock. */
static void w_tail(writer *w, const para__trace *tr, uint64_t end_ns,
                   unsigned ranks, uint64_t dropped_total)
{
    /* The trailing element keeps the array valid JSON after the last ",". */
    w_str(w, "{\"name\":\"trace_end\",\"ph\":\"i\",\"s\":\"g\"");
    w_pid_tid(w, 0);
    w_str(w, ",\"ts\":");
    w_us(w, end_ns);
    w_str(w, "}\n],\n\"displayTimeUnit\":\"ns\",\n\"otherData\":{\"producer\":"
             "\"para\",\"version\":");
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", PARA_VERSION_MAJOR,
             PARA_VERSION_MINOR, PARA_VERSION_PATCH);
    w_json_str(w, version);
    w_str(w, "},\n\"para\":{\"format\":1,\"workers\":");
    w_u64(w, tr->workers);
    if (ranks != 0) {
        w_str(w, ",\"ranks\":");
        w_u64(w, ranks);
    }
    w_str(w, ",\"run\":");
    w_u64(w, tr->runs);
    w_str(w, ",\"run_ns\":");
    w_u64(w, end_ns);
    w_str(w, ",\"lane_capacity\":");
    w_u64(w, tr->cap);
    w_str(w, ",\"dropped\":");
    w_u64(w, dropped_total);
    w_str(w, ",\"nodes\":[");
    for (unsigned i = 0; i < tr->n_nodes; i++) {
        w_str(w, i ? ",\n{\"index\":" : "\n{\"index\":");
        w_u64(w, i);
        w_str(w, ",\"name\":");
        w_json_str(w, tr->nodes[i].name);
        w_str(w, ",\"kind\":\"");
        w_str(w, tr->nodes[i].kind);
        w_str(w, "\"}");
    }
    w_str(w, "]}}\n");
}

static void log_dropped(const para__trace *tr, uint64_t dropped_total)
{
    if (dropped_total > 0)
        para__log(1,
                  "trace: %" PRIu64 " events dropped (a lane holds %zu; "
                  "raise PARA_TRACE_EVENTS); the trace shows the run's start",
                  dropped_total, tr->cap);
}

int para__trace_write(para__trace *tr, FILE *f)
{
    if (tr == NULL || f == NULL)
        return PARA_EINVAL;
    pthread_mutex_lock(&tr->lock);
    writer *w = writer_new(f, 1, (int64_t)tr->run_t0);
    if (w == NULL) {
        pthread_mutex_unlock(&tr->lock);
        return PARA_ENOMEM;
    }
    uint64_t dropped_total = 0;
    w_str(w, "{\"traceEvents\":[\n");
    int rc = w_part(w, tr, "para", &dropped_total);
    w_tail(w, tr, tr->run_t1 - tr->run_t0, 0, dropped_total);
    pthread_mutex_unlock(&tr->lock);
    log_dropped(tr, dropped_total);
    return writer_end(w, rc);
}

int para__trace_write_part(para__trace *tr, FILE *f, unsigned pid,
                           const char *name, int64_t base)
{
    if (tr == NULL || f == NULL || name == NULL)
        return PARA_EINVAL;
    writer *w = writer_new(f, pid, base);
    if (w == NULL)
        return PARA_ENOMEM;
    uint64_t dropped_total = 0;
    pthread_mutex_lock(&tr->lock);
    int rc = w_part(w, tr, name, &dropped_total);
    pthread_mutex_unlock(&tr->lock);
    log_dropped(tr, dropped_total);
    return writer_end(w, rc);
}

int para__trace_write_head(FILE *f)
{
    return fputs("{\"traceEvents\":[\n", f) < 0 ? -EIO : 0;
}

int para__trace_write_tail(para__trace *tr, FILE *f, uint64_t end_ns,
                           unsigned ranks)
{
    if (tr == NULL || f == NULL)
        return PARA_EINVAL;
    writer *w = writer_new(f, 1, 0);
    if (w == NULL)
        return PARA_ENOMEM;
    pthread_mutex_lock(&tr->lock);
    w_tail(w, tr, end_ns, ranks, 0);
    pthread_mutex_unlock(&tr->lock);
    return writer_end(w, 0);
}

void para__trace_run_times(para__trace *tr, uint64_t *t0, uint64_t *t1)
{
    pthread_mutex_lock(&tr->lock);
    *t0 = tr->run_t0;
    *t1 = tr->run_t1;
    pthread_mutex_unlock(&tr->lock);
}

int para__trace_write_file(para__trace *tr, const char *path)
{
    if (tr == NULL || path == NULL)
        return PARA_EINVAL;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        int err = errno;
        para__log(1, "trace: cannot write '%s': %s", path, strerror(err));
        return -err;
    }
    int rc = para__trace_write(tr, f);
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    if (rc != 0)
        para__log(1, "trace: writing '%s' failed: %s", path,
                  rc == PARA_ENOMEM ? "out of memory" : strerror(-rc));
    return rc;
}

int para_trace_write(const para_runtime_t *rt, const char *path)
{
    if (rt == NULL || path == NULL || rt->trace == NULL)
        return PARA_EINVAL;
    return para__trace_write_file(rt->trace, path);
}
