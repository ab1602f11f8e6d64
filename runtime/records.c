/*
 * Records: variable-length items as slices of reference-counted blocks.
 *
 * Blocks
 *   A block is one allocation: a reference count and the bytes. Each slice
 *   holds one reference; the reader holds one for the block it is filling.
 *   The count is an atomic whose decrement is acq_rel (below), as for any
 *   shared pointer. A batch's slices mostly share one block, so
 *   para_slices_release() drops a run of them with one atomic operation,
 *   and the reader adds the references of one pull with one operation too
 *   (before it gives up its own reference, so the count never reaches 0
 *   while a slice points in).
 *
 * Splitting (the source's pull, one worker at a time)
 *   The current block holds bytes [0, end) of which [pos, end) are not yet
 *   split. A pull looks for the delimiter from pos (memchr); each record
 *   found becomes a slice, without copying. When the rest holds no
 *   delimiter: if the block has room, more input is read into it (the
 *   slices already made point before pos and do not move); if it is full,
 *   the unfinished record, and only it, is copied to the start of a new
 *   block (twice as large if the record alone fills a block: records longer
 *   than a block are fine). At the end of the input the unfinished record,
 *   if not empty, is the last record (no final delimiter needed). A '\r'
 *   before the delimiter is dropped when strip_cr is set (CRLF lines).
 *
 * Inputs: a path (opened at every run's open hook), an fd or a FILE*
 * (rewound at every run if seekable; a stream that cannot be rewound runs
 * once). The reader's state lives in the node's ctx, freed with the graph.
 *
 * Tests: tests/runtime/test_records.c.
 */
#include "para/records.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct para_block {
    _Atomic size_t refs;
    size_t capacity;
    char data[];
};

para_block_t *para_block_create(size_t capacity)
{
    if (capacity > SIZE_MAX - sizeof(para_block_t))
        return NULL;
    para_block_t *b = malloc(sizeof *b + capacity);
    if (b == NULL)
        return NULL;
    atomic_init(&b->refs, 1);
    b->capacity = capacity;
    return b;
}

char *para_block_data(para_block_t *b)
{
    return b->data;
}

void para_block_retain(para_block_t *b, size_t n)
{
    /* relaxed: the caller holds a reference already (a shared-pointer
     * copy); publication of the block's bytes to other threads goes through
     * the batches that carry the slices. */
    atomic_fetch_add_explicit(&b->refs, n, memory_order_relaxed);
}

void para_block_release(para_block_t *b, size_t n)
{
    /* acq_rel: release orders our reads of the bytes before the free; the
     * acquire of the last one sees every other reader's release. */
    if (atomic_fetch_sub_explicit(&b->refs, n, memory_order_acq_rel) == n)
        free(b);
}

void para_slices_release(void *ctx, void *items, size_t n)
{
    (void)ctx;
    const para_slice_t *s = items;
    size_t i = 0;
    while (i < n) {
        para_block_t *b = s[i].block;
        size_t j = i + 1;
        while (j < n && s[j].block == b)
            j++;
        para_block_release(b, j - i);
        i = j;
    }
}

size_t para_slice_bytes(void *ctx, const void *item)
{
    (void)ctx;
    return ((const para_slice_t *)item)->len;
}

static void attr_defaults(para_records_attr_t *a)
{
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->delimiter = '\n';
    a->block_size = (size_t)1 << 20;
    a->strip_cr = true;
}

int para_records_attr_init(para_records_attr_t *a)
{
    if (a == NULL)
        return PARA_EINVAL;
    attr_defaults(a);
    return 0;
}

/* ---- the reader -----------------------------------------------------------
 */

enum input_kind { INPUT_PATH, INPUT_FD, INPUT_STREAM };

typedef struct records {
    enum input_kind kind;
    char *path;   /* INPUT_PATH */
    int fd;       /* INPUT_PATH (opened per run), INPUT_FD */
    FILE *stream; /* INPUT_STREAM */
    off_t start;  /* INPUT_FD / STREAM: where a run starts; -1 unseekable */
    unsigned runs;
    para_records_attr_t attr;
    para_block_t *cur; /* our reference */
    size_t pos, end;
    size_t scan; /* [pos, scan) holds no delimiter: search from there */
    bool eof;
    char msg[256];
} records;

static void drop_block(records *r)
{
    if (r->cur != NULL)
        para_block_release(r->cur, 1);
    r->cur = NULL;
    r->pos = r->end = r->scan = 0;
}

static void records_free(void *ctx)
{
    records *r = ctx;
    drop_block(r);
    if (r->kind == INPUT_PATH && r->fd >= 0)
        close(r->fd);
    free(r->path);
    free(r);
}

static int records_open(void *ctx)
{
    records *r = ctx;
    drop_block(r);
    r->eof = false;
    r->runs++;
    switch (r->kind) {
    case INPUT_PATH:
        if (r->fd >= 0)
            close(r->fd);
        r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
        return r->fd >= 0 ? 0 : -errno;
    case INPUT_FD:
        if (r->start >= 0)
            return lseek(r->fd, r->start, SEEK_SET) == r->start ? 0 : -errno;
        return r->runs == 1 ? 0 : PARA_EINVAL; /* cannot rewind a stream */
    case INPUT_STREAM:
        if (r->start >= 0) {
            clearerr(r->stream);
            return fseeko(r->stream, r->start, SEEK_SET) == 0 ? 0 : -errno;
        }
        return r->runs == 1 ? 0 : PARA_EINVAL;
    }
    return PARA_EINVAL;
}

/* Read into the current block's free room; sets eof at the end of input.
 * 0, or a negative errno. */
static int fill(records *r)
{
    char *dst = r->cur->data + r->end;
    size_t room = r->cur->capacity - r->end;
    if (r->kind == INPUT_STREAM) {
        size_t got = fread(dst, 1, room, r->stream);
        r->end += got;
        if (got < room) {
            if (ferror(r->stream))
                return -EIO;
            r->eof = true;
        }
        return 0;
    }
    for (;;) {
        ssize_t got = read(r->fd, dst, room);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            r->eof = true;
        r->end += (size_t)got;
        return 0;
    }
}

/* Make room for more input: the unfinished record [pos, end) moves to the
 * start of a new block. 0 or PARA_ENOMEM. */
static int next_block(records *r)
{
    size_t tail = r->end - r->pos;
    size_t cap = r->attr.block_size;
    if (r->cur != NULL && tail * 2 > cap)
        cap = PARA_MAX(cap, r->cur->capacity * 2); /* a long record */
    para_block_t *nb = para_block_create(cap);
    if (nb == NULL)
        return PARA_ENOMEM;
    if (tail > 0)
        memcpy(nb->data, r->cur->data + r->pos, tail);
    size_t scanned = r->scan - r->pos;
    drop_block(r);
    r->cur = nb;
    r->pos = 0;
    r->end = tail;
    r->scan = scanned;
    return 0;
}

static void emit(records *r, para_slice_t *s, size_t begin, size_t stop)
{
    const char *d = r->cur->data;
    if (r->attr.strip_cr && stop > begin && d[stop - 1] == '\r')
        stop--;
    s->data = d + begin;
    s->len = stop - begin;
    s->block = r->cur;
}

static int records_pull(void *ctx, void *out, size_t cap, size_t *n)
{
    records *r = ctx;
    para_slice_t *s = out;
    size_t k = 0, refs = 0; /* slices of r->cur not yet counted in refs */
    int rc = 0;
    while (k < cap) {
        if (r->cur != NULL && r->pos < r->end) {
            const char *d = r->cur->data;
            size_t from = PARA_MAX(r->pos, r->scan);
            const char *q = memchr(d + from, r->attr.delimiter, r->end - from);
            if (q != NULL) {
                size_t stop = (size_t)(q - d);
                emit(r, &s[k++], r->pos, stop);
                refs++;
                r->pos = r->scan = stop + 1;
                continue;
            }
            r->scan = r->end;
        }
        if (r->eof) {
            if (r->cur != NULL && r->pos < r->end) { /* no final delimiter */
                emit(r, &s[k++], r->pos, r->end);
                refs++;
                r->pos = r->scan = r->end;
            }
            break;
        }
        if (r->cur == NULL || r->end == r->cur->capacity) {
            if (refs > 0) /* before next_block() drops our reference */
                para_block_retain(r->cur, refs);
            refs = 0;
            if ((rc = next_block(r)) != 0)
                break;
        }
        if ((rc = fill(r)) != 0)
            break;
    }
    if (refs > 0)
        para_block_retain(r->cur, refs);
    if (rc != 0) {
        /* A failing source releases what it wrote (graph.h). */
        para_slices_release(NULL, s, k);
        return rc;
    }
    if (k == 0)
        drop_block(r); /* the end: nothing refers to the block any more */
    *n = k;
    return 0;
}

static int add_records(para_graph_t *g, const char *name, records *r,
                       const para_records_attr_t *attr, para_node_t **out)
{
    int rc = 0;
    if (attr != NULL) {
        if (attr->struct_size != sizeof *attr)
            rc = para__graph_fail(g, PARA_EINVAL,
                                  "records '%s': attr not initialised by "
                                  "para_records_attr_init()",
                                  name != NULL ? name : "(null)");
        else if (attr->block_size == 0 || attr->delimiter < 0 ||
                 attr->delimiter > 255)
            rc = para__graph_fail(g, PARA_EINVAL,
                                  "records '%s': block_size 0 or delimiter "
                                  "outside 0..255",
                                  name != NULL ? name : "(null)");
        else
            r->attr = *attr;
    } else {
        attr_defaults(&r->attr);
    }
    if (rc == 0) {
        para_node_desc_t d = {.name = name,
                              .out_size = sizeof(para_slice_t),
                              .ctx = r,
                              .source = records_pull,
                              .open = records_open,
                              .release = para_slices_release,
                              .owned_bytes = para_slice_bytes};
        para_node_t *n = NULL;
        rc = para_graph_add(g, &d, &n);
        if (rc == 0) {
            para__node_set_ctx_free(n, records_free);
            if (out != NULL)
                *out = n;
            return 0;
        }
    }
    records_free(r);
    return rc;
}

static records *records_new(enum input_kind kind)
{
    records *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->kind = kind;
    r->fd = -1;
    r->start = -1;
    return r;
}

int para_graph_add_records_file(para_graph_t *g, const char *name,
                                const char *path,
                                const para_records_attr_t *attr,
                                para_node_t **out)
{
    if (g == NULL)
        return PARA_EINVAL;
    if (path == NULL)
        return para__graph_fail(g, PARA_EINVAL, "records '%s': path is NULL",
                                name != NULL ? name : "(null)");
    records *r = records_new(INPUT_PATH);
    if (r == NULL || (r->path = strdup(path)) == NULL) {
        free(r);
        return para__graph_fail(g, PARA_ENOMEM, "out of memory adding '%s'",
                                name != NULL ? name : "(null)");
    }
    return add_records(g, name, r, attr, out);
}

int para_graph_add_records_fd(para_graph_t *g, const char *name, int fd,
                              const para_records_attr_t *attr,
                              para_node_t **out)
{
    if (g == NULL)
        return PARA_EINVAL;
    if (fd < 0)
        return para__graph_fail(g, PARA_EINVAL, "records '%s': fd is %d",
                                name != NULL ? name : "(null)", fd);
    records *r = records_new(INPUT_FD);
    if (r == NULL)
        return para__graph_fail(g, PARA_ENOMEM, "out of memory adding '%s'",
                                name != NULL ? name : "(null)");
    r->fd = fd;
    r->start = lseek(fd, 0, SEEK_CUR);
    return add_records(g, name, r, attr, out);
}

int para_graph_add_records_stream(para_graph_t *g, const char *name,
                                  FILE *stream, const para_records_attr_t *attr,
                                  para_node_t **out)
{
    if (g == NULL)
        return PARA_EINVAL;
    if (stream == NULL)
        return para__graph_fail(g, PARA_EINVAL, "records '%s': stream is NULL",
                                name != NULL ? name : "(null)");
    records *r = records_new(INPUT_STREAM);
    if (r == NULL)
        return para__graph_fail(g, PARA_ENOMEM, "out of memory adding '%s'",
                                name != NULL ? name : "(null)");
    r->stream = stream;
    r->start = ftello(stream);
    return add_records(g, name, r, attr, out);
}
