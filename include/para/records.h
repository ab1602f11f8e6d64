/*
 * para: variable-length records as items.
 *
 * Items have a fixed size, records (lines of a log, rows of a CSV) do not.
 * A record travels as a para_slice_t: a pointer and a length into a
 * reference-counted block of bytes that the slice keeps alive. A records
 * source reads a file or a stream in blocks (1 MiB by default) and emits one
 * slice per record, without copying the records: a block is shared by all
 * the records in it, and freed when the last of them is released. A record
 * that crosses a block boundary is carried whole into the next block; one
 * longer than a block grows the block.
 *
 *     para_records_attr_t ra;
 *     para_records_attr_init(&ra);             // lines, 1 MiB blocks
 *     para_graph_add_records_file(g, "lines", "app.log", &ra, &src);
 *     // then: a map para_slice_t -> your struct, item by item (items.h)
 *
 * Slices are items that own memory (graph.h): consumers borrow them, and
 * the runtime releases each exactly once. A node that makes slices itself
 * (e.g. a flat-map cutting its own blocks) declares para_slices_release()
 * as its release hook and para_slice_bytes() as its owned_bytes.
 */
#ifndef PARA_RECORDS_H
#define PARA_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "para/export.h"
#include "para/graph.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A reference-counted block of bytes. */
typedef struct para_block para_block_t;

/** A record: @c len bytes at @c data, inside @c block. */
typedef struct para_slice {
    const char *data;
    size_t len;
    para_block_t *block; /**< holds one reference per slice */
} para_slice_t;

/**
 * @brief Create a block of @p capacity bytes with one reference.
 * @return The block, or NULL if allocation failed.
 * @note Any thread.
 */
PARA_API para_block_t *para_block_create(size_t capacity);
/** @brief The block's bytes (capacity as created). */
PARA_API char *para_block_data(para_block_t *block);
/** @brief Add @p n references. Any thread. */
PARA_API void para_block_retain(para_block_t *block, size_t n);
/** @brief Drop @p n references; the last frees the block. Any thread. */
PARA_API void para_block_release(para_block_t *block, size_t n);

/**
 * @brief A para_items_release_fn for para_slice_t items: drops each slice's
 *        reference (consecutive slices of one block with one operation).
 */
PARA_API void para_slices_release(void *ctx, void *items, size_t n);
/** @brief A para_item_bytes_fn for para_slice_t items: the slice's length. */
PARA_API size_t para_slice_bytes(void *ctx, const void *item);

/** How a records source splits its input. */
typedef struct para_records_attr {
    size_t struct_size; /**< set by para_records_attr_init() */
    int delimiter;      /**< byte ending a record; default '\n' */
    size_t block_size;  /**< bytes read at a time; default 1 MiB */
    bool strip_cr;      /**< drop a '\r' before the delimiter (CRLF);
                             default true */
    bool map; /**< a regular file is mapped into memory and split in place
                   (no copy) instead of read with pread() into blocks the
                   runtime recycles; default false. Mapping touches fresh
                   pages for every block, which costs more than the copy
                   where a page fault is dear (virtual machines); and if
                   another process truncates the file during a run,
                   touching the lost pages raises SIGBUS, as with any
                   mapped file (read with pread(), the run fails with
                   EIO). */
} para_records_attr_t;

/**
 * @brief Fill @p attr with the defaults (lines, 1 MiB blocks, CRLF
 *        stripped, files read with pread(), not mapped).
 * @return 0, or PARA_EINVAL if @p attr is NULL.
 */
PARA_API PARA_NODISCARD int para_records_attr_init(para_records_attr_t *attr);

/**
 * @brief Add a source emitting the records of the file at @p path as
 *        para_slice_t items (out_size sizeof(para_slice_t)), in order.
 *
 * The file is opened at the start of every run, so the graph can run
 * again. A regular file is split by byte ranges of block_size adjusted to
 * record boundaries, so that several workers make records at once; a pipe
 * or a device, or any file with an ORDERED node downstream, is read by one
 * worker at a time (ORDERED nodes see the records in file order). The size
 * is taken when the run starts: bytes appended during the run are not read.
 * The last record needs no delimiter; an empty file has no records; an
 * empty line is an empty record.
 * @param[in] path Copied.
 * @param[in] attr NULL for the defaults; borrowed for the call.
 * @return As para_graph_add(); PARA_EINVAL also for a NULL path, a
 *         block_size of 0 or a delimiter outside 0..255. A file that cannot
 *         be opened fails the run with PARA_ENODE naming the source (its
 *         open hook returns the negative errno).
 */
PARA_API PARA_NODISCARD int
para_graph_add_records_file(para_graph_t *graph, const char *name,
                            const char *path, const para_records_attr_t *attr,
                            para_node_t **out);

/**
 * @brief Add a source emitting the records read from @p fd (a pipe, a
 *        socket, a file) as para_slice_t items.
 *
 * A run reads from the current position to the end (in parallel if @p fd
 * is a regular file, as para_graph_add_records_file()). A seekable @p fd is
 * rewound to where it was when the node was added at the start of every
 * run; a stream that cannot be rewound fails its second run with
 * PARA_ENODE ("cannot rewind").
 * @param fd Borrowed: not closed by para.
 * @return As para_graph_add_records_file().
 */
PARA_API PARA_NODISCARD int
para_graph_add_records_fd(para_graph_t *graph, const char *name, int fd,
                          const para_records_attr_t *attr, para_node_t **out);

/**
 * @brief As para_graph_add_records_fd(), reading @p stream with fread().
 * @param stream Borrowed: not closed by para.
 */
PARA_API PARA_NODISCARD int
para_graph_add_records_stream(para_graph_t *graph, const char *name,
                              FILE *stream, const para_records_attr_t *attr,
                              para_node_t **out);

#ifdef __cplusplus
}
#endif

#endif /* PARA_RECORDS_H */
