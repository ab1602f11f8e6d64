/*
 * A message box: the detailed message of an object's last failure (the
 * runtime's, a graph's), written by the thread that failed and read by any
 * thread as a copy.
 *
 * Contract: writers set the text under the box's mutex; readers on other
 * threads copy it under the same mutex into a buffer of their own
 * (para__errmsg_copy()), so a read never sees a message half written. The
 * mutex gives the ordering (lock/unlock are acquire/release); no atomics.
 * The thread that wrote may read m->text directly (para__errmsg_text()):
 * only it writes during the call that failed.
 *
 * The public para_runtime_errmsg() and para_graph_errmsg() return such a
 * copy, kept in a buffer per calling thread.
 */
#ifndef PARA__ERRMSG_H
#define PARA__ERRMSG_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>

#define PARA__ERRMSG_LEN 1024

typedef struct para__errmsg {
    pthread_mutex_t lock;
    char text[PARA__ERRMSG_LEN];
} para__errmsg;

/* Empty message. */
void para__errmsg_init(para__errmsg *m);
void para__errmsg_destroy(para__errmsg *m);
/* Replace the message (printf-style). */
void para__errmsg_set(para__errmsg *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void para__errmsg_vset(para__errmsg *m, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* The writer's own view (see the contract above). */
static inline const char *para__errmsg_text(const para__errmsg *m)
{
    return m->text;
}
/* Copy the message into @p buf (@p size bytes, NUL-terminated); returns
 * @p buf. Any thread. */
char *para__errmsg_copy(para__errmsg *m, char *buf, size_t size);

#endif /* PARA__ERRMSG_H */
