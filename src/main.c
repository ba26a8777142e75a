/*
 * main.c - asset-gateway: command line, start-up in dependency order,
 * signals (drain on SIGTERM/SIGINT), and the event loop.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "auth.h"
#include "config.h"
#include "fleet.h"
#include "redis.h"
#include "create.h"
#include "gateway.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "server.h"
#include "singleflight.h"
#include "store.h"
#include "store_l1.h"
#include "store_tiered.h"
#include "upstream.h"

#include "agw_autoconf.h" /* PACKAGE_VERSION */

#define DRAIN_TICK_MS 50
#define FLUSH_GRACE_MS 100
/* Once every call is answered, connections still open may be sending a
 * request that arrived after SIGTERM: wait this long for them to finish
 * (their answer is 503 with Connection: close) or to go away. */
#define DRAIN_LINGER_TICKS 20

struct daemon {
    const char *config_path;
    struct agw_config *cfg; /* the running snapshot; gw.cfg is the same */
    struct agw_gateway gw;
    struct agw_server *server;
    struct event *sigterm, *sigint, *sighup, *sigusr1;
    struct event *drain_tick;
    int64_t drain_ticks_left;
    int linger_ticks_left;
};

static void
usage(FILE *out)
{
    fprintf(out,
            "Usage: asset-gateway -c FILE [-t]\n"
            "       asset-gateway -V | -h | --sample-config\n"
            "\n"
            "  -c, --config FILE   configuration file (INI)\n"
            "  -t, --test          check the configuration and exit (0 ok, "
            "1 bad)\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          this text\n"
            "      --sample-config print a configuration file with every key "
            "and its default\n");
}

static void
exit_soon(struct daemon *d)
{
    struct timeval grace = {0, FLUSH_GRACE_MS * 1000};

    /* Answers just handed to evhttp still need a loop turn to be written. */
    event_base_loopexit(d->gw.base, &grace);
}

static void
on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    struct daemon *d = arg;
    struct timeval tick = {0, DRAIN_TICK_MS * 1000};

    if (d->gw.inflight == 0 && (agw_server_connections(d->server) == 0 ||
                                d->linger_ticks_left-- <= 0)) {
        log_info("drained: every call answered; exiting");
        exit_soon(d);
        return;
    }
    if (--d->drain_ticks_left <= 0) {
        log_warn("drain_timeout_ms reached with %ld calls in flight: "
                 "answering them 503",
                 d->gw.inflight);
        agw_create_abort_all(&d->gw);
        exit_soon(d);
        return;
    }
    evtimer_add(d->drain_tick, &tick);
}

static void
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;

    if (d->gw.draining) {
        return;
    }
    log_info("signal %d: draining (%ld calls in flight, up to %d ms)",
             (int)sig, d->gw.inflight, d->cfg->drain_timeout_ms);
    d->gw.draining = true;
    agw_server_stop_accepting(d->server);
    d->drain_ticks_left = d->cfg->drain_timeout_ms / DRAIN_TICK_MS + 1;
    d->linger_ticks_left = DRAIN_LINGER_TICKS;
    on_drain_tick(-1, 0, d);
}

/* The callers of CFG: *AUTH is NULL for mode = none. */
static bool
load_auth(const struct agw_config *cfg, struct agw_auth **auth, char *err,
          size_t errlen)
{
    *auth = NULL;
    if (cfg->auth_mode != AGW_AUTH_TOKEN) {
        return true;
    }
    *auth = agw_auth_load(cfg->clients_file, err, errlen);
    return *auth != NULL;
}

static void
report_restart_only(const char *section, const char *key)
{
    log_warn("reload: [%s] %s changed, which needs a restart; the running "
             "value stays until then",
             section, key);
}

/*
 * SIGHUP: reads the file, key file included, and applies it to calls
 * that start from now on; calls in flight keep the snapshot they hold.
 * A file that does not load changes nothing.
 */
static void
on_sighup(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;
    struct agw_config *next = calloc(1, sizeof(*next));
    struct agw_auth *auth = NULL;
    char err[1024];

    if (next == NULL ||
        !agw_config_load(next, d->config_path, err, sizeof(err)) ||
        !load_auth(next, &auth, err, sizeof(err))) {
        log_error("reload refused, the running configuration stays: %s",
                  next == NULL ? "out of memory" : err);
        agw_metrics_count_reload(false);
        if (next != NULL) {
            agw_config_free(next);
        }
        free(next);
        return;
    }
    agw_config_ref(next);
    /* Calls copy the caller's name when they start, so the old table can
     * go at once. */
    agw_auth_free(d->gw.auth);
    d->gw.auth = auth;
    agw_config_keep_restart_only(next, d->cfg, report_restart_only);
    agw_log_setup(next->log_level, next->log_format, "asset-gateway");
    if (!agw_log_open(next->log_file)) {
        log_error("reload: cannot open log file %s: %s; logging stays where "
                  "it was",
                  next->log_file, strerror(errno));
    }
    agw_upstream_reconfigure(d->gw.upstream, next);
    d->gw.limiter->ops->reconfigure(d->gw.limiter, next->rate, next->burst);
    agw_limiter_fleet_reload(d->gw.limiter, next);
    agw_server_reconfigure(d->server, next);
    agw_config_unref(d->cfg);
    d->cfg = next;
    d->gw.cfg = next;
    agw_metrics_count_reload(true);
    log_info("configuration reloaded from %s", d->config_path);
}

static void
on_sigusr1(evutil_socket_t sig, short what, void *arg)
{
    if (!agw_log_reopen()) {
        log_error("SIGUSR1: cannot reopen the log file: %s", strerror(errno));
        return;
    }
    log_info("SIGUSR1: log file reopened");
}

static int
add_signals(struct daemon *d)
{
    struct event_base *base = d->gw.base;

    d->sigterm = evsignal_new(base, SIGTERM, on_stop_signal, d);
    d->sigint = evsignal_new(base, SIGINT, on_stop_signal, d);
    d->sighup = evsignal_new(base, SIGHUP, on_sighup, d);
    d->sigusr1 = evsignal_new(base, SIGUSR1, on_sigusr1, d);
    d->drain_tick = evtimer_new(base, on_drain_tick, d);
    if (d->sigterm == NULL || d->sigint == NULL || d->sighup == NULL ||
        d->sigusr1 == NULL || d->drain_tick == NULL) {
        return -1;
    }
    evsignal_add(d->sigterm, NULL);
    evsignal_add(d->sigint, NULL);
    evsignal_add(d->sighup, NULL);
    evsignal_add(d->sigusr1, NULL);
    return 0;
}

/* Both Redis connections feed one state: up only when both are. */
static void
on_redis_state(bool up, void *arg)
{
    struct agw_gateway *gw = arg;
    bool all_up = agw_redis_is_up(gw->redis) && agw_redis_is_up(gw->redis_sub);

    agw_metrics_gauge_set(AGW_M_REDIS_UP, all_up ? 1 : 0);
    agw_metrics_gauge_set(AGW_M_DEGRADED, all_up ? 0 : 1);
}

static struct agw_redis *
connect_redis(struct agw_gateway *gw, const char *name, char *err,
              size_t errlen)
{
    struct agw_redis_options opts = {
        .url = gw->cfg->redis_url,
        .connect_timeout_ms = gw->cfg->redis_connect_timeout_ms,
        .command_timeout_ms = gw->cfg->redis_command_timeout_ms,
        .name = name,
        .on_state = on_redis_state,
        .arg = gw,
        .dns = gw->dns,
    };

    return agw_redis_new(gw->base, &opts, err, errlen);
}

/*
 * The store: memory, or Redis with a memory fallback for outages. A
 * fleet claim must outlive one upstream attempt (SPEC §5), connect
 * included, so that only a dead holder's claim expires.
 */
static bool
start_store(struct agw_gateway *gw, char *err, size_t errlen)
{
    const struct agw_config *cfg = gw->cfg;
    struct agw_store *memory = agw_store_memory_new(cfg->cache_max_entries);
    struct agw_store *shared;

    if (memory == NULL || cfg->store_backend == AGW_STORE_MEMORY) {
        gw->store = memory;
        return memory != NULL;
    }
    gw->redis = connect_redis(gw, "store", err, errlen);
    gw->redis_sub = connect_redis(gw, "pubsub", err, errlen);
    if (gw->redis == NULL || gw->redis_sub == NULL) {
        memory->ops->destroy(memory);
        return false;
    }
    agw_metrics_gauge_set(AGW_M_DEGRADED, 1); /* until both are up */
    gw->fleet = agw_fleet_new(gw->base, gw->redis, gw->redis_sub,
                              cfg->key_prefix,
                              cfg->request_timeout_ms +
                                  cfg->connect_timeout_ms + 1000);
    shared = agw_store_redis_new(gw->redis, cfg->key_prefix);
    gw->store = shared != NULL ? agw_store_tiered_new(shared, memory, gw->redis)
                               : NULL;
    if (gw->store != NULL && cfg->l1_entries > 0) {
        gw->store = agw_store_l1_new(gw->store, cfg->l1_entries,
                                     (size_t)cfg->l1_bytes, cfg->l1_ttl_ms);
    }
    if (gw->fleet == NULL || gw->store == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    return true;
}

static bool
start(struct daemon *d)
{
    struct agw_gateway *gw = &d->gw;
    char err[512];

    gw->cfg = d->cfg;
    gw->base = event_base_new();
    if (gw->base == NULL) {
        log_error("event_base_new failed");
        return false;
    }
    gw->dns = evdns_base_new(gw->base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (gw->dns == NULL) {
        log_error("evdns_base_new failed (is /etc/resolv.conf readable?)");
        return false;
    }
    if (!start_store(gw, err, sizeof(err))) {
        log_error("store: %s", err);
        return false;
    }
    gw->sf = agw_sf_new();
    gw->limiter = gw->redis != NULL
                      ? agw_limiter_fleet_new(gw->base, gw->redis, d->cfg)
                      : agw_limiter_local_new(d->cfg->rate, d->cfg->burst);
    if (gw->sf == NULL || gw->limiter == NULL) {
        log_error("out of memory at start-up");
        return false;
    }
    gw->upstream = agw_upstream_new(gw->base, gw->dns, d->cfg, err,
                                    sizeof(err));
    if (gw->upstream == NULL) {
        log_error("upstream %s: %s", d->cfg->base_url, err);
        return false;
    }
    agw_upstream_set_sent_cb(gw->upstream, agw_create_on_sent);
    if (add_signals(d) != 0) {
        log_error("cannot install signal handlers");
        return false;
    }
    d->server = agw_server_start(gw, err, sizeof(err));
    if (d->server == NULL) {
        log_error("%s", err);
        return false;
    }
    return true;
}

static void
stop(struct daemon *d)
{
    struct agw_gateway *gw = &d->gw;
    struct event *events[] = {d->sigterm, d->sigint, d->sighup, d->sigusr1,
                              d->drain_tick};

    agw_server_free(d->server);
    if (gw->upstream != NULL) {
        agw_upstream_free(gw->upstream);
    }
    if (gw->limiter != NULL) {
        gw->limiter->ops->destroy(gw->limiter);
    }
    if (gw->sf != NULL) {
        agw_sf_free(gw->sf);
    }
    if (gw->fleet != NULL) {
        agw_fleet_free(gw->fleet);
    }
    if (gw->store != NULL) {
        gw->store->ops->destroy(gw->store);
    }
    if (gw->redis_sub != NULL) {
        agw_redis_free(gw->redis_sub);
    }
    if (gw->redis != NULL) {
        agw_redis_free(gw->redis);
    }
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        if (events[i] != NULL) {
            event_free(events[i]);
        }
    }
    if (gw->dns != NULL) {
        evdns_base_free(gw->dns, 0);
    }
    if (gw->base != NULL) {
        event_base_free(gw->base);
    }
    agw_auth_free(gw->auth);
    agw_config_unref(d->cfg);
}

/* The config file, its key file and the clients file: all or nothing. */
static bool
load_settings(struct daemon *d, char *err, size_t errlen)
{
    d->cfg = calloc(1, sizeof(*d->cfg));
    if (d->cfg == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    if (!agw_config_load(d->cfg, d->config_path, err, errlen)) {
        free(d->cfg);
        d->cfg = NULL;
        return false;
    }
    agw_config_ref(d->cfg);
    if (!load_auth(d->cfg, &d->gw.auth, err, errlen)) {
        agw_config_unref(d->cfg);
        d->cfg = NULL;
        return false;
    }
    return true;
}

static void
log_start_warnings(const struct agw_config *cfg)
{
    if (cfg->auth_mode == AGW_AUTH_NONE) {
        log_warn("[auth] mode = none: anyone who can reach %s can spend the "
                 "Connectly API key",
                 cfg->listen);
    }
    if (cfg->allow_private_sources) {
        log_warn("[security] allow_private_sources = yes: loopback and "
                 "private source URIs are accepted (tests and demos only)");
    }
}

int
main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"sample-config", no_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    static struct daemon d;
    const char *path = NULL;
    bool test_only = false;
    char err[1024];
    int opt;

    while ((opt = getopt_long(argc, argv, "c:tVh", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = true;
            break;
        case 'V':
            printf("asset-gateway %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case 's':
            agw_config_print_sample(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL || optind != argc) {
        usage(stderr);
        return 2;
    }
    d.config_path = path;
    /* Warnings from reading the config come out in the format it names. */
    agw_log_hold();
    agw_log_capture_libevent();
    if (!load_settings(&d, err, sizeof(err))) {
        agw_log_setup(AGW_LOG_INFO, AGW_LOGFMT_TEXT, "asset-gateway");
        fprintf(stderr, "asset-gateway: %s\n", err);
        return 1;
    }
    if (test_only) {
        agw_log_setup(AGW_LOG_INFO, AGW_LOGFMT_TEXT, "asset-gateway");
        printf("asset-gateway: %s is valid\n", path);
        agw_auth_free(d.gw.auth);
        agw_config_unref(d.cfg);
        return 0;
    }
    if (!agw_log_open(d.cfg->log_file)) {
        agw_log_setup(AGW_LOG_INFO, AGW_LOGFMT_TEXT, "asset-gateway");
        fprintf(stderr, "asset-gateway: cannot open log file %s: %s\n",
                d.cfg->log_file, strerror(errno));
        agw_auth_free(d.gw.auth);
        agw_config_unref(d.cfg);
        return 1;
    }
    agw_log_setup(d.cfg->log_level, d.cfg->log_format, "asset-gateway");
    agw_metrics_init(PACKAGE_VERSION);
    signal(SIGPIPE, SIG_IGN);
    log_start_warnings(d.cfg);
    if (!start(&d)) {
        stop(&d);
        return 1;
    }
    log_info("asset-gateway %s serving %s for %s (store %s, rate %.6g/s)",
             PACKAGE_VERSION, d.cfg->listen, d.cfg->base_url,
             d.gw.store->ops->name, d.cfg->rate);
    event_base_dispatch(d.gw.base);
    stop(&d);
    return 0;
}
