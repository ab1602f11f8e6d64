/*
 * The para demo: a mixed CPU/device pipeline that renders the Mandelbrot
 * set into a PNG.
 *
 *   pixels (range 0 .. W*H)
 *     -> escape   kernel node: kernels/mandelbrot_fixed.cl on the device
 *                 that PARA_DEVICE picks (auto: a GPU, else PoCL), with the
 *                 same function in C as its CPU implementation; the runtime
 *                 splits the pixels between the two by measured speed
 *     -> colour   parallel CPU map: escape count -> RGB
 *     -> png      ORDERED sink: gets the pixels in image order and streams
 *                 each finished row to libpng
 *
 * The escape counts are computed in fixed-point integers, so every device
 * draws the very same image; the program prints its FNV-1a checksum (the
 * tests compare it across devices), the runtime's statistics table, and
 * where the image went.
 *
 * Usage: mandelbrot_demo [-o FILE.png] [-W WIDTH] [-H HEIGHT] [-i MAX_ITER]
 *                        [-t TRACE.json] [-q]
 *   defaults: mandelbrot.png, 1920 x 1080, 1000 iterations, no trace (or
 *   PARA_TRACE); -t writes the run's event trace (tools/para-trace draws
 *   it); -q prints only the checksum line.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "para.h"

#define FRAC 28 /* fixed point: Q35.28 in an int64_t */

typedef struct view {
    uint32_t width, height, max_iter;
    int64_t x0, y0, step; /* Q35.28 */
} view;

/* The kernel's function in C; see kernels/mandelbrot_fixed.cl. */
static uint32_t escape_count(const view *v, uint64_t p)
{
    int64_t cr = v->x0 + (int64_t)(p % v->width) * v->step;
    int64_t ci = v->y0 + (int64_t)(p / v->width) * v->step;
    int64_t zr = 0, zi = 0;
    uint32_t count = 0;
    while (count < v->max_iter) {
        int64_t zr2 = (zr * zr) >> FRAC;
        int64_t zi2 = (zi * zi) >> FRAC;
        if (zr2 + zi2 > ((int64_t)4 << FRAC))
            break;
        int64_t t = zr2 - zi2 + cr;
        zi = ((zr * zi) >> (FRAC - 1)) + ci;
        zr = t;
        count++;
    }
    return count;
}

static int escape_cpu(void *ctx, const void *in, void *out, size_t n)
{
    const view *v = ctx;
    const uint64_t *p = in;
    uint32_t *o = out;
    for (size_t i = 0; i < n; i++)
        o[i] = escape_count(v, p[i]);
    return 0;
}

typedef struct rgb {
    uint8_t r, g, b;
} rgb;

/* A cyclic palette over the escape count; black inside the set. */
static int colour(void *ctx, const void *in, void *out)
{
    const view *v = ctx;
    uint32_t c = *(const uint32_t *)in;
    rgb *o = out;
    if (c >= v->max_iter) {
        *o = (rgb){0, 0, 0};
        return 0;
    }
    static const rgb stops[] = {
        {66, 30, 15},    {25, 7, 26},     {9, 1, 47},      {4, 4, 73},
        {0, 7, 100},     {12, 44, 138},   {24, 82, 177},   {57, 125, 209},
        {134, 181, 229}, {211, 236, 248}, {241, 233, 191}, {248, 201, 95},
        {255, 170, 0},   {204, 128, 0},   {153, 87, 0},    {106, 52, 3}};
    *o = stops[c % (sizeof stops / sizeof stops[0])];
    return 0;
}

/* The ORDERED sink: pixels arrive in image order; complete rows go to
 * libpng at once, so the image is never held whole. */
typedef struct png_out {
    FILE *file;
    png_structp png;
    png_infop info;
    uint32_t width;
    rgb *row;
    uint32_t row_fill;
    uint64_t fnv; /* FNV-1a over every pixel, in order */
} png_out;

static int png_sink(void *ctx, const void *in, size_t n)
{
    png_out *po = ctx;
    const rgb *px = in;
    if (setjmp(png_jmpbuf(po->png)))
        return -1; /* libpng failed (disk full...): the run fails */
    for (size_t i = 0; i < n; i++) {
        const uint8_t *b = (const uint8_t *)&px[i];
        for (int k = 0; k < 3; k++)
            po->fnv = (po->fnv ^ b[k]) * 0x100000001b3ull;
        po->row[po->row_fill++] = px[i];
        if (po->row_fill == po->width) {
            png_write_row(po->png, (png_const_bytep)po->row);
            po->row_fill = 0;
        }
    }
    return 0;
}

static int png_begin(png_out *po, const char *path, uint32_t w, uint32_t h)
{
    memset(po, 0, sizeof *po);
    po->fnv = 0xcbf29ce484222325ull;
    po->width = w;
    po->row = malloc((size_t)w * sizeof *po->row);
    po->file = fopen(path, "wb");
    if (po->row == NULL || po->file == NULL) {
        fprintf(stderr, "mandelbrot_demo: %s: %s\n", path, strerror(errno));
        return -1;
    }
    po->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    po->info = po->png != NULL ? png_create_info_struct(po->png) : NULL;
    if (po->info == NULL || setjmp(png_jmpbuf(po->png))) {
        fprintf(stderr, "mandelbrot_demo: libpng failed\n");
        return -1;
    }
    png_init_io(po->png, po->file);
    png_set_IHDR(po->png, po->info, w, h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(po->png, po->info);
    return 0;
}

/* png_write_end() behind its own setjmp; -1 if libpng failed. */
static int png_finish(png_out *po)
{
    if (setjmp(png_jmpbuf(po->png)))
        return -1;
    png_write_end(po->png, NULL);
    return 0;
}

static int png_end(png_out *po, int ok)
{
    int rc = 0;
    if (po->png != NULL) {
        if (ok)
            rc = png_finish(po);
        png_destroy_write_struct(&po->png, &po->info);
    }
    if (po->file != NULL && fclose(po->file) != 0)
        rc = -1;
    free(po->row);
    return rc;
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v == 0 || v > 100000)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = "mandelbrot.png", *trace = NULL;
    view v = {.width = 1920, .height = 1080, .max_iter = 1000};
    int quiet = 0, opt;
    while ((opt = getopt(argc, argv, "o:W:H:i:t:q")) != -1) {
        int bad = 0;
        switch (opt) {
        case 'o':
            path = optarg;
            break;
        case 'W':
            bad = parse_u32(optarg, &v.width);
            break;
        case 'H':
            bad = parse_u32(optarg, &v.height);
            break;
        case 'i':
            bad = parse_u32(optarg, &v.max_iter);
            break;
        case 't':
            trace = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        default:
            bad = 1;
        }
        if (bad) {
            fprintf(stderr, "usage: mandelbrot_demo [-o FILE.png] [-W WIDTH] "
                            "[-H HEIGHT] [-i MAX_ITER] [-t TRACE.json] [-q]\n");
            return 2;
        }
    }
    /* The view: x in [-2.2, 1.0], centred vertically on 0. */
    v.step = (int64_t)((3.2 / v.width) * (double)((int64_t)1 << FRAC));
    v.x0 = (int64_t)(-2.2 * (double)((int64_t)1 << FRAC));
    v.y0 = -(int64_t)(v.height / 2) * v.step;

    para_runtime_attr_t attr;
    if (para_runtime_attr_init(&attr) != 0)
        fprintf(stderr, "mandelbrot_demo: a PARA_* variable does not parse\n");
    if (trace != NULL)
        attr.trace = trace;
    para_runtime_t *rt = NULL;
    int rc = para_runtime_create(&rt, &attr);
    if (rc != 0) {
        fprintf(stderr, "mandelbrot_demo: runtime: %s\n", para_strerror(rc));
        return 1;
    }
    const char *device = para_runtime_open_device(rt);
    if (!quiet)
        printf("para %u.%u.%u: %u workers, device: %s\n", para_version() >> 16,
               (para_version() >> 8) & 0xff, para_version() & 0xff,
               para_runtime_workers(rt),
               device != NULL ? device : "none (CPU only)");

    png_out po;
    para_graph_t *g = NULL;
    rc = png_begin(&po, path, v.width, v.height) == 0 ? para_graph_create(&g)
                                                      : PARA_EINVAL;
    para_kernel_arg_t args[] = {{&v.width, 4, PARA_KARG_SCALAR},
                                {&v.max_iter, 4, PARA_KARG_SCALAR},
                                {&v.x0, 8, PARA_KARG_SCALAR},
                                {&v.y0, 8, PARA_KARG_SCALAR},
                                {&v.step, 8, PARA_KARG_SCALAR}};
    para_kernel_desc_t kernel = {.source =
                                     para_kernel_source("mandelbrot_fixed"),
                                 .entry = "mandelbrot_fixed",
                                 .args = args,
                                 .n_args = sizeof args / sizeof args[0]};
    para_node_t *pixels, *escape, *paint, *sink;
    if (rc == 0)
        rc = para_graph_add_range(g, "pixels", 0, (uint64_t)v.width * v.height,
                                  &pixels);
    if (rc == 0)
        rc = para_graph_add_kernel(g, "escape", sizeof(uint64_t),
                                   sizeof(uint32_t), &kernel, escape_cpu, &v,
                                   &escape);
    if (rc == 0)
        rc = para_graph_add_map(g, "colour", sizeof(uint32_t), sizeof(rgb),
                                colour, &v, PARA_NODE_PARALLEL, &paint);
    if (rc == 0)
        rc = para_graph_add_sink_batch(g, "png", sizeof(rgb), png_sink, &po,
                                       PARA_NODE_ORDERED, &sink);
    if (rc == 0)
        rc = para_graph_connect(g, pixels, escape);
    if (rc == 0)
        rc = para_graph_connect(g, escape, paint);
    if (rc == 0)
        rc = para_graph_connect(g, paint, sink);
    if (rc != 0 && g != NULL)
        fprintf(stderr, "mandelbrot_demo: graph: %s\n", para_graph_errmsg(g));

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (rc == 0) {
        rc = para_run(rt, g);
        if (rc != 0)
            fprintf(stderr, "mandelbrot_demo: run: %s: %s\n", para_err_name(rc),
                    para_runtime_errmsg(rt));
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (png_end(&po, rc == 0) != 0 && rc == 0) {
        fprintf(stderr, "mandelbrot_demo: writing %s failed\n", path);
        rc = PARA_EINVAL;
    }
    if (rc == 0) {
        double s = (double)(t1.tv_sec - t0.tv_sec) +
                   (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        if (!quiet) {
            if (para_stats_fprint(stdout, rt, g, PARA_STATS_TABLE) != 0)
                fputs("para_stats_fprint failed\n", stderr);
            para_node_stats_t es;
            if (para_node_stats(escape, &es) == 0)
                printf("escape: %" PRIu64 " of %" PRIu64
                       " pixels on the device, in %" PRIu64 " launches\n",
                       es.device_items, es.items_in, es.device_launches);
            printf("wrote %s (%ux%u) in %.3f s\n", path, v.width, v.height, s);
            if (trace != NULL)
                printf("wrote the event trace to %s\n", trace);
        }
        printf("image fnv1a %016" PRIx64 "\n", po.fnv);
    }
    para_graph_destroy(g);
    if (para_runtime_destroy(rt) != 0 && rc == 0)
        rc = PARA_EBUSY;
    return rc == 0 ? 0 : 1;
}
