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
 * Split mode (a path or an fd that is a regular file, no ORDERED node
 * downstream)
 *   Several workers pull at once (the node's src_split, graph.h). The
 *   input's size is taken at open; chunk k is bytes [k*C, (k+1)*C) with C
 *   the block size, and it owns the records that START in it: its first
 *   record starts after the first delimiter at or after byte k*C - 1, and
 *   its last one ends at the first delimiter at or after byte (k+1)*C - 1
 *   (read past the chunk as far as needed: a long record is read by the
 *   chunk it starts in; chunks with no record start in them emit nothing).
 *   Each chunk is a block of its own, read with pread() into a block of
 *   the runtime's pool (below): a released block is reused last in first
 *   out, by this graph or the next one, so a run's chunks land in memory
 *   that is mapped already and the run's resident memory stays a few
 *   chunks. With attr.map a chunk is mapped instead and split in place
 *   (no copy), and unmapped when its last slice is released. Mapping was
 *   the default until session 11: on a VM with cheap page faults it cost
 *   less CPU than a copy into blocks that were freed with their graph
 *   (and that copy read every chunk's bytes twice: the read-on for the
 *   last record took a whole block). On the shadow-paged VM we measure on
 *   now a page first touched costs 10-14 us and w9 spent more time
 *   faulting mapped chunks in than splitting them: recycled blocks took
 *   w9's efficiency from 0.52-0.54 to 0.83-0.96 on 2 workers, same
 *   sitting (BENCHMARKS.md). Prefaulting a mapped chunk with
 *   MADV_POPULATE_READ cost as much as the faults; chunks of 2, 4 or 8
 *   MiB were within the noise of 1 MiB.
 *   A pull claims the next chunk and splits it (split_part(): with AVX2,
 *   checked at run time, 64 bytes compared at a time, each delimiter a
 *   bit of a mask; else one memchr() per record, as for the last bytes of
 *   a part. w9's lines average 74 bytes, and a memchr() call per line
 *   cost more in its start-up than in its scan: callgrind counts 196 M
 *   instructions per w9 run for the memchr split, 124 M with AVX2, and
 *   CPU per run fell 6-7 %, 1 and 2 workers); what does not fit in the
 *   batch is left as a part for the next pull (lowest offset first). The
 *   batch's key range is the byte offsets [first record's start, next
 *   record's start), so keys meet across batches and chunks and ORDERED
 *   nodes see file order. The input is exhausted when no chunk is left
 *   and no part is alive; a pull that finds nothing while a part is in
 *   another pull's hands returns no item and not done (the scheduler
 *   tries again later). `lock` guards the chunk counter, the parts list
 *   and the count of live parts: held for a few loads and stores, never
 *   across I/O or splitting. A file that shrinks during the run fails it
 *   (-EIO) when read with pread(); when mapped, the lost pages raise
 *   SIGBUS (records.h says so).
 *   Not with an ORDERED node downstream: a part left for the next pull has
 *   lower keys than the chunks other pulls claimed meanwhile, so keys are
 *   not handed out in order; the reorder buffer then holds the later
 *   batches while the part waits for a pull the memory policy may refuse
 *   until the buffer drains: a deadlock (seen under TSan, 1 run in 6 of
 *   test_records). A range source hands its keys out in order, which is
 *   what the policies' back-pressure relies on. Such a graph reads the
 *   file serially; issuing the split chunks' records in key order (split
 *   in parallel, handed out in order) is what would lift it.
 *
 * Tests: tests/runtime/test_records.c.
 */
#include "para/records.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "records_pool.h"

/* The AVX2 splitter (split_avx2()): x86-64 with GCC or clang, chosen at
 * run time if the CPU has AVX2. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define PARA_RECORDS_AVX2 1
#else
#define PARA_RECORDS_AVX2 0
#endif

typedef struct para__block_pool block_pool;

struct para_block {
    _Atomic size_t refs;
    size_t capacity;
    void *map; /* a mapped file (records' split mode), or NULL */
    size_t map_len;
    block_pool *pool;        /* goes back there when released, or NULL */
    para_block_t *next_free; /* in pool->free */
    char *bytes;             /* data, or into the mapping */
    char data[];
};

/* Recycled blocks for chunks read with pread(). A released block goes
 * back to its pool, last in first out, so that a later chunk is read into
 * memory that is already mapped and recently used. A fresh allocation of a
 * chunk's size is new pages, a fault each on first write, and so is a
 * fresh mapping of the file: on the shadow-paged VMs we measure on a page
 * first touched costs 10-14 us (para-host-probe's fault_us), and w9 spent
 * more time faulting its chunks in than splitting them.
 *
 * The runtime owns one pool (para__records_pool()) and keeps it between
 * graphs, for a program that builds a graph per file; a reader takes a
 * reference per run. The pool lives while anyone holds it: refs counts the
 * runtime's reference, the readers' and one per block out of the pool (a
 * user's sink may keep a block after the graph and the runtime are gone).
 * Once the runtime lets go (closed) the free blocks are freed and blocks
 * coming back are too. `lock` guards free, n_free, refs and closed: held
 * for a few loads and stores, once per chunk. */
struct para__block_pool {
    pthread_mutex_t lock;
    para_block_t *free;
    unsigned n_free; /* free blocks now (at most POOL_KEEP_BYTES of them) */
    size_t refs;
    size_t capacity; /* of every pooled block */
    bool closed;
};

/* Bytes of free blocks a pool keeps: enough for a few chunks in flight on
 * each of a few workers; beyond it a released block is freed. */
#define POOL_KEEP_BYTES ((size_t)8 << 20)

/* Free a list of free blocks (linked through next_free). */
static void free_blocks(para_block_t *b)
{
    while (b != NULL) {
        para_block_t *next = b->next_free;
        free(b);
        b = next;
    }
}

static void pool_free(block_pool *p)
{
    free_blocks(p->free);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static void pool_ref(block_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->refs++;
    pthread_mutex_unlock(&p->lock);
}

static void pool_unref(block_pool *p)
{
    pthread_mutex_lock(&p->lock);
    bool dead = --p->refs == 0;
    pthread_mutex_unlock(&p->lock);
    if (dead)
        pool_free(p);
}

/* The owner lets go: free blocks are freed now, the pool with its last
 * reference. */
static void pool_close(block_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    para_block_t *b = p->free;
    p->free = NULL;
    p->n_free = 0;
    p->closed = true;
    pthread_mutex_unlock(&p->lock);
    free_blocks(b);
    pool_unref(p);
}

/* A pool of blocks of @p capacity bytes, its owner's reference taken;
 * NULL if out of memory. */
static block_pool *pool_create(size_t capacity)
{
    block_pool *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        return NULL;
    }
    p->capacity = capacity;
    p->refs = 1;
    return p;
}

/* A released pooled block: back to its pool, or freed if the pool has as
 * many as it keeps or was closed. */
static void pool_put(block_pool *p, para_block_t *b)
{
    pthread_mutex_lock(&p->lock);
    bool dead = --p->refs == 0;
    /* None kept if one block is past the bound (blocks of many MiB). */
    bool keep =
        !p->closed && (size_t)(p->n_free + 1) * p->capacity <= POOL_KEEP_BYTES;
    if (keep) {
        b->next_free = p->free;
        p->free = b;
        p->n_free++;
    }
    pthread_mutex_unlock(&p->lock);
    if (!keep)
        free(b);
    if (dead)
        pool_free(p);
}

/* A block of p->capacity bytes, from the pool's free ones if it has any;
 * NULL if out of memory. */
static para_block_t *pool_get(block_pool *p)
{
    pthread_mutex_lock(&p->lock);
    para_block_t *b = p->free;
    if (b != NULL) {
        p->free = b->next_free;
        p->n_free--;
    }
    p->refs++;
    pthread_mutex_unlock(&p->lock);
    if (b == NULL && (b = para_block_create(p->capacity)) == NULL) {
        pool_unref(p); /* never the last: the caller holds one */
        return NULL;
    }
    /* Not shared yet (as in para_block_create()). */
    atomic_init(&b->refs, 1);
    b->pool = p;
    b->next_free = NULL;
    return b;
}

/* A pooled block that must grow (a record longer than the chunk's room)
 * leaves its pool first. */
static void pool_detach(para_block_t *b)
{
    if (b->pool != NULL) {
        pool_unref(b->pool); /* never the last: the reader holds one */
        b->pool = NULL;
    }
}

/* Room for a chunk of @p len bytes and some of the next one, where its
 * last record ends (load_chunk() reads on as far as it needs). */
static size_t chunk_capacity(size_t len)
{
    return len + len / 8 + 64;
}

block_pool *para__records_pool(para_runtime_t *rt, size_t capacity)
{
    pthread_mutex_lock(&rt->lock);
    block_pool *p = rt->records_pool;
    if (p == NULL || p->capacity < capacity) {
        block_pool *q = pool_create(capacity);
        if (q == NULL) {
            pthread_mutex_unlock(&rt->lock);
            return NULL;
        }
        rt->records_pool = q;
        pool_close(p);
        p = q;
    }
    pool_ref(p);
    pthread_mutex_unlock(&rt->lock);
    return p;
}

void para__records_pool_close(para_runtime_t *rt)
{
    pool_close(rt->records_pool);
    rt->records_pool = NULL;
}

size_t para__records_pool_free_blocks(const block_pool *p)
{
    pthread_mutex_lock((pthread_mutex_t *)&p->lock);
    size_t n = p->n_free;
    pthread_mutex_unlock((pthread_mutex_t *)&p->lock);
    return n;
}

para_block_t *para_block_create(size_t capacity)
{
    if (capacity > SIZE_MAX - sizeof(para_block_t))
        return NULL;
    para_block_t *b = malloc(sizeof *b + capacity);
    if (b == NULL)
        return NULL;
    atomic_init(&b->refs, 1);
    b->capacity = capacity;
    b->map = NULL;
    b->map_len = 0;
    b->pool = NULL;
    b->next_free = NULL;
    b->bytes = b->data;
    return b;
}
/* A block over input bytes [start, start + len) of @p fd, mapped
 * read-only; NULL if the file cannot be mapped. */
static para_block_t *block_map(int fd, off_t start, size_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    off_t from = page > 0 ? start - start % page : start;
    size_t skip = (size_t)(start - from);
    if (len == 0 || len > SIZE_MAX - skip)
        return NULL;
    void *m = mmap(NULL, skip + len, PROT_READ, MAP_PRIVATE, fd, from);
    if (m == MAP_FAILED)
        return NULL;
    para_block_t *b = para_block_create(0);
    if (b == NULL) {
        munmap(m, skip + len);
        return NULL;
    }
    b->capacity = len;
    b->map = m;
    b->map_len = skip + len;
    b->bytes = (char *)m + skip;
    return b;
}

char *para_block_data(para_block_t *b)
{
    return b->bytes;
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
    if (atomic_fetch_sub_explicit(&b->refs, n, memory_order_acq_rel) == n) {
        if (b->map != NULL)
            munmap(b->map, b->map_len);
        if (b->pool != NULL)
            pool_put(b->pool, b);
        else
            free(b);
    }
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

static void attr_defaults(para_records_attr_t *a)
{
    memset(a, 0, sizeof *a);
    a->struct_size = sizeof *a;
    a->delimiter = '\n';
    a->block_size = (size_t)1 << 20;
    a->strip_cr = true;
    a->map = false;
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

/* Split mode: a chunk being split. Records start at pos, pos < stop;
 * the last one may end at stop without a delimiter (end of input). */
typedef struct part {
    para_block_t *block; /* one reference */
    uint64_t base;       /* input offset of block->data[0] */
    size_t pos, stop;
    struct part *next;
} part;

typedef struct records {
    enum input_kind kind;
    para_node_t *node;
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
    /* Split mode (this run). */
    bool split;
    uint64_t size, chunks; /* input bytes from start; chunks of block_size */
    bool map;              /* chunks are mapped (else read with pread()) */
    pthread_mutex_t lock;  /* guards next_chunk, parts, live */
    uint64_t next_chunk;
    part *parts;      /* left by a pull, by ascending base */
    size_t live;      /* parts claimed and not finished */
    bool avx2;        /* split with split_avx2() */
    block_pool *pool; /* chunks read with pread() (this run's reference) */
    bool own_pool;    /* pool is ours alone (no runtime to keep one) */
} records;

static void drop_pool(records *r)
{
    if (r->pool != NULL && r->own_pool)
        pool_close(r->pool);
    else if (r->pool != NULL)
        pool_unref(r->pool);
    r->pool = NULL;
    r->own_pool = false;
}

/* A pool for this run's chunks, sized for the input: the runtime's (kept
 * between graphs), or one of our own if the graph runs without one. */
static block_pool *take_pool(records *r)
{
    size_t need =
        chunk_capacity((size_t)PARA_MIN(r->attr.block_size, r->size) + 1);
    para_runtime_t *rt = r->node->graph->runtime;
    if (rt != NULL)
        return para__records_pool(rt, need);
    r->own_pool = true;
    return pool_create(need);
}

static void drop_block(records *r)
{
    if (r->cur != NULL)
        para_block_release(r->cur, 1);
    r->cur = NULL;
    r->pos = r->end = r->scan = 0;
}

static void part_free(part *p)
{
    para_block_release(p->block, 1);
    free(p);
}

static void drop_parts(records *r)
{
    while (r->parts != NULL) {
        part *p = r->parts;
        r->parts = p->next;
        part_free(p);
    }
    r->live = 0;
    r->next_chunk = 0;
}

static void records_free(void *ctx)
{
    records *r = ctx;
    drop_block(r);
    drop_parts(r);
    drop_pool(r);
    pthread_mutex_destroy(&r->lock);
    if (r->kind == INPUT_PATH && r->fd >= 0)
        close(r->fd);
    free(r->path);
    free(r);
}

static int records_split_pull(void *ctx, void *out, size_t cap, size_t *n,
                              uint64_t *seq_begin, uint64_t *seq_end,
                              bool *done);

/* Split mode for this run if the input is a regular file and no ORDERED
 * node is downstream (forward_empty, derived by the graph's prepare, which
 * runs before the open hooks): see "Split mode" above for why. */
static int choose_mode(records *r)
{
    struct stat st;
    r->split = false;
    if (fstat(r->fd, &st) != 0)
        return -errno;
    off_t from = r->kind == INPUT_PATH ? 0 : r->start;
    if (S_ISREG(st.st_mode) && from >= 0 && st.st_size >= from &&
        !r->node->forward_empty) {
        r->split = true;
        r->size = (uint64_t)(st.st_size - from);
        r->chunks = (r->size + r->attr.block_size - 1) / r->attr.block_size;
        r->map = r->attr.map;
        if ((r->pool = take_pool(r)) == NULL)
            return PARA_ENOMEM;
    }
    return 0;
}

static int records_open(void *ctx)
{
    records *r = ctx;
    drop_block(r);
    drop_parts(r);
    drop_pool(r);
    r->eof = false;
    r->runs++;
    r->split = false;
    int rc = 0;
    switch (r->kind) {
    case INPUT_PATH:
        if (r->fd >= 0)
            close(r->fd);
        r->fd = open(r->path, O_RDONLY | O_CLOEXEC);
        rc = r->fd >= 0 ? choose_mode(r) : -errno;
        break;
    case INPUT_FD:
        if (r->start >= 0)
            rc = lseek(r->fd, r->start, SEEK_SET) == r->start ? choose_mode(r)
                                                              : -errno;
        else
            rc = r->runs == 1 ? 0 : PARA_EINVAL; /* cannot rewind a stream */
        break;
    case INPUT_STREAM:
        if (r->start >= 0) {
            clearerr(r->stream);
            rc = fseeko(r->stream, r->start, SEEK_SET) == 0 ? 0 : -errno;
        } else {
            rc = r->runs == 1 ? 0 : PARA_EINVAL;
        }
        break;
    }
    /* Read by the workers during the run; written before it starts. */
    r->node->src_split = rc == 0 && r->split ? records_split_pull : NULL;
    return rc;
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

/* ---- split mode ------------------------------------------------------- */

/* Read input bytes [at, at + len) into @p dst. 0, or a negative errno
 * (-EIO if the file ended early: it shrank during the run). */
static int read_at(records *r, char *dst, uint64_t at, size_t len)
{
    off_t base = r->kind == INPUT_PATH ? 0 : r->start;
    while (len > 0) {
        ssize_t got = pread(r->fd, dst, len, base + (off_t)at);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            return -EIO;
        dst += got;
        at += (uint64_t)got;
        len -= (size_t)got;
    }
    return 0;
}

/* Read chunk @p k and find its records. *out is NULL when no record starts
 * in the chunk. 0 or an error code. */
static part *new_part(para_block_t *b, uint64_t base, size_t pos, size_t stop)
{
    part *p = malloc(sizeof *p);
    if (p != NULL)
        *p = (part){.block = b, .base = base, .pos = pos, .stop = stop};
    return p;
}

/* load_chunk() by mapping bytes [from, e) of the input and as far past e
 * as the last record needs (64 KiB more at first, doubled until its
 * delimiter or the end of the input is in): no copy. *out stays NULL with
 * 0 for a chunk with no record start, and with 1 if the input cannot be
 * mapped (the caller reads it instead). */
static int map_chunk(records *r, uint64_t from, uint64_t e, part **out)
{
    const int delim = r->attr.delimiter;
    const off_t at = (r->kind == INPUT_PATH ? 0 : r->start) + (off_t)from;
    const size_t len = (size_t)(e - from);
    uint64_t extra = (uint64_t)64 << 10;
    for (;;) {
        size_t more = (size_t)PARA_MIN(extra, r->size - e);
        para_block_t *b = block_map(r->fd, at, len + more);
        if (b == NULL)
            return 1;
        const char *d = b->bytes;
        size_t first = 0, stop = len;
        if (from > 0) { /* byte from = a - 1 says if a record starts at a */
            const char *q = memchr(d, delim, len);
            first = q != NULL ? (size_t)(q - d) + 1 : len;
        }
        if (first >= len) { /* no record starts in the chunk */
            para_block_release(b, 1);
            return 0;
        }
        if (d[len - 1] != delim) {
            const char *q = memchr(d + len, delim, more);
            if (q == NULL && e + more < r->size) { /* map more */
                para_block_release(b, 1);
                extra *= 2;
                continue;
            }
            stop = q != NULL ? (size_t)(q - d) + 1 : len + more;
        }
        if ((*out = new_part(b, from, first, stop)) == NULL) {
            para_block_release(b, 1);
            return PARA_ENOMEM;
        }
        return 0;
    }
}

static int load_chunk(records *r, uint64_t k, part **out)
{
    *out = NULL;
    const int delim = r->attr.delimiter;
    uint64_t a = k * r->attr.block_size;
    uint64_t e = PARA_MIN(a + r->attr.block_size, r->size);
    uint64_t from = k == 0 ? 0 : a - 1; /* the byte before says if a record
                                           starts at a */
    if (r->map) {
        int rc = map_chunk(r, from, e, out);
        if (rc <= 0)
            return rc;
    }
    size_t len = (size_t)(e - from);
    para_block_t *b = chunk_capacity(len) <= r->pool->capacity
                          ? pool_get(r->pool)
                          : para_block_create(chunk_capacity(len));
    if (b == NULL)
        return PARA_ENOMEM;
    int rc = read_at(r, b->data, from, len);
    if (rc != 0) {
        para_block_release(b, 1);
        return rc;
    }
    size_t first = 0; /* first record start, in the block */
    if (k > 0) {
        const char *q = memchr(b->data, delim, len);
        first = q != NULL ? (size_t)(q - b->data) + 1 : len;
    }
    if (first >= len) { /* no record starts in the chunk */
        para_block_release(b, 1);
        return 0;
    }
    /* The last record ends at the first delimiter at or after byte e - 1
     * (or at the end of the input): read on until it is found. */
    size_t stop = len;
    if (b->data[len - 1] != delim) {
        /* The block's spare room at first (an eighth of the chunk), then
         * twice as much each time, as map_chunk() does: a whole block
         * more would copy every chunk's bytes twice and outgrow the
         * block. */
        size_t scan = len, step = PARA_MAX(len / 8, (size_t)64);
        for (;; step = step < r->attr.block_size ? step * 2 : step) {
            uint64_t at = from + stop;
            if (at >= r->size)
                break;
            size_t more = (size_t)PARA_MIN(r->size - at, (uint64_t)step);
            if (b->capacity - stop < more) {
                size_t ncap = PARA_MAX(b->capacity * 2, stop + more);
                pool_detach(b);
                para_block_t *nb = realloc(b, sizeof *b + ncap);
                if (nb == NULL) {
                    para_block_release(b, 1);
                    return PARA_ENOMEM;
                }
                b = nb;
                b->capacity = ncap;
                b->bytes = b->data;
            }
            if ((rc = read_at(r, b->data + stop, at, more)) != 0) {
                para_block_release(b, 1);
                return rc;
            }
            stop += more;
            const char *q = memchr(b->data + scan, delim, stop - scan);
            if (q != NULL) {
                stop = (size_t)(q - b->data) + 1;
                break;
            }
            scan = stop;
        }
    }
    if ((*out = new_part(b, from, first, stop)) == NULL) {
        para_block_release(b, 1);
        return PARA_ENOMEM;
    }
    return 0;
}

/* The record [pos, end) of @p d (end at its delimiter, or at the end of
 * the input), as slice @p s. */
static inline void put_slice(para_slice_t *s, para_block_t *b, const char *d,
                             size_t pos, size_t end, bool strip)
{
    if (strip && end > pos && d[end - 1] == '\r')
        end--;
    s->data = d + pos;
    s->len = end - pos;
    s->block = b;
}

/* Split from p->pos, as split_part(), starting the search for the first
 * delimiter at @p from (>= p->pos: [p->pos, from) holds none): one
 * memchr() per record. */
static size_t split_memchr(records *r, part *p, size_t from, para_slice_t *s,
                           size_t k, size_t cap)
{
    const char *d = p->block->bytes;
    const int delim = r->attr.delimiter;
    const bool strip = r->attr.strip_cr;
    size_t pos = p->pos, stop = p->stop;
    while (k < cap && pos < stop) {
        const char *q = memchr(d + from, delim, stop - from);
        size_t end = q != NULL ? (size_t)(q - d) : stop;
        put_slice(&s[k++], p->block, d, pos, end, strip);
        pos = from = q != NULL ? end + 1 : stop;
    }
    p->pos = pos;
    return k;
}

#if PARA_RECORDS_AVX2
/* split_part() with AVX2: 64 bytes compared at a time, each delimiter
 * found as a bit of a mask. Lines of a few dozen bytes cost a memchr()
 * call each otherwise, its start-up more than its scan (memchr was a
 * tenth of w9's CPU time, seq's and para's). Loads stay below p->stop. */
__attribute__((target("avx2"))) static size_t
split_avx2(records *r, part *p, para_slice_t *s, size_t cap)
{
    const char *d = p->block->bytes;
    const bool strip = r->attr.strip_cr;
    const __m256i dv = _mm256_set1_epi8((char)r->attr.delimiter);
    size_t k = 0, pos = p->pos, scan = pos;
    const size_t stop = p->stop;
    while (k < cap && stop - scan >= 64) {
        __m256i lo =
            _mm256_loadu_si256((const __m256i *)(const void *)(d + scan));
        __m256i hi =
            _mm256_loadu_si256((const __m256i *)(const void *)(d + scan + 32));
        uint64_t mask =
            (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, dv)) |
            (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, dv))
                << 32;
        while (mask != 0) {
            size_t end = scan + (size_t)__builtin_ctzll(mask);
            mask &= mask - 1;
            put_slice(&s[k++], p->block, d, pos, end, strip);
            pos = end + 1;
            if (k == cap) {
                p->pos = pos;
                return k;
            }
        }
        scan += 64;
    }
    /* The last bytes (under 64): [pos, scan) holds no delimiter. */
    p->pos = pos;
    return split_memchr(r, p, PARA_MAX(pos, scan), s, k, cap);
}
#endif

/* Split records of @p p into @p s (room for @p cap). Returns the count. */
static size_t split_part(records *r, part *p, para_slice_t *s, size_t cap)
{
    size_t k;
#if PARA_RECORDS_AVX2
    if (r->avx2)
        k = split_avx2(r, p, s, cap);
    else
#endif
        k = split_memchr(r, p, p->pos, s, 0, cap);
    if (k > 0)
        para_block_retain(p->block, k);
    return k;
}

static int records_split_pull(void *ctx, void *out, size_t cap, size_t *n,
                              uint64_t *seq_begin, uint64_t *seq_end,
                              bool *done)
{
    records *r = ctx;
    *n = 0;
    *done = false;
    for (;;) {
        part *p = NULL;
        uint64_t k = 0;
        bool fresh = false;
        pthread_mutex_lock(&r->lock);
        if (r->parts != NULL) {
            p = r->parts;
            r->parts = p->next;
        } else if (r->next_chunk < r->chunks) {
            k = r->next_chunk++;
            r->live++;
            fresh = true;
        } else {
            *done = r->live == 0;
        }
        pthread_mutex_unlock(&r->lock);
        if (p == NULL && !fresh)
            return 0; /* exhausted, or the rest is in another pull */
        if (fresh) {
            int rc = load_chunk(r, k, &p);
            if (rc != 0 || p == NULL) {
                pthread_mutex_lock(&r->lock);
                r->live--;
                pthread_mutex_unlock(&r->lock);
                if (rc != 0)
                    return rc;
                continue; /* no record starts in chunk k */
            }
        }
        uint64_t key = p->base + p->pos;
        size_t got = split_part(r, p, out, cap);
        *n = got;
        *seq_begin = key;
        *seq_end = p->base + p->pos;
        pthread_mutex_lock(&r->lock);
        if (p->pos < p->stop) { /* the rest for the next pull */
            part **at = &r->parts;
            while (*at != NULL && (*at)->base + (*at)->pos < p->base + p->pos)
                at = &(*at)->next;
            p->next = *at;
            *at = p;
            p = NULL;
        } else {
            r->live--;
        }
        *done = r->parts == NULL && r->next_chunk == r->chunks && r->live == 0;
        pthread_mutex_unlock(&r->lock);
        if (p != NULL)
            part_free(p);
        return 0;
    }
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
            r->node = n;
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
#if PARA_RECORDS_AVX2
    __builtin_cpu_init();
    r->avx2 = __builtin_cpu_supports("avx2") != 0 &&
              getenv("PARA_RECORDS_NO_AVX2") == NULL;
#endif
    if (pthread_mutex_init(&r->lock, NULL) != 0) {
        free(r);
        return NULL;
    }
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
        if (r != NULL)
            records_free(r);
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
