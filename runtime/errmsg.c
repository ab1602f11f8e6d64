/* Message boxes (errmsg.h). Tests: tests/runtime/test_errors.c. */
#include "errmsg.h"

#include <stdio.h>
#include <string.h>

void para__errmsg_init(para__errmsg *m)
{
    pthread_mutex_init(&m->lock, NULL);
    m->text[0] = '\0';
}

void para__errmsg_destroy(para__errmsg *m)
{
    pthread_mutex_destroy(&m->lock);
}

void para__errmsg_vset(para__errmsg *m, const char *fmt, va_list ap)
{
    char tmp[PARA__ERRMSG_LEN];
    vsnprintf(tmp, sizeof tmp, fmt, ap); /* format outside the lock */
    pthread_mutex_lock(&m->lock);
    memcpy(m->text, tmp, sizeof tmp);
    pthread_mutex_unlock(&m->lock);
}

void para__errmsg_set(para__errmsg *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    para__errmsg_vset(m, fmt, ap);
    va_end(ap);
}

char *para__errmsg_copy(para__errmsg *m, char *buf, size_t size)
{
    if (size == 0)
        return buf;
    pthread_mutex_lock(&m->lock);
    snprintf(buf, size, "%s", m->text);
    pthread_mutex_unlock(&m->lock);
    return buf;
}
