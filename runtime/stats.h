/*
 * Statistics (observation layer): para_runtime_stats(), per-worker and
 * per-device counters, the printers (stats.c).
 */
#ifndef PARA_STATS_H
#define PARA_STATS_H

#include "scheduler.h"

/* Statistics (stats.c): remember the counters at the start of a run, for
 * para_worker_stats() and para_device_stats(). Between runs only. */
void para__stats_run_begin(para_runtime_t *rt);
#endif /* PARA_STATS_H */
