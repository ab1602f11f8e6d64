/*
 * para-info: what para sees on this machine (issue 5).
 *
 *   para-info [--json] [--no-launch]
 *   para-info --help | --version
 *
 * Prints the hwloc topology (packages, NUMA nodes, cores, PUs, caches), the
 * worker plan para makes by default (one worker per core, PARA__PIN_CORES),
 * and, when built with OpenCL, every device of every platform, the one that
 * the "auto" selector opens and the median round trip of 50 one-item
 * launches of the empty kernel per device (skipped with --no-launch).
 * --json prints the same as one JSON object. Exit status: 0, 1 if the
 * topology cannot be loaded, 2 on a usage error. No OpenCL device is not an
 * error.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hwloc.h>

#include "para.h"
#include "topology.h"
#include "util.h"

#ifdef PARA_WITH_OPENCL
#include "device.h"
#include "opencl/cl_internal.h"
#include "para_kernels.h"
#endif

#define MAX_DEVICES 32
#define LAUNCHES 50
#define MSG_LEN 4096

typedef struct cache_info {
    unsigned level;
    unsigned count;
    uint64_t size_bytes; /* of one cache */
} cache_info;

typedef struct info {
    int packages, numa_nodes, cores, pus;
    cache_info caches[3];
    size_t n_caches;
    para__topology_plan plan;
    int plan_rc;
#ifdef PARA_WITH_OPENCL
    para__device_info devs[MAX_DEVICES];
    size_t n_devs;
    double launch_us[MAX_DEVICES]; /* < 0: not measured */
    char launch_err[MAX_DEVICES][160];
    char near[MAX_DEVICES][64]; /* PUs near the device ("" unknown) */
    char auto_name[128];
    bool have_auto;
    /* The plan for kernel nodes: PARA_DEVICE expanded into its entries
     * (one host thread each), or why it does not expand. */
    const char *device_list;
    char dplan[MAX_DEVICES][128];
    size_t n_plan;
    char plan_err[256];
#endif
} info;

static int count_type(hwloc_topology_t topo, hwloc_obj_type_t type)
{
    int n = hwloc_get_nbobjs_by_type(topo, type);
    return n < 0 ? 0 : n;
}

static void collect_topology(hwloc_topology_t topo, info *inf)
{
    inf->packages = count_type(topo, HWLOC_OBJ_PACKAGE);
    inf->numa_nodes = count_type(topo, HWLOC_OBJ_NUMANODE);
    inf->cores = count_type(topo, HWLOC_OBJ_CORE);
    inf->pus = count_type(topo, HWLOC_OBJ_PU);
    static const struct {
        hwloc_obj_type_t type;
        unsigned level;
    } levels[] = {
        {HWLOC_OBJ_L1CACHE, 1}, {HWLOC_OBJ_L2CACHE, 2}, {HWLOC_OBJ_L3CACHE, 3}};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        int n = count_type(topo, levels[i].type);
        if (n == 0)
            continue;
        /* L1 objects are data or unified caches (L1i is HWLOC_OBJ_L1ICACHE);
         * all caches of one level have the same size on the machines we
         * know, so the first one speaks for the level. */
        hwloc_obj_t o = hwloc_get_obj_by_type(topo, levels[i].type, 0);
        cache_info *c = &inf->caches[inf->n_caches++];
        c->level = levels[i].level;
        c->count = (unsigned)n;
        c->size_bytes = o && o->attr ? o->attr->cache.size : 0;
    }
    inf->plan_rc =
        para__topology_plan_make(topo, 0, PARA__PIN_CORES, &inf->plan);
}

#ifdef PARA_WITH_OPENCL
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* "what: PARA_EXXX: msg" into err; a long msg (a build log) is cut. */
static void set_err(char *err, size_t err_len, const char *what, int rc,
                    const char *msg)
{
    int n = snprintf(err, err_len, "%s: %s: %s", what, para_err_name(rc), msg);
    if (n < 0)
        err[0] = '\0';
}

/* Median round trip in microseconds of LAUNCHES one-item launches of the
 * empty kernel on device "P:D", or -1 with the reason in err. */
static double measure_launch(const para__device_info *di, char *err,
                             size_t err_len)
{
    char sel[32], msg[MSG_LEN];
    snprintf(sel, sizeof sel, "%u:%u", di->platform_index, di->device_index);
    para__device *dev = NULL;
    para__kernel *k = NULL;
    uint32_t in = 1, out = 0;
    para__launch l = {.in = &in, .n = 1, .out = &out};
    uint64_t ns[LAUNCHES];
    double us = -1;
    int rc = para__cl_open(sel, &dev, msg, sizeof msg);
    if (rc != 0) {
        set_err(err, err_len, "open", rc, msg);
        return -1;
    }
    rc = para__cl_kernel_create(dev, para_kernel_empty_src, "", "empty", 4, 4,
                                NULL, 0, &k, msg, sizeof msg);
    if (rc != 0) {
        set_err(err, err_len, "kernel_create", rc, msg);
        goto out;
    }
    for (int i = -5; i < LAUNCHES; i++) { /* 5 warm-up launches */
        uint64_t t0 = para__now_ns();
        if ((rc = para__cl_launch_begin(k, &l, msg, sizeof msg)) != 0 ||
            (rc = para__cl_launch_wait(k, &l, msg, sizeof msg)) != 0) {
            set_err(err, err_len, "launch", rc, msg);
            goto out;
        }
        if (i >= 0)
            ns[i] = para__now_ns() - t0;
    }
    qsort(ns, LAUNCHES, sizeof ns[0], cmp_u64);
    us = (double)(ns[LAUNCHES / 2 - 1] + ns[LAUNCHES / 2]) / 2e3;
out:
    if (k) {
        para__cl_launch_fini(k, &l);
        para__cl_kernel_release(k);
    }
    para__cl_close(dev);
    return us;
}

/* The PUs near device "P:D" (hwloc's OpenCL helper), as a list. */
static void device_near(hwloc_topology_t topo, const para__device_info *di,
                        char *out, size_t out_len)
{
    char sel[32], msg[MSG_LEN];
    snprintf(sel, sizeof sel, "%u:%u", di->platform_index, di->device_index);
    out[0] = '\0';
    para__device *dev = NULL;
    hwloc_bitmap_t set = hwloc_bitmap_alloc();
    if (set != NULL && para__cl_open(sel, &dev, msg, sizeof msg) == 0) {
        if (para__cl_locality(dev, topo, set) == 0)
            hwloc_bitmap_list_snprintf(out, out_len, set);
        para__cl_close(dev);
    }
    hwloc_bitmap_free(set);
}

static int plan_entry(void *arg, const char *entry)
{
    info *inf = arg;
    if (inf->n_plan < MAX_DEVICES)
        snprintf(inf->dplan[inf->n_plan++], sizeof inf->dplan[0], "%s", entry);
    return 0;
}

static void collect_opencl(hwloc_topology_t topo, info *inf, bool launch)
{
    const char *list = getenv("PARA_DEVICE");
    inf->device_list = list != NULL && list[0] != '\0' ? list : "auto";
    inf->plan_err[0] = '\0';
    if (strcmp(inf->device_list, "none") != 0 &&
        para__device_expand(inf->device_list, plan_entry, inf, inf->plan_err,
                            sizeof inf->plan_err) != 0)
        inf->n_plan = 0;
    size_t n = para__cl_list(inf->devs, MAX_DEVICES);
    inf->n_devs = n < MAX_DEVICES ? n : MAX_DEVICES;
    for (size_t i = 0; i < inf->n_devs; i++) {
        inf->launch_us[i] = -1;
        inf->launch_err[i][0] = '\0';
        device_near(topo, &inf->devs[i], inf->near[i], sizeof inf->near[i]);
        if (launch)
            inf->launch_us[i] = measure_launch(
                &inf->devs[i], inf->launch_err[i], sizeof inf->launch_err[i]);
    }
    char msg[MSG_LEN];
    para__device *dev;
    if (inf->n_devs > 0 && para__cl_open("auto", &dev, msg, sizeof msg) == 0) {
        snprintf(inf->auto_name, sizeof inf->auto_name, "%s",
                 para__cl_info(dev)->name);
        inf->have_auto = true;
        para__cl_close(dev);
    }
}
#endif

#ifdef PARA_WITH_OPENCL /* the only strings are device properties */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}
#endif

static void print_json(const info *inf)
{
    printf("{\"packages\":%d,\"numa_nodes\":%d,\"cores\":%d,\"pus\":%d,",
           inf->packages, inf->numa_nodes, inf->cores, inf->pus);
    fputs("\"caches\":[", stdout);
    for (size_t i = 0; i < inf->n_caches; i++)
        printf("%s{\"level\":%u,\"count\":%u,\"size_bytes\":%llu}",
               i ? "," : "", inf->caches[i].level, inf->caches[i].count,
               (unsigned long long)inf->caches[i].size_bytes);
    fputs("],\"workers\":[", stdout);
    for (unsigned w = 0; inf->plan_rc == 0 && w < inf->plan.n_workers; w++)
        printf("%s{\"worker\":%u,\"pu\":%d,\"numa\":%d}", w ? "," : "", w,
               inf->plan.os_pu[w], inf->plan.numa[w]);
    fputs("],\"opencl\":{\"devices\":[", stdout);
#ifdef PARA_WITH_OPENCL
    for (size_t i = 0; i < inf->n_devs; i++) {
        const para__device_info *d = &inf->devs[i];
        printf("%s{\"platform_index\":%u,\"device_index\":%u,\"platform\":",
               i ? "," : "", d->platform_index, d->device_index);
        json_str(d->platform);
        fputs(",\"name\":", stdout);
        json_str(d->name);
        fputs(",\"vendor\":", stdout);
        json_str(d->vendor);
        fputs(",\"version\":", stdout);
        json_str(d->version);
        printf(",\"type\":\"%s\",\"compute_units\":%u,"
               "\"global_mem_bytes\":%llu,\"max_alloc_bytes\":%llu,"
               "\"max_work_group\":%zu,\"launch_round_trip_us\":",
               d->is_cpu ? "cpu" : "other", d->compute_units,
               (unsigned long long)d->global_mem_bytes,
               (unsigned long long)d->max_alloc_bytes, d->max_work_group);
        if (inf->launch_us[i] >= 0)
            printf("%.1f", inf->launch_us[i]);
        else
            fputs("null", stdout);
        fputs(",\"near_pus\":", stdout);
        json_str(inf->near[i]);
        if (inf->launch_err[i][0]) {
            fputs(",\"launch_error\":", stdout);
            json_str(inf->launch_err[i]);
        }
        putchar('}');
    }
    fputs("],\"auto\":", stdout);
    if (inf->have_auto)
        json_str(inf->auto_name);
    else
        fputs("null", stdout);
    fputs(",\"device_list\":", stdout);
    json_str(inf->device_list);
    fputs(",\"device_plan\":[", stdout);
    for (size_t i = 0; i < inf->n_plan; i++) {
        if (i > 0)
            putchar(',');
        json_str(inf->dplan[i]);
    }
    putchar(']');
    if (inf->plan_err[0] != '\0') {
        fputs(",\"device_plan_error\":", stdout);
        json_str(inf->plan_err);
    }
#else
    fputs("],\"auto\":null", stdout);
#endif
    fputs("}}\n", stdout);
}

static void print_size(uint64_t bytes)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    unsigned u = 0;
    while (u + 1 < sizeof units / sizeof units[0] && bytes >> (10 * (u + 1)))
        u++;
    uint64_t scale = (uint64_t)1 << (10 * u);
    if (bytes % scale == 0)
        printf("%llu %s", (unsigned long long)(bytes / scale), units[u]);
    else
        printf("%.1f %s", (double)bytes / (double)scale, units[u]);
}

static void print_human(const info *inf)
{
    printf("topology: %d package(s), %d NUMA node(s), %d core(s), %d PU(s)\n",
           inf->packages, inf->numa_nodes, inf->cores, inf->pus);
    for (size_t i = 0; i < inf->n_caches; i++) {
        printf("  L%u%s: %u x ", inf->caches[i].level,
               inf->caches[i].level == 1 ? "d" : "", inf->caches[i].count);
        print_size(inf->caches[i].size_bytes);
        putchar('\n');
    }
    if (inf->plan_rc != 0) {
        printf("workers: no plan (%s)\n", para_err_name(inf->plan_rc));
    } else {
        printf("workers (default plan, one per core): %u\n",
               inf->plan.n_workers);
        for (unsigned w = 0; w < inf->plan.n_workers; w++)
            printf("  worker %u: PU %d, NUMA node %d\n", w, inf->plan.os_pu[w],
                   inf->plan.numa[w]);
    }
#ifdef PARA_WITH_OPENCL
    printf("OpenCL devices: %zu\n", inf->n_devs);
    for (size_t i = 0; i < inf->n_devs; i++) {
        const para__device_info *d = &inf->devs[i];
        printf("  [%u:%u] %s (%s)\n", d->platform_index, d->device_index,
               d->name, d->platform);
        printf("        vendor %s, %s\n", d->vendor, d->version);
        printf("        type %s, %u compute units, global memory ",
               d->is_cpu ? "CPU" : "other", d->compute_units);
        print_size(d->global_mem_bytes);
        fputs(", max alloc ", stdout);
        print_size(d->max_alloc_bytes);
        printf(", max work-group %zu\n", d->max_work_group);
        if (inf->near[i][0])
            printf("        near PUs %s (the host thread runs there)\n",
                   inf->near[i]);
        if (inf->launch_us[i] >= 0)
            printf("        launch round trip (median of %d): %.1f us\n",
                   LAUNCHES, inf->launch_us[i]);
        else if (inf->launch_err[i][0])
            printf("        launch round trip: failed: %s\n",
                   inf->launch_err[i]);
    }
    printf("auto selects: %s\n", inf->have_auto ? inf->auto_name : "(none)");
    printf("PARA_DEVICE=%s: ", inf->device_list);
    if (inf->plan_err[0] != '\0')
        printf("does not expand: %s\n", inf->plan_err);
    else if (inf->n_plan == 0)
        printf("no device\n");
    else {
        printf("%zu device%s, one host thread each:", inf->n_plan,
               inf->n_plan == 1 ? "" : "s");
        for (size_t i = 0; i < inf->n_plan; i++)
            printf(" %s", inf->dplan[i]);
        putchar('\n');
    }
#else
    printf("OpenCL: not built (PARA_WITH_OPENCL=OFF)\n");
#endif
}

static int usage(FILE *f)
{
    fputs("usage: para-info [--json] [--no-launch]\n"
          "       para-info --help | --version\n"
          "  Prints the hardware topology para sees, its default worker plan\n"
          "  and the OpenCL devices with their launch round trip.\n"
          "  --json       one JSON object instead of text\n"
          "  --no-launch  do not launch the empty kernel on each device\n"
          "  --version    para's version (library and API)\n",
          f);
    return f == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    bool json = false, launch = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--no-launch") == 0) {
            launch = false;
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            return usage(stdout);
        } else if (strcmp(argv[i], "--version") == 0) {
            unsigned v = para_version();
            printf("para-info %s (libpara %u.%u.%u, API %u)\n",
                   PARA_VERSION_STRING, v >> 16, (v >> 8) & 0xffu, v & 0xffu,
                   para_api_version());
            return 0;
        } else {
            fprintf(stderr, "para-info: unknown option '%s'\n", argv[i]);
            return usage(stderr);
        }
    }

    static info inf; /* large (device infos); zeroed */
    hwloc_topology_t topo;
    if (hwloc_topology_init(&topo) != 0 || hwloc_topology_load(topo) != 0) {
        fprintf(stderr, "%s: cannot load the hwloc topology\n", argv[0]);
        return 1;
    }
    collect_topology(topo, &inf);
#ifdef PARA_WITH_OPENCL
    collect_opencl(topo, &inf, launch);
#else
    (void)launch;
#endif
    hwloc_topology_destroy(topo);
    if (json)
        print_json(&inf);
    else
        print_human(&inf);
    para__topology_plan_free(&inf.plan);
    return 0;
}
