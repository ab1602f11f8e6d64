/*
 * para-trace: draw a trace written by para (PARA_TRACE=file.json, or
 * para_trace_write()) as an SVG timeline that any image viewer shows: one
 * lane per worker and per device, rectangles coloured by node, a legend with
 * each node's busy time, and a time axis.
 *
 *   para-trace trace.json                 writes trace.svg
 *   para-trace -o out.svg -w 2000 trace.json
 *   para-trace --help | --version
 *
 * The JSON reader (trace_json.c) and the drawing (timeline.c) have no
 * dependencies beyond libc and libm. Exit status: 0, 1 if the trace cannot
 * be read or the SVG written, 2 for bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "para/version.h"
#include "timeline.h"

static int usage(FILE *f)
{
    fputs("usage: para-trace [-o out.svg] [-w width] [-t title] trace.json\n"
          "       para-trace --help | --version\n"
          "  Draws a para trace (PARA_TRACE=trace.json) as an SVG timeline.\n"
          "  -o FILE   output (default: the input with .svg for .json)\n"
          "  -w PIXELS picture width (default 1400)\n"
          "  -t TEXT   title (default: the input's name)\n",
          f);
    return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *title = NULL;
    unsigned width = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return usage(stdout);
        if (strcmp(argv[i], "--version") == 0) {
            printf("para-trace %s\n", PARA_VERSION_STRING);
            return 0;
        }
        if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "-w") == 0 ||
             strcmp(argv[i], "-t") == 0) &&
            i + 1 < argc) {
            const char *opt = argv[i++];
            if (opt[1] == 'o')
                out = argv[i];
            else if (opt[1] == 't')
                title = argv[i];
            else
                width = (unsigned)strtoul(argv[i], NULL, 10);
            continue;
        }
        if (argv[i][0] == '-' || in != NULL)
            return usage(stderr);
        in = argv[i];
    }
    if (in == NULL)
        return usage(stderr);

    char *default_out = NULL;
    if (out == NULL) {
        size_t n = strlen(in);
        default_out = malloc(n + 5);
        if (default_out == NULL)
            return 1;
        memcpy(default_out, in, n + 1);
        if (n > 5 && strcmp(in + n - 5, ".json") == 0)
            default_out[n - 5] = '\0';
        strcat(default_out, ".svg");
        out = default_out;
    }
    char err[256];
    para__timeline *tl;
    if (para__timeline_load(in, &tl, err, sizeof err) != 0) {
        fprintf(stderr, "para-trace: %s\n", err);
        free(default_out);
        return 1;
    }
    FILE *f = fopen(out, "w");
    int rc = 1;
    if (f == NULL) {
        fprintf(stderr, "para-trace: cannot write %s\n", out);
    } else {
        para__svg_options opt = {.width = width,
                                 .title = title != NULL ? title : in};
        rc = para__timeline_svg(tl, f, &opt) != 0;
        if (fclose(f) != 0)
            rc = 1;
        if (rc != 0)
            fprintf(stderr, "para-trace: writing %s failed\n", out);
        else
            printf("%s: %zu lanes, %zu events, %.3f ms -> %s\n", in,
                   tl->n_lanes, tl->n_events, tl->end_us / 1000.0, out);
    }
    para__timeline_free(tl);
    free(default_out);
    return rc;
}
