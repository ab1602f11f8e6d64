/*
 * The records source's recycled chunk blocks, kept by the runtime between
 * graphs (records.c explains why and how they are shared).
 */
#ifndef PARA_RECORDS_POOL_H
#define PARA_RECORDS_POOL_H

#include <stddef.h>

#include "para.h"

struct para__block_pool;

/* The runtime's pool of blocks of at least @p capacity bytes (a new one,
 * replacing the old, if its blocks are smaller), with a reference for the
 * caller; NULL if out of memory. Takes rt->lock: not while holding it. */
struct para__block_pool *para__records_pool(para_runtime_t *rt,
                                            size_t capacity);
/* At runtime destroy: the runtime lets go of its pool (blocks still out
 * come back to be freed). */
void para__records_pool_close(para_runtime_t *rt);
/* Free blocks the pool holds now (tests). */
size_t para__records_pool_free_blocks(const struct para__block_pool *p);

#endif /* PARA_RECORDS_POOL_H */
