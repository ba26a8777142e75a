/*
 * admin_stats.h - what the operators' status (SPEC §12, admin.h) shows
 * that no other module keeps: the process's start and config times, its
 * upstream calls per caller over the last minute, and its last upstream
 * errors. Process-wide, for every worker thread at once (one mutex).
 */
#ifndef AGW_ADMIN_STATS_H
#define AGW_ADMIN_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"

/* Upstream errors kept for the status, newest last. */
#define AGW_ADMIN_ERRORS_MAX 10
#define AGW_ADMIN_ERROR_TEXT_MAX 120

struct agw_admin_error {
    double at;  /* Unix time, seconds */
    int status; /* Connectly's HTTP status; 0: no answer (ERROR says why) */
    char error[AGW_ADMIN_ERROR_TEXT_MAX + 1];
};

/* Once in main() before the workers start: VERSION (copied) and now as
 * the start and config-load times. */
void agw_admin_stats_init(const char *version);

/* A reload was applied: now is the config's load time. */
void agw_admin_stats_config_loaded(void);

/* Unix times (seconds) of the start and of the running config's load. */
double agw_admin_stats_started_at(void);
double agw_admin_stats_config_loaded_at(void);

/* The host name and version for the fleet table (static strings). */
const char *agw_admin_stats_host(void);
const char *agw_admin_stats_version(void);

/*
 * One upstream attempt of CALLER (copied; a name from the clients file,
 * or "-" with mode = none) ended with HTTP STATUS (0: no answer, DETAIL
 * says why: connect failure, timeout, ...; never key material). Counted
 * for the caller's last minute; a failure (no answer, 401, 403, 429,
 * 5xx) is also kept as one of the last errors.
 */
void agw_admin_stats_upstream(const char *caller, int status,
                              const char *detail);

/* The same for a caller of class KLASS ("interactive" or "batch", a
 * static string: SPEC §11), which /metrics shows beside its name. */
void agw_admin_stats_upstream_class(const char *caller, const char *klass,
                                    int status, const char *detail);

/* One caller's upstream attempts since the start (metrics.c renders
 * them as asset_gateway_upstream_calls_total{caller,class}). */
struct agw_admin_caller_total {
    /* A clients-file section name (letters, digits, ".", "_", ":", "-")
     * or "-": needs no escaping, bounded by what the clients files named. */
    char name[AGW_AUTH_NAME_MAX + 1];
    const char *klass; /* as of its last call: "interactive" or "batch" */
    unsigned long long total;
};

/*
 * Copies caller I into OUT and returns true, or returns false when fewer
 * than I + 1 callers had an upstream attempt. Callers are numbered in the
 * order of their first attempt and never removed, so I = 0, 1, ... up to
 * the first false visits each once. Each copy is taken under the lock;
 * two callers' copies are not one instant's.
 */
bool agw_admin_stats_caller_total(size_t i, struct agw_admin_caller_total *out);

/* Copies the last errors, oldest first, into OUT; returns how many. */
size_t agw_admin_stats_errors(struct agw_admin_error out[AGW_ADMIN_ERRORS_MAX]);

/*
 * This instance's upstream calls per caller over the last 60 s, as a
 * malloc'd JSON object {"NAME": N, ...} (callers with none are left out),
 * or NULL when memory ran out.
 */
char *agw_admin_stats_calls_json(void);

/* For the heartbeat (agw_limiter_fleet_set_payload): this instance's
 * {"host", "version", "calls": {NAME: N}} as a malloc'd string. */
char *agw_admin_stats_heartbeat(void);

/* Upstream connections of every worker: one opened (+1) or closed (-1);
 * and how many are open now. */
void agw_admin_stats_upstream_conns(int delta);
long agw_admin_stats_upstream_conns_open(void);

/* For tests: replace the Unix clock in seconds (NULL: the real one). */
void agw_admin_stats_set_clock(double (*now_s)(void));

#endif
