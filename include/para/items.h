/*
 * para: per-item functions at batch speed.
 *
 * A per-item function registered through a function pointer (para_map_fn,
 * para_sink_fn) costs one indirect call per item, about 1.5 ns: as much as
 * the work itself in fine-grained stages, and the call also stops the CPU
 * from overlapping consecutive items. These macros define, in YOUR
 * translation unit, the batch function that loops over a batch and calls
 * your per-item function, so the compiler inlines it into the loop (what a
 * C++ template does for a lambda). You still write code one item at a time;
 * the runtime still chooses the batches.
 *
 *     static inline int square(void *ctx, const uint64_t *in, uint64_t *out)
 *     {
 *         *out = *in * *in;
 *         return 0;
 *     }
 *     PARA_MAP_ITEMS(square_batch, uint64_t, uint64_t, square)
 *     ...
 *     para_graph_add_map_batch(g, "square", sizeof(uint64_t),
 *                              sizeof(uint64_t), square_batch, NULL, 0, &n);
 *
 * The item function returns 0, or non-zero to fail the run (see graph.h).
 *
 * Blocks. PARA_MAP_ITEMS and PARA_SINK_ITEMS_STATE run the items in blocks
 * of PARA_ITEMS_BLOCK (16) with a constant trip count and no exit inside a
 * block, which the compiler unrolls and, where the item function allows,
 * vectorises at -O2 (GCC's cheap cost model accepts such loops, not one
 * that may leave after any item); the items left over run one by one.
 * What this changes when an item fails is said at each macro.
 */
#ifndef PARA_ITEMS_H
#define PARA_ITEMS_H

#include <stddef.h>

/** Items per block of PARA_MAP_ITEMS and PARA_SINK_ITEMS_STATE. */
#define PARA_ITEMS_BLOCK 16

/* restrict in C; the common extension in C++, which has no restrict. */
#ifdef __cplusplus
#define PARA_ITEMS_RESTRICT_ __restrict
#else
#define PARA_ITEMS_RESTRICT_ restrict
#endif

/* Ask the compiler to unroll the next loop (a block) completely; nothing
 * for compilers that do not know the pragma. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8)
#define PARA_ITEMS_UNROLL_ _Pragma("GCC unroll 16")
#else
#define PARA_ITEMS_UNROLL_
#endif

/**
 * Define `static int name(void *ctx, const void *in, void *out, size_t n)`,
 * a para_map_batch_fn applying
 * `int item_fn(void *ctx, const IN *in, OUT *out)` to each item, in order.
 *
 * The input and output are read and written through restrict pointers: the
 * runtime never passes a batch map an output that overlaps its input
 * (para_map_batch_fn, graph.h), so the compiler may keep items in
 * registers and vectorise.
 *
 * When an item fails, the call returns the code of the first failing item
 * (in item order). item_fn has then been called for every item before it
 * and for the rest of its block (at most PARA_ITEMS_BLOCK - 1 items after
 * it), never beyond: a block's items are all called before the block's
 * codes are looked at. The outputs of a failed call are not items: the
 * runtime passes none of them on (graph.h, "A batch map ... that fails"),
 * so an item_fn whose outputs own memory must not be used here. An item
 * function of a PARALLEL map has no effects besides its output, so the
 * extra calls change nothing else.
 */
#define PARA_MAP_ITEMS(name, IN, OUT, item_fn)                                 \
    static inline int para_items_block_##name(                                 \
        void *para_ctx_, const IN *PARA_ITEMS_RESTRICT_ para_in_,              \
        OUT *PARA_ITEMS_RESTRICT_ para_out_)                                   \
    {                                                                          \
        int para_rc_[PARA_ITEMS_BLOCK];                                        \
        int para_any_ = 0;                                                     \
        PARA_ITEMS_UNROLL_                                                     \
        for (size_t para_j_ = 0; para_j_ < PARA_ITEMS_BLOCK; para_j_++) {      \
            para_rc_[para_j_] =                                                \
                item_fn(para_ctx_, &para_in_[para_j_], &para_out_[para_j_]);   \
            para_any_ |= para_rc_[para_j_];                                    \
        }                                                                      \
        if (para_any_ != 0)                                                    \
            for (size_t para_j_ = 0; para_j_ < PARA_ITEMS_BLOCK; para_j_++)    \
                if (para_rc_[para_j_] != 0)                                    \
                    return para_rc_[para_j_];                                  \
        return 0;                                                              \
    }                                                                          \
    static int name(void *para_ctx_, const void *para_in_, void *para_out_,    \
                    size_t para_n_)                                            \
    {                                                                          \
        const IN *para_items_in_ = (const IN *)para_in_;                       \
        OUT *para_items_out_ = (OUT *)para_out_;                               \
        size_t para_i_ = 0;                                                    \
        for (; para_n_ - para_i_ >= PARA_ITEMS_BLOCK;                          \
             para_i_ += PARA_ITEMS_BLOCK) {                                    \
            int para_rc_ =                                                     \
                para_items_block_##name(para_ctx_, &para_items_in_[para_i_],   \
                                        &para_items_out_[para_i_]);            \
            if (para_rc_ != 0)                                                 \
                return para_rc_;                                               \
        }                                                                      \
        for (; para_i_ < para_n_; para_i_++) {                                 \
            int para_rc_ = item_fn(para_ctx_, &para_items_in_[para_i_],        \
                                   &para_items_out_[para_i_]);                 \
            if (para_rc_ != 0)                                                 \
                return para_rc_;                                               \
        }                                                                      \
        return 0;                                                              \
    }

/**
 * Define `static int name(void *ctx, const void *in, size_t n)`, a
 * para_sink_batch_fn applying `int item_fn(void *ctx, const IN *in)` to each
 * item, in order, stopping at the first failing one (no blocks: item_fn may
 * change state that others see).
 */
#define PARA_SINK_ITEMS(name, IN, item_fn)                                     \
    static int name(void *para_ctx_, const void *para_in_, size_t para_n_)     \
    {                                                                          \
        const IN *para_items_in_ = (const IN *)para_in_;                       \
        for (size_t para_i_ = 0; para_i_ < para_n_; para_i_++) {               \
            int para_rc_ = item_fn(para_ctx_, &para_items_in_[para_i_]);       \
            if (para_rc_ != 0)                                                 \
                return para_rc_;                                               \
        }                                                                      \
        return 0;                                                              \
    }

/**
 * Define `static int name(void *ctx, const void *in, size_t n,
 * unsigned char *keep)`, a para_filter_batch_fn (graph.h) applying
 * `int item_fn(void *ctx, const IN *in)` to each item: 1 keeps it, 0 drops
 * it, a negative value fails the run. Register it with
 * para_graph_add_filter_batch(). Item by item, stopping at the first
 * failing one (no blocks).
 */
#define PARA_FILTER_ITEMS(name, IN, item_fn)                                   \
    static int name(void *para_ctx_, const void *para_in_, size_t para_n_,     \
                    unsigned char *para_keep_)                                 \
    {                                                                          \
        const IN *para_items_in_ = (const IN *)para_in_;                       \
        for (size_t para_i_ = 0; para_i_ < para_n_; para_i_++) {               \
            int para_rc_ = item_fn(para_ctx_, &para_items_in_[para_i_]);       \
            if (para_rc_ < 0)                                                  \
                return para_rc_;                                               \
            para_keep_[para_i_] = (unsigned char)(para_rc_ > 0);               \
        }                                                                      \
        return 0;                                                              \
    }

/**
 * Define `static int name(void *ctx, const void *in, size_t n)`, a
 * para_sink_batch_fn for a SERIAL sink whose ctx points to plain state
 * (sums, counts, a small histogram): it copies `*(STATE *)ctx` into a local,
 * applies `int item_fn(STATE *state, const IN *in)` to each item, and writes
 * the state back once per batch, also when item_fn fails (the state then
 * holds the items before the failing one, and whatever item_fn did to it).
 * With PARA_SINK_ITEMS the compiler must store the state to memory after
 * every item, since it cannot tell that the items do not overlap it: about
 * 0.8 ns an item for `sum += y; sq += y * y; count++`, against a loop that
 * keeps the sums in registers or vectorises. Only for a serial node (the
 * copy is not shared between callers) and a STATE of plain data (it is
 * copied with =).
 *
 * Items run in blocks (above). Before each block the state is copied; when
 * an item of the block fails, the state goes back to that copy and the
 * block's items are applied again one by one up to the failing one, so the
 * state written back is what the items before it made of it, as without
 * blocks. item_fn must therefore depend only on the state and the item (it
 * is called again for the items of a failing block before the failing
 * one) and return the same code for the same state and item.
 */
#define PARA_SINK_ITEMS_STATE(name, IN, STATE, item_fn)                        \
    static int name(void *para_ctx_, const void *para_in_, size_t para_n_)     \
    {                                                                          \
        const IN *para_items_in_ = (const IN *)para_in_;                       \
        STATE para_state_ = *(STATE *)para_ctx_;                               \
        int para_rc_ = 0;                                                      \
        size_t para_i_ = 0;                                                    \
        for (; para_n_ - para_i_ >= PARA_ITEMS_BLOCK;                          \
             para_i_ += PARA_ITEMS_BLOCK) {                                    \
            const STATE para_before_ = para_state_;                            \
            PARA_ITEMS_UNROLL_                                                 \
            for (size_t para_j_ = 0; para_j_ < PARA_ITEMS_BLOCK; para_j_++)    \
                para_rc_ |=                                                    \
                    item_fn(&para_state_, &para_items_in_[para_i_ + para_j_]); \
            if (para_rc_ != 0) {                                               \
                para_state_ = para_before_; /* again, one by one */            \
                para_rc_ = 0;                                                  \
                break;                                                         \
            }                                                                  \
        }                                                                      \
        for (; para_i_ < para_n_ && para_rc_ == 0; para_i_++)                  \
            para_rc_ = item_fn(&para_state_, &para_items_in_[para_i_]);        \
        *(STATE *)para_ctx_ = para_state_;                                     \
        return para_rc_;                                                       \
    }

#endif /* PARA_ITEMS_H */
