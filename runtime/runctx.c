/*
 * The run context; see runctx.h for the units, the run's flags and their
 * memory orders.
 */
#include "runctx.h"

#include <stdarg.h>
#include <stdio.h>

void para__notify_all(para__wake *wk)
{
    para__eventcount_notify_all(&wk->park);
    if (wk->also != NULL)
        wk->also(wk->also_arg);
}

void para__run_finish(para__run *run)
{
    /* Read before `done` is set: a thread that is not one of the run's
     * workers (runtime/mpi's communication thread) may give back the last
     * unit, and once `done` is set the workers may leave and para_run()
     * free the run; only the runtime's wake-up state outlives it. */
    para__wake *wk = run->wake;
    /* release: pairs with the acquire loads of done (runctx.h). */
    atomic_store_explicit(&run->done, true, memory_order_release);
    para__notify_all(wk);
}

void para__fail_run(para__worker *w, para__run *run, int err, const char *fmt,
                    ...)
{
    int expected = 0;
    /* acq_rel: see runctx.h (status). */
    if (atomic_compare_exchange_strong_explicit(&run->status, &expected, err,
                                                memory_order_acq_rel,
                                                memory_order_relaxed)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(run->errmsg, sizeof run->errmsg, fmt, ap);
        va_end(ap);
    }
    /* seq_cst: the aborter's half of the Dekker pattern (runctx.h). */
    atomic_store_explicit(&run->aborting, true, memory_order_seq_cst);
    if (run->on_abort != NULL)
        run->on_abort(w, run);
    para__notify_all(run->wake);
}

void para__inject_task(para__run *run, para__task *t)
{
    /* seq_cst push (mpsc_stack.h): publishes the task; the notify's RMW
     * orders it before a parking worker's re-check (eventcount.h). */
    para__task_stack_push(&run->wake->inject, t);
    para__notify(run->wake, 1);
}
