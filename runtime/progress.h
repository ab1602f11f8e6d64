/*
 * The progress line (observation layer, progress.c): a line on stderr for
 * long runs, updated while para_run() waits for the workers.
 */
#ifndef PARA_PROGRESS_H
#define PARA_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "scheduler.h"

bool para__progress_mode_valid(const char *mode);
void para__progress_init(para_runtime_t *rt, const char *mode);
void para__progress_begin(para_runtime_t *rt, uint64_t t0);
/* Wait on rt->done_cond (rt->lock held), printing progress while waiting
 * when it is enabled; may drop and retake rt->lock. */
void para__progress_wait(para_runtime_t *rt);
/* Finish the line (with the run's average rate) if one was printed. */
void para__progress_end(para_runtime_t *rt, const para__run *run);

#endif /* PARA_PROGRESS_H */
