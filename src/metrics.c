/*
 * metrics.c - storage and Prometheus text rendering for the list in
 * metrics.h (and the text of its by-caller extension, whose counts
 * admin_stats.c keeps). Updates are relaxed atomics so worker threads
 * never lock.
 */
#include "metrics.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "admin_stats.h"

#define PREFIX "asset_gateway_"
#define STATUS_MIN 100
#define STATUS_MAX 599
/* One observation adds at most this much to a _sum (keeps ns in range). */
#define MAX_OBSERVATION_S 1e6
#define NS_PER_S 1000000000ULL

/* ------------------------------------------------------------ tables */

enum labelset {
#define LS_ENUM(id, label, slots) LS_##id,
    AGW_METRIC_LABELSETS(LS_ENUM) LS__COUNT
#undef LS_ENUM
};

enum {
#define LS_SLOTS(id, label, slots) LS_SLOTS_##id = (slots),
    AGW_METRIC_LABELSETS(LS_SLOTS)
#undef LS_SLOTS
};

static const char *const labelset_label[LS__COUNT] = {
#define LS_LABEL(id, label, slots) [LS_##id] = label,
    AGW_METRIC_LABELSETS(LS_LABEL)
#undef LS_LABEL
};

static const char *const cache_words[LS_SLOTS_CACHE] = {
    [AGW_CACHE_HIT] = "hit",
    [AGW_CACHE_MISS] = "miss",
    [AGW_CACHE_COALESCED] = "coalesced",
};
static const char *const reload_words[LS_SLOTS_RELOAD] = {"ok", "failed"};
static const char *const class_words[LS_SLOTS_CLASS] = {
    [AGW_CLASS_INTERACTIVE] = "interactive",
    [AGW_CLASS_BATCH] = "batch",
};
static const char *const purge_words[LS_SLOTS_PURGE] = {
    [AGW_PURGE_PURGED] = "purged",
    [AGW_PURGE_ABSENT] = "absent",
    [AGW_PURGE_INVALID] = "invalid",
};

struct plain_def {
    const char *name;
    const char *help;
};

#define NAMED_DEF(id, name, help) [AGW_M_##id] = {PREFIX name, help},
#define IGNORE(...)

static const struct plain_def counter_defs[AGW_M_COUNTER__COUNT] = {
    AGW_METRICS_LIST(IGNORE, NAMED_DEF, IGNORE, IGNORE, IGNORE)};

static const struct plain_def gauge_defs[AGW_M_GAUGE__COUNT] = {
    AGW_METRICS_LIST(IGNORE, IGNORE, IGNORE, NAMED_DEF, IGNORE)};

/* One array of counters per labelled family, sized by its label set. */
#define VEC_STORAGE(id, name, ls, help)                                        \
    static atomic_ullong vec_##id[LS_SLOTS_##ls];
AGW_METRICS_LIST(IGNORE, IGNORE, VEC_STORAGE, IGNORE, IGNORE)

struct vec_def {
    const char *name;
    const char *help;
    enum labelset ls;
    atomic_ullong *slots;
    size_t nslots;
};

#define VEC_DEF(id, name, ls, help)                                            \
    [AGW_M_##id] = {PREFIX name, help, LS_##ls, vec_##id, LS_SLOTS_##ls},

static const struct vec_def vec_defs[AGW_M_VEC__COUNT] = {
    AGW_METRICS_LIST(IGNORE, IGNORE, VEC_DEF, IGNORE, IGNORE)};

#define HIST_BOUNDS(id, name, buckets, by_class, help)                         \
    static const double bounds_##id[] = {AGW_BUCKETS_##buckets};               \
    _Static_assert(sizeof(bounds_##id) / sizeof(double) <=                     \
                       AGW_METRICS_MAX_BUCKETS,                                \
                   "too many buckets for " #id);
AGW_METRICS_LIST(IGNORE, IGNORE, IGNORE, IGNORE, HIST_BOUNDS)

struct hist_def {
    const char *name;
    const char *help;
    const double *bounds; /* strictly increasing upper bounds */
    size_t nbounds;
    bool by_class; /* one series per class, labelled class= */
};

#define HIST_DEF(id, name, buckets, by_class, help)                            \
    [AGW_M_##id] = {PREFIX name, help, bounds_##id,                            \
                    sizeof(bounds_##id) / sizeof(double), by_class},

static const struct hist_def hist_defs[AGW_M_HISTOGRAM__COUNT] = {
    AGW_METRICS_LIST(IGNORE, IGNORE, IGNORE, IGNORE, HIST_DEF)};

/* ----------------------------------------------------------- storage */

struct histogram {
    /* Per bucket, not cumulative, so one observation is one add; the
     * last used slot (index nbounds) is +Inf. */
    atomic_ullong counts[AGW_METRICS_MAX_BUCKETS + 1];
    atomic_ullong sum_ns; /* integer ns: fetch_add, no CAS loop */
};

static atomic_ullong counters[AGW_M_COUNTER__COUNT];
static atomic_llong gauges[AGW_M_GAUGE__COUNT];
/* [h][0] for a histogram without a class; [h][class] for one with. */
static struct histogram hists[AGW_M_HISTOGRAM__COUNT][LS_SLOTS_CLASS];

/* Already escaped for a label value; written once, by init. */
static char version_label[128] = "unknown";

/* ----------------------------------------------------------- updates */

static void
bump(atomic_ullong *slot, unsigned long long n)
{
    atomic_fetch_add_explicit(slot, n, memory_order_relaxed);
}

void
agw_metrics_count_request(int status)
{
    if (status < STATUS_MIN || status > STATUS_MAX) {
        return;
    }
    bump(&vec_REQUESTS[status - STATUS_MIN], 1);
}

void
agw_metrics_count_cache(enum agw_cache_result result)
{
    if ((unsigned)result >= LS_SLOTS_CACHE) {
        return;
    }
    bump(&vec_CACHE_LOOKUPS[result], 1);
}

void
agw_metrics_count_upstream(int status_or_0)
{
    size_t slot = 0; /* "error" */

    if (status_or_0 >= STATUS_MIN && status_or_0 <= STATUS_MAX) {
        slot = (size_t)(status_or_0 - STATUS_MIN) + 1;
    }
    bump(&vec_UPSTREAM_REQUESTS[slot], 1);
    if (status_or_0 == 429) {
        bump(&counters[AGW_M_UPSTREAM_429], 1);
    }
}

void
agw_metrics_count_reload(bool ok)
{
    bump(&vec_CONFIG_RELOADS[ok ? 0 : 1], 1);
}

void
agw_metrics_count_purge(enum agw_purge_result result)
{
    if ((unsigned)result < LS_SLOTS_PURGE) {
        bump(&vec_ADMIN_PURGES[result], 1);
    }
}

unsigned long long
agw_metrics_cache_count(enum agw_cache_result result)
{
    if ((unsigned)result >= LS_SLOTS_CACHE) {
        return 0;
    }
    return atomic_load_explicit(&vec_CACHE_LOOKUPS[result],
                                memory_order_relaxed);
}

unsigned long long
agw_metrics_upstream_count(void)
{
    unsigned long long n = 0;

    for (size_t i = 0; i < LS_SLOTS_UPSTREAM; i++) {
        n += atomic_load_explicit(&vec_UPSTREAM_REQUESTS[i],
                                  memory_order_relaxed);
    }
    return n;
}

void
agw_metrics_add(enum agw_counter counter, unsigned long n)
{
    if ((unsigned)counter >= AGW_M_COUNTER__COUNT) {
        return;
    }
    bump(&counters[counter], n);
}

void
agw_metrics_inc(enum agw_counter counter)
{
    agw_metrics_add(counter, 1);
}

const char *
agw_class_name(bool batch)
{
    return class_words[batch ? AGW_CLASS_BATCH : AGW_CLASS_INTERACTIVE];
}

void
agw_metrics_count_rejected(bool batch)
{
    bump(&vec_RATELIMIT_REJECTED[batch ? AGW_CLASS_BATCH
                                       : AGW_CLASS_INTERACTIVE],
         1);
}

void
agw_metrics_observe(enum agw_histogram hist, double seconds)
{
    agw_metrics_observe_class(hist, false, seconds);
}

void
agw_metrics_observe_class(enum agw_histogram hist, bool batch, double seconds)
{
    const struct hist_def *def;
    struct histogram *st;
    size_t i = 0;

    if ((unsigned)hist >= AGW_M_HISTOGRAM__COUNT) {
        return;
    }
    def = &hist_defs[hist];
    st = &hists[hist][def->by_class && batch ? AGW_CLASS_BATCH
                                             : AGW_CLASS_INTERACTIVE];
    if (!(seconds > 0)) { /* also NaN */
        seconds = 0;
    }
    /* Prometheus buckets are "less than or equal": le="0.1" holds 0.1. */
    while (i < def->nbounds && seconds > def->bounds[i]) {
        i++;
    }
    bump(&st->counts[i], 1);
    if (seconds > MAX_OBSERVATION_S) {
        seconds = MAX_OBSERVATION_S;
    }
    bump(&st->sum_ns, (unsigned long long)(seconds * 1e9 + 0.5));
}

void
agw_metrics_gauge_add(enum agw_gauge gauge, long delta)
{
    if ((unsigned)gauge >= AGW_M_GAUGE__COUNT) {
        return;
    }
    atomic_fetch_add_explicit(&gauges[gauge], delta, memory_order_relaxed);
}

long
agw_metrics_gauge_get(enum agw_gauge gauge)
{
    if ((unsigned)gauge >= AGW_M_GAUGE__COUNT) {
        return 0;
    }
    return (long)atomic_load_explicit(&gauges[gauge], memory_order_relaxed);
}

void
agw_metrics_gauge_set(enum agw_gauge gauge, long value)
{
    if ((unsigned)gauge >= AGW_M_GAUGE__COUNT) {
        return;
    }
    atomic_store_explicit(&gauges[gauge], value, memory_order_relaxed);
}

/* -------------------------------------------------------------- init */

static void
zero(atomic_ullong *slots, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        atomic_store_explicit(&slots[i], 0, memory_order_relaxed);
    }
}

/* Label values escape \, " and newline (exposition format 0.0.4). */
static void
escape_label(char *out, size_t len, const char *in)
{
    size_t o = 0;

    for (; *in != '\0' && o + 3 < len; in++) {
        if (*in == '\\' || *in == '"' || *in == '\n') {
            out[o++] = '\\';
            out[o++] = *in == '\n' ? 'n' : *in;
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}

void
agw_metrics_init(const char *version)
{
    zero(counters, AGW_M_COUNTER__COUNT);
    for (size_t i = 0; i < AGW_M_GAUGE__COUNT; i++) {
        atomic_store_explicit(&gauges[i], 0, memory_order_relaxed);
    }
    for (size_t i = 0; i < AGW_M_VEC__COUNT; i++) {
        zero(vec_defs[i].slots, vec_defs[i].nslots);
    }
    for (size_t i = 0; i < AGW_M_HISTOGRAM__COUNT; i++) {
        for (size_t c = 0; c < LS_SLOTS_CLASS; c++) {
            zero(hists[i][c].counts, AGW_METRICS_MAX_BUCKETS + 1);
            zero(&hists[i][c].sum_ns, 1);
        }
    }
    escape_label(version_label, sizeof(version_label),
                 version != NULL ? version : "unknown");
    agw_metrics_gauge_set(AGW_M_START_TIME, (long)time(NULL));
}

/* ------------------------------------------------------------ render */

static unsigned long long
load(atomic_ullong *slot)
{
    return atomic_load_explicit(slot, memory_order_relaxed);
}

static int
header(struct evbuffer *out, const char *name, const char *type,
       const char *help)
{
    return evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help,
                               name, type);
}

static int
render_info(struct evbuffer *out, const char *name, const char *help)
{
    if (header(out, name, "gauge", help) < 0) {
        return -1;
    }
    return evbuffer_add_printf(out, "%s{version=\"%s\"} 1\n", name,
                               version_label);
}

static int
render_counter(struct evbuffer *out, enum agw_counter c)
{
    const struct plain_def *def = &counter_defs[c];

    if (header(out, def->name, "counter", def->help) < 0) {
        return -1;
    }
    return evbuffer_add_printf(out, "%s %llu\n", def->name, load(&counters[c]));
}

static int
render_gauge(struct evbuffer *out, enum agw_gauge g)
{
    const struct plain_def *def = &gauge_defs[g];

    if (header(out, def->name, "gauge", def->help) < 0) {
        return -1;
    }
    return evbuffer_add_printf(
        out, "%s %lld\n", def->name,
        atomic_load_explicit(&gauges[g], memory_order_relaxed));
}

/* The label value of SLOT in label set LS, or NULL when SLOT is not shown
 * at zero (HTTP statuses: only those seen, which keeps the text short). */
static const char *
label_value(enum labelset ls, size_t slot, char buf[16])
{
    switch (ls) {
    case LS_STATUS:
        snprintf(buf, 16, "%d", (int)slot + STATUS_MIN);
        return buf;
    case LS_UPSTREAM:
        if (slot == 0) {
            return "error";
        }
        snprintf(buf, 16, "%d", (int)slot - 1 + STATUS_MIN);
        return buf;
    case LS_CACHE:
        return cache_words[slot];
    case LS_RELOAD:
        return reload_words[slot];
    case LS_PURGE:
        return purge_words[slot];
    case LS_CLASS:
        return class_words[slot];
    default:
        return "?";
    }
}

static bool
shown_at_zero(enum labelset ls)
{
    return ls == LS_CACHE || ls == LS_RELOAD || ls == LS_PURGE ||
           ls == LS_CLASS;
}

static int
render_vec(struct evbuffer *out, enum agw_metric_vec v)
{
    const struct vec_def *def = &vec_defs[v];
    char buf[16];
    int rc;

    rc = header(out, def->name, "counter", def->help);
    for (size_t i = 0; rc >= 0 && i < def->nslots; i++) {
        unsigned long long n = load(&def->slots[i]);

        if (n == 0 && !shown_at_zero(def->ls)) {
            continue;
        }
        rc = evbuffer_add_printf(out, "%s{%s=\"%s\"} %llu\n", def->name,
                                 labelset_label[def->ls],
                                 label_value(def->ls, i, buf), n);
    }
    return rc < 0 ? -1 : 0;
}

/* One series of histogram DEF (ST), its labels starting with LABEL
 * ("" or `class="...",`). */
static int
render_series(struct evbuffer *out, const struct hist_def *def,
              struct histogram *st, const char *label)
{
    unsigned long long total = 0;
    unsigned long long sum_ns = load(&st->sum_ns);
    const char *open = *label != '\0' ? "{" : "";
    const char *close = *label != '\0' ? "}" : "";
    char bare[64];
    int rc = 0;

    /* The label without its trailing comma, for _sum and _count. */
    snprintf(bare, sizeof(bare), "%.*s",
             *label != '\0' ? (int)strlen(label) - 1 : 0, label);
    /* Each bucket is read once and summed here, so the cumulative counts
     * are monotone and +Inf equals _count even while threads observe. */
    for (size_t i = 0; rc >= 0 && i < def->nbounds; i++) {
        total += load(&st->counts[i]);
        rc = evbuffer_add_printf(out, "%s_bucket{%sle=\"%g\"} %llu\n",
                                 def->name, label, def->bounds[i], total);
    }
    if (rc < 0) {
        return -1;
    }
    total += load(&st->counts[def->nbounds]);
    rc = evbuffer_add_printf(out,
                             "%s_bucket{%sle=\"+Inf\"} %llu\n"
                             "%s_sum%s%s%s %llu.%09llu\n"
                             "%s_count%s%s%s %llu\n",
                             def->name, label, total, def->name, open, bare,
                             close, sum_ns / NS_PER_S, sum_ns % NS_PER_S,
                             def->name, open, bare, close, total);
    return rc < 0 ? -1 : 0;
}

static int
render_hist(struct evbuffer *out, enum agw_histogram h)
{
    const struct hist_def *def = &hist_defs[h];
    char label[64];
    int rc;

    rc = header(out, def->name, "histogram", def->help);
    if (rc < 0) {
        return -1;
    }
    if (!def->by_class) {
        return render_series(out, def, &hists[h][0], "");
    }
    for (size_t c = 0; c < LS_SLOTS_CLASS; c++) {
        snprintf(label, sizeof(label), "class=\"%s\",", class_words[c]);
        if (render_series(out, def, &hists[h][c], label) < 0) {
            return -1;
        }
    }
    return 0;
}

/* A family labelled by caller and class, from admin_stats (metrics.h). */
static int
render_by_caller(struct evbuffer *out, const char *name, const char *help)
{
    struct agw_admin_caller_total c;
    int rc;

    rc = header(out, name, "counter", help);
    for (size_t i = 0; rc >= 0 && agw_admin_stats_caller_total(i, &c); i++) {
        rc = evbuffer_add_printf(out, "%s{caller=\"%s\",class=\"%s\"} %llu\n",
                                 name, c.name, c.klass, c.total);
    }
    return rc < 0 ? -1 : 0;
}

#define R_INFO(id, name, help) rc |= render_info(out, PREFIX name, help);
#define R_COUNTER(id, name, help) rc |= render_counter(out, AGW_M_##id);
#define R_VEC(id, name, ls, help) rc |= render_vec(out, AGW_M_##id);
#define R_GAUGE(id, name, help) rc |= render_gauge(out, AGW_M_##id);
#define R_HIST(id, name, b, c, help) rc |= render_hist(out, AGW_M_##id);
#define R_BY_CALLER(name, help) rc |= render_by_caller(out, PREFIX name, help);

int
agw_metrics_render(struct evbuffer *out)
{
    int rc = 0;

    /* Families in list order; a failed append leaves rc negative. */
    AGW_METRICS_LIST(R_INFO, R_COUNTER, R_VEC, R_GAUGE, R_HIST)
    AGW_METRICS_BY_CALLER(R_BY_CALLER)
    return rc < 0 ? -1 : 0;
}
