/*
 * main.c - asset-gateway: command line, start-up in dependency order,
 * signals (drain on SIGTERM/SIGINT), and the event loop.
 */
#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "admin_stats.h"
#include "auth.h"
#include "config.h"
#include "limiter.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "tls_server.h"
#include "worker.h"

#include "agw_autoconf.h" /* PACKAGE_VERSION */

/*
 * The main thread runs the control loop: signals, reloads, the end of a
 * drain. Requests are served by the worker threads.
 */
struct daemon {
    const char *config_path;
    struct agw_config *cfg;     /* the running snapshot; workers hold it too */
    struct agw_auth *auth;      /* callers; NULL: mode = none */
    struct agw_tls_server *tls; /* tls_listen's context; NULL: none */
    struct event_base *control;
    struct event *sigterm, *sigint, *sighup, *sigusr1;
    struct agw_process process;
    struct agw_worker *workers;
    int nworkers; /* initialised */
    int nexited;  /* loops that have ended */
    bool draining;
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
on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct daemon *d = arg;

    if (d->draining) {
        return;
    }
    log_info("signal %d: draining (up to %d ms)", (int)sig,
             d->cfg->drain_timeout_ms);
    d->draining = true;
    for (int i = 0; i < d->nworkers; i++) {
        agw_worker_drain(&d->workers[i]);
    }
}

static void
on_worker_exit(struct agw_worker *w, void *arg)
{
    struct daemon *d = arg;

    if (++d->nexited < d->nworkers) {
        return;
    }
    log_info("drained: every call answered; exiting");
    event_base_loopexit(d->control, NULL);
}

/* The callers of CFG: *AUTH is NULL for mode = none. */
static bool
load_auth(const struct agw_config *cfg, struct agw_auth **auth, char *err,
          size_t errlen)
{
    *auth = NULL;
    if (cfg->auth_mode == AGW_AUTH_NONE) {
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

/* What the daemon runs from (see load_settings()). */
struct settings {
    struct agw_config *cfg; /* one reference */
    struct agw_auth *auth;  /* NULL: mode = none */
    SSL_CTX *tls;           /* NULL: no tls_listen */
};

static void
drop_settings(struct settings *s)
{
    agw_auth_free(s->auth);
    SSL_CTX_free(s->tls);
    agw_config_unref(s->cfg);
    *s = (struct settings){0};
}

/* The TLS listener's context from CFG's certificate, key and client CAs:
 * read afresh, so a SIGHUP rotates them. */
static bool
load_tls(const struct agw_config *cfg, SSL_CTX **ctx, char *err, size_t errlen)
{
    char why[512];

    *ctx = NULL;
    if (cfg->tls_listen == NULL) {
        return true;
    }
    *ctx = agw_tls_server_ctx(cfg, why, sizeof(why));
    if (*ctx == NULL) {
        snprintf(err, errlen, "[server] tls_listen: %s", why);
    }
    return *ctx != NULL;
}

/*
 * What the daemon runs from, built one way for start-up, -t and SIGHUP:
 * the config file with, on a reload, every restart-only key already back
 * at RUNNING's value (agw_config_reload), and only then what is derived
 * from that final config: the callers table and the TLS context. So a
 * reload can never enforce an authentication mode (or client
 * certificate rule) the daemon is not running with. RUNNING is NULL at
 * start-up. On success OUT is the caller's; on failure it is empty and
 * ERR says why.
 */
static bool
load_settings(const char *path, const struct agw_config *running,
              struct settings *out, char *err, size_t errlen)
{
    struct agw_config *c = calloc(1, sizeof(*c));
    bool ok;

    *out = (struct settings){0};
    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    ok = running == NULL ? agw_config_load(c, path, err, errlen)
                         : agw_config_reload(c, path, running,
                                             report_restart_only, err, errlen);
    if (!ok) {
        free(c);
        return false;
    }
    out->cfg = agw_config_ref(c);
    if (!load_auth(c, &out->auth, err, errlen) ||
        !load_tls(c, &out->tls, err, errlen)) {
        drop_settings(out);
        return false;
    }
    return true;
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
    struct settings next;
    char err[1024];

    if (d->draining) {
        /* Workers that have finished would never take it. */
        log_warn("SIGHUP while draining: ignored");
        return;
    }
    if (!load_settings(d->config_path, d->cfg, &next, err, sizeof(err))) {
        log_error("reload refused, the running configuration stays: %s", err);
        agw_metrics_count_reload(false);
        return;
    }
    agw_auth_free(d->auth);
    d->auth = next.auth;
    if (next.tls != NULL) {
        agw_tls_server_swap(d->tls, next.tls); /* new connections only */
        log_info("reload: new TLS connections use %s", next.cfg->tls_cert_file);
    }
    agw_log_setup(next.cfg->log_level, next.cfg->log_format, "asset-gateway");
    if (!agw_log_open(next.cfg->log_file)) {
        log_error("reload: cannot open log file %s: %s; logging stays where "
                  "it was",
                  next.cfg->log_file, strerror(errno));
    }
    for (int i = 0; i < d->nworkers; i++) {
        agw_worker_reload(&d->workers[i], next.cfg, next.auth);
    }
    agw_config_unref(d->cfg);
    d->cfg = next.cfg;
    agw_metrics_count_reload(true);
    agw_admin_stats_config_loaded();
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
    struct event_base *base = d->control;

    d->sigterm = evsignal_new(base, SIGTERM, on_stop_signal, d);
    d->sigint = evsignal_new(base, SIGINT, on_stop_signal, d);
    d->sighup = evsignal_new(base, SIGHUP, on_sighup, d);
    d->sigusr1 = evsignal_new(base, SIGUSR1, on_sigusr1, d);
    if (d->sigterm == NULL || d->sigint == NULL || d->sighup == NULL ||
        d->sigusr1 == NULL) {
        return -1;
    }
    evsignal_add(d->sigterm, NULL);
    evsignal_add(d->sigint, NULL);
    evsignal_add(d->sighup, NULL);
    evsignal_add(d->sigusr1, NULL);
    return 0;
}

/* Signals are the control loop's: worker threads never take them. */
static bool
start_threads(struct daemon *d)
{
    sigset_t block, old;
    bool ok = true;

    sigfillset(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 0; ok && i < d->nworkers; i++) {
        ok = agw_worker_start(&d->workers[i], d->control, on_worker_exit, d);
        if (!ok) {
            log_error("cannot start worker thread %d", i);
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
}

/* Every worker's loop is built before any runs, so a bad listen address
 * or an unreachable upstream name fails start-up as a whole. */
static bool
start(struct daemon *d)
{
    int n = agw_config_workers(d->cfg);
    char err[512];

    d->control = event_base_new();
    d->workers = calloc((size_t)n, sizeof(*d->workers));
    if (d->control == NULL || d->workers == NULL || add_signals(d) != 0) {
        log_error("out of memory at start-up");
        return false;
    }
    for (; d->nworkers < n; d->nworkers++) {
        if (!agw_worker_init(&d->workers[d->nworkers], d->nworkers, d->cfg,
                             d->auth, &d->process, err, sizeof(err))) {
            d->nworkers++; /* freed by stop() */
            log_error("%s", err);
            return false;
        }
    }
    return start_threads(d);
}

/* After a failed start: workers already running are drained at once. */
static void
stop_running_workers(struct daemon *d)
{
    for (int i = 0; i < d->nworkers; i++) {
        if (d->workers[i].running) {
            agw_worker_stop(&d->workers[i]);
        }
    }
}

static void
stop(struct daemon *d)
{
    struct event *events[] = {d->sigterm, d->sigint, d->sighup, d->sigusr1};

    /* Every thread first: a worker may still post to another's loop. */
    for (int i = 0; i < d->nworkers; i++) {
        agw_worker_join(&d->workers[i]);
    }
    for (int i = 0; i < d->nworkers; i++) {
        agw_worker_free(&d->workers[i]);
    }
    free(d->workers);
    agw_process_free(&d->process);
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        if (events[i] != NULL) {
            event_free(events[i]);
        }
    }
    if (d->control != NULL) {
        event_base_free(d->control);
    }
    agw_auth_free(d->auth);
    agw_tls_server_free(d->tls);
    agw_config_unref(d->cfg);
}

static void
log_start_warnings(const struct agw_config *cfg)
{
    if (cfg->auth_mode == AGW_AUTH_NONE) {
        log_warn("[auth] mode = none: anyone who can reach %s can spend the "
                 "Connectly API key",
                 cfg->listen != NULL ? cfg->listen : cfg->tls_listen);
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
    struct settings set;
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
    /* The config file, its key file and the clients file: all or
     * nothing. */
    if (!load_settings(d.config_path, NULL, &set, err, sizeof(err))) {
        agw_log_setup(AGW_LOG_INFO, AGW_LOGFMT_TEXT, "asset-gateway");
        fprintf(stderr, "asset-gateway: %s\n", err);
        return 1;
    }
    if (test_only) {
        agw_log_setup(AGW_LOG_INFO, AGW_LOGFMT_TEXT, "asset-gateway");
        printf("asset-gateway: %s is valid\n", path);
        drop_settings(&set);
        return 0;
    }
    if (!agw_log_open(set.cfg->log_file)) {
        agw_log_setup(AGW_LOG_INFO, AGW_LOGFMT_TEXT, "asset-gateway");
        fprintf(stderr, "asset-gateway: cannot open log file %s: %s\n",
                set.cfg->log_file, strerror(errno));
        drop_settings(&set);
        return 1;
    }
    d.cfg = set.cfg;
    d.auth = set.auth;
    if (set.tls != NULL) {
        d.tls = agw_tls_server_new(set.tls);
        if (d.tls == NULL) {
            fprintf(stderr, "asset-gateway: out of memory\n");
            return 1;
        }
        d.process.tls = d.tls;
    }
    agw_log_setup(d.cfg->log_level, d.cfg->log_format, "asset-gateway");
    agw_metrics_init(PACKAGE_VERSION);
    agw_admin_stats_init(PACKAGE_VERSION);
    /* Heartbeats carry host, version and calls per caller (SPEC §12). */
    agw_limiter_fleet_set_payload(agw_admin_stats_heartbeat);
    signal(SIGPIPE, SIG_IGN);
    log_start_warnings(d.cfg);
    /* Workers post reloads, drains and single-flight outcomes to each
     * other's loops. */
    if (evthread_use_pthreads() != 0) {
        log_error("libevent has no thread support");
        return 1;
    }
    if (!start(&d)) {
        stop_running_workers(&d);
        stop(&d);
        return 1;
    }
    log_info("asset-gateway %s serving %s for %s (store %s, rate %.6g/s, "
             "%d worker%s)",
             PACKAGE_VERSION,
             d.cfg->listen != NULL ? d.cfg->listen : d.cfg->tls_listen,
             d.cfg->base_url,
             d.cfg->store_backend == AGW_STORE_REDIS ? "redis" : "memory",
             d.cfg->rate, d.nworkers, d.nworkers == 1 ? "" : "s");
    event_base_dispatch(d.control);
    stop(&d);
    return 0;
}
