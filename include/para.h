/*
 * para: dataflow pipelines on every core (and, later, every OpenCL device).
 *
 * Include this header only. See README.md for a walk-through. The headers
 * compile as C11 and as C++ (the pipeline macros included).
 *
 * Naming scheme of the public API (every name below follows it):
 *
 *  - Prefixes. Functions and types start with para_, macros and enum
 *    constants with PARA_. Names with a double underscore (para__) are
 *    internal and never appear here.
 *  - Functions are para_<object>_<verb>: para_graph_create / _destroy
 *    (allocate and free; destroy accepts NULL), para_graph_add_<kind> (make a
 *    node), para_graph_connect, para_graph_validate, para_runtime_open_device,
 *    para_node_set_priority, para_block_retain / _release (reference counts),
 *    para_pipe_free. A query is a noun, without "get": para_runtime_workers(),
 *    para_node_name(), para_<object>_stats(), para_<object>_errmsg(). Calls
 *    about the calling thread name what they return: para_worker_index(),
 *    para_input_port(). para_run(), para_emit() and para_set_log_fn()
 *    (library-wide) are verbs without an object.
 *  - Types are para_<thing>_t, a typedef of struct para_<thing> (the
 *    *_stats structs are tagged para_<thing>_stats_s: a function has the
 *    plain name). Callbacks are para_<what>_fn; an attribute struct is
 *    para_<object>_attr_t, filled by para_<object>_attr_init().
 *  - Flags are bits of enum para_<object>_flags, named PARA_<OBJECT>_<FLAG>,
 *    passed as `unsigned flags`; 0 is the documented default.
 *  - Errors: a fallible call returns int, 0 or a negative PARA_E<NAME> code
 *    (para/errors.h), and is PARA_NODISCARD; para_strerror() and
 *    para_err_name() describe a code, para_<object>_errmsg() the details of
 *    the last failure (a copy per calling thread). Results come back through
 *    out-parameters, last (`para_graph_t **out`).
 *  - Booleans are bool.
 *  - Sizes: `<x>_size` is the bytes of one item inside a batch: in_size and
 *    out_size for a node's input and output, item_size where one size is
 *    both (filters, array sources, collect). item_bytes and owned_bytes are
 *    the bytes an item owns OUTSIDE its batch (for the memory budget).
 *    Counts of items are count / n / capacity.
 */
#ifndef PARA_H
#define PARA_H

#include "para/errors.h"
#include "para/graph.h"
#include "para/items.h"
#include "para/pipeline.h"
#include "para/records.h"
#include "para/reduce.h"
#include "para/runtime.h"
#include "para/version.h"

#endif /* PARA_H */
