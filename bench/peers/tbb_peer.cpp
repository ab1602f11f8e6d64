/*
 * peer-tbb: the workloads of the benchmark contract (BENCHMARKS.md) written with oneTBB.
 *
 *   w1 w2 w6 w7  tbb::parallel_pipeline built from the chain table of
 *                peer_common.c: a serial_in_order input filter emits the
 *                items, PARALLEL stages are filter_mode::parallel, SERIAL
 *                stages serial_out_of_order, ORDERED stages serial_in_order.
 *                Token limit: 8 per thread (para keeps 8 live batches per
 *                worker). Two variants:
 *                  tbb-pipe-item   one token per item
 *                  tbb-pipe-chunk  one token per chunk of chain->chunk items
 *   w3           tbb::flow::graph with the fan-out: input_node -> limiter
 *                -> broadcast to (pair -> diff) and (neg), both into one
 *                serial sink function_node. tbb-flow-item (one message per
 *                item) and tbb-flow-chunk (8192 items per message).
 *   lp           the Taskflow linear pipeline: parallel_pipeline with 8
 *                tokens, S filters of spin(x, PEER_LP_ITERS), the first
 *                serial_in_order, the others serial_in_order (--lp-mode
 *                serial) or parallel, then a serial sink.
 *
 * One-token-per-item variants of w1 and w3 (items of ~11 ns and ~2 ns) run
 * the first PEER_ITEM_CAP items only: their "items" field says so and their
 * rate is items/s as for every row.
 *
 * The thread count is fixed with tbb::global_control (max_allowed_parallelism)
 * and a task_arena of --threads slots.
 */
#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <tbb/flow_graph.h>
#include <tbb/global_control.h>
#include <tbb/parallel_pipeline.h>
#include <tbb/task_arena.h>

#include "peer_common.h"

namespace
{

struct chunk {
    size_t n;
    std::unique_ptr<peer_item_t[]> items;
};

tbb::filter_mode mode_of(enum peer_kind k)
{
    switch (k) {
    case PEER_PARALLEL:
        return tbb::filter_mode::parallel;
    case PEER_SERIAL:
        return tbb::filter_mode::serial_out_of_order;
    default:
        return tbb::filter_mode::serial_in_order;
    }
}

/* One run of a chain through parallel_pipeline, @p per chunk items per token
 * (1: the token is the item itself). */
void run_chain(const peer_chain_t *c, peer_state_t *st, size_t per,
               size_t tokens)
{
    peer_state_reset(st);
    uint64_t next = 0, n = st->n;
    int last = c->nstages - 1;
    if (per == 1) {
        tbb::filter<void, peer_item_t> f = tbb::make_filter<void, peer_item_t>(
            tbb::filter_mode::serial_in_order,
            [&](tbb::flow_control &fc) -> peer_item_t {
                if (next >= n) {
                    fc.stop();
                    return peer_item_t{};
                }
                peer_item_t it{next, next};
                next++;
                return it;
            });
        for (int s = 0; s < last; s++) {
            const peer_stage_t *stg = &c->stage[s];
            f = f & tbb::make_filter<peer_item_t, peer_item_t>(
                        mode_of(stg->kind), [stg, st](peer_item_t it) {
                            stg->fn(&it, 1, st);
                            return it;
                        });
        }
        const peer_stage_t *sink = &c->stage[last];
        tbb::parallel_pipeline(
            tokens, f & tbb::make_filter<peer_item_t, void>(
                            mode_of(sink->kind), [sink, st](peer_item_t it) {
                                sink->fn(&it, 1, st);
                            }));
        return;
    }
    using cp = chunk *;
    tbb::filter<void, cp> f = tbb::make_filter<void, cp>(
        tbb::filter_mode::serial_in_order, [&](tbb::flow_control &fc) -> cp {
            if (next >= n) {
                fc.stop();
                return nullptr;
            }
            size_t k = n - next < per ? (size_t)(n - next) : per;
            chunk *ch = new chunk{
                k, std::unique_ptr<peer_item_t[]>(new peer_item_t[k])};
            peer_source_fill(ch->items.get(), next, k);
            next += k;
            return ch;
        });
    for (int s = 0; s < last; s++) {
        const peer_stage_t *stg = &c->stage[s];
        f = f & tbb::make_filter<cp, cp>(mode_of(stg->kind), [stg, st](cp ch) {
                stg->fn(ch->items.get(), ch->n, st);
                return ch;
            });
    }
    const peer_stage_t *sink = &c->stage[last];
    tbb::parallel_pipeline(
        tokens,
        f & tbb::make_filter<cp, void>(mode_of(sink->kind), [sink, st](cp ch) {
            sink->fn(ch->items.get(), ch->n, st);
            delete ch;
        }));
}

struct chain_run {
    const peer_chain_t *chain;
    peer_state_t *st;
    size_t per, tokens;
    tbb::task_arena *arena;
};

int chain_timed(void *p, bench_row_t *row)
{
    auto *r = static_cast<chain_run *>(p);
    r->arena->execute([&] { run_chain(r->chain, r->st, r->per, r->tokens); });
    peer_state_check(r->st, row);
    return row->ok ? 0 : 1;
}

int bench_chain(const bench_cfg_t *cfg, const char *id, tbb::task_arena *arena)
{
    const peer_chain_t *c = peer_chain_find(id);
    auto st = std::make_unique<peer_state_t>();
    std::memset(st.get(), 0, sizeof *st);
    uint64_t full = cfg->quick ? c->quick_items : c->items;
    st->n = full;
    double seq = peer_run_seq(cfg, c, st.get());
    int failed = 0;
    struct {
        const char *variant;
        size_t per;
    } vs[] = {{"tbb-pipe-item", 1}, {"tbb-pipe-chunk", c->chunk}};
    for (auto &v : vs) {
        /* The reference over fewer items: the cap only shortens w1. */
        uint64_t n = v.per == 1 ? peer_item_cap(id, full) : full;
        double seq_n = seq;
        if (n != full) {
            st->n = n;
            c->seq(st.get());
            seq_n = seq * (double)n / (double)full;
        }
        bench_row_t row;
        bench_row_init(&row, id, v.variant, n, cfg->threads);
        row.seq_seconds = seq_n;
        chain_run r{c, st.get(), v.per, 8 * (size_t)cfg->threads, arena};
        bench_time(cfg, chain_timed, &r, &row);
        bench_print_row(&row);
        failed |= !row.ok;
        if (n != full) {
            st->n = full;
            c->seq(st.get());
        }
    }
    return failed;
}

/* ---- w3: the seed graph as a flow graph -------------------------------- */

struct w3_span {
    int64_t first;
    size_t n;
};
using w3_vec = std::shared_ptr<std::vector<int64_t>>;
using w3_pairs = std::shared_ptr<std::vector<peer_w3_pair_t>>;

struct w3_run {
    uint64_t n;
    size_t per; /* items per message */
    size_t tokens;
    tbb::task_arena *arena;
};

/*
 * The limiter bounds the messages in flight like a token count. Each source
 * message reaches the sink twice (once per branch); the serial sink sends
 * one decrement per two arrivals. Messages are spans of r->per items (one
 * item when per is 1), the stages the out-of-line functions of
 * peer_common.c.
 */
void w3_flow(w3_run *r, peer_w3_acc_t *acc)
{
    using namespace tbb::flow;
    graph g;
    uint64_t next = 0, arrivals = 0;
    input_node<w3_span> src(g, [&](tbb::flow_control &fc) -> w3_span {
        if (next >= r->n) {
            fc.stop();
            return w3_span{0, 0};
        }
        size_t k = r->n - next < r->per ? (size_t)(r->n - next) : r->per;
        w3_span s{(int64_t)next, k};
        next += k;
        return s;
    });
    limiter_node<w3_span> lim(g, r->tokens);
    broadcast_node<w3_span> fan(g);
    function_node<w3_span, w3_pairs> pair(g, unlimited, [](w3_span s) {
        auto v = std::make_shared<std::vector<peer_w3_pair_t>>(s.n);
        peer_w3_pair(s.first, s.n, v->data());
        return v;
    });
    function_node<w3_pairs, w3_vec> diff(g, unlimited, [](w3_pairs p) {
        auto v = std::make_shared<std::vector<int64_t>>(p->size());
        peer_w3_diff(p->data(), p->size(), v->data());
        return v;
    });
    function_node<w3_span, w3_vec> neg(g, unlimited, [](w3_span s) {
        auto v = std::make_shared<std::vector<int64_t>>(s.n);
        peer_w3_neg(s.first, s.n, v->data());
        return v;
    });
    using sink_t = multifunction_node<w3_vec, std::tuple<continue_msg>>;
    sink_t sink(g, serial, [&](w3_vec v, sink_t::output_ports_type &out) {
        peer_w3_sink(v->data(), v->size(), acc);
        if (++arrivals % 2 == 0)
            std::get<0>(out).try_put(continue_msg());
    });
    make_edge(src, lim);
    make_edge(lim, fan);
    make_edge(fan, pair);
    make_edge(pair, diff);
    make_edge(fan, neg);
    make_edge(diff, sink);
    make_edge(neg, sink);
    make_edge(output_port<0>(sink), lim.decrementer());
    src.activate();
    g.wait_for_all();
}

/* One message per item: plain values, no shared buffers. */
void w3_flow_item(w3_run *r, peer_w3_acc_t *acc)
{
    using namespace tbb::flow;
    graph g;
    uint64_t next = 0;
    input_node<int64_t> src(g, [&](tbb::flow_control &fc) -> int64_t {
        if (next >= r->n) {
            fc.stop();
            return 0;
        }
        return (int64_t)next++;
    });
    limiter_node<int64_t> lim(g, r->tokens);
    broadcast_node<int64_t> fan(g);
    function_node<int64_t, peer_w3_pair_t> pair(g, unlimited, [](int64_t x) {
        peer_w3_pair_t p;
        peer_w3_pair(x, 1, &p);
        return p;
    });
    function_node<peer_w3_pair_t, int64_t> diff(g, unlimited,
                                                [](peer_w3_pair_t p) {
                                                    int64_t y;
                                                    peer_w3_diff(&p, 1, &y);
                                                    return y;
                                                });
    function_node<int64_t, int64_t> neg(g, unlimited, [](int64_t x) {
        int64_t y;
        peer_w3_neg(x, 1, &y);
        return y;
    });
    using sink_t = multifunction_node<int64_t, std::tuple<continue_msg>>;
    sink_t sink(g, serial, [&](int64_t y, sink_t::output_ports_type &out) {
        peer_w3_sink(&y, 1, acc);
        if (acc->count % 2 == 0)
            std::get<0>(out).try_put(continue_msg());
    });
    make_edge(src, lim);
    make_edge(lim, fan);
    make_edge(fan, pair);
    make_edge(pair, diff);
    make_edge(fan, neg);
    make_edge(diff, sink);
    make_edge(neg, sink);
    make_edge(output_port<0>(sink), lim.decrementer());
    src.activate();
    g.wait_for_all();
}

int w3_timed_chunk(void *p, bench_row_t *row)
{
    auto *r = static_cast<w3_run *>(p);
    peer_w3_acc_t acc{};
    r->arena->execute([&] { w3_flow(r, &acc); });
    peer_w3_check(r->n, &acc, row);
    return row->ok ? 0 : 1;
}

int w3_timed_item(void *p, bench_row_t *row)
{
    auto *r = static_cast<w3_run *>(p);
    peer_w3_acc_t acc{};
    r->arena->execute([&] { w3_flow_item(r, &acc); });
    peer_w3_check(r->n, &acc, row);
    return row->ok ? 0 : 1;
}

int bench_w3(const bench_cfg_t *cfg, tbb::task_arena *arena)
{
    uint64_t n = cfg->quick ? PEER_W3_QUICK : PEER_W3_ITEMS;
    int failed = 0;
    w3_run item{peer_item_cap("w3", n), 1, 8 * (size_t)cfg->threads, arena};
    bench_row_t row;
    bench_row_init(&row, "w3", "tbb-flow-item", item.n, cfg->threads);
    bench_time(cfg, w3_timed_item, &item, &row);
    bench_print_row(&row);
    failed |= !row.ok;
    w3_run chunked{n, 8192, 8 * (size_t)cfg->threads, arena};
    bench_row_init(&row, "w3", "tbb-flow-chunk", n, cfg->threads);
    bench_time(cfg, w3_timed_chunk, &chunked, &row);
    bench_print_row(&row);
    failed |= !row.ok;
    return failed;
}

/* ---- lp: the Taskflow linear pipeline ---------------------------------- */

struct lp_run {
    const peer_opts_t *o;
    tbb::task_arena *arena;
};

int lp_timed(void *p, bench_row_t *row)
{
    auto *r = static_cast<lp_run *>(p);
    const peer_opts_t *o = r->o;
    uint64_t next = 0, sum = 0, count = 0;
    auto stage_mode = o->lp_parallel ? tbb::filter_mode::parallel
                                     : tbb::filter_mode::serial_in_order;
    r->arena->execute([&] {
        /* Stage 1 is the input filter: it makes the item and does its work
         * (TBB's input filter is always serial). */
        tbb::filter<void, uint64_t> f = tbb::make_filter<void, uint64_t>(
            tbb::filter_mode::serial_in_order,
            [&](tbb::flow_control &fc) -> uint64_t {
                if (next >= o->lp_items) {
                    fc.stop();
                    return 0;
                }
                return spin(next++, PEER_LP_ITERS);
            });
        for (unsigned s = 1; s < o->lp_stages; s++)
            f = f & tbb::make_filter<uint64_t, uint64_t>(
                        stage_mode,
                        [](uint64_t x) { return spin(x, PEER_LP_ITERS); });
        tbb::parallel_pipeline(
            PEER_LP_TOKENS,
            f & tbb::make_filter<uint64_t, void>(
                    tbb::filter_mode::serial_out_of_order, [&](uint64_t x) {
                        sum += x;
                        count++;
                    }));
    });
    if (count != o->lp_items)
        bench_fail(row, "sink got %llu items, expected %llu",
                   (unsigned long long)count, (unsigned long long)o->lp_items);
    else if (sum != o->lp_expect)
        bench_fail(row, "sum %llu, expected %llu", (unsigned long long)sum,
                   (unsigned long long)o->lp_expect);
    return row->ok ? 0 : 1;
}

} // namespace

int main(int argc, char **argv)
{
    peer_opts_t o;
    int rc = peer_parse_args("peer-tbb", argc, argv, &o);
    if (rc != 0)
        return rc;
    if (o.selected[4]) {
        fprintf(stderr, "peer-tbb: no w4 (a device workload: peer-starpu "
                        "has it)\n");
        return 2;
    }
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                           o.threads);
    tbb::task_arena arena((int)o.threads);
    bench_cfg_t cfg{};
    cfg.threads = o.threads;
    cfg.repeat = o.repeat;
    cfg.quick = o.quick;
    int failed = 0;
    for (int k = 1; k <= PEER_MAX_WORKLOAD; k++) {
        if (!o.selected[k])
            continue;
        std::string id = "w" + std::to_string(k);
        if (k == 3)
            failed |= bench_w3(&cfg, &arena);
        else
            failed |= bench_chain(&cfg, id.c_str(), &arena);
    }
    if (o.selected[0]) {
        lp_run r{&o, &arena};
        bench_row_t row;
        bench_row_init(&row, peer_lp_name(o.lp_stages, o.lp_parallel), "tbb",
                       o.lp_items, o.threads);
        bench_time(&cfg, lp_timed, &r, &row);
        bench_print_row(&row);
        failed |= !row.ok;
    }
    return failed ? 1 : 0;
}
