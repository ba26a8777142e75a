/*
 * config.h - the daemon's settings: one table drives parsing, defaults,
 * validation, `-t` and the documented sample file (conf/asset-gateway.conf).
 */
#ifndef AGW_CONFIG_H
#define AGW_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum agw_store_backend { AGW_STORE_MEMORY, AGW_STORE_REDIS };
enum agw_auth_mode {
    AGW_AUTH_NONE,
    AGW_AUTH_TOKEN,
    AGW_AUTH_MTLS,
    AGW_AUTH_ANY
};
enum agw_tls_client_auth {
    AGW_TLS_CLIENT_NONE,
    AGW_TLS_CLIENT_OPTIONAL,
    AGW_TLS_CLIENT_REQUIRE
};
enum agw_tls_version { AGW_TLS_1_2, AGW_TLS_1_3 };

struct agw_config {
    /* [server] */
    char *listen; /* "host:port"; NULL: no plain listener */
    /* SPEC §9: NULL tls_listen means no TLS listener */
    char *tls_listen;
    char *tls_cert_file;
    char *tls_key_file;
    char *tls_client_ca_file;
    int tls_client_auth; /* enum agw_tls_client_auth */
    int tls_min_version; /* enum agw_tls_version */
    int workers;         /* 0: auto; agw_config_workers() resolves it */
    long max_body_bytes;
    int client_timeout_ms;
    int drain_timeout_ms;
    int request_deadline_ms; /* whole create call: wait + attempts + backoff */
    int max_clients;         /* [server] max_connections: caller connections */
    long max_buffered_bytes; /* request bytes held at once, all connections */
    /* [upstream] */
    char *base_url;
    char *api_key_file;
    char *ca_file;
    int connect_timeout_ms;
    int request_timeout_ms; /* one attempt, connect to last byte */
    int max_retries;
    int max_connections; /* keep-alive pool size */
    /* [store] */
    int store_backend; /* enum agw_store_backend */
    char *redis_url;
    char *key_prefix;
    int redis_connect_timeout_ms;
    int redis_command_timeout_ms;
    char *sentinels;              /* NULL: no Sentinel; else host:port, ... */
    char *sentinel_master;        /* the master's name at the sentinels */
    char *sentinel_password_file; /* NULL: the sentinels take no AUTH */
    long cache_ttl_s;
    long cache_max_entries;
    long cache_max_bytes; /* the memory store's bound with the above */
    long l1_entries;      /* 0: no L1 in front of Redis */
    long l1_bytes;
    int l1_ttl_ms; /* how stale an L1 answer may be (store.h) */
    /* [ratelimit] */
    double rate;
    int burst;
    int max_wait_ms;
    int expected_instances;
    double fallback_rate;     /* 0: rate / live instances */
    int max_pause_ms;         /* longest fleet pause one upstream 429 sets */
    int batch_max_backlog_ms; /* batch calls book only below it (SPEC §11) */
    int batch_max_wait_ms;    /* a batch call's max_wait_ms */
    /* [auth] */
    int auth_mode; /* enum agw_auth_mode */
    char *clients_file;
    /* [security] */
    bool allow_private_sources;
    /* [log] */
    int log_level;  /* enum agw_log_level */
    int log_format; /* enum agw_log_format */
    char *log_file; /* NULL: stderr */
    /* [admin] (SPEC §12) */
    char *admin_listen;       /* NULL: no operator listener */
    char *admin_token_sha256; /* 64 hex digits; NULL: no token asked */

    /* Snapshots in use: the running one, plus one per call that started
     * with it (a reload must not change a call midway). */
    atomic_int refs;

    /* Not from the file: loaded from api_key_file or ASSET_GATEWAY_API_KEY.
     * Secret: never log it; agw_config_free() wipes it. */
    char *api_key;
    char *sentinel_password; /* read from sentinel_password_file; secret */
};

/*
 * Loads and validates PATH into CFG (which the caller zeroes or frees
 * first). Each value is checked by the parser its consumer uses (listen,
 * base_url, redis_url) and every file it names is read for real (key
 * file, ca_file); the file itself and the key file must not be writable
 * by group or others. On failure returns false and writes "FILE:LINE:
 * [section] key: problem" into ERR. On success CFG owns every string;
 * free with agw_config_free().
 */
bool agw_config_load(struct agw_config *cfg, const char *path, char *err,
                     size_t errlen);

/* Fills CFG with every default (no file read, no key loaded). */
void agw_config_defaults(struct agw_config *cfg);

/* Frees strings and wipes the API key. CFG may be reused afterwards. */
void agw_config_free(struct agw_config *cfg);

/*
 * Heap snapshots for reload: agw_config_ref adds a holder, and
 * agw_config_unref frees the snapshot (and CFG itself, which must come
 * from malloc) when the last holder lets go. Returns CFG.
 */
struct agw_config *agw_config_ref(struct agw_config *cfg);
void agw_config_unref(struct agw_config *cfg);

/* How many worker threads CFG asks for: workers, or one per CPU online. */
int agw_config_workers(const struct agw_config *cfg);

/*
 * SIGHUP: loads PATH into NEXT as agw_config_load() does, so it refuses
 * what -t refuses; then every key that needs a restart (listen, base_url,
 * [auth] mode, ...) takes its RUNNING value back, REPORT(section, key)
 * naming each one the file changed, and the result is checked again (a
 * kept mode = token still needs a clients_file). Same ownership and
 * errors as agw_config_load().
 *
 * Contract: whatever is derived from the config (the callers table, which
 * authentication is enforced, the log format) is built from NEXT only
 * after this returns. Nothing may be derived from a file's own value of
 * a restart-only key: that is how a reload to mode = none once turned
 * authentication off while the log said the running value stayed
 * (SPEC §6, §8).
 */
bool agw_config_reload(struct agw_config *next, const char *path,
                       const struct agw_config *running,
                       void (*report)(const char *section, const char *key),
                       char *err, size_t errlen);

/* Writes the sample file (every key, its default, its doc) to STREAM. */
void agw_config_print_sample(FILE *stream);

#endif
