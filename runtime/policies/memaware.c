/*
 * Policy "memaware" (the default): a byte budget (budget.h). Sources wait
 * while the bytes reserved by the families in flight would pass the
 * budget; only sources wait: consumers never do, so the batch an ORDERED
 * node waits for can always move. Between ready tasks, a worker takes
 * first the higher priority, then serial (stateful) nodes, then nodes
 * nearer the sinks: consumers free memory, and stateful nodes cannot be
 * parallelised and must not starve.
 */
#include "graph.h"
#include "policy.h"
#include "scheduler.h"

static int memaware_run_begin(para__run *run, void **state)
{
    *state = NULL;
    para__policy_order_successors(run->graph, true);
    return 0;
}

static void memaware_run_end(para__run *run, void *state)
{
    (void)run;
    (void)state;
}

static size_t memaware_admit(void *state, para__worker *w, para__run *run,
                             para_node_t *s, size_t want, para__family **family)
{
    (void)state;
    (void)w;
    return para__budget_admit(run, s->source_slot, want,
                              run->forced_batch_items != 0, family);
}

static bool memaware_sources_open(void *state, const para__run *run)
{
    (void)state;
    return para__budget_sources_open(run);
}

const para__policy para__policy_memaware = {
    .name = "memaware",
    .description =
        "a byte budget: sources wait while the bytes reserved by batches in "
        "flight would pass it; consumers, stateful nodes and nodes nearer the "
        "sinks first",
    .budgeted = true,
    .run_begin = memaware_run_begin,
    .run_end = memaware_run_end,
    .admit = memaware_admit,
    .sources_open = memaware_sources_open,
};
