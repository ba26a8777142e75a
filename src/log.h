/*
 * log.h - leveled logging to stderr, text or one JSON object per line.
 * The macros test the level before formatting anything. Never pass a
 * secret (API key, caller token) to these.
 */
#ifndef AGW_LOG_H
#define AGW_LOG_H

#include <stdatomic.h>
#include <stdbool.h>

enum agw_log_level {
    AGW_LOG_ERROR = 0,
    AGW_LOG_WARN = 1,
    AGW_LOG_INFO = 2,
    AGW_LOG_DEBUG = 3,
};

extern atomic_int agw_log_level; /* set by reloads, read by workers */

enum agw_log_format { AGW_LOGFMT_TEXT, AGW_LOGFMT_JSON };

/* FORMAT is enum agw_log_format; PROGRAM names the emitting binary.
 * Writes out the lines held since agw_log_hold(), in that format. */
void agw_log_setup(int level, int format, const char *program);

/*
 * Until the next agw_log_setup(), keep lines instead of writing them: the
 * config file that says how to log is still being read, and its warnings
 * must come out in the format it names.
 */
void agw_log_hold(void);

/* Sends libevent's own messages (e.g. accept errors) through this log. */
void agw_log_capture_libevent(void);

/*
 * Log lines go to PATH (appended, created 0640) instead of stderr; NULL
 * or "" means stderr. On failure returns false (errno set) and keeps the
 * current destination.
 */
bool agw_log_open(const char *path);

/* Reopens the current file (after logrotate moved it); SIGUSR1. */
bool agw_log_reopen(void);

/* One access-log line per answered create call. */
struct agw_access {
    const char *request_id;
    const char *caller;      /* "-" when not authenticated */
    const char *class_name;  /* SPEC §11: "interactive", "batch"; NULL: "-" */
    const char *business_id; /* as the caller sent it */
    const char *method;
    const char *path;
    int status;
    const char *cache;   /* "HIT", "MISS" or "-" */
    int upstream_status; /* 0: no upstream answer */
    int attempts;
    double upstream_ms; /* time in upstream attempts */
    double wait_ms;     /* rate-limit wait */
    double total_ms;
    bool probe; /* health check or scrape: logged at debug level only */
};
void agw_log_access(const struct agw_access *a);

/* Parses "error|warn|info|debug"; returns -1 when unknown. */
int agw_log_level_parse(const char *name);

/* REQUEST_ID may be NULL. */
void agw_log_write(int level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define AGW_LOG_AT(lvl, rid, ...)                                              \
    do {                                                                       \
        if (agw_log_level >= (lvl)) {                                          \
            agw_log_write((lvl), (rid), __VA_ARGS__);                          \
        }                                                                      \
    } while (0)

#define log_error(...) AGW_LOG_AT(AGW_LOG_ERROR, NULL, __VA_ARGS__)
#define log_warn(...) AGW_LOG_AT(AGW_LOG_WARN, NULL, __VA_ARGS__)
#define log_info(...) AGW_LOG_AT(AGW_LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...) AGW_LOG_AT(AGW_LOG_DEBUG, NULL, __VA_ARGS__)

/* Request-scoped: the line carries the request id. */
#define rlog_error(rid, ...) AGW_LOG_AT(AGW_LOG_ERROR, (rid), __VA_ARGS__)
#define rlog_warn(rid, ...) AGW_LOG_AT(AGW_LOG_WARN, (rid), __VA_ARGS__)
#define rlog_info(rid, ...) AGW_LOG_AT(AGW_LOG_INFO, (rid), __VA_ARGS__)
#define rlog_debug(rid, ...) AGW_LOG_AT(AGW_LOG_DEBUG, (rid), __VA_ARGS__)

#endif
