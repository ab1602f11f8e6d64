/*
 * Placement of nodes on MPI ranks: para_mpi_place(), the PARA_MPI_PLACE
 * override, and the checks a placement must pass before a run (see
 * mpi_internal.h). No MPI calls here.
 *
 * Tests: tests/mpi/test_mpi.c (placement errors, the override).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mpi_internal.h"

int para_mpi_place(para_node_t *node, int rank)
{
    if (node == NULL || rank < PARA_MPI_ALL_RANKS)
        return PARA_EINVAL;
    /* relaxed: a builder call; the graph is not shared with a run. */
    if (atomic_load_explicit(&node->graph->running, memory_order_relaxed))
        return PARA_EBUSY;
    node->mpi_rank = rank;
    return 0;
}

int para_mpi_node_rank(const para_node_t *node)
{
    return node != NULL ? node->mpi_rank : 0;
}

int para_mpi_node_codec(para_node_t *node, para_mpi_pack_fn pack,
                        para_mpi_unpack_fn unpack)
{
    if (node == NULL || (pack == NULL) != (unpack == NULL) ||
        (pack != NULL && node->release == NULL))
        return PARA_EINVAL;
    /* relaxed: a builder call, as para_mpi_place(). */
    if (atomic_load_explicit(&node->graph->running, memory_order_relaxed))
        return PARA_EBUSY;
    node->mpi_pack = pack;
    node->mpi_unpack = unpack;
    return 0;
}

/* A node whose output items may own memory that cannot be sent to another
 * rank: @p n itself (owned items without a pack/unpack pair, or bytes
 * declared without a release hook), or, for a filter, such a node
 * upstream whose items it forwards. NULL if its items can cross. */
static const para_node_t *unsendable_owner(const para_node_t *n)
{
    if (n->release != NULL)
        return n->mpi_pack != NULL ? NULL : n;
    if (n->item_bytes != 0 || n->owned_bytes != NULL)
        return n;
    if (n->kind == PARA__KIND_FILTER)
        for (unsigned j = 0; j < n->n_preds; j++) {
            const para_node_t *o = unsendable_owner(n->preds[j]);
            if (o != NULL)
                return o;
        }
    return NULL;
}

static int fail(char *msg, size_t len, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *msg, size_t len, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, len, fmt, ap);
    va_end(ap);
    return err;
}

/* Apply "name=RANK|all,..." to place[]. */
static int apply_override(const para_graph_t *g, int *place, const char *spec,
                          char *msg, size_t len)
{
    char *copy = strdup(spec);
    if (copy == NULL)
        return fail(msg, len, PARA_ENOMEM, "out of memory");
    int rc = 0;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL && rc == 0;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strrchr(tok, '=');
        if (eq == NULL || eq == tok || eq[1] == '\0') {
            rc = fail(msg, len, PARA_EINVAL,
                      "PARA_MPI_PLACE: '%s' is not name=RANK or name=all", tok);
            break;
        }
        *eq = '\0';
        int rank;
        if (strcmp(eq + 1, "all") == 0) {
            rank = PARA_MPI_ALL_RANKS;
        } else {
            char *end;
            long v = strtol(eq + 1, &end, 10);
            if (*end != '\0' || v < 0 || v > 1000000) {
                rc =
                    fail(msg, len, PARA_EINVAL,
                         "PARA_MPI_PLACE: bad rank '%s' for '%s'", eq + 1, tok);
                break;
            }
            rank = (int)v;
        }
        bool found = false;
        for (unsigned i = 0; i < g->n_nodes; i++)
            if (strcmp(g->nodes[i]->name, tok) == 0) {
                place[i] = rank;
                found = true;
            }
        if (!found)
            rc = fail(msg, len, PARA_EINVAL,
                      "PARA_MPI_PLACE: no node named '%s'", tok);
    }
    free(copy);
    return rc;
}

int para__mpi_placement(const para_graph_t *g, int ranks, int *place, char *msg,
                        size_t len)
{
    for (unsigned i = 0; i < g->n_nodes; i++)
        place[i] = g->nodes[i]->mpi_rank;
    const char *spec = getenv("PARA_MPI_PLACE");
    if (spec != NULL && *spec != '\0') {
        int rc = apply_override(g, place, spec, msg, len);
        if (rc != 0)
            return rc;
    }
    for (unsigned i = 0; i < g->n_nodes; i++) {
        const para_node_t *n = g->nodes[i];
        if (place[i] >= ranks)
            return fail(msg, len, PARA_EINVAL,
                        "node '%s' is placed on rank %d, but the communicator "
                        "has %d rank%s",
                        n->name, place[i], ranks, ranks == 1 ? "" : "s");
        if (place[i] == PARA_MPI_ALL_RANKS && para__is_source(n))
            return fail(msg, len, PARA_EINVAL,
                        "node '%s' is a source: it runs on one rank, not on "
                        "every rank",
                        n->name);
        if (place[i] == PARA_MPI_ALL_RANKS && n->serial)
            return fail(msg, len, PARA_EINVAL,
                        "node '%s' is SERIAL or ORDERED: it runs on one rank, "
                        "not on every rank",
                        n->name);
    }
    /* Owned items point into this process's memory: they cross only
     * packed, by their owner's pack/unpack pair. */
    for (unsigned i = 0; i < g->n_nodes; i++) {
        const para_node_t *n = g->nodes[i];
        const para_node_t *o = unsendable_owner(n);
        if (o == NULL)
            continue;
        for (unsigned k = 0; k < n->n_succs; k++) {
            const para_node_t *s = n->succs[k];
            if (!para__mpi_edge_crosses(place[n->index], place[s->index]))
                continue;
            if (o->release == NULL)
                return fail(msg, len, PARA_EINVAL,
                            "edge '%s' -> '%s' crosses ranks, but the items "
                            "of '%s' own memory outside their batch "
                            "(owned_bytes or item_bytes) without a release "
                            "hook, so they cannot be packed for another "
                            "rank: place both nodes on the same rank",
                            n->name, s->name, o->name);
            return fail(msg, len, PARA_EINVAL,
                        "edge '%s' -> '%s' crosses ranks, but the items of "
                        "'%s' own memory outside their batch and '%s' has no "
                        "pack/unpack pair (para_mpi_node_codec()): give it "
                        "one, or place both nodes on the same rank",
                        n->name, s->name, o->name, o->name);
        }
    }
    return 0;
}

bool para__mpi_edge_crosses(int from, int to)
{
    if (from == PARA_MPI_ALL_RANKS && to == PARA_MPI_ALL_RANKS)
        return false; /* a replicated stage feeds its own rank's copy */
    return from != to || from == PARA_MPI_ALL_RANKS;
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s)
        return PARA_EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        end++;
        break;
    case 'm':
    case 'M':
        shift = 20;
        end++;
        break;
    case 'g':
    case 'G':
        shift = 30;
        end++;
        break;
    default:
        break;
    }
    if (*end != '\0' || v > (UINT64_MAX >> shift))
        return PARA_EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

uint64_t para__mpi_window(const para_runtime_t *rt, int ranks)
{
    const char *env = getenv("PARA_MPI_WINDOW");
    uint64_t w;
    if (env != NULL && *env != '\0') {
        if (parse_size(env, &w) == 0 && w > 0)
            return w;
        para__log(1, "PARA_MPI_WINDOW='%s' does not parse; using the default",
                  env);
    }
    uint64_t budget = rt->attr.mem_budget;
    if (budget == 0) {
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        budget = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page / 8
                                       : (uint64_t)1 << 30;
    }
    if (budget == SIZE_MAX)
        budget = UINT64_MAX;
    uint64_t others = ranks > 1 ? (uint64_t)(ranks - 1) : 1;
    w = budget / (4 * others);
    return PARA_MAX(PARA_MIN(w, (uint64_t)64 << 20), (uint64_t)64 << 10);
}

double para__mpi_timeout_s(void)
{
    const char *env = getenv("PARA_MPI_TIMEOUT");
    if (env != NULL && *env != '\0') {
        char *end;
        double v = strtod(env, &end);
        if (*end == '\0' && v > 0)
            return v;
        para__log(1, "PARA_MPI_TIMEOUT='%s' does not parse; using 60", env);
    }
    return 60.0;
}

uint64_t para__mpi_env_uint(const char *name, uint64_t def, uint64_t min,
                            uint64_t max)
{
    const char *env = getenv(name);
    if (env == NULL || *env == '\0')
        return def;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(env, &end, 10);
    if (errno != 0 || end == env || *end != '\0' || *env == '-' || v < min ||
        v > max) {
        para__log(1, "%s='%s' is not an integer in %llu..%llu; using %llu",
                  name, env, (unsigned long long)min, (unsigned long long)max,
                  (unsigned long long)def);
        return def;
    }
    return (uint64_t)v;
}
