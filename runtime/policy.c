/*
 * The policy registry and the helpers policies share; the hook interface
 * is documented in policy.h, the policies are runtime/policies/<name>.c.
 */
#include "policy.h"

#include <stdio.h>
#include <string.h>

#include "graph.h"

#define PARA__POLICY_ENTRY(name) &para__policy_##name,
static const para__policy *const registry[] = {
    PARA__POLICIES(PARA__POLICY_ENTRY)};
#undef PARA__POLICY_ENTRY

#define N_POLICIES (sizeof registry / sizeof registry[0])

const para__policy *para__policy_at(size_t i)
{
    return i < N_POLICIES ? registry[i] : NULL;
}

const para__policy *para__policy_find(const char *name, char *msg,
                                      size_t msg_len)
{
    for (size_t i = 0; i < N_POLICIES; i++)
        if (name != NULL && strcmp(name, registry[i]->name) == 0)
            return registry[i];
    int len = snprintf(msg, msg_len, "unknown policy '%s'; known policies:",
                       name != NULL ? name : "(null)");
    for (size_t i = 0; i < N_POLICIES && len >= 0 && (size_t)len < msg_len; i++)
        len += snprintf(msg + len, msg_len - (size_t)len, " %s (%s)%s",
                        registry[i]->name, registry[i]->description,
                        i + 1 < N_POLICIES ? "," : "");
    return NULL;
}

/* Successors are pushed in succ_order and popped LIFO: the last is taken
 * first. Insertion sort: nodes have few successors. */
void para__policy_order_successors(para_graph_t *g, bool memaware)
{
    for (unsigned i = 0; i < g->n_nodes; i++) {
        para_node_t *n = g->nodes[i];
        for (unsigned s = 0; s < n->n_succs; s++) {
            para_node_t *succ = n->succs[s];
            unsigned at = s;
            while (at > 0) {
                const para_node_t *prev = n->succs[n->succ_order[at - 1]];
                bool after = prev->priority > succ->priority;
                if (memaware && prev->priority == succ->priority)
                    after = prev->serial != succ->serial
                                ? prev->serial
                                : prev->depth_to_sink < succ->depth_to_sink;
                if (!after)
                    break;
                n->succ_order[at] = n->succ_order[at - 1];
                at--;
            }
            n->succ_order[at] = s;
        }
    }
}
