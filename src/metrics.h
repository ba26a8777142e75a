/*
 * metrics.h - the gateway's Prometheus metrics: one X-macro list from which
 * the enums, the storage and the /metrics text are generated.
 */
#ifndef AGW_METRICS_H
#define AGW_METRICS_H

#include <stdbool.h>

struct evbuffer;

/*
 * Every metric, in /metrics order. Names get the "asset_gateway_" prefix.
 * Columns: ID, name, then for VEC the label set (AGW_METRIC_LABELSETS) and
 * for HIST the bucket list (AGW_BUCKETS_*) and whether it is labelled by
 * class (SPEC §11: interactive, batch; 0 or 1), then the # HELP text.
 * Labels are bounded by construction: HTTP statuses or fixed words, never
 * business ids, URIs or anything else a request chooses. The one family
 * labelled by caller comes after the list: AGW_METRICS_BY_CALLER.
 */
#define AGW_METRICS_LIST(INFO, COUNTER, VEC, GAUGE, HIST)                      \
    INFO(BUILD_INFO, "build_info",                                             \
         "Always 1; the version label names the running build.")               \
    GAUGE(START_TIME, "start_time_seconds",                                    \
          "Unix time the process started (a change means a restart).")         \
    VEC(REQUESTS, "requests_total", STATUS,                                    \
        "Answers sent to callers on every route, by HTTP status.")             \
    GAUGE(INFLIGHT, "inflight_requests",                                       \
          "Create calls accepted and not yet answered.")                       \
    GAUGE(CONNECTIONS_OPEN, "connections_open",                                \
          "Caller connections open now.")                                      \
    VEC(CACHE_LOOKUPS, "cache_lookups_total", CACHE,                           \
        "Create calls by how they were served: hit (stored answer), miss "     \
        "(went upstream), coalesced (waited on an identical call in "          \
        "flight).")                                                            \
    GAUGE(SINGLEFLIGHT_WAITERS, "singleflight_waiters",                        \
          "Calls waiting now on an identical call in flight, here or on "      \
          "another instance.")                                                 \
    VEC(UPSTREAM_REQUESTS, "upstream_requests_total", UPSTREAM,                \
        "Attempts sent to Connectly, by its HTTP status; code=\"error\": "     \
        "connect failure, timeout or broken connection.")                      \
    COUNTER(UPSTREAM_RETRIES, "upstream_retries_total",                        \
            "Upstream attempts that repeat an earlier failed attempt of "      \
            "the same call.")                                                  \
    COUNTER(UPSTREAM_429, "upstream_429_total",                                \
            "Upstream answers 429: Connectly's own limit was hit; the "        \
            "limiter paused.")                                                 \
    HIST(UPSTREAM_DURATION, "upstream_duration_seconds", UPSTREAM, 0,          \
         "Time of one upstream attempt, from sending to the answer or "        \
         "the failure.")                                                       \
    HIST(RATELIMIT_WAIT, "ratelimit_wait_seconds", WAIT, 1,                    \
         "Time a call waited for its fleet rate-limit slot (0 when "           \
         "admitted at once), by its caller's class.")                          \
    GAUGE(RATELIMIT_QUEUE_DEPTH, "ratelimit_queue_depth",                      \
          "Calls waiting now on a rate-limit timer.")                          \
    VEC(RATELIMIT_REJECTED, "ratelimit_rejected_total", CLASS,                 \
        "Calls answered 429 because their slot was more than max_wait_ms "     \
        "(batch_max_wait_ms for batch) away, by their caller's class.")        \
    GAUGE(REDIS_UP, "redis_up", "1 while the Redis connection is up, else 0.") \
    HIST(REDIS_RTT, "redis_rtt_seconds", REDIS, 0,                             \
         "Round-trip time of one Redis command.")                              \
    COUNTER(REDIS_MASTER_CHANGES, "redis_master_changes_total",                \
            "Switches to another Redis master named by the sentinels; "        \
            "the first discovery is not one.")                                 \
    GAUGE(DEGRADED, "degraded",                                                \
          "1 while running on the local fallback (store and limiter "          \
          "without Redis), else 0.")                                           \
    COUNTER(TLS_HANDSHAKE_FAILURES, "tls_handshake_failures_total",            \
            "TLS handshakes on tls_listen that failed (a fatal alert sent "    \
            "or received before the handshake finished).")                     \
    VEC(CONFIG_RELOADS, "config_reloads_total", RELOAD,                        \
        "SIGHUP reloads by result: ok (applied to new calls) or failed "       \
        "(refused, old settings kept).")                                       \
    VEC(ADMIN_PURGES, "admin_purges_total", PURGE,                             \
        "POST /admin/purge answers: purged (Redis or this instance held "      \
        "it), absent (nothing stored), invalid (400).")

/*
 * The list's one extension, last in /metrics: a counter family labelled
 * caller= and class=. Caller values are clients-file names (bounded by
 * the clients files, never chosen by a request), so the counts are kept
 * where the callers are known: agw_admin_stats_caller_total (admin_stats.h)
 * gives them to agw_metrics_render. Columns: name, then the # HELP text.
 */
#define AGW_METRICS_BY_CALLER(BY_CALLER)                                       \
    BY_CALLER("upstream_calls_total",                                          \
              "Upstream attempts by caller (its name in the clients file; "    \
              "\"-\" with mode = none) and its class.")

/* Upper bounds (seconds) of the histogram buckets; +Inf is implicit. */
#define AGW_BUCKETS_UPSTREAM                                                   \
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30
#define AGW_BUCKETS_WAIT                                                       \
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10
#define AGW_BUCKETS_REDIS                                                      \
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,     \
        0.25, 1
#define AGW_METRICS_MAX_BUCKETS 16

/* Label sets of the VEC families: ID, label name, number of values. */
#define AGW_METRIC_LABELSETS(X)                                                \
    X(STATUS, "code", 500)   /* HTTP 100..599; only non-zero ones shown */     \
    X(UPSTREAM, "code", 501) /* "error", then HTTP 100..599 (non-zero) */      \
    X(CACHE, "result", 3)    /* enum agw_cache_result, always shown */         \
    X(RELOAD, "result", 2)   /* "ok", "failed", always shown */                \
    X(PURGE, "result", 3)    /* enum agw_purge_result, always shown */         \
    X(CLASS, "class", 2)     /* enum agw_class, always shown */

#define AGW_METRICS_IGNORE_(...)
#define AGW_METRICS_ENUM_(id, ...) AGW_M_##id,

/* Plain counters (no labels): agw_metrics_inc/agw_metrics_add. */
enum agw_counter {
    AGW_METRICS_LIST(AGW_METRICS_IGNORE_, AGW_METRICS_ENUM_,
                     AGW_METRICS_IGNORE_, AGW_METRICS_IGNORE_,
                     AGW_METRICS_IGNORE_) AGW_M_COUNTER__COUNT
};

/* Gauges: agw_metrics_gauge_add/agw_metrics_gauge_set. */
enum agw_gauge {
    AGW_METRICS_LIST(AGW_METRICS_IGNORE_, AGW_METRICS_IGNORE_,
                     AGW_METRICS_IGNORE_, AGW_METRICS_ENUM_,
                     AGW_METRICS_IGNORE_) AGW_M_GAUGE__COUNT
};

/* Histograms, in seconds: agw_metrics_observe. */
enum agw_histogram {
    AGW_METRICS_LIST(AGW_METRICS_IGNORE_, AGW_METRICS_IGNORE_,
                     AGW_METRICS_IGNORE_, AGW_METRICS_IGNORE_,
                     AGW_METRICS_ENUM_) AGW_M_HISTOGRAM__COUNT
};

/* Counter families with one label; use the typed functions below. */
enum agw_metric_vec {
    AGW_METRICS_LIST(AGW_METRICS_IGNORE_, AGW_METRICS_IGNORE_,
                     AGW_METRICS_ENUM_, AGW_METRICS_IGNORE_,
                     AGW_METRICS_IGNORE_) AGW_M_VEC__COUNT
};

/* result label of asset_gateway_cache_lookups_total. */
enum agw_cache_result {
    AGW_CACHE_HIT = 0,
    AGW_CACHE_MISS = 1,
    AGW_CACHE_COALESCED = 2,
};

/* result label of asset_gateway_admin_purges_total. */
enum agw_purge_result {
    AGW_PURGE_PURGED = 0,
    AGW_PURGE_ABSENT = 1,
    AGW_PURGE_INVALID = 2,
};

/* class label (SPEC §11): a caller's priority class. */
enum agw_class {
    AGW_CLASS_INTERACTIVE = 0,
    AGW_CLASS_BATCH = 1,
};

/* "interactive" or "batch". */
const char *agw_class_name(bool batch);

/* Content-Type of the /metrics answer (text exposition format 0.0.4). */
#define AGW_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Every function below may be called from any thread at any time after
 * agw_metrics_init: updates are relaxed atomic operations, no locks.
 * Out-of-range arguments are ignored, never a crash.
 */

/* Zeroes everything, records the start time and VERSION (copied; NULL
 * means "unknown"). Call once in main() before any thread starts; tests
 * call it to start from zero. */
void agw_metrics_init(const char *version);

/* One answer sent to a caller with HTTP STATUS (100..599; others are
 * ignored: the gateway never sends them). */
void agw_metrics_count_request(int status);

/* One create call served as RESULT. */
void agw_metrics_count_cache(enum agw_cache_result result);

/* One upstream attempt that ended with HTTP STATUS_OR_0; 0 (or anything
 * outside 100..599) counts as code="error": connect failure, timeout,
 * broken connection. Also counts AGW_M_UPSTREAM_429 when STATUS_OR_0 is 429. */
void agw_metrics_count_upstream(int status_or_0);

/* One SIGHUP reload, applied (OK) or refused. */
void agw_metrics_count_reload(bool ok);

/* One POST /admin/purge answered as RESULT. */
void agw_metrics_count_purge(enum agw_purge_result result);

/* Read back (the operators' status page): create calls served as RESULT
 * so far, and upstream attempts so far (every code). */
unsigned long long agw_metrics_cache_count(enum agw_cache_result result);
unsigned long long agw_metrics_upstream_count(void);

void agw_metrics_inc(enum agw_counter counter);
void agw_metrics_add(enum agw_counter counter, unsigned long n);

/* Records SECONDS (negative or NaN count as 0) into HIST (a histogram
 * labelled by class: into its interactive one). */
void agw_metrics_observe(enum agw_histogram hist, double seconds);

/* The same into HIST's series of class BATCH (or interactive). */
void agw_metrics_observe_class(enum agw_histogram hist, bool batch,
                               double seconds);

/* One call of class BATCH (or interactive) answered 429 by the limiter. */
void agw_metrics_count_rejected(bool batch);

void agw_metrics_gauge_add(enum agw_gauge gauge, long delta);
void agw_metrics_gauge_set(enum agw_gauge gauge, long value);
long agw_metrics_gauge_get(enum agw_gauge gauge);

/* Appends the Prometheus text exposition of every metric to OUT (owned
 * by the caller): AGW_METRICS_LIST, then AGW_METRICS_BY_CALLER. 0 on
 * success, -1 when OUT could not grow. Each sample is read once; a
 * histogram's +Inf bucket always equals its _count. */
int agw_metrics_render(struct evbuffer *out);

#endif
