/*
 * A para trace as lanes of spans, and its SVG timeline.
 *
 * para__timeline_from_json() reads the Chrome trace-event JSON that para
 * writes (runtime/trace.c documents the format): one lane per CPU worker and
 * per device (a device's overlapping launches are sub-rows, "slots", of its
 * lane), spans for tasks, source pulls, parking and device launches, and
 * instants for steals. para__timeline_svg() draws it: one lane per worker
 * and per device, rectangles coloured by node, a time axis with a grid, and
 * a legend with each node's busy time. The SVG needs no browser features
 * beyond static SVG 1.1.
 *
 * Used by tools/para_trace.c and tests/runtime/test_trace.c.
 */
#ifndef PARA_TIMELINE_H
#define PARA_TIMELINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "trace_json.h"

typedef enum para__span_kind {
    PARA__SPAN_TASK,
    PARA__SPAN_SOURCE,
    PARA__SPAN_PARK,
    PARA__SPAN_DEVICE,
} para__span_kind;

typedef struct para__span {
    double t0, t1; /* microseconds since the run started */
    int node;      /* index into the timeline's nodes, or -1 */
    para__span_kind kind;
    unsigned slot;  /* device lanes: sub-row */
    uint64_t items; /* items in (tasks, launches) or out (sources) */
} para__span;

typedef struct para__lane {
    char name[64];
    unsigned pid;   /* process (a rank of a merged MPI trace: rank + 1) */
    int device;     /* 0: CPU worker, 1: device */
    unsigned index; /* worker id or device index */
    unsigned slots; /* sub-rows (1 for CPU lanes) */
    uint64_t dropped;
    para__span *spans;
    size_t n_spans, cap_spans;
    double *steals; /* times of steals */
    size_t n_steals, cap_steals;
} para__lane;

typedef struct para__timeline {
    para__lane *lanes; /* per process: CPU lanes by index, then device
                          lanes by index */
    size_t n_lanes;
    char **nodes; /* node names by index */
    size_t n_nodes;
    double end_us;    /* run length (or the last event's end) */
    uint64_t dropped; /* events the runtime could not keep */
    size_t n_events;  /* spans and steals read */
} para__timeline;

typedef struct para__svg_options {
    unsigned width;    /* pixels; 0 = 1400 */
    const char *title; /* NULL = "para trace" */
} para__svg_options;

/* Build a timeline from a parsed trace. Returns 0, or -1 with a message in
 * @p err when the JSON is not a para trace. */
int para__timeline_from_json(const para__json *root, para__timeline **out,
                             char *err, size_t err_len);
/* Read and parse @p path, then as above. */
int para__timeline_load(const char *path, para__timeline **out, char *err,
                        size_t err_len);
void para__timeline_free(para__timeline *tl);

/* Write @p tl as an SVG document. Returns 0, or -1 if writing failed. */
int para__timeline_svg(const para__timeline *tl, FILE *out,
                       const para__svg_options *opt);

#endif /* PARA_TIMELINE_H */
