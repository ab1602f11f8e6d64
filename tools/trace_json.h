/*
 * A small, strict JSON reader (RFC 8259) for the files para writes: its
 * Chrome trace-event JSON (runtime/trace.c) and its statistics
 * (para_stats_fprint). No dependencies; used by tools/para_trace.c and the
 * tests.
 *
 * The whole text is parsed into a tree of values that the caller frees
 * with para__json_free(). Strings are decoded to UTF-8 (\uXXXX escapes and
 * surrogate pairs included). Nesting deeper than PARA__JSON_MAX_DEPTH, bad
 * escapes, control characters in strings, trailing commas, comments,
 * leading zeros and anything after the top-level value are errors.
 */
#ifndef PARA_TRACE_JSON_H
#define PARA_TRACE_JSON_H

#include <stddef.h>

#define PARA__JSON_MAX_DEPTH 64

typedef enum para__json_type {
    PARA__JSON_NULL,
    PARA__JSON_BOOL,
    PARA__JSON_NUMBER,
    PARA__JSON_STRING,
    PARA__JSON_ARRAY,
    PARA__JSON_OBJECT,
} para__json_type;

typedef struct para__json para__json;
struct para__json {
    para__json_type type;
    double number;      /* NUMBER; BOOL: 0 or 1 */
    char *string;       /* STRING: decoded, NUL-terminated */
    size_t len;         /* STRING: bytes; ARRAY, OBJECT: children */
    para__json **items; /* ARRAY, OBJECT: the values */
    char **keys;        /* OBJECT: the keys, parallel to items */
};

/*
 * Parse @p len bytes at @p text. Returns the tree, or NULL with a message
 * naming the line and column in @p err (may be NULL).
 */
para__json *para__json_parse(const char *text, size_t len, char *err,
                             size_t err_len);
/* Free a tree; NULL is a no-op. */
void para__json_free(para__json *v);

/* The value of @p key in object @p obj (the first if repeated), or NULL if
 * @p obj is not an object or has no such key. */
const para__json *para__json_get(const para__json *obj, const char *key);
/* @p v's number, or @p def if @p v is not a number. */
double para__json_number(const para__json *v, double def);
/* @p v's string, or @p def if @p v is not a string. */
const char *para__json_string(const para__json *v, const char *def);

#endif /* PARA_TRACE_JSON_H */
