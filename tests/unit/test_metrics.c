/*
 * test_metrics.c - the metrics module: each update moves its own series,
 * /metrics parses as Prometheus text 0.0.4 (checked by a small parser
 * below), labels stay bounded, and concurrent updates add up exactly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "metrics.h"

#define MAX_SAMPLES 4096
#define MAX_FAMILIES 64
#define NAME_MAX_LEN 128
#define SERIES_MAX_LEN 256

/* ------------------------------------------------- exposition parser */

struct sample {
    char series[SERIES_MAX_LEN]; /* name{labels} exactly as written */
    char name[NAME_MAX_LEN];
    char le[SERIES_MAX_LEN]; /* le label of a _bucket sample, else "" */
    int family;
    double value;
};

struct family {
    char name[NAME_MAX_LEN];
    char type[16];
    bool has_help;
    bool closed; /* its samples ended: a later one would split the group */
};

struct parsed {
    struct sample samples[MAX_SAMPLES];
    size_t nsamples;
    struct family families[MAX_FAMILIES];
    size_t nfamilies;
    char error[256];
};

static bool
fail_at(struct parsed *p, const char *line, const char *why)
{
    snprintf(p->error, sizeof(p->error), "%s: %.160s", why, line);
    return false;
}

/* Copies [a-zA-Z_:][a-zA-Z0-9_:]* (no ':' when LABEL) into OUT. */
static const char *
parse_name(const char *s, char *out, size_t len, bool label)
{
    size_t n = 0;

    if (!(isalpha((unsigned char)s[0]) || s[0] == '_' ||
          (!label && s[0] == ':'))) {
        return NULL;
    }
    while (isalnum((unsigned char)s[n]) || s[n] == '_' ||
           (!label && s[n] == ':')) {
        if (n + 1 >= len) {
            return NULL;
        }
        out[n] = s[n];
        n++;
    }
    out[n] = '\0';
    return s + n;
}

/* A quoted label value with \\, \" and \n escapes; OUT gets it raw. */
static const char *
parse_label_value(const char *s, char *out, size_t len)
{
    size_t n = 0;

    if (*s++ != '"') {
        return NULL;
    }
    for (; *s != '"'; s++) {
        if (*s == '\0' || *s == '\n' || n + 1 >= len) {
            return NULL;
        }
        if (*s == '\\') {
            s++;
            if (*s != '\\' && *s != '"' && *s != 'n') {
                return NULL;
            }
        }
        out[n++] = *s;
    }
    out[n] = '\0';
    return s + 1;
}

/* {name="value",...}; the le label, when present, goes to LE. */
static const char *
parse_labels(const char *s, char *le, size_t lelen)
{
    char lname[NAME_MAX_LEN];
    char lvalue[SERIES_MAX_LEN];

    le[0] = '\0';
    if (*s != '{') {
        return s;
    }
    s++;
    while (*s != '}') {
        s = parse_name(s, lname, sizeof(lname), true);
        if (s == NULL || *s++ != '=') {
            return NULL;
        }
        s = parse_label_value(s, lvalue, sizeof(lvalue));
        if (s == NULL || (*s != ',' && *s != '}')) {
            return NULL;
        }
        if (strcmp(lname, "le") == 0) {
            snprintf(le, lelen, "%s", lvalue);
        }
        if (*s == ',') {
            s++;
        }
    }
    return s + 1;
}

static bool
parse_value(const char *s, double *out)
{
    char *end;

    if (strcmp(s, "+Inf") == 0) {
        *out = INFINITY;
        return true;
    }
    if (strcmp(s, "-Inf") == 0) {
        *out = -INFINITY;
        return true;
    }
    if (strcmp(s, "NaN") == 0) {
        *out = NAN;
        return true;
    }
    *out = strtod(s, &end);
    return end != s && *end == '\0' && isfinite(*out);
}

static int
find_family(const struct parsed *p, const char *name)
{
    for (size_t i = 0; i < p->nfamilies; i++) {
        if (strcmp(p->families[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

static int
add_family(struct parsed *p, const char *name)
{
    int i = find_family(p, name);

    if (i >= 0 || p->nfamilies == MAX_FAMILIES) {
        return i;
    }
    snprintf(p->families[p->nfamilies].name, NAME_MAX_LEN, "%s", name);
    return (int)p->nfamilies++;
}

/* The family a sample NAME belongs to: itself, or the histogram or
 * summary it is the _bucket, _sum or _count of. */
static int
family_of(const struct parsed *p, const char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    char base[NAME_MAX_LEN];
    int f = find_family(p, name);

    if (f >= 0 && p->families[f].type[0] != '\0') {
        return f;
    }
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(name), sl = strlen(suffixes[i]);

        if (n <= sl || strcmp(name + n - sl, suffixes[i]) != 0) {
            continue;
        }
        snprintf(base, sizeof(base), "%.*s", (int)(n - sl), name);
        f = find_family(p, base);
        if (f >= 0 &&
            (strcmp(p->families[f].type, "histogram") == 0 ||
             (i > 0 && strcmp(p->families[f].type, "summary") == 0))) {
            return f;
        }
    }
    return -1;
}

static bool
parse_comment(struct parsed *p, const char *line)
{
    char name[NAME_MAX_LEN];
    const char *rest;
    bool help = strncmp(line, "# HELP ", 7) == 0;
    int f;

    if (!help && strncmp(line, "# TYPE ", 7) != 0) {
        return true; /* a plain comment */
    }
    rest = parse_name(line + 7, name, sizeof(name), false);
    if (rest == NULL || *rest != ' ') {
        return fail_at(p, line, "bad metric name");
    }
    f = add_family(p, name);
    if (f < 0) {
        return fail_at(p, line, "too many families");
    }
    if (p->families[f].closed) {
        return fail_at(p, line, "family split in two groups");
    }
    if (help) {
        p->families[f].has_help = true;
        return strchr(rest + 1, '\\') == NULL ||
               fail_at(p, line, "escape in HELP (none expected)");
    }
    if (p->families[f].type[0] != '\0') {
        return fail_at(p, line, "second TYPE line");
    }
    if (strcmp(rest + 1, "counter") != 0 && strcmp(rest + 1, "gauge") != 0 &&
        strcmp(rest + 1, "histogram") != 0 &&
        strcmp(rest + 1, "summary") != 0 && strcmp(rest + 1, "untyped") != 0) {
        return fail_at(p, line, "unknown TYPE");
    }
    snprintf(p->families[f].type, sizeof(p->families[f].type), "%s", rest + 1);
    return true;
}

static bool
parse_sample(struct parsed *p, const char *line, int *current)
{
    struct sample *s = &p->samples[p->nsamples];
    const char *rest;
    size_t serieslen;

    if (p->nsamples == MAX_SAMPLES) {
        return fail_at(p, line, "too many samples");
    }
    rest = parse_name(line, s->name, sizeof(s->name), false);
    if (rest != NULL) {
        rest = parse_labels(rest, s->le, sizeof(s->le));
    }
    if (rest == NULL || *rest != ' ') {
        return fail_at(p, line, "bad sample syntax");
    }
    serieslen = (size_t)(rest - line);
    if (serieslen >= sizeof(s->series)) {
        return fail_at(p, line, "series too long");
    }
    memcpy(s->series, line, serieslen);
    s->series[serieslen] = '\0';
    /* We never write timestamps, so the value ends the line. */
    if (!parse_value(rest + 1, &s->value)) {
        return fail_at(p, line, "bad value");
    }
    s->family = family_of(p, s->name);
    if (s->family < 0) {
        return fail_at(p, line, "sample without a # TYPE for its family");
    }
    if (p->families[s->family].closed) {
        return fail_at(p, line, "family split in two groups");
    }
    if (*current >= 0 && *current != s->family) {
        p->families[*current].closed = true;
    }
    *current = s->family;
    p->nsamples++;
    return true;
}

/* Buckets of family F, series by series (one per class when labelled):
 * le increasing, counts monotone, +Inf last and equal to _count, and a
 * _sum; each series ends with its _count. */
static bool
check_histogram(struct parsed *p, int f)
{
    const char *fname = p->families[f].name;
    size_t nlen = strlen(fname);
    double last_le = -INFINITY, last_count = -1;
    bool inf = false, sum = false, any = false;

    for (size_t i = 0; i < p->nsamples; i++) {
        const struct sample *s = &p->samples[i];
        const char *suffix = s->name + nlen;
        double le;

        if (s->family != f) {
            continue;
        }
        if (strcmp(suffix, "_sum") == 0) {
            sum = true;
        } else if (strcmp(suffix, "_count") == 0) {
            if (!inf || !sum || s->value != last_count) {
                return fail_at(p, fname,
                               "histogram without +Inf = _count or _sum");
            }
            any = true;
            inf = sum = false;
            last_le = -INFINITY;
            last_count = -1;
        } else if (inf || s->le[0] == '\0' || !parse_value(s->le, &le) ||
                   le <= last_le || s->value < last_count) {
            return fail_at(p, s->series, "bucket out of order");
        } else {
            inf = isinf(le);
            last_le = le;
            last_count = s->value;
        }
    }
    if (!any || last_count != -1) {
        return fail_at(p, fname, "histogram without +Inf = _count or _sum");
    }
    return true;
}

/* Parses TEXT (NUL-terminated) into P; false with P->error when any line
 * breaks the text exposition format 0.0.4. */
static bool
parse_exposition(struct parsed *p, const char *text)
{
    int current = -1;
    char line[1024];

    memset(p, 0, sizeof(*p));
    while (*text != '\0') {
        const char *nl = strchr(text, '\n');
        size_t n;

        if (nl == NULL) {
            return fail_at(p, text, "last line without newline");
        }
        n = (size_t)(nl - text);
        if (n == 0 || n >= sizeof(line)) {
            return fail_at(p, text, "empty or overlong line");
        }
        memcpy(line, text, n);
        line[n] = '\0';
        text = nl + 1;
        if (!(line[0] == '#' ? parse_comment(p, line)
                             : parse_sample(p, line, &current))) {
            return false;
        }
    }
    for (size_t f = 0; f < p->nfamilies; f++) {
        if (strcmp(p->families[f].type, "histogram") == 0 &&
            !check_histogram(p, (int)f)) {
            return false;
        }
    }
    return true;
}

/* --------------------------------------------------------- helpers */

static struct parsed parsed; /* large: static, not on the stack */

static char *
render_text(void)
{
    struct evbuffer *b = evbuffer_new();
    size_t len;
    char *text;

    assert_non_null(b);
    assert_int_equal(agw_metrics_render(b), 0);
    len = evbuffer_get_length(b);
    text = malloc(len + 1);
    assert_non_null(text);
    assert_int_equal(evbuffer_remove(b, text, len), (int)len);
    text[len] = '\0';
    evbuffer_free(b);
    return text;
}

/* Renders and parses; fails the test when the text is not valid. */
static const struct parsed *
render_parsed(void)
{
    char *text = render_text();

    if (!parse_exposition(&parsed, text)) {
        fail_msg("bad exposition: %s", parsed.error);
    }
    free(text);
    return &parsed;
}

static bool
has_series(const struct parsed *p, const char *series)
{
    for (size_t i = 0; i < p->nsamples; i++) {
        if (strcmp(p->samples[i].series, series) == 0) {
            return true;
        }
    }
    return false;
}

/* The value of SERIES; fails the test when it is absent. */
static double
value_of(const struct parsed *p, const char *series)
{
    for (size_t i = 0; i < p->nsamples; i++) {
        if (strcmp(p->samples[i].series, series) == 0) {
            return p->samples[i].value;
        }
    }
    fail_msg("series %s not in /metrics", series);
    return NAN;
}

static size_t
count_series(const struct parsed *p, const char *name)
{
    size_t n = 0;

    for (size_t i = 0; i < p->nsamples; i++) {
        n += strcmp(p->samples[i].name, name) == 0;
    }
    return n;
}

static const char *
type_of(const struct parsed *p, const char *family)
{
    int f = find_family(p, family);

    return f >= 0 && p->families[f].has_help ? p->families[f].type : "";
}

#define V(series) value_of(p, series)

static int
setup(void **state)
{
    agw_metrics_init("9.8.7-test");
    return 0;
}

/* ----------------------------------------------------------- tests */

/* The parser must be able to say no, or the other tests prove nothing. */
static void
test_parser_rejects_bad_text(void **state)
{
    static const char *const bad[] = {
        "x 1\n",                                     /* no TYPE */
        "# TYPE x counter\nx{a=\"1\" 1\n",           /* unclosed labels */
        "# TYPE x counter\nx{a=1} 1\n",              /* unquoted value */
        "# TYPE x counter\nx one\n",                 /* bad value */
        "# TYPE x counter\nx 1",                     /* no final newline */
        "# TYPE x counter\n# TYPE x counter\nx 1\n", /* two TYPEs */
        "# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx 2\n", /* split */
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
        "h_sum 1\nh_count 1\n", /* not monotone */
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
        "h_sum 1\nh_count 3\n", /* +Inf != _count */
        "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
        "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", /* le order */
    };
    static const char good[] =
        "# HELP h a histogram\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\n"
        "h_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n"
        "# TYPE c counter\nc{code=\"a\\\"b\",x=\"\"} 4\n";

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse_exposition(&parsed, bad[i])) {
            fail_msg("parser accepted bad text #%zu", i);
        }
    }
    assert_true(parse_exposition(&parsed, good));
    assert_int_equal(parsed.nsamples, 5);
}

/* Every family in the list and its extension is there with HELP and the
 * right TYPE. */
static void
test_fresh_render_has_every_family(void **state)
{
    static const char *const families[][2] = {
        {"asset_gateway_build_info", "gauge"},
        {"asset_gateway_start_time_seconds", "gauge"},
        {"asset_gateway_requests_total", "counter"},
        {"asset_gateway_inflight_requests", "gauge"},
        {"asset_gateway_connections_open", "gauge"},
        {"asset_gateway_cache_lookups_total", "counter"},
        {"asset_gateway_singleflight_waiters", "gauge"},
        {"asset_gateway_upstream_requests_total", "counter"},
        {"asset_gateway_upstream_retries_total", "counter"},
        {"asset_gateway_upstream_429_total", "counter"},
        {"asset_gateway_upstream_duration_seconds", "histogram"},
        {"asset_gateway_ratelimit_wait_seconds", "histogram"},
        {"asset_gateway_ratelimit_queue_depth", "gauge"},
        {"asset_gateway_ratelimit_rejected_total", "counter"},
        {"asset_gateway_redis_up", "gauge"},
        {"asset_gateway_redis_rtt_seconds", "histogram"},
        {"asset_gateway_redis_master_changes_total", "counter"},
        {"asset_gateway_degraded", "gauge"},
        {"asset_gateway_tls_handshake_failures_total", "counter"},
        {"asset_gateway_config_reloads_total", "counter"},
        {"asset_gateway_admin_purges_total", "counter"},
        {"asset_gateway_upstream_calls_total", "counter"}, /* no caller yet */
    };
    const struct parsed *p = render_parsed();
    double now = (double)time(NULL);
    double started;

    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        assert_string_equal(type_of(p, families[i][0]), families[i][1]);
    }
    assert_int_equal(p->nfamilies, sizeof(families) / sizeof(families[0]));
    assert_true(V("asset_gateway_build_info{version=\"9.8.7-test\"}") == 1);
    started = V("asset_gateway_start_time_seconds");
    assert_true(started > now - 5 && started <= now + 1);
    /* Statuses only appear once seen; fixed words always appear. */
    assert_int_equal(count_series(p, "asset_gateway_requests_total"), 0);
    assert_int_equal(count_series(p, "asset_gateway_upstream_requests_total"),
                     0);
    assert_true(V("asset_gateway_cache_lookups_total{result=\"hit\"}") == 0);
    assert_true(V("asset_gateway_config_reloads_total{result=\"failed\"}") ==
                0);
    assert_true(V("asset_gateway_redis_up") == 0);
    assert_true(V("asset_gateway_upstream_duration_seconds_count") == 0);
}

static void
test_requests_by_status(void **state)
{
    const struct parsed *p;

    for (int i = 0; i < 3; i++) {
        agw_metrics_count_request(200);
    }
    agw_metrics_count_request(404);
    agw_metrics_count_request(100);
    agw_metrics_count_request(599);
    agw_metrics_count_request(99);  /* ignored */
    agw_metrics_count_request(600); /* ignored */
    agw_metrics_count_request(-1);  /* ignored */
    p = render_parsed();
    assert_true(V("asset_gateway_requests_total{code=\"200\"}") == 3);
    assert_true(V("asset_gateway_requests_total{code=\"404\"}") == 1);
    assert_true(V("asset_gateway_requests_total{code=\"100\"}") == 1);
    assert_true(V("asset_gateway_requests_total{code=\"599\"}") == 1);
    assert_int_equal(count_series(p, "asset_gateway_requests_total"), 4);
    assert_false(has_series(p, "asset_gateway_requests_total{code=\"500\"}"));
    /* Counting answers moves no other family. */
    assert_int_equal(count_series(p, "asset_gateway_upstream_requests_total"),
                     0);
    assert_true(V("asset_gateway_cache_lookups_total{result=\"miss\"}") == 0);
}

static void
test_cache_lookups(void **state)
{
    const struct parsed *p;

    agw_metrics_count_cache(AGW_CACHE_HIT);
    agw_metrics_count_cache(AGW_CACHE_HIT);
    agw_metrics_count_cache(AGW_CACHE_MISS);
    agw_metrics_count_cache(AGW_CACHE_COALESCED);
    agw_metrics_count_cache(AGW_CACHE_COALESCED);
    agw_metrics_count_cache(AGW_CACHE_COALESCED);
    agw_metrics_count_cache((enum agw_cache_result)3);    /* ignored */
    agw_metrics_count_cache((enum agw_cache_result) - 1); /* ignored */
    p = render_parsed();
    assert_true(V("asset_gateway_cache_lookups_total{result=\"hit\"}") == 2);
    assert_true(V("asset_gateway_cache_lookups_total{result=\"miss\"}") == 1);
    assert_true(V("asset_gateway_cache_lookups_total{result=\"coalesced\"}") ==
                3);
    assert_int_equal(count_series(p, "asset_gateway_cache_lookups_total"), 3);
    assert_int_equal(count_series(p, "asset_gateway_requests_total"), 0);
}

static void
test_upstream_codes(void **state)
{
    const struct parsed *p;

    agw_metrics_count_upstream(200);
    agw_metrics_count_upstream(200);
    agw_metrics_count_upstream(503);
    agw_metrics_count_upstream(429);
    agw_metrics_count_upstream(0);
    agw_metrics_count_upstream(-7);   /* error */
    agw_metrics_count_upstream(1000); /* error */
    p = render_parsed();
    assert_true(V("asset_gateway_upstream_requests_total{code=\"200\"}") == 2);
    assert_true(V("asset_gateway_upstream_requests_total{code=\"503\"}") == 1);
    assert_true(V("asset_gateway_upstream_requests_total{code=\"429\"}") == 1);
    assert_true(V("asset_gateway_upstream_requests_total{code=\"error\"}") ==
                3);
    assert_int_equal(count_series(p, "asset_gateway_upstream_requests_total"),
                     4);
    assert_true(V("asset_gateway_upstream_429_total") == 1);
    assert_true(V("asset_gateway_upstream_retries_total") == 0);
    assert_int_equal(count_series(p, "asset_gateway_requests_total"), 0);
}

static void
test_counters_and_reloads(void **state)
{
    const struct parsed *p;

    for (int i = 0; i < 5; i++) {
        agw_metrics_count_rejected(i >= 3);
    }
    agw_metrics_inc(AGW_M_UPSTREAM_RETRIES);
    agw_metrics_inc(AGW_M_COUNTER__COUNT); /* ignored */
    agw_metrics_count_reload(true);
    agw_metrics_count_reload(false);
    agw_metrics_count_reload(false);
    p = render_parsed();
    assert_true(
        V("asset_gateway_ratelimit_rejected_total{class=\"interactive\"}") ==
        3);
    assert_true(V("asset_gateway_ratelimit_rejected_total{class=\"batch\"}") ==
                2);
    assert_true(V("asset_gateway_upstream_retries_total") == 1);
    assert_true(V("asset_gateway_upstream_429_total") == 0);
    assert_true(V("asset_gateway_config_reloads_total{result=\"ok\"}") == 1);
    assert_true(V("asset_gateway_config_reloads_total{result=\"failed\"}") ==
                2);
}

static void
test_gauges(void **state)
{
    const struct parsed *p;

    agw_metrics_gauge_add(AGW_M_INFLIGHT, 3);
    agw_metrics_gauge_add(AGW_M_INFLIGHT, -1);
    agw_metrics_gauge_add(AGW_M_RATELIMIT_QUEUE_DEPTH, 7);
    agw_metrics_gauge_add(AGW_M_CONNECTIONS_OPEN, 1);
    agw_metrics_gauge_add(AGW_M_CONNECTIONS_OPEN, -1);
    agw_metrics_gauge_add(AGW_M_SINGLEFLIGHT_WAITERS, -2); /* a bug shows */
    agw_metrics_gauge_set(AGW_M_REDIS_UP, 1);
    agw_metrics_gauge_set(AGW_M_DEGRADED, 1);
    agw_metrics_gauge_set(AGW_M_DEGRADED, 0);
    agw_metrics_gauge_set(AGW_M_GAUGE__COUNT, 5); /* ignored */
    p = render_parsed();
    assert_true(V("asset_gateway_inflight_requests") == 2);
    assert_true(V("asset_gateway_ratelimit_queue_depth") == 7);
    assert_true(V("asset_gateway_connections_open") == 0);
    assert_true(V("asset_gateway_singleflight_waiters") == -2);
    assert_true(V("asset_gateway_redis_up") == 1);
    assert_true(V("asset_gateway_degraded") == 0);
}

static void
test_histogram_buckets(void **state)
{
    const struct parsed *p;
    const char *h = "asset_gateway_upstream_duration_seconds";
    char series[SERIES_MAX_LEN];

    agw_metrics_observe(AGW_M_UPSTREAM_DURATION, 0.001); /* le 0.005 */
    agw_metrics_observe(AGW_M_UPSTREAM_DURATION, 0.005); /* le 0.005 */
    agw_metrics_observe(AGW_M_UPSTREAM_DURATION, 0.2);   /* le 0.25 */
    agw_metrics_observe(AGW_M_UPSTREAM_DURATION, 1.0);   /* le 1 */
    agw_metrics_observe(AGW_M_UPSTREAM_DURATION, 31.0);  /* +Inf only */
    agw_metrics_observe(AGW_M_UPSTREAM_DURATION, -3.0);  /* as 0 */
    agw_metrics_observe(AGW_M_UPSTREAM_DURATION, NAN);   /* as 0 */
    agw_metrics_observe(AGW_M_HISTOGRAM__COUNT, 1.0);    /* ignored */
    agw_metrics_observe(AGW_M_REDIS_RTT, 0.0003);
    p = render_parsed();
#define B(le)                                                                  \
    (snprintf(series, sizeof(series), "%s_bucket{le=\"%s\"}", h, le), V(series))
    assert_true(B("0.005") == 4);
    assert_true(B("0.01") == 4);
    assert_true(B("0.1") == 4);
    assert_true(B("0.25") == 5);
    assert_true(B("0.5") == 5);
    assert_true(B("1") == 6);
    assert_true(B("30") == 6);
    assert_true(B("+Inf") == 7);
#undef B
    snprintf(series, sizeof(series), "%s_count", h);
    assert_true(V(series) == 7);
    snprintf(series, sizeof(series), "%s_sum", h);
    assert_true(fabs(V(series) - 32.206) < 1e-9);
    assert_int_equal(count_series(p, "asset_gateway_upstream_duration_seconds_"
                                     "bucket"),
                     14);
    /* Other histograms did not move, except the one observed. */
    assert_true(V("asset_gateway_ratelimit_wait_seconds_count{class="
                  "\"interactive\"}") == 0);
    assert_true(V("asset_gateway_redis_rtt_seconds_bucket{le=\"0.0001\"}") ==
                0);
    assert_true(V("asset_gateway_redis_rtt_seconds_bucket{le=\"0.0005\"}") ==
                1);
    assert_true(fabs(V("asset_gateway_redis_rtt_seconds_sum") - 0.0003) <
                1e-12);
}

/* Buckets the brief asks for: upstream 5ms..30s, wait 1ms..10s, Redis
 * 100us..1s. */
static void
test_bucket_ranges(void **state)
{
    const struct parsed *p = render_parsed();

    assert_true(has_series(
        p, "asset_gateway_upstream_duration_seconds_bucket{le=\"0.005\"}"));
    assert_true(has_series(
        p, "asset_gateway_upstream_duration_seconds_bucket{le=\"30\"}"));
    assert_true(has_series(
        p, "asset_gateway_ratelimit_wait_seconds_bucket{class=\"interactive\","
           "le=\"0.001\"}"));
    assert_true(has_series(p, "asset_gateway_ratelimit_wait_seconds_bucket{"
                              "class=\"batch\",le=\"10\"}"));
    assert_true(
        has_series(p, "asset_gateway_redis_rtt_seconds_bucket{le=\"0.0001\"}"));
    assert_true(
        has_series(p, "asset_gateway_redis_rtt_seconds_bucket{le=\"1\"}"));
}

/* Whatever statuses arrive, the series stay within the fixed sets. */
static void
test_labels_bounded(void **state)
{
    const struct parsed *p;

    for (int s = -1000; s < 2000; s++) {
        agw_metrics_count_request(s);
        agw_metrics_count_upstream(s);
    }
    p = render_parsed();
    assert_int_equal(count_series(p, "asset_gateway_requests_total"), 500);
    assert_int_equal(count_series(p, "asset_gateway_upstream_requests_total"),
                     501);
    assert_true(V("asset_gateway_upstream_requests_total{code=\"error\"}") ==
                2500);
    assert_true(p->nsamples < 1200);
    for (size_t i = 0; i < p->nsamples; i++) {
        /* Only code, result, class, le and version ever label a
         * series. */
        const char *brace = strchr(p->samples[i].series, '{');

        if (brace != NULL) {
            assert_true(strncmp(brace, "{code=\"", 7) == 0 ||
                        strncmp(brace, "{result=\"", 9) == 0 ||
                        strncmp(brace, "{le=\"", 5) == 0 ||
                        strncmp(brace, "{class=\"interactive\"", 20) == 0 ||
                        strncmp(brace, "{class=\"batch\"", 14) == 0 ||
                        strncmp(brace, "{version=\"", 10) == 0);
        }
    }
}

static void
test_version_escaped(void **state)
{
    const struct parsed *p;

    agw_metrics_init("1.0\"x\\y\nz");
    p = render_parsed();
    assert_true(V("asset_gateway_build_info{version=\"1.0\\\"x\\\\y\\nz\"}") ==
                1);
    agw_metrics_init(NULL);
    p = render_parsed();
    assert_true(V("asset_gateway_build_info{version=\"unknown\"}") == 1);
}

/* SPEC section 11: the limiter's wait and 429s, one series per class,
 * both shown from the start; a histogram without a class has none. */
static void
test_by_class(void **state)
{
    const struct parsed *p = render_parsed();
    const char *w = "asset_gateway_ratelimit_wait_seconds";
    char series[SERIES_MAX_LEN];

    assert_true(has_series(
        p, "asset_gateway_ratelimit_rejected_total{class=\"interactive\"}"));
    assert_true(has_series(
        p, "asset_gateway_ratelimit_rejected_total{class=\"batch\"}"));
    assert_false(has_series(p, "asset_gateway_ratelimit_rejected_total"));
    agw_metrics_observe_class(AGW_M_RATELIMIT_WAIT, true, 0.3);
    agw_metrics_observe_class(AGW_M_RATELIMIT_WAIT, true, 0.02);
    agw_metrics_observe_class(AGW_M_RATELIMIT_WAIT, false, 0.002);
    agw_metrics_observe_class(AGW_M_UPSTREAM_DURATION, true, 0.1);
    p = render_parsed();
    snprintf(series, sizeof(series), "%s_count{class=\"batch\"}", w);
    assert_true(V(series) == 2);
    snprintf(series, sizeof(series), "%s_count{class=\"interactive\"}", w);
    assert_true(V(series) == 1);
    snprintf(series, sizeof(series), "%s_sum{class=\"batch\"}", w);
    assert_true(fabs(V(series) - 0.32) < 1e-9);
    snprintf(series, sizeof(series), "%s_bucket{class=\"batch\",le=\"0.025\"}",
             w);
    assert_true(V(series) == 1);
    snprintf(series, sizeof(series), "%s_bucket{class=\"batch\",le=\"+Inf\"}",
             w);
    assert_true(V(series) == 2);
    assert_false(has_series(p, "asset_gateway_ratelimit_wait_seconds_count"));
    /* A histogram without a class keeps one series: batch goes there. */
    assert_true(V("asset_gateway_upstream_duration_seconds_count") == 1);
    assert_string_equal(agw_class_name(true), "batch");
    assert_string_equal(agw_class_name(false), "interactive");
}

/* ------------------------------------------------------ concurrency */

#define THREADS 4
#define ROUNDS 100000

static void *
hammer(void *arg)
{
    long id = (long)(intptr_t)arg;

    for (long i = 0; i < ROUNDS; i++) {
        agw_metrics_gauge_add(AGW_M_INFLIGHT, 1);
        agw_metrics_count_request(200);
        agw_metrics_count_cache((i & 1) ? AGW_CACHE_HIT : AGW_CACHE_MISS);
        agw_metrics_count_upstream((i % 4 == id % 4) ? 0 : 201);
        agw_metrics_observe(AGW_M_RATELIMIT_WAIT, 0.002);
        agw_metrics_inc(AGW_M_UPSTREAM_RETRIES);
        agw_metrics_gauge_add(AGW_M_INFLIGHT, -1);
    }
    return NULL;
}

static void
test_concurrent_updates_sum_exactly(void **state)
{
    pthread_t threads[THREADS];
    const struct parsed *p;
    double total = (double)THREADS * ROUNDS;

    for (long i = 0; i < THREADS; i++) {
        assert_int_equal(
            pthread_create(&threads[i], NULL, hammer, (void *)(intptr_t)i), 0);
    }
    /* Renders taken mid-flight must still be valid, histogram included. */
    for (int i = 0; i < 20; i++) {
        render_parsed();
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    }
    p = render_parsed();
    assert_true(V("asset_gateway_requests_total{code=\"200\"}") == total);
    assert_true(V("asset_gateway_cache_lookups_total{result=\"hit\"}") ==
                total / 2);
    assert_true(V("asset_gateway_cache_lookups_total{result=\"miss\"}") ==
                total / 2);
    assert_true(V("asset_gateway_upstream_requests_total{code=\"error\"}") ==
                total / 4);
    assert_true(V("asset_gateway_upstream_requests_total{code=\"201\"}") ==
                total * 3 / 4);
    assert_true(V("asset_gateway_upstream_retries_total") == total);
    assert_true(V("asset_gateway_ratelimit_wait_seconds_count{class="
                  "\"interactive\"}") == total);
    assert_true(V("asset_gateway_ratelimit_wait_seconds_bucket{class="
                  "\"interactive\",le=\"0.001\"}") == 0);
    assert_true(V("asset_gateway_ratelimit_wait_seconds_bucket{class="
                  "\"interactive\",le=\"0.005\"}") == total);
    assert_true(fabs(V("asset_gateway_ratelimit_wait_seconds_sum{class="
                       "\"interactive\"}") -
                     total * 0.002) < 1e-6);
    assert_true(V("asset_gateway_inflight_requests") == 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_parser_rejects_bad_text, setup),
        cmocka_unit_test_setup(test_fresh_render_has_every_family, setup),
        cmocka_unit_test_setup(test_requests_by_status, setup),
        cmocka_unit_test_setup(test_cache_lookups, setup),
        cmocka_unit_test_setup(test_upstream_codes, setup),
        cmocka_unit_test_setup(test_counters_and_reloads, setup),
        cmocka_unit_test_setup(test_gauges, setup),
        cmocka_unit_test_setup(test_histogram_buckets, setup),
        cmocka_unit_test_setup(test_bucket_ranges, setup),
        cmocka_unit_test_setup(test_labels_bounded, setup),
        cmocka_unit_test_setup(test_by_class, setup),
        cmocka_unit_test_setup(test_version_escaped, setup),
        cmocka_unit_test_setup(test_concurrent_updates_sum_exactly, setup),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
