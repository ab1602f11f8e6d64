/*
 * The one-expression pipeline builder (include/para/pipeline.h), built only
 * on the public graph API.
 *
 * Fragments form a tree. Leaves are NODE (a copied para_node_desc_t with its
 * own copy of the name) and RANGE (a splittable range source, which has no
 * descriptor form); inner fragments are CHAIN (stages in sequence) and FANOUT
 * (branches fed by the same output). para_pipeline_v() treats its arguments
 * as one top-level CHAIN.
 *
 * Building walks the tree once and returns, for every fragment, its entry
 * nodes (those its predecessor must feed) and its exit nodes (those that feed
 * its successor):
 *
 *   NODE, RANGE  entries = exits = { the node }
 *   CHAIN        entries = entries(first part), exits = exits(last part), and
 *                every exit of part i is connected to every entry of part i+1
 *   FANOUT       entries = union of the branches' entries,
 *                exits = union of the branches' exits
 *
 * Every leaf becomes its own graph node, so the sets never hold a node twice
 * and no edge is made twice.
 *
 * Position rule. A fragment is "at the head" if nothing precedes it: the
 * first part of the top-level chain, the first part of a chain at the head,
 * and every branch of a fan-out at the head (several sources may merge). A
 * leaf at the head must be a source, and a source must be at the head; any
 * other placement is PARA_EINVAL. Empty chains and fan-outs are PARA_EINVAL
 * too (they would silently cut the pipeline). These checks run on the tree
 * before the graph is created, so misuse costs no graph work; the misuse is
 * logged at warning level with the offending node's name.
 *
 * Ownership. Every constructor consumes the fragments it is given. A chain or
 * fan-out with a NULL part frees its other parts and returns NULL itself, so
 * an allocation failure anywhere propagates up as a NULL and the builder
 * reports PARA_ENOMEM after freeing the rest: callers need no error check
 * before the final call. Passing the same fragment twice is undefined (it
 * would be freed twice).
 *
 * Errors of para_graph_add*() / para_graph_connect() / para_graph_validate()
 * are logged (with para_graph_errmsg()) at warning level where they happen;
 * the graph is then destroyed and the code returned.
 *
 * Tests: tests/runtime/test_pipeline.c, tests/runtime/test_seed_graph.c.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "para.h"
#include "util.h"

enum pipe_kind {
    PIPE_NODE,
    PIPE_RANGE,
    PIPE_CHAIN,
    PIPE_FANOUT,
};

struct para_pipe {
    enum pipe_kind kind;
    char *name;            /* NODE, RANGE: owned copy (NULL if none given) */
    para_node_desc_t desc; /* NODE: desc.name points to name */
    uint64_t begin, end;   /* RANGE */
    size_t n;              /* CHAIN, FANOUT: number of parts */
    para_pipe_t *parts[];  /* CHAIN, FANOUT: owned, never NULL */
};

/* A growable set of graph nodes (owned by the graph, not by the set). */
struct node_set {
    para_node_t **v;
    size_t n, cap;
};

/* ---- fragments ----------------------------------------------------------- */

static char *copy_name(const char *name)
{
    size_t len = strlen(name) + 1;
    char *copy = malloc(len);
    if (copy != NULL)
        memcpy(copy, name, len);
    return copy;
}

static para_pipe_t *leaf_new(enum pipe_kind kind, const char *name)
{
    para_pipe_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->kind = kind;
    if (name != NULL) {
        p->name = copy_name(name);
        if (p->name == NULL) {
            free(p);
            return NULL;
        }
    }
    return p;
}

void para_pipe_free(para_pipe_t *pipe)
{
    if (pipe == NULL)
        return;
    for (size_t i = 0; i < pipe->n; i++)
        para_pipe_free(pipe->parts[i]);
    free(pipe->name);
    free(pipe);
}

para_pipe_t *para_pipe_node(const para_node_desc_t *desc)
{
    /* A NULL desc becomes an empty node: para_graph_add() (or the position
     * check) then reports it as PARA_EINVAL, not as a misleading ENOMEM. */
    para_pipe_t *p = leaf_new(PIPE_NODE, desc != NULL ? desc->name : NULL);
    if (p == NULL)
        return NULL;
    if (desc != NULL)
        p->desc = *desc;
    p->desc.name = p->name;
    return p;
}

para_pipe_t *para_pipe_range(const char *name, uint64_t begin, uint64_t end)
{
    para_pipe_t *p = leaf_new(PIPE_RANGE, name);
    if (p == NULL)
        return NULL;
    p->begin = begin;
    p->end = end;
    return p;
}

para_pipe_t *para_pipe_map(const char *name, size_t in_size, size_t out_size,
                           para_map_fn fn, void *ctx)
{
    return para_pipe_node(&(para_node_desc_t){
        .name = name,
        .in_size = in_size,
        .out_size = out_size,
        .ctx = ctx,
        .map = fn,
    });
}

para_pipe_t *para_pipe_sink(const char *name, size_t in_size, para_sink_fn fn,
                            void *ctx, unsigned flags)
{
    /* flags 0 means SERIAL for this convenience call (pipeline.h). */
    return para_pipe_node(&(para_node_desc_t){
        .name = name,
        .flags = flags != 0 ? flags : PARA_NODE_SERIAL,
        .in_size = in_size,
        .ctx = ctx,
        .sink = fn,
    });
}

/* CHAIN or FANOUT over @p parts, consumed. NULL if a part is NULL or memory
 * ran out, after freeing every part. parts == NULL counts as n == 0. */
static para_pipe_t *group_new(enum pipe_kind kind, para_pipe_t *const *parts,
                              size_t n)
{
    if (parts == NULL)
        n = 0;
    bool complete = n <= (SIZE_MAX - sizeof(para_pipe_t)) / sizeof(parts[0]);
    for (size_t i = 0; complete && i < n; i++)
        complete = parts[i] != NULL;

    para_pipe_t *p = NULL;
    if (complete)
        p = calloc(1, sizeof *p + n * sizeof p->parts[0]);
    if (p == NULL) {
        for (size_t i = 0; i < n; i++)
            para_pipe_free(parts[i]);
        return NULL;
    }
    p->kind = kind;
    p->n = n;
    if (n > 0)
        memcpy(p->parts, parts, n * sizeof p->parts[0]);
    return p;
}

para_pipe_t *para_pipe_chain_v(para_pipe_t *const *parts, size_t n)
{
    return group_new(PIPE_CHAIN, parts, n);
}

para_pipe_t *para_pipe_fanout_v(para_pipe_t *const *branches, size_t n)
{
    return group_new(PIPE_FANOUT, branches, n);
}

/* ---- checks -------------------------------------------------------------- */

static const char *pipe_name(const para_pipe_t *p)
{
    return p->name != NULL ? p->name : "(unnamed)";
}

static bool is_source(const para_pipe_t *p)
{
    return p->kind == PIPE_RANGE ||
           (p->kind == PIPE_NODE && p->desc.source != NULL);
}

/* The position rule and non-empty groups; see the comment at the top. */
static int check(const para_pipe_t *p, bool head)
{
    switch (p->kind) {
    case PIPE_NODE:
    case PIPE_RANGE:
        if (head && !is_source(p)) {
            para__log(1, "pipeline: must start with a source, not '%s'",
                      pipe_name(p));
            return PARA_EINVAL;
        }
        if (!head && is_source(p)) {
            para__log(1, "pipeline: source '%s' is not at the start",
                      pipe_name(p));
            return PARA_EINVAL;
        }
        return 0;
    case PIPE_CHAIN:
    case PIPE_FANOUT:
        if (p->n == 0) {
            para__log(1, "pipeline: empty %s",
                      p->kind == PIPE_CHAIN ? "chain" : "fan-out");
            return PARA_EINVAL;
        }
        for (size_t i = 0; i < p->n; i++) {
            int rc = check(p->parts[i],
                           p->kind == PIPE_CHAIN ? head && i == 0 : head);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    return PARA_EINVAL; /* not reached: every kind is handled above */
}

/* ---- building ------------------------------------------------------------ */

static int set_push(struct node_set *s, para_node_t *node)
{
    if (s->n == s->cap) {
        size_t cap = s->cap != 0 ? 2 * s->cap : 4;
        para_node_t **v = realloc(s->v, cap * sizeof *v);
        if (v == NULL)
            return PARA_ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = node;
    return 0;
}

static int set_append(struct node_set *dst, const struct node_set *src)
{
    for (size_t i = 0; i < src->n; i++) {
        int rc = set_push(dst, src->v[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void set_fini(struct node_set *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* Log a failed graph call with the graph's own message; returns @p rc. */
static int graph_failed(const para_graph_t *g, const char *call, int rc)
{
    para__log(1, "pipeline: %s: %s (%s)", call, para_graph_errmsg(g),
              para_err_name(rc));
    return rc;
}

static int build_chain(para_graph_t *g, para_pipe_t *const *parts, size_t n,
                       struct node_set *entries, struct node_set *exits);

/* Add @p p's nodes and inner edges to @p g; append its entry and exit nodes
 * to @p entries and @p exits. */
static int build(para_graph_t *g, const para_pipe_t *p,
                 struct node_set *entries, struct node_set *exits)
{
    para_node_t *node = NULL;
    int rc;

    switch (p->kind) {
    case PIPE_NODE:
        rc = para_graph_add(g, &p->desc, &node);
        if (rc != 0)
            return graph_failed(g, "para_graph_add", rc);
        break;
    case PIPE_RANGE:
        rc = para_graph_add_range(g, p->name, p->begin, p->end, &node);
        if (rc != 0)
            return graph_failed(g, "para_graph_add_range", rc);
        break;
    case PIPE_CHAIN:
        return build_chain(g, p->parts, p->n, entries, exits);
    case PIPE_FANOUT:
        for (size_t i = 0; i < p->n; i++) {
            rc = build(g, p->parts[i], entries, exits);
            if (rc != 0)
                return rc;
        }
        return 0;
    }

    rc = set_push(entries, node);
    if (rc == 0)
        rc = set_push(exits, node);
    return rc;
}

/* As build(), for the chain of @p n >= 1 parts. */
static int build_chain(para_graph_t *g, para_pipe_t *const *parts, size_t n,
                       struct node_set *entries, struct node_set *exits)
{
    struct node_set prev = {0}; /* exits of part i - 1 */
    struct node_set in = {0};   /* entries of part i */
    struct node_set out = {0};  /* exits of part i */

    int rc = build(g, parts[0], entries, &prev);
    if (rc != 0)
        goto fail;
    for (size_t i = 1; i < n; i++) {
        in.n = 0;
        out.n = 0;
        rc = build(g, parts[i], &in, &out);
        if (rc != 0)
            goto fail;
        for (size_t a = 0; a < prev.n; a++) {
            for (size_t b = 0; b < in.n; b++) {
                rc = para_graph_connect(g, prev.v[a], in.v[b]);
                if (rc != 0) {
                    graph_failed(g, "para_graph_connect", rc);
                    goto fail;
                }
            }
        }
        struct node_set swap = prev;
        prev = out;
        out = swap;
    }
    rc = set_append(exits, &prev);

fail:
    set_fini(&out);
    set_fini(&in);
    set_fini(&prev);
    return rc;
}

int para_pipeline_v(para_graph_t **out, para_pipe_t *const *parts, size_t n)
{
    para_graph_t *g = NULL;
    struct node_set entries = {0};
    struct node_set exits = {0};
    int rc;

    if (out != NULL)
        *out = NULL;
    if (out == NULL || parts == NULL || n == 0) {
        rc = PARA_EINVAL;
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        if (parts[i] == NULL) {
            rc = PARA_ENOMEM; /* a constructor ran out of memory */
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        rc = check(parts[i], i == 0);
        if (rc != 0)
            goto fail;
    }

    rc = para_graph_create(&g);
    if (rc != 0)
        goto fail;
    rc = build_chain(g, parts, n, &entries, &exits);
    if (rc != 0)
        goto fail;
    rc = para_graph_validate(g);
    if (rc != 0) {
        graph_failed(g, "para_graph_validate", rc);
        goto fail;
    }
    *out = g;
    g = NULL;

fail:
    set_fini(&exits);
    set_fini(&entries);
    para_graph_destroy(g);
    if (parts != NULL) {
        for (size_t i = 0; i < n; i++)
            para_pipe_free(parts[i]);
    }
    return rc;
}
