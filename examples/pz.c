/*
 * pz: ordered parallel gzip compression of a file (like pigz), on para's
 * public API, checked by decompressing.
 *
 *     blocks (1 MiB of the input each) -> deflate (parallel) -> write
 *         (ORDERED: in input order)
 *
 * Each block is compressed on its own as raw deflate ending in a sync flush
 * (byte-aligned, so blocks concatenate into one deflate stream); the writer
 * appends them in order, then an empty final block, and the gzip trailer
 * (CRC-32 combined block by block, length). Input blocks and compressed
 * blocks are items that own memory: each declares its release hook and its
 * size in bytes (the memory budget counts what is really in flight), and
 * the runtime frees every buffer whatever happens to the run.
 *
 * Usage: pz [-j WORKERS] [-b BLOCK_KIB] INPUT OUTPUT.gz
 *        pz --self-test [MIB]   compress generated text, decompress, compare
 * -j 1 runs the same steps in one plain loop without para (the baseline).
 * Prints the time of the compression and checks the output by inflating it.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <para.h>
#include <zlib.h>

#include "loggen.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A block of bytes that owns its buffer: the source's items and the
 * compressor's output alike. */
typedef struct block {
    unsigned char *data;
    size_t len;     /* bytes in data */
    size_t raw_len; /* input bytes this block stands for */
    uint32_t crc;   /* CRC-32 of those input bytes */
} block;

static void blocks_release(void *ctx, void *items, size_t n)
{
    (void)ctx;
    block *b = items;
    for (size_t i = 0; i < n; i++)
        free(b[i].data);
}

static size_t block_bytes(void *ctx, const void *item)
{
    (void)ctx;
    return ((const block *)item)->len;
}

/* ---- source: the input file in blocks ----------------------------------- */

typedef struct reader {
    const char *path;
    FILE *f;
    size_t block_size;
} reader;

static int reader_open(void *ctx) /* every run starts at the beginning */
{
    reader *r = ctx;
    if (r->f != NULL)
        fclose(r->f);
    r->f = fopen(r->path, "rb");
    return r->f != NULL ? 0 : -1;
}

static int reader_next(void *ctx, void *out, size_t cap, size_t *n)
{
    reader *r = ctx;
    block *o = out;
    size_t k = 0;
    while (k < cap) {
        unsigned char *buf = malloc(r->block_size);
        if (buf == NULL) {
            blocks_release(NULL, o, k); /* a failing source frees its own */
            return -1;
        }
        size_t got = fread(buf, 1, r->block_size, r->f);
        if (got == 0) {
            free(buf);
            break;
        }
        o[k++] = (block){buf, got, got, 0};
    }
    *n = k;
    return 0;
}

/* ---- deflate one block --------------------------------------------------- */

static int deflate_block(const block *in, block *out)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    size_t cap = deflateBound(&z, (uLong)in->len) + 16;
    out->data = malloc(cap);
    if (out->data == NULL) {
        deflateEnd(&z);
        return -1;
    }
    z.next_in = in->data;
    z.avail_in = (uInt)in->len;
    z.next_out = out->data;
    z.avail_out = (uInt)cap;
    int zr = deflate(&z, Z_SYNC_FLUSH);
    out->len = cap - z.avail_out;
    deflateEnd(&z);
    if (zr != Z_OK || z.avail_in != 0) {
        free(out->data);
        out->data = NULL;
        return -1;
    }
    out->raw_len = in->len;
    out->crc = (uint32_t)crc32(0L, in->data, (uInt)in->len);
    return 0;
}

static int compress_item(void *ctx, const void *in, void *out)
{
    (void)ctx;
    return deflate_block(in, out);
}

/* ---- writer: gzip header, blocks in order, trailer ------------------------
 */

typedef struct writer {
    FILE *f;
    uint32_t crc;
    uint64_t raw;
    int failed;
} writer;

static void writer_start(writer *w, FILE *f)
{
    static const unsigned char header[10] = {0x1f, 0x8b, 8, 0, 0,
                                             0,    0,    0, 0, 3};
    w->f = f;
    w->crc = 0;
    w->raw = 0;
    w->failed = fwrite(header, 1, sizeof header, f) != sizeof header;
}

static int writer_add(writer *w, const block *b)
{
    if (fwrite(b->data, 1, b->len, w->f) != b->len)
        return w->failed = 1;
    w->crc = (uint32_t)crc32_combine(w->crc, b->crc, (z_off_t)b->raw_len);
    w->raw += b->raw_len;
    return 0;
}

static int writer_finish(writer *w)
{
    /* An empty final fixed-Huffman block ends the deflate stream. */
    unsigned char tail[10] = {0x03, 0x00};
    for (int i = 0; i < 4; i++) {
        tail[2 + i] = (unsigned char)(w->crc >> (8 * i));
        tail[6 + i] = (unsigned char)(w->raw >> (8 * i));
    }
    if (w->failed || fwrite(tail, 1, sizeof tail, w->f) != sizeof tail)
        return -1;
    return fflush(w->f) == 0 ? 0 : -1;
}

static int write_item(void *ctx, const void *in)
{
    return writer_add(ctx, in);
}

/* ---- the two modes ---------------------------------------------------------
 */

static int compress_para(const char *in, FILE *out, unsigned workers,
                         size_t block_size)
{
    para_runtime_attr_t a;
    para_runtime_t *rt = NULL;
    para_graph_t *g = NULL;
    reader r = {in, NULL, block_size};
    writer w;
    writer_start(&w, out);
    int rc = para_runtime_attr_init(&a);
    a.workers = workers;
    if (rc == 0)
        rc = para_runtime_create(&rt, &a);
    if (rc == 0)
        rc = para_graph_create(&g);
    para_node_desc_t src = {.name = "blocks",
                            .out_size = sizeof(block),
                            .ctx = &r,
                            .source = reader_next,
                            .open = reader_open,
                            .release = blocks_release,
                            .owned_bytes = block_bytes};
    para_node_desc_t def = {.name = "deflate",
                            .in_size = sizeof(block),
                            .out_size = sizeof(block),
                            .map = compress_item,
                            .release = blocks_release,
                            .owned_bytes = block_bytes};
    para_node_t *s, *d, *k;
    if (rc == 0)
        rc = para_graph_add(g, &src, &s);
    if (rc == 0)
        rc = para_graph_add(g, &def, &d);
    if (rc == 0)
        rc = para_graph_add_sink(g, "write", sizeof(block), write_item, &w,
                                 PARA_NODE_ORDERED, &k);
    if (rc == 0)
        rc = para_graph_connect(g, s, d);
    if (rc == 0)
        rc = para_graph_connect(g, d, k);
    if (rc == 0)
        rc = para_run(rt, g);
    if (rc != 0)
        fprintf(stderr, "pz: %s: %s\n", para_err_name(rc),
                rt != NULL ? para_runtime_errmsg(rt) : "");
    para_graph_destroy(g);
    if (rt != NULL && para_runtime_destroy(rt) != 0)
        rc = -1;
    if (r.f != NULL)
        fclose(r.f);
    return rc == 0 ? writer_finish(&w) : -1;
}

static int compress_loop(const char *in, FILE *out, size_t block_size)
{
    reader r = {in, NULL, block_size};
    writer w;
    writer_start(&w, out);
    if (reader_open(&r) != 0)
        return -1;
    int rc = 0;
    for (;;) {
        block b, c;
        size_t n = 0;
        if (reader_next(&r, &b, 1, &n) != 0) {
            rc = -1;
            break;
        }
        if (n == 0)
            break;
        rc = deflate_block(&b, &c);
        free(b.data);
        if (rc == 0)
            rc = writer_add(&w, &c);
        free(c.data);
        if (rc != 0)
            break;
    }
    fclose(r.f);
    return rc == 0 ? writer_finish(&w) : -1;
}

/* Inflate @p gz (gzip) and compare with @p orig: 0 when identical. */
static int check(const char *gz, const char *orig)
{
    FILE *a = fopen(gz, "rb"), *b = fopen(orig, "rb");
    if (a == NULL || b == NULL)
        return -1;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return -1;
    static unsigned char inb[1 << 16], outb[1 << 16], ref[1 << 16];
    int zr = Z_OK, bad = 0;
    while (zr != Z_STREAM_END && !bad) {
        z.avail_in = (uInt)fread(inb, 1, sizeof inb, a);
        if (z.avail_in == 0)
            break;
        z.next_in = inb;
        while (z.avail_in > 0 && zr != Z_STREAM_END && !bad) {
            z.next_out = outb;
            z.avail_out = sizeof outb;
            zr = inflate(&z, Z_NO_FLUSH);
            if (zr != Z_OK && zr != Z_STREAM_END) {
                bad = 1;
                break;
            }
            size_t got = sizeof outb - z.avail_out;
            if (fread(ref, 1, got, b) != got || memcmp(ref, outb, got) != 0)
                bad = 1;
        }
    }
    if (zr != Z_STREAM_END || fgetc(b) != EOF)
        bad = 1;
    inflateEnd(&z);
    fclose(a);
    fclose(b);
    return bad ? -1 : 0;
}

static int run(const char *in, const char *outp, unsigned workers,
               size_t block_size)
{
    FILE *out = fopen(outp, "wb");
    if (out == NULL) {
        perror(outp);
        return 1;
    }
    double t0 = now();
    int rc = workers == 1 ? compress_loop(in, out, block_size)
                          : compress_para(in, out, workers, block_size);
    double dt = now() - t0;
    fclose(out);
    if (rc != 0) {
        fprintf(stderr, "pz: compression failed\n");
        return 1;
    }
    printf("compressed in %.3f s (%s)\n", dt,
           workers == 1 ? "one plain loop" : "para");
    if (check(outp, in) != 0) {
        fprintf(stderr, "pz: %s does not decompress to %s\n", outp, in);
        return 1;
    }
    printf("%s decompresses to %s: identical\n", outp, in);
    return 0;
}

/* Compress generated log text (MIB MiB) in both modes, check both. */
static int self_test(unsigned mib)
{
    char in[] = "/tmp/pz-in-XXXXXX", out[] = "/tmp/pz-out-XXXXXX";
    int fi = mkstemp(in), fo = mkstemp(out);
    if (fi < 0 || fo < 0)
        return 1;
    close(fo);
    FILE *f = fdopen(fi, "wb");
    uint64_t lines = (uint64_t)mib * 1048576 / 100;
    if (f == NULL || loggen_write(f, lines) != 0 || fclose(f) != 0)
        return 1;
    int rc = run(in, out, 1, (size_t)1 << 20);
    if (rc == 0)
        rc = run(in, out, 0, (size_t)1 << 20);
    if (rc == 0)
        rc = run(in, out, 0, 4096); /* many small blocks, reordered */
    unlink(in);
    unlink(out);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned workers = 0;
    size_t block_kib = 1024;
    int i = 1;
    if (argc > 1 && strcmp(argv[1], "--self-test") == 0)
        return self_test(argc > 2 ? (unsigned)atoi(argv[2]) : 16);
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (strcmp(argv[i], "-j") == 0)
            workers = (unsigned)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "-b") == 0)
            block_kib = (size_t)atoi(argv[i + 1]);
        else
            break;
    }
    if (argc - i != 2 || block_kib == 0) {
        fprintf(stderr, "usage: pz [-j WORKERS] [-b BLOCK_KIB] INPUT "
                        "OUTPUT.gz | pz --self-test [MIB]\n");
        return 2;
    }
    return run(argv[i], argv[i + 1], workers, block_kib * 1024);
}
