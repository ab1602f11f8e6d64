/*
 * Policy "fifo": the oldest source batch first, for the lowest latency per
 * item. A source may pull only while fewer batches live than there are
 * workers, so a new batch never queues behind older ones: the batches in
 * flight are the ones being worked on, each worker finishes what it holds
 * (consumers before sources, thieves take the oldest task) before a source
 * starts another, and an item waits for little but its own batch. Between
 * ready successors, serial nodes and nodes nearer the sinks first (a batch
 * is carried to its sink before its siblings start). No byte budget: the
 * batch limit bounds memory to a few batches per worker. Throughput is
 * lower than ws or memaware where a stage's tasks are too short to keep
 * every worker busy with one batch each.
 */
#include "graph.h"
#include "policy.h"
#include "scheduler.h"

static int fifo_run_begin(para__run *run, void **state)
{
    *state = NULL;
    para__policy_order_successors(run->graph, true);
    return 0;
}

static void fifo_run_end(para__run *run, void *state)
{
    (void)run;
    (void)state;
}

static bool fifo_room(const para__run *run)
{
    /* relaxed: a gate; a stale count admits or holds one pull. */
    return atomic_load_explicit(&((para__run *)run)->live_batches,
                                memory_order_relaxed) <
           (int64_t)run->rt->n_workers;
}

static size_t fifo_admit(void *state, para__worker *w, para__run *run,
                         para_node_t *s, size_t want, para__family **family)
{
    (void)state;
    (void)w;
    (void)s;
    *family = NULL;
    return fifo_room(run) ? want : 0;
}

static bool fifo_sources_open(void *state, const para__run *run)
{
    (void)state;
    return fifo_room(run);
}

const para__policy para__policy_fifo = {
    .name = "fifo",
    .description = "oldest source batch first: a source pulls only while "
                   "fewer batches live than workers; lowest latency per item",
    .run_begin = fifo_run_begin,
    .run_end = fifo_run_end,
    .admit = fifo_admit,
    .sources_open = fifo_sources_open,
};
