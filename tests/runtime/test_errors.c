/*
 * Tests for runtime/errors.c, runtime/options.c and the version calls:
 * the error table (para_strerror / para_err_name, generated from the
 * PARA_ERRNO_MAP X-macro, so this test iterates the same macro), the version
 * checks, para_runtime_attr_init() defaults and PARA_* environment overrides,
 * and the argument checks of para_runtime_create() and friends.
 *
 * Environment variables are process-global, so every test that sets one
 * unsets it again (clean_env()) before it asserts anything that could fail.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* setenv, unsetenv */
#endif

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "para.h"

/* Every option variable documented in include/para/runtime.h. */
static const char *const option_vars[] = {
    "PARA_WORKERS",    "PARA_POLICY",         "PARA_BATCH",
    "PARA_BATCH_US",   "PARA_MAX_BATCHES",    "PARA_VERBOSE",
    "PARA_MEM_BUDGET", "PARA_DEVICE",         "PARA_DEVICE_FALLBACK",
    "PARA_PIN",        "PARA_TRACE",          "PARA_TRACE_EVENTS",
    "PARA_PROGRESS",   "PARA_CL_TRACE",       "PARA_CACHE_DIR",
    "PARA_MIXED",      "PARA_DEVICE_TIMEOUT", "PARA_RESIDENT",
    "PARA_PINNED",     "PARA_DEVICE_BUDGET",  "PARA_FUSE",
    "PARA_CHAIN",
};

static void clean_env(void)
{
    for (size_t i = 0; i < sizeof option_vars / sizeof option_vars[0]; i++)
        unsetenv(option_vars[i]);
}

/* Log capture: keeps the test output quiet and lets tests check that a
 * warning was issued. */
static int log_count;
static int log_min_level;
static char log_last[1024]; /* the last message */

static void capture_log(int level, const char *msg, void *arg)
{
    (void)arg;
    if (log_count == 0 || level < log_min_level)
        log_min_level = level;
    log_count++;
    snprintf(log_last, sizeof log_last, "%s", msg);
}

static int setup(void **state)
{
    (void)state;
    clean_env();
    log_count = 0;
    log_min_level = INT_MAX;
    para_set_log_fn(capture_log, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    clean_env();
    para_set_log_fn(NULL, NULL);
    return 0;
}

/* ---- error table ------------------------------------------------------- */

struct err_entry {
    int code;
    const char *name; /* "PARA_EINVAL" */
    const char *msg;
};

#define ENTRY(name, value, msg) {(value), "PARA_" #name, (msg)},
static const struct err_entry err_table[] = {PARA_ERRNO_MAP(ENTRY)};
#undef ENTRY
#define N_ERRS (sizeof err_table / sizeof err_table[0])

static void test_err_table_every_code(void **state)
{
    (void)state;
    assert_true(N_ERRS >= 18);
    for (size_t i = 0; i < N_ERRS; i++) {
        const struct err_entry *e = &err_table[i];
        assert_true(e->code < 0);
        const char *name = para_err_name(e->code);
        const char *msg = para_strerror(e->code);
        assert_non_null(name);
        assert_non_null(msg);
        assert_string_equal(name, e->name);
        assert_string_equal(msg, e->msg);
        /* The same static string every time. */
        assert_ptr_equal(para_err_name(e->code), name);
        assert_ptr_equal(para_strerror(e->code), msg);
    }
}

static void test_err_codes_distinct(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_ERRS; i++)
        for (size_t j = i + 1; j < N_ERRS; j++) {
            assert_int_not_equal(err_table[i].code, err_table[j].code);
            assert_string_not_equal(err_table[i].name, err_table[j].name);
        }
    /* The enum follows the table. */
    assert_int_equal(PARA_EINVAL, -EINVAL);
    assert_int_equal(PARA_ENOMEM, -ENOMEM);
    assert_int_equal(PARA_EBUSY, -EBUSY);
    assert_int_equal(PARA_ECYCLE, -3001);
    assert_int_equal(PARA_EKERNEL_BUILD, -3012);
}

static int in_table(int code)
{
    for (size_t i = 0; i < N_ERRS; i++)
        if (err_table[i].code == code)
            return 1;
    return 0;
}

static void test_err_unknown_codes(void **state)
{
    (void)state;
    /* -EPERM, a hole in the -3000 range, positive values, extremes. */
    const int unknown[] = {-EPERM, -3000, -3009,   -3013,   -9999,
                           1,      42,    INT_MIN, INT_MAX, -1000000};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        int code = unknown[i];
        if (in_table(code))
            continue; /* e.g. if EPERM ever joins the table */
        const char *msg = para_strerror(code);
        const char *name = para_err_name(code);
        assert_non_null(msg);
        assert_non_null(name);
        assert_string_equal(msg, "unknown error");
        assert_string_equal(name, "PARA_EUNKNOWN");
    }
}

static void test_err_zero(void **state)
{
    (void)state;
    /* 0 is documented as a valid argument; it is success, so it must not be
     * reported as any of the error entries. */
    const char *msg = para_strerror(0);
    const char *name = para_err_name(0);
    assert_non_null(msg);
    assert_non_null(name);
    assert_true(msg[0] != '\0');
    assert_true(name[0] != '\0');
    for (size_t i = 0; i < N_ERRS; i++) {
        assert_string_not_equal(name, err_table[i].name);
        assert_string_not_equal(msg, err_table[i].msg);
    }
}

/* ---- versions ---------------------------------------------------------- */

static void test_versions(void **state)
{
    (void)state;
    assert_int_equal(para_version(), PARA_VERSION_HEX);
    assert_int_equal(para_api_version(), PARA_API_VERSION);
    assert_int_equal(PARA_VERSION_HEX, (PARA_VERSION_MAJOR << 16) |
                                           (PARA_VERSION_MINOR << 8) |
                                           PARA_VERSION_PATCH);
}

/* ---- attributes -------------------------------------------------------- */

static void test_attr_defaults(void **state)
{
    (void)state;
    para_runtime_attr_t a;
    memset(&a, 0xA5, sizeof a); /* garbage: init must set every field */
    assert_int_equal(para_runtime_attr_init(&a), 0);
    assert_int_equal(a.struct_size, sizeof a);
    assert_int_equal(a.workers, 0);
    assert_int_equal(a.batch_items, 0);
    assert_int_equal(a.target_batch_us, 100);
    assert_int_equal(a.max_batches, 0);
    assert_non_null(a.policy);
    assert_string_equal(a.policy, "memaware");
    assert_int_equal(a.mem_budget, 0);
    assert_string_equal(a.device, "auto");
    assert_true(a.verbose >= 0 && a.verbose <= 3);
    /* Defaults parse cleanly: no warning or error was logged. */
    assert_true(log_count == 0 || log_min_level > 1);
}

static void test_attr_init_null(void **state)
{
    (void)state;
    assert_int_equal(para_runtime_attr_init(NULL), PARA_EINVAL);
}

static void test_attr_env_overrides(void **state)
{
    (void)state;
    setenv("PARA_WORKERS", "3", 1);
    setenv("PARA_BATCH", "64", 1);
    setenv("PARA_BATCH_US", "250", 1);
    setenv("PARA_MAX_BATCHES", "5", 1);
    para_runtime_attr_t a;
    int rc = para_runtime_attr_init(&a);
    clean_env();
    assert_int_equal(rc, 0);
    assert_int_equal(a.struct_size, sizeof a);
    assert_int_equal(a.workers, 3);
    assert_int_equal(a.batch_items, 64);
    assert_int_equal(a.target_batch_us, 250);
    assert_int_equal(a.max_batches, 5);

    /* The environment is read at every init, not cached. */
    para_runtime_attr_t b;
    assert_int_equal(para_runtime_attr_init(&b), 0);
    assert_int_equal(b.workers, 0);
    assert_int_equal(b.batch_items, 0);
    assert_int_equal(b.target_batch_us, 100);
    assert_int_equal(b.max_batches, 0);
}

static void test_attr_env_workers_applied(void **state)
{
    (void)state;
    /* The env value reaches the runtime. */
    setenv("PARA_WORKERS", "3", 1);
    para_runtime_attr_t a;
    int rc = para_runtime_attr_init(&a);
    clean_env();
    assert_int_equal(rc, 0);
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    assert_non_null(rt);
    assert_int_equal(para_runtime_workers(rt), 3);
    assert_int_equal(para_runtime_destroy(rt), 0);

    /* A field set after attr_init beats the environment. */
    setenv("PARA_WORKERS", "3", 1);
    rc = para_runtime_attr_init(&a);
    clean_env();
    assert_int_equal(rc, 0);
    a.workers = 2;
    rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    assert_int_equal(para_runtime_workers(rt), 2);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_attr_env_garbage(void **state)
{
    (void)state;
    setenv("PARA_WORKERS", "abc", 1);
    para_runtime_attr_t a;
    int rc = para_runtime_attr_init(&a);
    clean_env();
    assert_int_equal(rc, PARA_EINVAL);
    /* The default is kept and the struct is still usable. */
    assert_int_equal(a.struct_size, sizeof a);
    assert_int_equal(a.workers, 0);
    assert_int_equal(a.target_batch_us, 100);
    /* "a warning is logged" */
    assert_true(log_count > 0);
    assert_true(log_min_level <= 1);

    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    assert_true(para_runtime_workers(rt) >= 1);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_attr_env_garbage_keeps_others(void **state)
{
    (void)state;
    /* Only the bad variable keeps its default ("kept for it"). */
    setenv("PARA_WORKERS", "3x", 1);
    setenv("PARA_BATCH", "64", 1);
    para_runtime_attr_t a;
    int rc = para_runtime_attr_init(&a);
    clean_env();
    assert_int_equal(rc, PARA_EINVAL);
    assert_int_equal(a.workers, 0);
    assert_int_equal(a.batch_items, 64);

    setenv("PARA_BATCH", "-4", 1);
    rc = para_runtime_attr_init(&a);
    clean_env();
    assert_int_equal(rc, PARA_EINVAL);
    assert_int_equal(a.batch_items, 0);
}

/* ---- bad values are errors, named ---------------------------------------- */

struct bad_env {
    const char *var, *value;
};

static const struct bad_env bad_envs[] = {
    {"PARA_MEM_BUDGET", "lots"},   {"PARA_MEM_BUDGET", "12Q"},
    {"PARA_WORKERS", "abc"},       {"PARA_WORKERS", "70000"},
    {"PARA_WORKERS", "-1"},        {"PARA_VERBOSE", "5000"},
    {"PARA_VERBOSE", "4"},         {"PARA_VERBOSE", "on"},
    {"PARA_BATCH", "99999999999"}, {"PARA_BATCH", "17M"},
    {"PARA_BATCH_US", "0"},        {"PARA_BATCH_US", "2000000"},
    {"PARA_MAX_BATCHES", "x"},     {"PARA_MAX_BATCHES", "2M"},
    {"PARA_DEVICE_FALLBACK", "7"}, {"PARA_DEVICE_FALLBACK", "maybe"},
    {"PARA_PIN", "diagonal"},      {"PARA_PROGRESS", "sometimes"},
    {"PARA_TRACE_EVENTS", "0"},    {"PARA_TRACE_EVENTS", "1G"},
    {"PARA_CL_TRACE", "loud"},     {"PARA_MIXED", "gpu"},
    {"PARA_DEVICE_TIMEOUT", "1h"}, {"PARA_DEVICE_TIMEOUT", "3600001"},
    {"PARA_DEVICE_TIMEOUT", "-5"}, {"PARA_RESIDENT", "maybe"},
    {"PARA_PINNED", "sometimes"},  {"PARA_DEVICE_BUDGET", "lots"},
    {"PARA_CHAIN", "maybe"},
};

/* The last logged message names @p var and says what it accepts. */
static void assert_named(const char *var)
{
    if (strstr(log_last, var) == NULL || strstr(log_last, "accepted") == NULL)
        fail_msg("message does not name %s and its accepted values: '%s'", var,
                 log_last);
}

static void test_env_bad_values_fail_create(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_envs / sizeof bad_envs[0]; i++) {
        const struct bad_env *b = &bad_envs[i];
        para_runtime_attr_t before;
        assert_int_equal(para_runtime_attr_init(&before), 0);
        setenv(b->var, b->value, 1);
        log_last[0] = '\0';
        para_runtime_attr_t a;
        int init_rc = para_runtime_attr_init(&a);
        char init_msg[sizeof log_last];
        snprintf(init_msg, sizeof init_msg, "%s", log_last);
        log_last[0] = '\0';
        para_runtime_t *rt = NULL;
        int rc_null = para_runtime_create(&rt, NULL);
        para_runtime_t *rt_null = rt;
        char null_msg[sizeof log_last];
        snprintf(null_msg, sizeof null_msg, "%s", log_last);
        /* An attr made before the variable was set: create() still sees
         * the environment. */
        log_last[0] = '\0';
        rt = NULL;
        int rc_before = para_runtime_create(&rt, &before);
        para_runtime_t *rt_before = rt;
        clean_env();
        print_message("%s=%s: %s\n", b->var, b->value, log_last);
        assert_int_equal(init_rc, PARA_EINVAL);
        assert_int_equal(rc_null, PARA_EINVAL);
        assert_null(rt_null);
        assert_int_equal(rc_before, PARA_EINVAL);
        assert_null(rt_before);
        assert_true(log_min_level == 0); /* an error, not a warning */
        assert_named(b->var);
        snprintf(log_last, sizeof log_last, "%s", init_msg);
        assert_named(b->var);
        snprintf(log_last, sizeof log_last, "%s", null_msg);
        assert_named(b->var);
    }
}

static void test_env_good_values(void **state)
{
    (void)state;
    static const struct bad_env good[] = {
        {"PARA_MEM_BUDGET", "off"},
        {"PARA_MEM_BUDGET", "64M"},
        {"PARA_WORKERS", "1"},
        {"PARA_VERBOSE", "3"},
        {"PARA_BATCH", "16M"},
        {"PARA_BATCH_US", "1000000"},
        {"PARA_MAX_BATCHES", "1M"},
        {"PARA_DEVICE_FALLBACK", "off"},
        {"PARA_DEVICE_FALLBACK", "1"},
        {"PARA_PIN", "none"},
        {"PARA_PROGRESS", "off"},
        {"PARA_TRACE_EVENTS", "1"},
        {"PARA_CL_TRACE", "0"},
        {"PARA_DEVICE", "none"},
        {"PARA_CACHE_DIR", "/nonexistent/para"},
        {"PARA_MIXED", "device"},
        {"PARA_DEVICE_TIMEOUT", "0"},
        {"PARA_DEVICE_TIMEOUT", "250"},
        {"PARA_RESIDENT", "0"},
        {"PARA_CHAIN", "0"},
        {"PARA_PINNED", "auto"},
        {"PARA_DEVICE_BUDGET", "64M"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        setenv("PARA_WORKERS", "1", 1);
        setenv(good[i].var, good[i].value, 1);
        para_runtime_attr_t a;
        int init_rc = para_runtime_attr_init(&a);
        para_runtime_t *rt = NULL;
        int rc = para_runtime_create(&rt, &a);
        clean_env();
        if (init_rc != 0 || rc != 0)
            fail_msg("%s=%s refused: %s", good[i].var, good[i].value, log_last);
        if (strcmp(good[i].var, "PARA_DEVICE_FALLBACK") == 0)
            assert_int_equal(a.device_fallback, good[i].value[0] == '1');
        if (strcmp(good[i].var, "PARA_DEVICE_TIMEOUT") == 0)
            assert_int_equal(a.device_timeout_ms,
                             (unsigned)atoi(good[i].value));
        assert_int_equal(para_runtime_destroy(rt), 0);
    }
    para_set_log_fn(NULL, NULL); /* PARA_VERBOSE=3 set the level */
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.workers = 1;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    assert_int_equal(para_runtime_destroy(rt), 0);
    para_set_log_fn(capture_log, NULL);
}

static void test_attr_fields_out_of_range(void **state)
{
    (void)state;
    for (int k = 0; k < 7; k++) {
        para_runtime_attr_t a;
        assert_int_equal(para_runtime_attr_init(&a), 0);
        const char *field = NULL;
        switch (k) {
        case 0:
            a.workers = 70000;
            field = "workers";
            break;
        case 1:
            a.verbose = 4;
            field = "verbose";
            break;
        case 2:
            a.verbose = -1;
            field = "verbose";
            break;
        case 3:
            a.batch_items = ((size_t)1 << 24) + 1;
            field = "batch_items";
            break;
        case 4:
            a.target_batch_us = 0;
            field = "target_batch_us";
            break;
        case 5:
            a.trace_events = 0;
            field = "trace_events";
            break;
        default:
            a.max_batches = (1u << 20) + 1;
            field = "max_batches";
            break;
        }
        log_last[0] = '\0';
        para_runtime_t *rt = NULL;
        /* PARA_WORKERS=70000 was PARA_ENOMEM: out of range is EINVAL. */
        assert_int_equal(para_runtime_create(&rt, &a), PARA_EINVAL);
        assert_null(rt);
        if (strstr(log_last, field) == NULL)
            fail_msg("message does not name %s: '%s'", field, log_last);
    }
}

/* attr.verbose, not a second reading of PARA_VERBOSE, sets the level. */
static void test_verbose_attr_sets_level(void **state)
{
    (void)state;
    for (int level = 2; level >= 0; level -= 2) {
        para_runtime_attr_t a;
        assert_int_equal(para_runtime_attr_init(&a), 0);
        a.workers = 1;
        a.verbose = level;
        log_count = 0;
        log_min_level = INT_MAX;
        para_runtime_t *rt = NULL;
        assert_int_equal(para_runtime_create(&rt, &a), 0);
        assert_int_equal(para_runtime_destroy(rt), 0);
        /* "runtime: 1 workers" is info. */
        if (level == 2)
            assert_non_null(strstr(log_last, "runtime: 1 workers"));
        else
            assert_int_equal(log_count, 0);
    }
}

/* ---- runtime creation -------------------------------------------------- */

static void test_create_defaults(void **state)
{
    (void)state;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, NULL), 0);
    assert_non_null(rt);
    assert_true(para_runtime_workers(rt) >= 1);
    assert_string_equal(para_runtime_errmsg(rt), "");
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_create_unstamped_attr(void **state)
{
    (void)state;
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.struct_size = 0;
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), PARA_EINVAL);
    assert_null(rt);

    /* A zeroed struct was never initialised either. */
    para_runtime_attr_t z;
    memset(&z, 0, sizeof z);
    assert_int_equal(para_runtime_create(&rt, &z), PARA_EINVAL);
    assert_null(rt);
}

static void test_create_unknown_policy_env(void **state)
{
    (void)state;
    setenv("PARA_POLICY", "nope", 1);
    para_runtime_attr_t a;
    int rc = para_runtime_attr_init(&a);
    clean_env();
    /* A policy name parses as a string; create() is what checks it. */
    assert_int_equal(rc, 0);
    assert_non_null(a.policy);
    assert_string_equal(a.policy, "nope");
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), PARA_EPOLICY);
    assert_null(rt);
}

static void test_create_unknown_policy_field(void **state)
{
    (void)state;
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    a.policy = "nope";
    para_runtime_t *rt = NULL;
    assert_int_equal(para_runtime_create(&rt, &a), PARA_EPOLICY);
    assert_null(rt);

    /* The documented default policy exists. */
    a.policy = "ws";
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    assert_non_null(rt);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

static void test_null_args(void **state)
{
    (void)state;
    para_runtime_attr_t a;
    assert_int_equal(para_runtime_attr_init(&a), 0);
    assert_int_equal(para_runtime_create(NULL, NULL), PARA_EINVAL);
    assert_int_equal(para_runtime_create(NULL, &a), PARA_EINVAL);
    assert_int_equal(para_runtime_destroy(NULL), 0);

    para_runtime_t *rt = NULL;
    a.workers = 1;
    assert_int_equal(para_runtime_create(&rt, &a), 0);
    para_graph_t *g = NULL;
    assert_int_equal(para_graph_create(&g), 0);
    assert_int_equal(para_run(NULL, g), PARA_EINVAL);
    assert_int_equal(para_run(rt, NULL), PARA_EINVAL);
    assert_int_equal(para_run(NULL, NULL), PARA_EINVAL);
    para_stats_t st;
    assert_int_equal(para_runtime_stats(NULL, &st), PARA_EINVAL);
    assert_int_equal(para_runtime_stats(rt, NULL), PARA_EINVAL);
    assert_int_equal(para_graph_create(NULL), PARA_EINVAL);
    para_graph_destroy(g);
    para_graph_destroy(NULL);
    assert_int_equal(para_runtime_destroy(rt), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_table_every_code),
        cmocka_unit_test(test_err_codes_distinct),
        cmocka_unit_test(test_err_unknown_codes),
        cmocka_unit_test(test_err_zero),
        cmocka_unit_test(test_versions),
        cmocka_unit_test_setup_teardown(test_attr_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attr_init_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attr_env_overrides, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_attr_env_workers_applied, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_attr_env_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attr_env_garbage_keeps_others,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_unstamped_attr, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_create_unknown_policy_env, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_create_unknown_policy_field, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_null_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_bad_values_fail_create, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_env_good_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attr_fields_out_of_range, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verbose_attr_sets_level, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
