/*
 * Scheduling policies: the hook interface, the registry, and helpers that
 * several policies share.
 *
 * This header is the interface the scheduler calls (scheduler layer); the
 * registry (policy.c) and the policies themselves sit a layer above.
 *
 * A policy is one file, runtime/policies/<name>.c, that defines one
 * `const para__policy para__policy_<name>` and is listed once in
 * PARA__POLICIES below. It decides three things and nothing else:
 *   - which ready successor a worker takes first (run_begin orders each
 *     node's successors: they are pushed in succ_order and popped LIFO, so
 *     the last is taken first);
 *   - whether a source may pull now, and how many items (admit; the cheap
 *     hint sources_open must agree with it, or idle workers spin instead of
 *     parking);
 *   - optionally, whether a worker pulls a source before its own queued
 *     tasks (produce_first), and what it learns when tasks are queued and
 *     started (task_queued / task_started).
 * A policy owns its state: run_begin may allocate it and return it through
 * *state; every other hook gets it back, and run_end frees it. No shared
 * struct carries a policy's fields, and the scheduler knows no policy by
 * name. A budgeted policy gets the byte budget (budget.h, run->budget) set
 * up by the run before run_begin; it admits through para__budget_admit().
 *
 * Hooks are called from every worker at once (admit, sources_open,
 * produce_first, task_*) and from the device host thread (sources_open):
 * they must be thread-safe, and cheap: task_queued and task_started run
 * once per task.
 *
 * Tests: tests/runtime/test_policy.c (each policy by name, budgets, fifo),
 * test_differential.c (random graphs under every registered policy).
 */
#ifndef PARA_POLICY_H
#define PARA_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "budget.h"
#include "runctx.h"

typedef struct para__worker para__worker;
typedef struct para_graph para_graph_t;

typedef struct para__policy {
    const char *name;
    const char *description; /* one line, for the unknown-policy message */
    bool budgeted;           /* the run keeps bytes under a budget (budget.h) */
    /* Before the run: order successors, allocate the policy's state (NULL
     * if it has none). 0 or PARA_ENOMEM (then run_end is still called). */
    int (*run_begin)(para__run *run, void **state);
    /* After the run (also after a failed run_begin): free the state. */
    void (*run_end)(para__run *run, void *state);
    /* May worker @p w pull source @p s now, and how many items (at most
     * @p want)? 0 holds the source back. *family: the new batch's family
     * (NULL for policies without a budget). */
    size_t (*admit)(void *state, para__worker *w, para__run *run,
                    para_node_t *s, size_t want, para__family **family);
    /* Could a source be admitted now? A cheap, possibly stale hint for
     * parking and for the device's flush decision; must not say yes where
     * admit() would refuse every source for as long as nothing changes. */
    bool (*sources_open)(void *state, const para__run *run);
    /* Optional (NULL): should @p w pull a source before its own queued
     * tasks? */
    bool (*produce_first)(void *state, para__worker *w, para__run *run);
    /* Optional (NULL): a task with @p items items was queued for node @p n
     * / started on it. */
    void (*task_queued)(void *state, const para_node_t *n, size_t items);
    void (*task_started)(void *state, const para_node_t *n, size_t items);
} para__policy;

/* The registry: one line per policy (X(name) defines para__policy_name in
 * runtime/policies/name.c). The first is the default. */
#define PARA__POLICIES(X)                                                      \
    X(memaware)                                                                \
    X(ws)                                                                      \
    X(dhondt)                                                                  \
    X(fifo)

#define PARA__POLICY_DECLARE(name)                                             \
    extern const para__policy para__policy_##name;
PARA__POLICIES(PARA__POLICY_DECLARE)
#undef PARA__POLICY_DECLARE

/* The policy named @p name, or NULL with the known ones listed in @p msg. */
const para__policy *para__policy_find(const char *name, char *msg,
                                      size_t msg_len);
/* The @p i-th registered policy, or NULL past the last (tests, docs). */
const para__policy *para__policy_at(size_t i);

/* Shared helpers. */
/* Order each node's successors: by priority, then (when @p memaware)
 * serial nodes and nodes nearer the sinks first. */
void para__policy_order_successors(para_graph_t *g, bool memaware);

/* Could a source be admitted now? (the policy's hint) */
static inline bool para__sources_open(const para__run *run)
{
    return run->policy->sources_open(run->policy_state, run);
}

#endif /* PARA_POLICY_H */
