/*
 * Policy "ws": plain work stealing. Local LIFO, steal FIFO, consumers
 * before sources, successors by priority; sources are held back while
 * run->max_batches batches live (8 per worker unless set). No byte budget.
 */
#include "graph.h"
#include "policy.h"
#include "scheduler.h"

static int ws_run_begin(para__run *run, void **state)
{
    *state = NULL;
    para__policy_order_successors(run->graph, false);
    return 0;
}

static void ws_run_end(para__run *run, void *state)
{
    (void)run;
    (void)state;
}

static size_t ws_admit(void *state, para__worker *w, para__run *run,
                       para_node_t *s, size_t want, para__family **family)
{
    (void)state;
    (void)w;
    (void)s;
    *family = NULL;
    return para__batches_below_limit(run) ? want : 0;
}

static bool ws_sources_open(void *state, const para__run *run)
{
    (void)state;
    return para__batches_below_limit(run);
}

const para__policy para__policy_ws = {
    .name = "ws",
    .description =
        "work stealing: local LIFO, steal FIFO, consumers before sources",
    .run_begin = ws_run_begin,
    .run_end = ws_run_end,
    .admit = ws_admit,
    .sources_open = ws_sources_open,
};
