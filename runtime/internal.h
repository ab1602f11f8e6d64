/*
 * Every internal header of the runtime, for the modules at the top (run.c,
 * options.c) and for tests. Modules below include only the headers of
 * their own layer or lower (scripts/check-layers.sh, docs/ARCHITECTURE.md).
 */
#ifndef PARA_INTERNAL_H
#define PARA_INTERNAL_H

#include "batch.h"
#include "budget.h"
#include "deque.h"
#include "device_node.h"
#include "eventcount.h"
#include "footprint.h"
#include "graph.h"
#include "mpsc_stack.h"
#include "options.h"
#include "owned.h"
#include "para.h"
#include "policy.h"
#include "progress.h"
#include "records_pool.h"
#include "reduce_node.h"
#include "runctx.h"
#include "scheduler.h"
#include "stats.h"
#include "topology.h"
#include "trace.h"
#include "util.h"

#endif /* PARA_INTERNAL_H */
