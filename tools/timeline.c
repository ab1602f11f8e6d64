/*
 * A para trace as lanes of spans (para__timeline_from_json) and its SVG
 * picture (para__timeline_svg); see timeline.h.
 *
 * Reading
 *   Lanes come from the "thread_name" metadata events, whose args para
 *   writes as {"name", "lane": "cpu"|"device", "index", "slot"}; a tid
 *   without metadata (a trace from elsewhere) becomes a lane of its own.
 *   Lanes belong to their process (pid): a trace merged over MPI ranks has
 *   one per rank, and its lanes are named after the process ("para rank
 *   1: para-cpu-0") and drawn rank after rank.
 *   Node names come from the "para" object's "nodes" when present, else
 *   from event names in order of appearance.
 *
 * Drawing
 *   Time runs left to right over the run; a lane per worker, then per
 *   device (its overlapping launches stacked in slots). Spans of the same
 *   node that would touch at this scale (gap under 0.6 px) are merged into
 *   one rectangle, so a run of a million tiny tasks stays a small file; each
 *   rectangle's <title> says what it stands for. Parking is a thin grey bar,
 *   a steal a small black triangle at the top of the thief's lane.
 *
 * Tests: tests/runtime/test_trace.c.
 */
#include "timeline.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading ------------------------------------------------------------ */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

typedef struct tid_map {
    double pid, tid;
    size_t lane;
    unsigned slot;
} tid_map;

typedef struct reader {
    para__timeline *tl;
    tid_map *tids;
    size_t n_tids, cap_tids;
    const para__json *events;
    bool merged; /* more than one process */
    char *err;
    size_t err_len;
} reader;

static int oom(reader *r)
{
    snprintf(r->err, r->err_len, "out of memory");
    return -1;
}

static bool grow(void **ptr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*ptr, ncap * elem);
    if (p == NULL)
        return false;
    *ptr = p;
    *cap = ncap;
    return true;
}

static long find_lane(const para__timeline *tl, unsigned pid, int device,
                      unsigned index)
{
    for (size_t i = 0; i < tl->n_lanes; i++)
        if (tl->lanes[i].pid == pid && tl->lanes[i].device == device &&
            tl->lanes[i].index == index)
            return (long)i;
    return -1;
}

/* The name of process @p pid ("process_name" metadata), or NULL. */
static const char *process_name(const reader *r, double pid)
{
    for (size_t i = 0; i < r->events->len; i++) {
        const para__json *e = r->events->items[i];
        if (strcmp(para__json_string(para__json_get(e, "name"), ""),
                   "process_name") == 0 &&
            para__json_number(para__json_get(e, "pid"), -1) == pid)
            return para__json_string(
                para__json_get(para__json_get(e, "args"), "name"), NULL);
    }
    return NULL;
}

/* The lane of (pid, device, index), created if new. */
static long lane_for(reader *r, unsigned pid, int device, unsigned index,
                     const char *name, size_t *cap)
{
    para__timeline *tl = r->tl;
    long i = find_lane(tl, pid, device, index);
    if (i >= 0)
        return i;
    if (!grow((void **)&tl->lanes, cap, tl->n_lanes + 1, sizeof *tl->lanes))
        return -1;
    para__lane *l = &tl->lanes[tl->n_lanes];
    memset(l, 0, sizeof *l);
    const char *proc = r->merged ? process_name(r, pid) : NULL;
    if (proc != NULL)
        snprintf(l->name, sizeof l->name, "%s: %s", proc, name);
    else
        snprintf(l->name, sizeof l->name, "%s", name);
    l->pid = pid;
    l->device = device;
    l->index = index;
    l->slots = 1;
    return (long)tl->n_lanes++;
}

static const tid_map *find_tid(const reader *r, double pid, double tid)
{
    for (size_t i = 0; i < r->n_tids; i++)
        if (r->tids[i].pid == pid && r->tids[i].tid == tid)
            return &r->tids[i];
    return NULL;
}

static int add_tid(reader *r, double pid, double tid, size_t lane,
                   unsigned slot)
{
    if (!grow((void **)&r->tids, &r->cap_tids, r->n_tids + 1, sizeof *r->tids))
        return oom(r);
    r->tids[r->n_tids++] = (tid_map){pid, tid, lane, slot};
    return 0;
}

/* An event's process: its "pid", 1 when absent or odd. */
static double pid_of(const para__json *e)
{
    double pid = para__json_number(para__json_get(e, "pid"), 1);
    return pid >= 0 && pid < 1e6 ? pid : 1;
}

static int node_index(reader *r, const char *name)
{
    para__timeline *tl = r->tl;
    for (size_t i = 0; i < tl->n_nodes; i++)
        if (strcmp(tl->nodes[i], name) == 0)
            return (int)i;
    char **nodes = realloc(tl->nodes, (tl->n_nodes + 1) * sizeof *nodes);
    if (nodes == NULL)
        return -2;
    tl->nodes = nodes;
    tl->nodes[tl->n_nodes] = dup_str(name);
    if (tl->nodes[tl->n_nodes] == NULL)
        return -2;
    return (int)tl->n_nodes++;
}

static int read_nodes(reader *r, const para__json *para)
{
    const para__json *nodes = para__json_get(para, "nodes");
    if (nodes == NULL || nodes->type != PARA__JSON_ARRAY)
        return 0;
    para__timeline *tl = r->tl;
    tl->nodes = calloc(nodes->len ? nodes->len : 1, sizeof *tl->nodes);
    if (tl->nodes == NULL)
        return oom(r);
    for (size_t i = 0; i < nodes->len; i++) {
        const para__json *n = nodes->items[i];
        double idx = para__json_number(para__json_get(n, "index"), -1);
        if (idx != (double)i) {
            snprintf(r->err, r->err_len, "para.nodes[%zu] has index %g", i,
                     idx);
            return -1;
        }
        tl->nodes[i] =
            dup_str(para__json_string(para__json_get(n, "name"), "?"));
        if (tl->nodes[i] == NULL)
            return oom(r);
        tl->n_nodes = i + 1;
    }
    return 0;
}

static int read_lanes(reader *r, const para__json *events, size_t *lanes_cap)
{
    for (size_t i = 0; i < events->len; i++) {
        const para__json *e = events->items[i];
        const char *ph = para__json_string(para__json_get(e, "ph"), "");
        const char *name = para__json_string(para__json_get(e, "name"), "");
        if (strcmp(ph, "M") != 0 || strcmp(name, "thread_name") != 0)
            continue;
        const para__json *tid = para__json_get(e, "tid");
        const para__json *args = para__json_get(e, "args");
        if (tid == NULL || tid->type != PARA__JSON_NUMBER)
            continue;
        const char *lane_name =
            para__json_string(para__json_get(args, "name"), "?");
        const char *kind = para__json_string(para__json_get(args, "lane"), "");
        int device = strcmp(kind, "device") == 0;
        double index = para__json_number(para__json_get(args, "index"), -1);
        double slot = para__json_number(para__json_get(args, "slot"), 0);
        if (index < 0 || *kind == '\0') /* not para's: one lane per tid */
            index = tid->number;
        if (slot < 0 || slot > 1000)
            slot = 0;
        char base[64];
        snprintf(base, sizeof base, "%s", lane_name);
        if (slot > 0) { /* "para-cl-0.2": the lane is "para-cl-0" */
            char *dot = strrchr(base, '.');
            if (dot != NULL)
                *dot = '\0';
        }
        double pid = pid_of(e);
        long lane = lane_for(r, (unsigned)pid, device, (unsigned)index, base,
                             lanes_cap);
        if (lane < 0)
            return oom(r);
        para__lane *l = &r->tl->lanes[lane];
        if (slot == 0)
            l->dropped +=
                (uint64_t)para__json_number(para__json_get(args, "dropped"), 0);
        if ((unsigned)slot + 1 > l->slots)
            l->slots = (unsigned)slot + 1;
        if (add_tid(r, pid, tid->number, (size_t)lane, (unsigned)slot) != 0)
            return -1;
    }
    return 0;
}

static int add_span(reader *r, para__lane *l, const para__span *s)
{
    if (!grow((void **)&l->spans, &l->cap_spans, l->n_spans + 1,
              sizeof *l->spans))
        return oom(r);
    l->spans[l->n_spans++] = *s;
    r->tl->n_events++;
    return 0;
}

static int read_events(reader *r, const para__json *events, size_t *lanes_cap)
{
    para__timeline *tl = r->tl;
    double last = 0;
    for (size_t i = 0; i < events->len; i++) {
        const para__json *e = events->items[i];
        const char *ph = para__json_string(para__json_get(e, "ph"), "");
        bool span = strcmp(ph, "X") == 0;
        if (!span && strcmp(ph, "i") != 0 && strcmp(ph, "I") != 0)
            continue;
        const char *name = para__json_string(para__json_get(e, "name"), "");
        const char *cat = para__json_string(para__json_get(e, "cat"), "");
        const para__json *tidv = para__json_get(e, "tid");
        double ts = para__json_number(para__json_get(e, "ts"), NAN);
        if (tidv == NULL || tidv->type != PARA__JSON_NUMBER || isnan(ts))
            continue;
        if (!span && strcmp(name, "steal") != 0)
            continue; /* trace_end and foreign instants */
        double pid = pid_of(e);
        const tid_map *m = find_tid(r, pid, tidv->number);
        if (m == NULL) {
            char lname[32];
            snprintf(lname, sizeof lname, "tid %.0f", tidv->number);
            long lane =
                lane_for(r, (unsigned)pid, 0, 100000u + (unsigned)tidv->number,
                         lname, lanes_cap);
            if (lane < 0 || add_tid(r, pid, tidv->number, (size_t)lane, 0) != 0)
                return oom(r);
            m = find_tid(r, pid, tidv->number);
        }
        para__lane *l = &tl->lanes[m->lane];
        if (!span) {
            if (!grow((void **)&l->steals, &l->cap_steals, l->n_steals + 1,
                      sizeof *l->steals))
                return oom(r);
            l->steals[l->n_steals++] = ts;
            tl->n_events++;
            continue;
        }
        if (strcmp(cat, "fused") == 0)
            continue; /* a fused task: its stages' own spans lie inside */
        double dur = para__json_number(para__json_get(e, "dur"), 0);
        if (dur < 0)
            dur = 0;
        const para__json *args = para__json_get(e, "args");
        para__span s = {.t0 = ts, .t1 = ts + dur, .node = -1, .slot = m->slot};
        if (strcmp(cat, "park") == 0) {
            s.kind = PARA__SPAN_PARK;
        } else {
            s.kind = strcmp(cat, "source") == 0     ? PARA__SPAN_SOURCE
                     : strcmp(cat, "device") == 0   ? PARA__SPAN_DEVICE
                     : strcmp(cat, "transfer") == 0 ? PARA__SPAN_TRANSFER
                                                    : PARA__SPAN_TASK;
            double node = para__json_number(para__json_get(args, "node"), -1);
            if (node >= 0 && node < (double)tl->n_nodes) {
                s.node = (int)node;
            } else {
                s.node = node_index(r, name);
                if (s.node == -2)
                    return oom(r);
            }
            s.items =
                (uint64_t)para__json_number(para__json_get(args, "items"), 0);
        }
        if (s.t1 > last)
            last = s.t1;
        if (add_span(r, l, &s) != 0)
            return -1;
    }
    if (tl->end_us < last)
        tl->end_us = last;
    return 0;
}

static int cmp_lane(const void *a, const void *b)
{
    const para__lane *x = a, *y = b;
    if (x->pid != y->pid)
        return x->pid < y->pid ? -1 : 1;
    if (x->device != y->device)
        return x->device - y->device;
    return x->index < y->index ? -1 : x->index > y->index;
}

int para__timeline_from_json(const para__json *root, para__timeline **out,
                             char *err, size_t err_len)
{
    char dummy[8];
    if (err == NULL || err_len == 0) {
        err = dummy;
        err_len = sizeof dummy;
    }
    *out = NULL;
    const para__json *events = para__json_get(root, "traceEvents");
    if (events == NULL || events->type != PARA__JSON_ARRAY) {
        snprintf(err, err_len, "not a trace: no \"traceEvents\" array");
        return -1;
    }
    para__timeline *tl = calloc(1, sizeof *tl);
    if (tl == NULL) {
        snprintf(err, err_len, "out of memory");
        return -1;
    }
    reader r = {.tl = tl, .err = err, .err_len = err_len, .events = events};
    for (size_t i = 0; i < events->len && !r.merged; i++)
        r.merged = pid_of(events->items[i]) != pid_of(events->items[0]);
    size_t lanes_cap = 0;
    const para__json *para = para__json_get(root, "para");
    tl->end_us = para__json_number(para__json_get(para, "run_ns"), 0) / 1000.0;
    tl->dropped =
        (uint64_t)para__json_number(para__json_get(para, "dropped"), 0);
    if (read_nodes(&r, para) != 0 || read_lanes(&r, events, &lanes_cap) != 0 ||
        read_events(&r, events, &lanes_cap) != 0) {
        free(r.tids);
        para__timeline_free(tl);
        return -1;
    }
    free(r.tids);
    qsort(tl->lanes, tl->n_lanes, sizeof *tl->lanes, cmp_lane);
    *out = tl;
    return 0;
}

int para__timeline_load(const char *path, para__timeline **out, char *err,
                        size_t err_len)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, err_len, "cannot open %s", path);
        return -1;
    }
    char *text = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (!grow((void **)&text, &cap, len + 65536, 1)) {
            fclose(f);
            free(text);
            snprintf(err, err_len, "out of memory reading %s", path);
            return -1;
        }
        size_t n = fread(text + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad) {
        free(text);
        snprintf(err, err_len, "cannot read %s", path);
        return -1;
    }
    char msg[200];
    para__json *root = para__json_parse(text, len, msg, sizeof msg);
    free(text);
    if (root == NULL) {
        snprintf(err, err_len, "%s: invalid JSON: %s", path, msg);
        return -1;
    }
    int rc = para__timeline_from_json(root, out, err, err_len);
    para__json_free(root);
    return rc;
}

void para__timeline_free(para__timeline *tl)
{
    if (tl == NULL)
        return;
    for (size_t i = 0; i < tl->n_lanes; i++) {
        free(tl->lanes[i].spans);
        free(tl->lanes[i].steals);
    }
    free(tl->lanes);
    for (size_t i = 0; i < tl->n_nodes; i++)
        free(tl->nodes[i]);
    free(tl->nodes);
    free(tl);
}

/* ---- drawing ------------------------------------------------------------ */

#define LABEL_W 170.0
#define RIGHT_W 30.0
#define TOP_H 64.0
#define LANE_H 30.0
#define LANE_GAP 6.0
#define LEGEND_COL_W 360.0
#define LEGEND_ROW_H 20.0

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&apos;", f);
            break;
        default:
            /* XML 1.0 allows no control characters but tab/LF/CR. */
            if ((unsigned char)*s >= 0x20 || *s == '\t' || *s == '\n')
                fputc(*s, f);
            else
                fputc('?', f);
        }
    }
}

/* Tableau 10, then golden-angle hues. */
static void node_color(int node, char out[8])
{
    static const char *const palette[] = {
        "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
        "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#17becf",
    };
    const int n = (int)(sizeof palette / sizeof palette[0]);
    if (node < 0) {
        snprintf(out, 8, "#808080");
        return;
    }
    if (node < n) {
        snprintf(out, 8, "%s", palette[node]);
        return;
    }
    double h = fmod((double)node * 137.508, 360.0) / 60.0, s = 0.55, l = 0.55;
    double c = (1 - fabs(2 * l - 1)) * s, x = c * (1 - fabs(fmod(h, 2) - 1));
    double rgb[3] = {0, 0, 0};
    int sector = (int)h % 6;
    static const int idx[6][2] = {{0, 1}, {1, 0}, {1, 2},
                                  {2, 1}, {2, 0}, {0, 2}};
    rgb[idx[sector][0]] = c;
    rgb[idx[sector][1]] = x;
    double m = l - c / 2;
    snprintf(out, 8, "#%02x%02x%02x", (unsigned)((rgb[0] + m) * 255),
             (unsigned)((rgb[1] + m) * 255), (unsigned)((rgb[2] + m) * 255));
}

/* Microseconds in the largest unit under the value, 4 significant digits
 * (axis ticks are round, so they print short). */
static void fmt_time(char *buf, size_t len, double us)
{
    if (us >= 1e6)
        snprintf(buf, len, "%.4g s", us / 1e6);
    else if (us >= 1e3)
        snprintf(buf, len, "%.4g ms", us / 1e3);
    else
        snprintf(buf, len, "%.4g µs", us);
}

/* A 1-2-5 step giving about @p ticks intervals over @p span. */
static double nice_step(double span, double ticks)
{
    double raw = span / ticks;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static int cmp_span(const void *a, const void *b)
{
    const para__span *x = a, *y = b;
    if (x->slot != y->slot)
        return x->slot < y->slot ? -1 : 1;
    return x->t0 < y->t0 ? -1 : x->t0 > y->t0;
}

static const char *kind_word(para__span_kind k)
{
    switch (k) {
    case PARA__SPAN_SOURCE:
        return "pull";
    case PARA__SPAN_PARK:
        return "parked";
    case PARA__SPAN_DEVICE:
        return "launch";
    case PARA__SPAN_TRANSFER:
        return "copy";
    default:
        return "task";
    }
}

static void draw_rect(FILE *f, const para__timeline *tl, const para__span *s,
                      size_t merged, uint64_t items, double busy, double x,
                      double y, double w, double h)
{
    char color[8], when[32], dur[32];
    if (s->kind == PARA__SPAN_PARK) {
        snprintf(color, sizeof color, "#b0b0b0");
        y += h / 2 - 2;
        h = 4;
    } else if (s->kind == PARA__SPAN_TRANSFER) {
        /* Copies apart from kernels: dark, half height. */
        snprintf(color, sizeof color, "#404040");
        y += h / 4;
        h /= 2;
    } else {
        node_color(s->node, color);
    }
    fmt_time(when, sizeof when, s->t0);
    fmt_time(dur, sizeof dur, busy);
    fprintf(f,
            "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
            "fill=\"%s\"><title>",
            x, y, w < 0.3 ? 0.3 : w, h, color);
    if (s->kind != PARA__SPAN_PARK && s->node >= 0 &&
        (size_t)s->node < tl->n_nodes) {
        xml_text(f, tl->nodes[s->node]);
        fputs(": ", f);
    }
    if (merged == 1)
        fprintf(f, "%s at %s, %s", kind_word(s->kind), when, dur);
    else
        fprintf(f, "%zu %ss from %s, %s busy", merged, kind_word(s->kind), when,
                dur);
    if (s->kind != PARA__SPAN_PARK)
        fprintf(f, ", %llu items", (unsigned long long)items);
    fputs("</title></rect>\n", f);
}

static void draw_lane(FILE *f, const para__timeline *tl, const para__lane *l,
                      double y, double scale, double cpu_time)
{
    double busy = 0;
    for (size_t i = 0; i < l->n_spans; i++)
        if (l->spans[i].kind != PARA__SPAN_PARK)
            busy += l->spans[i].t1 - l->spans[i].t0;
    fprintf(f, "<g class=\"lane %s\" id=\"lane-%s-%u\">\n",
            l->device ? "device" : "cpu", l->device ? "device" : "cpu",
            l->index);
    fprintf(f,
            "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
            "fill=\"#f2f2f2\"/>\n",
            LABEL_W, y, scale * tl->end_us, LANE_H);
    fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">", LABEL_W - 8,
            y + LANE_H / 2 - 1);
    xml_text(f, l->name);
    fprintf(f,
            "</text>\n<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" "
            "font-size=\"10\" fill=\"#666\">busy %.1f%%",
            LABEL_W - 8, y + LANE_H / 2 + 11,
            cpu_time > 0 ? 100.0 * busy / cpu_time : 0.0);
    if (l->dropped > 0)
        fprintf(f, ", %llu dropped", (unsigned long long)l->dropped);
    fputs("</text>\n", f);

    para__span *s = malloc((l->n_spans ? l->n_spans : 1) * sizeof *s);
    if (s != NULL) {
        if (l->n_spans > 0) /* spans is NULL for an empty lane */
            memcpy(s, l->spans, l->n_spans * sizeof *s);
        qsort(s, l->n_spans, sizeof *s, cmp_span);
        double slot_h = (LANE_H - 4) / (double)l->slots;
        double join = 0.6 / scale; /* 0.6 px in microseconds */
        for (size_t i = 0; i < l->n_spans;) {
            para__span cur = s[i];
            size_t merged = 1;
            uint64_t items = cur.items;
            double sum = cur.t1 - cur.t0;
            size_t j = i + 1;
            while (j < l->n_spans && s[j].slot == cur.slot &&
                   s[j].kind == cur.kind && s[j].node == cur.node &&
                   s[j].t0 - cur.t1 < join) {
                if (s[j].t1 > cur.t1)
                    cur.t1 = s[j].t1;
                items += s[j].items;
                sum += s[j].t1 - s[j].t0;
                merged++;
                j++;
            }
            draw_rect(f, tl, &cur, merged, items, sum, LABEL_W + cur.t0 * scale,
                      y + 2 + cur.slot * slot_h, (cur.t1 - cur.t0) * scale,
                      slot_h);
            i = j;
        }
        free(s);
    }
    for (size_t i = 0; i < l->n_steals; i++) {
        double x = LABEL_W + l->steals[i] * scale;
        fprintf(f,
                "<polygon points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f\" "
                "fill=\"#000\"/>\n",
                x - 3, y, x + 3, y, x, y + 5);
    }
    fputs("</g>\n", f);
}

int para__timeline_svg(const para__timeline *tl, FILE *f,
                       const para__svg_options *opt)
{
    double width = opt != NULL && opt->width >= 400 ? opt->width : 1400;
    const char *title =
        opt != NULL && opt->title != NULL ? opt->title : "para trace";
    double plot_w = width - LABEL_W - RIGHT_W;
    double end = tl->end_us > 0 ? tl->end_us : 1;
    double scale = plot_w / end;
    size_t cpu_lanes = 0, dev_lanes = 0;
    for (size_t i = 0; i < tl->n_lanes; i++)
        tl->lanes[i].device ? dev_lanes++ : cpu_lanes++;

    /* Per node busy time and span count, for the legend. */
    size_t nn = tl->n_nodes;
    double *busy = calloc(nn + 1, sizeof *busy);
    size_t *count = calloc(nn + 1, sizeof *count);
    if (busy == NULL || count == NULL) {
        free(busy);
        free(count);
        return -1;
    }
    for (size_t i = 0; i < tl->n_lanes; i++)
        for (size_t k = 0; k < tl->lanes[i].n_spans; k++) {
            const para__span *s = &tl->lanes[i].spans[k];
            if (s->kind == PARA__SPAN_PARK || s->node < 0 ||
                (size_t)s->node >= nn)
                continue;
            busy[s->node] += s->t1 - s->t0;
            count[s->node]++;
        }
    size_t legend_n = 2; /* parked, steal */
    for (size_t i = 0; i < nn; i++)
        legend_n += count[i] > 0;
    size_t cols = (size_t)(width / LEGEND_COL_W);
    if (cols < 1)
        cols = 1;
    double lanes_h = (double)tl->n_lanes * (LANE_H + LANE_GAP);
    double axis_y = TOP_H + lanes_h + 4;
    double legend_y = axis_y + 64;
    double height =
        legend_y + (double)((legend_n + cols - 1) / cols) * LEGEND_ROW_H + 16;

    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
            "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n",
            width, height, width, height);
    fprintf(f, "<rect width=\"%.0f\" height=\"%.0f\" fill=\"#fff\"/>\n", width,
            height);
    fputs("<text x=\"12\" y=\"24\" font-size=\"16\" font-weight=\"bold\">", f);
    xml_text(f, title);
    char run[32];
    fmt_time(run, sizeof run, tl->end_us);
    fprintf(f,
            "</text>\n<text x=\"12\" y=\"44\" fill=\"#444\">%zu worker%s, "
            "%zu device lane%s, run %s, %zu events",
            cpu_lanes, cpu_lanes == 1 ? "" : "s", dev_lanes,
            dev_lanes == 1 ? "" : "s", run, tl->n_events);
    if (tl->dropped > 0)
        fprintf(f, ", %llu dropped (lanes full: the picture shows the start)",
                (unsigned long long)tl->dropped);
    fputs("</text>\n", f);

    /* Grid and axis. */
    double step = nice_step(end, 10);
    fputs("<g class=\"axis\" stroke=\"#d0d0d0\">\n", f);
    for (double t = 0; t <= end * 1.0000001; t += step)
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n",
                LABEL_W + t * scale, TOP_H - 4, LABEL_W + t * scale,
                axis_y + 5);
    fprintf(f,
            "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" "
            "stroke=\"#000\"/>\n</g>\n",
            LABEL_W, axis_y, LABEL_W + end * scale, axis_y);
    fputs("<g class=\"ticks\" text-anchor=\"middle\" font-size=\"11\">\n", f);
    for (double t = 0; t <= end * 1.0000001; t += step) {
        char label[32];
        fmt_time(label, sizeof label, t);
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">%s</text>\n",
                LABEL_W + t * scale, axis_y + 18, label);
    }
    fprintf(f,
            "<text x=\"%.2f\" y=\"%.2f\" fill=\"#444\">time since the run "
            "started</text>\n</g>\n",
            LABEL_W + plot_w / 2, axis_y + 34);

    double cpu_time = tl->end_us;
    for (size_t i = 0; i < tl->n_lanes; i++)
        draw_lane(f, tl, &tl->lanes[i], TOP_H + (double)i * (LANE_H + LANE_GAP),
                  scale, cpu_time);

    /* Legend. */
    fputs("<g class=\"legend\">\n", f);
    size_t k = 0;
    double total_cpu = end * (double)(cpu_lanes ? cpu_lanes : 1);
    for (size_t i = 0; i <= nn + 1; i++) {
        if (i < nn && count[i] == 0)
            continue;
        double x = 12 + (double)(k % cols) * LEGEND_COL_W;
        double y = legend_y + (double)(k / cols) * LEGEND_ROW_H;
        k++;
        if (i == nn) {
            fprintf(f,
                    "<rect x=\"%.2f\" y=\"%.2f\" width=\"14\" height=\"4\" "
                    "fill=\"#b0b0b0\"/><text x=\"%.2f\" y=\"%.2f\">parked "
                    "(waiting for work)</text>\n",
                    x, y - 6, x + 20, y);
            continue;
        }
        if (i == nn + 1) {
            fprintf(f,
                    "<polygon points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f\" "
                    "fill=\"#000\"/><text x=\"%.2f\" y=\"%.2f\">steal (at "
                    "the thief)</text>\n",
                    x + 3, y - 10, x + 11, y - 10, x + 7, y - 3, x + 20, y);
            continue;
        }
        char color[8], b[32];
        node_color((int)i, color);
        fmt_time(b, sizeof b, busy[i]);
        fprintf(f,
                "<rect x=\"%.2f\" y=\"%.2f\" width=\"14\" height=\"12\" "
                "fill=\"%s\"/><text x=\"%.2f\" y=\"%.2f\">",
                x, y - 11, color, x + 20, y);
        xml_text(f, tl->nodes[i]);
        fprintf(f, " — %s busy (%.1f%%), %zu spans</text>\n", b,
                100.0 * busy[i] / total_cpu, count[i]);
    }
    fputs("</g>\n</svg>\n", f);
    free(busy);
    free(count);
    return ferror(f) ? -1 : 0;
}
