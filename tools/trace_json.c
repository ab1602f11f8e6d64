/*
 * A strict recursive-descent JSON reader (see trace_json.h).
 *
 * The grammar is RFC 8259's. Numbers are checked against it before strtod
 * converts them (so "01", "1.", ".5" and "+1" are refused as the RFC says).
 * Recursion is bounded by PARA__JSON_MAX_DEPTH, so a hostile file cannot
 * exhaust the stack.
 *
 * Tests: tests/runtime/test_trace.c (test_json_reader and every trace and
 * stats check).
 */
#include "trace_json.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *s, *end, *start;
    char *err;
    size_t err_len;
    bool failed;
} parser;

static void fail(parser *p, const char *what)
{
    if (p->failed)
        return;
    p->failed = true;
    if (p->err == NULL || p->err_len == 0)
        return;
    unsigned line = 1, col = 1;
    for (const char *c = p->start; c < p->s && c < p->end; c++) {
        if (*c == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    snprintf(p->err, p->err_len, "line %u, column %u: %s", line, col, what);
}

static void skip_ws(parser *p)
{
    while (p->s < p->end &&
           (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r'))
        p->s++;
}

static para__json *new_value(parser *p, para__json_type type)
{
    para__json *v = calloc(1, sizeof *v);
    if (v == NULL)
        fail(p, "out of memory");
    else
        v->type = type;
    return v;
}

static bool literal(parser *p, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, word, n) != 0)
        return false;
    p->s += n;
    return true;
}

static int hex4(parser *p)
{
    if (p->end - p->s < 4) {
        fail(p, "truncated \\u escape");
        return -1;
    }
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *p->s++;
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else {
            fail(p, "bad hex digit in \\u escape");
            return -1;
        }
    }
    return v;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* At the opening quote. Returns a malloc'd decoded string (its length in
 * *len), or NULL after fail(). A decoded string is never longer than its
 * source text, so one allocation of the source length suffices. */
static char *parse_string(parser *p, size_t *len)
{
    p->s++; /* opening quote */
    const char *q = p->s;
    while (q < p->end && *q != '"') {
        if (*q == '\\')
            q++;
        q++;
    }
    if (q >= p->end) {
        fail(p, "unterminated string");
        return NULL;
    }
    char *out = malloc((size_t)(q - p->s) + 1);
    if (out == NULL) {
        fail(p, "out of memory");
        return NULL;
    }
    size_t n = 0;
    while (*p->s != '"') {
        unsigned char c = (unsigned char)*p->s;
        if (c < 0x20) {
            fail(p, "control character in string");
            goto bad;
        }
        if (c != '\\') {
            out[n++] = (char)c;
            p->s++;
            continue;
        }
        p->s++;
        char e = *p->s++;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            out[n++] = e;
            break;
        case 'b':
            out[n++] = '\b';
            break;
        case 'f':
            out[n++] = '\f';
            break;
        case 'n':
            out[n++] = '\n';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'u': {
            int hi = hex4(p);
            if (hi < 0)
                goto bad;
            uint32_t cp = (uint32_t)hi;
            if (hi >= 0xD800 && hi <= 0xDBFF) {
                if (p->end - p->s < 6 || p->s[0] != '\\' || p->s[1] != 'u') {
                    fail(p, "unpaired surrogate in \\u escape");
                    goto bad;
                }
                p->s += 2;
                int lo = hex4(p);
                if (lo < 0)
                    goto bad;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    fail(p, "bad low surrogate in \\u escape");
                    goto bad;
                }
                cp = 0x10000 + (((uint32_t)hi - 0xD800) << 10) +
                     ((uint32_t)lo - 0xDC00);
            } else if (hi >= 0xDC00 && hi <= 0xDFFF) {
                fail(p, "unpaired surrogate in \\u escape");
                goto bad;
            }
            /* 6 (or 12) escape bytes always cover 1..4 output bytes. */
            n += put_utf8(out + n, cp);
            break;
        }
        default:
            p->s--;
            fail(p, "bad escape in string");
            goto bad;
        }
    }
    p->s++; /* closing quote */
    out[n] = '\0';
    *len = n;
    return out;
bad:
    free(out);
    return NULL;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static para__json *parse_number(parser *p)
{
    const char *b = p->s, *c = p->s;
    if (c < p->end && *c == '-')
        c++;
    if (c >= p->end || !is_digit(*c)) {
        fail(p, "bad number");
        return NULL;
    }
    if (*c == '0')
        c++;
    else
        while (c < p->end && is_digit(*c))
            c++;
    if (c < p->end && *c == '.') {
        c++;
        if (c >= p->end || !is_digit(*c)) {
            p->s = c;
            fail(p, "bad number: digits expected after '.'");
            return NULL;
        }
        while (c < p->end && is_digit(*c))
            c++;
    }
    if (c < p->end && (*c == 'e' || *c == 'E')) {
        c++;
        if (c < p->end && (*c == '+' || *c == '-'))
            c++;
        if (c >= p->end || !is_digit(*c)) {
            p->s = c;
            fail(p, "bad number: digits expected in exponent");
            return NULL;
        }
        while (c < p->end && is_digit(*c))
            c++;
    }
    char tmp[64];
    size_t n = (size_t)(c - b);
    char *buf = n < sizeof tmp ? tmp : malloc(n + 1);
    if (buf == NULL) {
        fail(p, "out of memory");
        return NULL;
    }
    memcpy(buf, b, n);
    buf[n] = '\0';
    para__json *v = new_value(p, PARA__JSON_NUMBER);
    if (v != NULL)
        v->number = strtod(buf, NULL);
    if (buf != tmp)
        free(buf);
    p->s = c;
    return v;
}

static bool append(parser *p, para__json *parent, size_t *cap,
                   para__json *child, char *key)
{
    if (parent->len == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        para__json **items = realloc(parent->items, ncap * sizeof *items);
        if (items == NULL) {
            fail(p, "out of memory");
            return false;
        }
        parent->items = items;
        if (parent->type == PARA__JSON_OBJECT) {
            char **keys = realloc(parent->keys, ncap * sizeof *keys);
            if (keys == NULL) {
                fail(p, "out of memory");
                return false;
            }
            parent->keys = keys;
        }
        *cap = ncap;
    }
    parent->items[parent->len] = child;
    if (parent->type == PARA__JSON_OBJECT)
        parent->keys[parent->len] = key;
    parent->len++;
    return true;
}

static para__json *parse_value(parser *p, unsigned depth);

static para__json *parse_container(parser *p, unsigned depth, bool object)
{
    para__json *v = new_value(p, object ? PARA__JSON_OBJECT : PARA__JSON_ARRAY);
    if (v == NULL)
        return NULL;
    size_t cap = 0;
    p->s++; /* '[' or '{' */
    skip_ws(p);
    char close = object ? '}' : ']';
    if (p->s < p->end && *p->s == close) {
        p->s++;
        return v;
    }
    for (;;) {
        char *key = NULL;
        if (object) {
            skip_ws(p);
            if (p->s >= p->end || *p->s != '"') {
                fail(p, "object key expected");
                goto bad;
            }
            size_t klen;
            key = parse_string(p, &klen);
            if (key == NULL)
                goto bad;
            skip_ws(p);
            if (p->s >= p->end || *p->s != ':') {
                free(key);
                fail(p, "':' expected after object key");
                goto bad;
            }
            p->s++;
        }
        para__json *child = parse_value(p, depth + 1);
        if (child == NULL || !append(p, v, &cap, child, key)) {
            free(key);
            para__json_free(child);
            goto bad;
        }
        skip_ws(p);
        if (p->s < p->end && *p->s == ',') {
            p->s++;
            continue;
        }
        if (p->s < p->end && *p->s == close) {
            p->s++;
            return v;
        }
        fail(p, object ? "',' or '}' expected" : "',' or ']' expected");
        goto bad;
    }
bad:
    para__json_free(v);
    return NULL;
}

static para__json *parse_value(parser *p, unsigned depth)
{
    if (depth > PARA__JSON_MAX_DEPTH) {
        fail(p, "nested too deeply");
        return NULL;
    }
    skip_ws(p);
    if (p->s >= p->end) {
        fail(p, "value expected");
        return NULL;
    }
    switch (*p->s) {
    case '{':
        return parse_container(p, depth, true);
    case '[':
        return parse_container(p, depth, false);
    case '"': {
        size_t len;
        char *s = parse_string(p, &len);
        if (s == NULL)
            return NULL;
        para__json *v = new_value(p, PARA__JSON_STRING);
        if (v == NULL) {
            free(s);
            return NULL;
        }
        v->string = s;
        v->len = len;
        return v;
    }
    case 't':
    case 'f':
    case 'n': {
        para__json_type type = *p->s == 'n' ? PARA__JSON_NULL : PARA__JSON_BOOL;
        double number = *p->s == 't';
        if (!literal(p, "true") && !literal(p, "false") &&
            !literal(p, "null")) {
            fail(p, "unknown literal");
            return NULL;
        }
        para__json *v = new_value(p, type);
        if (v != NULL)
            v->number = number;
        return v;
    }
    default:
        return parse_number(p);
    }
}

para__json *para__json_parse(const char *text, size_t len, char *err,
                             size_t err_len)
{
    parser p = {text, text + len, text, err, err_len, false};
    if (err != NULL && err_len > 0)
        err[0] = '\0';
    para__json *v = parse_value(&p, 0);
    if (v == NULL)
        return NULL;
    skip_ws(&p);
    if (p.s != p.end) {
        fail(&p, "text after the value");
        para__json_free(v);
        return NULL;
    }
    return v;
}

void para__json_free(para__json *v)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < v->len && v->items != NULL; i++) {
        para__json_free(v->items[i]);
        if (v->keys != NULL)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->string);
    free(v);
}

const para__json *para__json_get(const para__json *obj, const char *key)
{
    if (obj == NULL || obj->type != PARA__JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->len; i++)
        if (strcmp(obj->keys[i], key) == 0)
            return obj->items[i];
    return NULL;
}

double para__json_number(const para__json *v, double def)
{
    return v != NULL && v->type == PARA__JSON_NUMBER ? v->number : def;
}

const char *para__json_string(const para__json *v, const char *def)
{
    return v != NULL && v->type == PARA__JSON_STRING ? v->string : def;
}
