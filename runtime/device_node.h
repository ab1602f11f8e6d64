/*
 * The device host side (device_node.c): kernel nodes on a device, one host
 * thread per device, what the runtime and the scheduler ask of it. The
 * scheduler reaches route and note_cpu through rt->offload (scheduler.h),
 * set by para_runtime_create().
 */
#ifndef PARA_DEVICE_NODE_H
#define PARA_DEVICE_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "runctx.h"
#include "scheduler.h"

/* Devices (device_node.c). */
/* Before a run: open the device if the graph has kernel nodes, create
 * their kernels and decide their placement. 0 or PARA_E* (message in
 * msg). */
int para__device_prepare_run(para_runtime_t *rt, para_graph_t *g, char *msg,
                             size_t msg_len);
/* After a run: release the kernels of the run. */
void para__device_finish_run(para_runtime_t *rt, para_graph_t *g);
/* Open the device now if not tried yet; 0 or PARA_E* (msg). */
int para__device_ensure(para_runtime_t *rt, char *msg, size_t msg_len);
/* Worker side: take task @p t of a kernel node if it should run on the
 * device (true), or leave it to the caller's CPU (false). */
bool para__device_route(para__worker *w, para__run *run, para__task *t);
/* Worker side: a MIXED node ran @p items on the CPU in @p ns. */
void para__device_note_cpu(para_node_t *n, size_t items, uint64_t ns);
/* Wake the device host thread (run end, abort). */
void para__device_wake(para_runtime_t *rt);
/* Stop the host thread and close the device (runtime destroy). */
void para__device_shutdown(para_runtime_t *rt);
/* The device budget of the memory-aware policy for the coming run: the
 * bytes batches may keep in device memory (device-resident edges), the
 * smallest over the devices that keep any: PARA_DEVICE_BUDGET, else half
 * of the device's memory; 0 when no device keeps batches. */
uint64_t para__device_budget(const para_runtime_t *rt);
/* Whether the coming run keeps kernel outputs on the device for kernel-only
 * successors without a copy on the host (device-resident edges: one device
 * that keeps them, no MPI ranks); the footprints (footprint.h) then count
 * such outputs on the device budget only. */
bool para__device_keeps_outputs(const para_runtime_t *rt);
/* Add the device counters to @p st. */
void para__device_stats(const para_runtime_t *rt, para_stats_t *st);

#endif /* PARA_DEVICE_NODE_H */
