/*
 * config.c - the settings file. KEYS below is the only list of keys:
 * defaults, parsing, validation and the sample file are all derived from it.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "address.h"
#include "guard.h"
#include "inifile.h"
#include "log.h"
#include "util.h"
#include "redis.h"
#include "sentinel.h"
#include "tls.h"
#include "tls_server.h"

#define API_KEY_ENV "ASSET_GATEWAY_API_KEY"
#define API_KEY_MAX 4096
#define CONFIG_MAX_BYTES (1024 * 1024)
#define WORKERS_MAX 64

enum key_type { T_STRING, T_INT, T_LONG, T_DOUBLE, T_BOOL, T_ENUM };

enum key_flag {
    F_RELOAD = 1 << 0,     /* SIGHUP may change it without a restart */
    F_OPTIONAL = 1 << 1,   /* string may be empty; stored as NULL */
    F_MIN_EXCL = 1 << 2,   /* number must be > min, not >= min */
    F_SAMPLE_OFF = 1 << 3, /* commented out in the sample file */
    F_AUTO = 1 << 4,       /* integer that may be "auto", stored as 0 */
};

struct enum_name {
    const char *name;
    int value;
};

struct key_def {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;   /* into struct agw_config */
    const char *def; /* default, written as in the file */
    double min, max; /* numbers only */
    unsigned flags;
    const struct enum_name *names; /* T_ENUM, ends with a NULL name */
    const char *doc;
    const char *sample; /* value shown in the sample when not DEF */
    const char *note;   /* one more comment line in the sample */
    /* A string's own value, checked by the very parser or loader its
     * consumer uses, so -t, start-up and SIGHUP agree; runs once the
     * file is parsed, unless the value is empty. WHY gets the problem. */
    bool (*validate)(const char *value, char *why, size_t len);
    /* Agreement with other keys; runs after every validate, and again on
     * a reload once restart-only keys have their running values. */
    bool (*check)(const struct agw_config *cfg, char *why, size_t len);
};

struct load_ctx {
    struct agw_config *cfg;
    const char *path;
    struct agw_ini_reader rd; /* also the first problem and its line */
    int *lines;               /* per key: line that set it, 0 when absent */
    char *err;
    size_t errlen;
};

static const struct enum_name backend_names[] = {
    {"memory", AGW_STORE_MEMORY}, {"redis", AGW_STORE_REDIS}, {NULL, 0}};
static const struct enum_name auth_names[] = {{"none", AGW_AUTH_NONE},
                                              {"token", AGW_AUTH_TOKEN},
                                              {"mtls", AGW_AUTH_MTLS},
                                              {"any", AGW_AUTH_ANY},
                                              {NULL, 0}};
static const struct enum_name client_auth_names[] = {
    {"none", AGW_TLS_CLIENT_NONE},
    {"optional", AGW_TLS_CLIENT_OPTIONAL},
    {"require", AGW_TLS_CLIENT_REQUIRE},
    {NULL, 0}};
static const struct enum_name tls_version_names[] = {
    {"1.2", AGW_TLS_1_2}, {"1.3", AGW_TLS_1_3}, {NULL, 0}};
static const struct enum_name level_names[] = {{"error", AGW_LOG_ERROR},
                                               {"warn", AGW_LOG_WARN},
                                               {"info", AGW_LOG_INFO},
                                               {"debug", AGW_LOG_DEBUG},
                                               {NULL, 0}};
static const struct enum_name format_names[] = {
    {"json", AGW_LOGFMT_JSON}, {"text", AGW_LOGFMT_TEXT}, {NULL, 0}};

static bool validate_listen(const char *value, char *why, size_t len);
static bool validate_base_url(const char *value, char *why, size_t len);
static bool validate_ca_file(const char *value, char *why, size_t len);
static bool validate_redis_url(const char *value, char *why, size_t len);
static bool validate_sentinels(const char *value, char *why, size_t len);
static bool validate_master_name(const char *value, char *why, size_t len);
static bool check_sentinels(const struct agw_config *cfg, char *why,
                            size_t len);
static bool validate_log_file(const char *value, char *why, size_t len);
static bool check_listeners(const struct agw_config *cfg, char *why,
                            size_t len);
static bool check_tls_listen(const struct agw_config *cfg, char *why,
                             size_t len);
static bool check_tls_pair(const struct agw_config *cfg, char *why, size_t len);
static bool check_client_auth(const struct agw_config *cfg, char *why,
                              size_t len);
static bool check_request_timeout(const struct agw_config *cfg, char *why,
                                  size_t len);
static bool check_auth_mode(const struct agw_config *cfg, char *why,
                            size_t len);
static bool check_buffered_bytes(const struct agw_config *cfg, char *why,
                                 size_t len);
static bool validate_sha256_hex(const char *value, char *why, size_t len);
static bool check_admin_listen(const struct agw_config *cfg, char *why,
                               size_t len);

#define OFF(field) offsetof(struct agw_config, field)
#define MS_HOUR 3600000

static const struct key_def keys[] = {
    /* [server] */
    {"server", "listen", T_STRING, OFF(listen), "127.0.0.1:8080", 0, 0,
     F_OPTIONAL,
     .doc = "Plain HTTP address callers connect to, host:port ([addr]:port "
            "for IPv6); empty: none.",
     .note = "At least one of listen and tls_listen.",
     .validate = validate_listen, .check = check_listeners},
    {"server", "tls_listen", T_STRING, OFF(tls_listen), "", 0, 0,
     F_OPTIONAL | F_SAMPLE_OFF,
     .doc = "HTTPS address callers connect to (every route, as on listen); "
            "empty: none.",
     .sample = "0.0.0.0:8443",
     .note = "Needs tls_cert_file and tls_key_file. TLS 1.2 and 1.3, "
             "forward-secret suites, ALPN http/1.1, session tickets.",
     .validate = validate_listen, .check = check_tls_listen},
    {"server", "tls_cert_file", T_STRING, OFF(tls_cert_file), "", 0, 0,
     F_RELOAD | F_OPTIONAL | F_SAMPLE_OFF,
     .doc = "PEM certificate of tls_listen, leaf first, then the chain; "
            "SIGHUP re-reads it.",
     .sample = "/etc/asset-gateway/tls/cert.pem",
     .validate = agw_tls_server_check_cert},
    {"server", "tls_key_file", T_STRING, OFF(tls_key_file), "", 0, 0,
     F_RELOAD | F_OPTIONAL | F_SAMPLE_OFF,
     .doc = "PEM private key of tls_cert_file (mode 0600); SIGHUP re-reads "
            "it.",
     .sample = "/etc/asset-gateway/tls/key.pem",
     .note = "A key that does not match the certificate is refused, at "
             "start-up and on SIGHUP (the old pair stays).",
     .validate = agw_tls_server_check_key, .check = check_tls_pair},
    {"server", "tls_client_ca_file", T_STRING, OFF(tls_client_ca_file), "", 0,
     0, F_RELOAD | F_OPTIONAL | F_SAMPLE_OFF,
     .doc = "PEM CAs that sign client certificates; SIGHUP re-reads it.",
     .sample = "/etc/asset-gateway/tls/client-ca.pem",
     .validate = agw_tls_server_check_ca},
    {"server", "tls_client_auth", T_ENUM, OFF(tls_client_auth), "none", 0, 0, 0,
     .names = client_auth_names,
     .doc = "Client certificates on tls_listen: not asked for, verified "
            "when sent, or required.",
     .note = "optional and require need tls_client_ca_file; [auth] mode = "
             "mtls needs require.",
     .check = check_client_auth},
    {"server", "tls_min_version", T_ENUM, OFF(tls_min_version), "1.2", 0, 0, 0,
     .names = tls_version_names,
     .doc = "Oldest TLS version tls_listen accepts."},
    {"server", "workers", T_INT, OFF(workers), "auto", 1, WORKERS_MAX, F_AUTO,
     .doc = "Event-loop threads sharing the listen port; auto: one per "
            "CPU."},
    {"server", "max_body_bytes", T_LONG, OFF(max_body_bytes), "65536", 1,
     64 * 1024 * 1024, F_RELOAD,
     .doc = "Largest request body accepted; a bigger one gets 413."},
    {"server", "client_timeout_ms", T_INT, OFF(client_timeout_ms), "10000", 1,
     MS_HOUR, F_RELOAD,
     .doc = "Idle timeout on caller connections, in milliseconds."},
    {"server", "drain_timeout_ms", T_INT, OFF(drain_timeout_ms), "10000", 0,
     MS_HOUR, F_RELOAD,
     .doc = "On SIGTERM or SIGINT, how long calls in flight may take to "
            "finish (ms)."},
    {"server", "request_deadline_ms", T_INT, OFF(request_deadline_ms), "30000",
     1, MS_HOUR, F_RELOAD,
     .doc = "Budget of one create call (ms): limiter wait, upstream "
            "attempts, backoff."},
    {"server", "max_connections", T_INT, OFF(max_clients), "10000", 1, 1000000,
     F_RELOAD,
     .doc = "Caller connections served at once; past it a new one gets 503 "
            "and is closed."},
    {"server", "max_buffered_bytes", T_LONG, OFF(max_buffered_bytes),
     "67108864", 65536, 1099511627776.0, F_RELOAD,
     .doc = "Request bytes held at once by all connections (heads, and "
            "bodies not yet answered); past it 503.",
     .note = "At least max_body_bytes + 16384 (one largest request).",
     .check = check_buffered_bytes},
    /* [upstream] */
    {"upstream", "base_url", T_STRING, OFF(base_url),
     "https://api.connectly.ai", 0, 0, 0,
     .doc = "Connectly's base URL; http:// is for tests and demos only.",
     .validate = validate_base_url},
    {"upstream", "api_key_file", T_STRING, OFF(api_key_file), "", 0, 0,
     F_RELOAD | F_OPTIONAL | F_SAMPLE_OFF,
     .doc = "Connectly API key file (mode 0600); empty: use $" API_KEY_ENV ".",
     .sample = "/etc/asset-gateway/api-key"},
    {"upstream", "ca_file", T_STRING, OFF(ca_file), "", 0, 0, F_OPTIONAL,
     .doc = "PEM file of CAs trusted for the upstream; empty: the system "
            "store.",
     .validate = validate_ca_file},
    {"upstream", "connect_timeout_ms", T_INT, OFF(connect_timeout_ms), "2000",
     1, 600000, F_RELOAD,
     .doc = "Timeout for connecting to the upstream, in milliseconds."},
    {"upstream", "request_timeout_ms", T_INT, OFF(request_timeout_ms), "15000",
     1, MS_HOUR, F_RELOAD,
     .doc = "Timeout of one upstream attempt (ms); at most "
            "request_deadline_ms.",
     .check = check_request_timeout},
    {"upstream", "max_retries", T_INT, OFF(max_retries), "2", 0, 10, F_RELOAD,
     .doc = "Retries after a connection failure, timeout or 5xx, within the "
            "deadline."},
    {"upstream", "max_connections", T_INT, OFF(max_connections), "16", 1, 1024,
     0, .doc = "Keep-alive connections kept open to the upstream."},
    /* [store] */
    {"store", "backend", T_ENUM, OFF(store_backend), "memory", 0, 0, 0,
     .names = backend_names,
     .doc = "Where answers and single-flight claims live (redis: shared by "
            "the fleet)."},
    {"store", "redis_url", T_STRING, OFF(redis_url), "redis://127.0.0.1:6379/0",
     0, 0, 0,
     .doc = "The Redis used by the redis backend: redis://[user:password@]"
            "host:port/db or unix:///path.",
     .validate = validate_redis_url},
    {"store", "redis_connect_timeout_ms", T_INT, OFF(redis_connect_timeout_ms),
     "1000", 1, 60000, 0,
     .doc = "Connecting to Redis (TCP, AUTH, SELECT); then it retries with "
            "backoff."},
    {"store", "redis_command_timeout_ms", T_INT, OFF(redis_command_timeout_ms),
     "500", 1, 60000, 0,
     .doc = "One Redis command; past it the command fails and the connection "
            "is recycled."},
    {"store", "sentinels", T_STRING, OFF(sentinels), "", 0, 0, F_OPTIONAL,
     .doc = "Redis Sentinel: host:port, host:port, ... asked in turn for the "
            "master; empty: redis_url's host.",
     .note = "With sentinels, redis_url gives only the user, password and "
             "database; needs backend = redis.",
     .validate = validate_sentinels, .check = check_sentinels},
    {"store", "sentinel_master", T_STRING, OFF(sentinel_master), "mymaster", 0,
     0, 0, .doc = "The master's name at the sentinels.",
     .validate = validate_master_name},
    {"store", "sentinel_password_file", T_STRING, OFF(sentinel_password_file),
     "", 0, 0, F_OPTIONAL | F_SAMPLE_OFF,
     .doc = "File holding the sentinels' AUTH password (mode 0600); empty: "
            "no AUTH.",
     .sample = "/etc/asset-gateway/sentinel-password"},
    {"store", "key_prefix", T_STRING, OFF(key_prefix), "agw:", 0, 0, 0,
     .doc = "Prefix of every Redis key; instances sharing it share cache and "
            "rate limit."},
    {"store", "cache_ttl_s", T_LONG, OFF(cache_ttl_s), "2592000", 1,
     10L * 365 * 24 * 3600, F_RELOAD,
     .doc = "How long a successful answer is kept, in seconds."},
    {"store", "cache_max_entries", T_LONG, OFF(cache_max_entries), "100000", 1,
     100000000, 0,
     .doc = "Most answers held in process (backend = redis: served while "
            "Redis is down); least recently used go first."},
    {"store", "cache_max_bytes", T_LONG, OFF(cache_max_bytes), "67108864", 1,
     64L * 1024 * 1024 * 1024, 0,
     .doc = "Most bytes those answers take (keys, bodies, ~90 bytes "
            "overhead each)."},
    {"store", "l1_entries", T_LONG, OFF(l1_entries), "10000", 0, 100000000, 0,
     .doc = "backend = redis: answers kept in process in front of Redis; 0 "
            "turns the L1 off."},
    {"store", "l1_bytes", T_LONG, OFF(l1_bytes), "16777216", 1,
     64L * 1024 * 1024 * 1024, 0,
     .doc = "Most bytes the L1 holds (keys, bodies, overhead); least recently "
            "used goes first."},
    {"store", "l1_ttl_ms", T_INT, OFF(l1_ttl_ms), "1000", 1, 60000, 0,
     .doc = "Longest an L1 answer is served (ms): bounds staleness after a "
            "refresh elsewhere."},
    /* [ratelimit] */
    {"ratelimit", "rate", T_DOUBLE, OFF(rate), "95", 0, 1000000,
     F_RELOAD | F_MIN_EXCL,
     .doc = "Fleet-wide upstream calls per second (Connectly allows 100)."},
    {"ratelimit", "burst", T_INT, OFF(burst), "0", 0, 1000000, F_RELOAD,
     .doc = "Calls allowed at once on top of rate."},
    {"ratelimit", "max_wait_ms", T_INT, OFF(max_wait_ms), "2000", 0, 600000,
     F_RELOAD,
     .doc = "Longest a call may queue for the limiter before it gets 429 "
            "(ms)."},
    {"ratelimit", "expected_instances", T_INT, OFF(expected_instances), "1", 1,
     10000, F_RELOAD,
     .doc = "Instances assumed alive when Redis is down and no heartbeat was "
            "seen."},
    {"ratelimit", "fallback_rate", T_DOUBLE, OFF(fallback_rate), "0", 0,
     1000000, F_RELOAD,
     .doc = "Local rate while Redis is down; 0: rate divided by live "
            "instances."},
    {"ratelimit", "max_pause_ms", T_INT, OFF(max_pause_ms), "60000", 1, MS_HOUR,
     F_RELOAD,
     .doc = "Longest fleet-wide pause after an upstream 429, whatever its "
            "Retry-After says (ms)."},
    {"ratelimit", "batch_max_backlog_ms", T_INT, OFF(batch_max_backlog_ms),
     "100", 0, 600000, F_RELOAD,
     .doc = "A batch caller's call books a slot only while the limiter, "
            "its slot included, is booked at most this far ahead (ms)."},
    {"ratelimit", "batch_max_wait_ms", T_INT, OFF(batch_max_wait_ms), "30000",
     0, 600000, F_RELOAD,
     .doc = "Longest a batch caller's call may wait for the limiter before "
            "it gets 429 (ms)."},
    /* [auth] */
    {"auth", "mode", T_ENUM, OFF(auth_mode), "token", 0, 0, 0,
     .names = auth_names,
     .doc = "How callers authenticate: Bearer token (see clients_file), "
            "client certificate (mtls), either (any), or none at all.",
     .sample = "none",
     .note = "token, mtls and any need clients_file; mtls needs [server] "
             "tls_client_auth = require; none is for a trusted sidecar or a "
             "demo.",
     .check = check_auth_mode},
    {"auth", "clients_file", T_STRING, OFF(clients_file), "", 0, 0,
     F_RELOAD | F_OPTIONAL,
     .doc = "INI file of callers: [name], token_sha256 and/or cert_san or "
            "cert_sha256, businesses."},
    /* [security] */
    {"security", "allow_private_sources", T_BOOL, OFF(allow_private_sources),
     "no", 0, 0, F_RELOAD,
     .doc = "Accept source URIs on loopback or private hosts (tests and demos "
            "only)."},
    /* [log] */
    {"log", "level", T_ENUM, OFF(log_level), "info", 0, 0, F_RELOAD,
     .names = level_names, .doc = "Least severe messages that are logged."},
    {"log", "format", T_ENUM, OFF(log_format), "json", 0, 0, 0,
     .names = format_names,
     .doc = "Log lines: one JSON object each, or plain text."},
    {"log", "file", T_STRING, OFF(log_file), "", 0, 0, F_RELOAD | F_OPTIONAL,
     .doc = "Append log lines to this file instead of stderr; SIGUSR1 "
            "reopens it (logrotate).",
     .validate = validate_log_file},
    /* [admin] */
    {"admin", "listen", T_STRING, OFF(admin_listen), "", 0, 0,
     F_OPTIONAL | F_SAMPLE_OFF,
     .doc = "Operators' listener (/admin/status, /admin/purge, /admin/), "
            "host:port; empty: off.",
     .sample = "127.0.0.1:8081",
     .note = "Other than loopback (127.0.0.0/8, [::1]) it needs "
             "token_sha256.",
     .validate = validate_listen, .check = check_admin_listen},
    {"admin", "token_sha256", T_STRING, OFF(admin_token_sha256), "", 0, 0,
     F_RELOAD | F_OPTIONAL | F_SAMPLE_OFF,
     .doc = "SHA-256 (64 hex) of the operators' bearer token; set: every "
            "admin route needs it.",
     .sample = "<printf %s \"$TOKEN\" | sha256sum>",
     .note = "A reload may change it, never remove it from a listener that "
             "is not loopback.",
     .validate = validate_sha256_hex},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static void *
field_of(struct agw_config *cfg, const struct key_def *k)
{
    return (char *)cfg + k->offset;
}

static const struct key_def *
find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].section, section) == 0 &&
            strcmp(keys[i].name, name) == 0) {
            return &keys[i];
        }
    }
    return NULL;
}

static bool
known_section(const char *name, size_t len)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (strlen(keys[i].section) == len &&
            memcmp(keys[i].section, name, len) == 0) {
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------ values */

/* "1 to 64" or "more than 0, up to 1000000". */
static void
describe_range(const struct key_def *k, char *out, size_t len)
{
    const char *fmt = (k->flags & F_MIN_EXCL) ? "more than %.15g, up to %.15g"
                                              : "%.15g to %.15g";

    snprintf(out, len, fmt, k->min, k->max);
}

static bool
in_range(const struct key_def *k, double v, char *why, size_t len)
{
    char range[64];
    bool low = (k->flags & F_MIN_EXCL) ? v <= k->min : v < k->min;

    if (!low && v <= k->max) {
        return true;
    }
    describe_range(k, range, sizeof(range));
    snprintf(why, len, "%.15g is out of range (%s)", v, range);
    return false;
}

static bool
set_integer(const struct key_def *k, const char *value, void *field, char *why,
            size_t len)
{
    char *end;
    long long n;

    if ((k->flags & F_AUTO) && strcmp(value, "auto") == 0) {
        *(int *)field = 0;
        return true;
    }
    errno = 0;
    n = strtoll(value, &end, 10);
    if (end == value || *end != '\0' || errno == ERANGE) {
        snprintf(why, len, "\"%s\" is not an integer%s", value,
                 (k->flags & F_AUTO) ? " or auto" : "");
        return false;
    }
    if (!in_range(k, (double)n, why, len)) {
        return false;
    }
    if (k->type == T_INT) {
        *(int *)field = (int)n;
    } else {
        *(long *)field = (long)n;
    }
    return true;
}

static bool
set_double(const struct key_def *k, const char *value, void *field, char *why,
           size_t len)
{
    char *end;
    double d = strtod(value, &end);

    if (end == value || *end != '\0' || !isfinite(d)) {
        snprintf(why, len, "\"%s\" is not a number", value);
        return false;
    }
    if (!in_range(k, d, why, len)) {
        return false;
    }
    *(double *)field = d;
    return true;
}

static bool
set_bool(const char *value, void *field, char *why, size_t len)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(value, yes[i]) == 0 || strcasecmp(value, no[i]) == 0) {
            *(bool *)field = strcasecmp(value, yes[i]) == 0;
            return true;
        }
    }
    snprintf(why, len,
             "\"%s\" is not a boolean (yes/no, true/false, on/off, 1/0)",
             value);
    return false;
}

/* "a, b, c" */
static void
list_names(const struct enum_name *names, char *out, size_t len)
{
    size_t used = 0;

    out[0] = '\0';
    for (const struct enum_name *e = names; e->name != NULL && used < len;
         e++) {
        int n = snprintf(out + used, len - used, "%s%s", e == names ? "" : ", ",
                         e->name);
        used += n > 0 ? (size_t)n : 0;
    }
}

static bool
set_enum(const struct key_def *k, const char *value, void *field, char *why,
         size_t len)
{
    char allowed[128];

    for (const struct enum_name *e = k->names; e->name != NULL; e++) {
        if (strcmp(value, e->name) == 0) {
            *(int *)field = e->value;
            return true;
        }
    }
    list_names(k->names, allowed, sizeof(allowed));
    snprintf(why, len, "\"%s\" is not one of: %s", value, allowed);
    return false;
}

/* Never echoes VALUE: a URL may carry a password. */
static bool
set_string(const struct key_def *k, const char *value, void *field, char *why,
           size_t len)
{
    char **slot = field;
    char *copy = NULL;

    if (value[0] == '\0' && !(k->flags & F_OPTIONAL)) {
        snprintf(why, len, "must not be empty");
        return false;
    }
    if (value[0] != '\0') {
        copy = strdup(value);
        if (copy == NULL) {
            snprintf(why, len, "out of memory");
            return false;
        }
    }
    free(*slot);
    *slot = copy;
    return true;
}

static bool
set_value(struct agw_config *cfg, const struct key_def *k, const char *value,
          char *why, size_t len)
{
    void *field = field_of(cfg, k);

    switch (k->type) {
    case T_STRING:
        return set_string(k, value, field, why, len);
    case T_INT:
    case T_LONG:
        return set_integer(k, value, field, why, len);
    case T_DOUBLE:
        return set_double(k, value, field, why, len);
    case T_BOOL:
        return set_bool(value, field, why, len);
    case T_ENUM:
        return set_enum(k, value, field, why, len);
    }
    snprintf(why, len, "internal error: bad key type");
    return false;
}

int
agw_config_workers(const struct agw_config *cfg)
{
    long cpus;

    if (cfg->workers > 0) {
        return cfg->workers;
    }
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus > WORKERS_MAX ? WORKERS_MAX : (int)cpus;
}

/* ------------------------------------------------------------ checks */

/* Validators call the parser the consumer runs on the value; none of
 * them quotes a URL, which may carry a password. */
static bool
validate_listen(const char *value, char *why, size_t len)
{
    char host[AGW_LISTEN_HOST_MAX + 1];
    int port;

    return agw_address_parse_listen(value, host, &port, why, len);
}

static bool
validate_base_url(const char *value, char *why, size_t len)
{
    struct agw_base_url url;

    if (!agw_address_parse_base_url(value, &url, why, len)) {
        return false;
    }
    agw_address_clear_base_url(&url);
    return true;
}

/* Loaded for real, as the upstream client will (nginx does the same with
 * its certificates), even when base_url is http: a file the config names
 * must be readable. */
static bool
validate_ca_file(const char *value, char *why, size_t len)
{
    struct stat st;
    SSL_CTX *ctx;

    /* Whoever may write the CA file may vouch for a fake Connectly and
     * read the API key off the wire. */
    if (stat(value, &st) == 0 && S_ISREG(st.st_mode) &&
        agw_mode_writable_by_others(st.st_mode)) {
        snprintf(why, len, "%s is writable by group or others (mode %04o)",
                 value, (unsigned)(st.st_mode & 07777));
        return false;
    }
    ctx = agw_tls_client_ctx(value, why, len);

    SSL_CTX_free(ctx);
    return ctx != NULL;
}

/* What start-up's open(O_APPEND | O_CREAT) needs, checked without
 * creating the file, so that -t leaves nothing behind. */
static bool
validate_log_file(const char *value, char *why, size_t len)
{
    char dir[PATH_MAX];
    struct stat st;
    char *slash;

    if (stat(value, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            snprintf(why, len, "%s is not a regular file", value);
            return false;
        }
        if (access(value, W_OK) != 0) {
            snprintf(why, len, "cannot write %s: %s", value, strerror(errno));
            return false;
        }
        return true;
    }
    snprintf(dir, sizeof(dir), "%s", value);
    slash = strrchr(dir, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof(dir), ".");
    } else {
        slash[slash == dir ? 1 : 0] = '\0';
    }
    if (access(dir, W_OK | X_OK) != 0) {
        snprintf(why, len, "cannot create %s in %s: %s", value, dir,
                 strerror(errno));
        return false;
    }
    return true;
}

/* Parsed whatever the backend: the Redis layer parses it the same way. */
static bool
validate_redis_url(const char *value, char *why, size_t len)
{
    struct agw_redis_url url;

    if (!agw_redis_url_parse(value, &url, why, len)) {
        return false;
    }
    agw_redis_url_clear(&url);
    return true;
}

/* Parsed by the very parser the Sentinel client uses. */
static bool
validate_sentinels(const char *value, char *why, size_t len)
{
    struct agw_sentinel_addr list[AGW_SENTINEL_MAX];
    int n;

    return agw_sentinel_parse_list(value, list, &n, why, len);
}

/* One word: +switch-master messages are space-separated. */
static bool
validate_master_name(const char *value, char *why, size_t len)
{
    for (const char *p = value; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            snprintf(why, len, "the name holds spaces or control characters");
            return false;
        }
    }
    if (*value == '\0') {
        snprintf(why, len, "the name is empty");
        return false;
    }
    return true;
}

static bool
check_sentinels(const struct agw_config *cfg, char *why, size_t len)
{
    if (cfg->sentinels == NULL) {
        return true;
    }
    if (cfg->store_backend != AGW_STORE_REDIS) {
        snprintf(why, len, "needs [store] backend = redis");
        return false;
    }
    if (strncasecmp(cfg->redis_url, "unix://", 7) == 0) {
        snprintf(why, len,
                 "the sentinels name a TCP address: redis_url must be "
                 "redis://");
        return false;
    }
    return true;
}

static bool
check_request_timeout(const struct agw_config *cfg, char *why, size_t len)
{
    if (cfg->request_timeout_ms > cfg->request_deadline_ms) {
        snprintf(why, len,
                 "%d must not exceed [server] request_deadline_ms (%d)",
                 cfg->request_timeout_ms, cfg->request_deadline_ms);
        return false;
    }
    return true;
}

/* A budget below one largest request would refuse every such request. */
static bool
check_buffered_bytes(const struct agw_config *cfg, char *why, size_t len)
{
    long need = cfg->max_body_bytes + AGW_GUARD_HEAD_MAX;

    if (cfg->max_buffered_bytes < need) {
        snprintf(why, len,
                 "%ld is below [server] max_body_bytes + %d (%ld): the "
                 "largest requests would always get 503",
                 cfg->max_buffered_bytes, AGW_GUARD_HEAD_MAX, need);
        return false;
    }
    return true;
}

static bool
check_auth_mode(const struct agw_config *cfg, char *why, size_t len)
{
    if (cfg->auth_mode != AGW_AUTH_NONE && cfg->clients_file == NULL) {
        snprintf(why, len,
                 "mode = %s needs [auth] clients_file (or set mode = none "
                 "for a trusted sidecar)",
                 auth_names[cfg->auth_mode].name);
        return false;
    }
    /* Only a required certificate identifies every call on tls_listen;
     * optional would let a call without one through to the 401 only. */
    if (cfg->auth_mode == AGW_AUTH_MTLS &&
        cfg->tls_client_auth != AGW_TLS_CLIENT_REQUIRE) {
        snprintf(why, len,
                 "mode = mtls needs [server] tls_client_auth = require");
        return false;
    }
    return true;
}

static bool
check_listeners(const struct agw_config *cfg, char *why, size_t len)
{
    if (cfg->listen == NULL && cfg->tls_listen == NULL) {
        snprintf(why, len, "empty, and so is tls_listen: nothing to serve on");
        return false;
    }
    return true;
}

static bool
check_tls_listen(const struct agw_config *cfg, char *why, size_t len)
{
    if (cfg->tls_listen != NULL &&
        (cfg->tls_cert_file == NULL || cfg->tls_key_file == NULL)) {
        snprintf(why, len, "needs [server] tls_cert_file and tls_key_file");
        return false;
    }
    return true;
}

/* The context start-up and SIGHUP build, built here once: a key that is
 * not the certificate's is refused with the file's line. */
static bool
check_tls_pair(const struct agw_config *cfg, char *why, size_t len)
{
    SSL_CTX *ctx;

    /* What is missing is check_tls_listen's or check_client_auth's to
     * say. */
    if (cfg->tls_listen == NULL || cfg->tls_cert_file == NULL ||
        cfg->tls_key_file == NULL ||
        (cfg->tls_client_auth != AGW_TLS_CLIENT_NONE &&
         cfg->tls_client_ca_file == NULL)) {
        return true;
    }
    ctx = agw_tls_server_ctx(cfg, why, len);
    SSL_CTX_free(ctx);
    return ctx != NULL;
}

static bool
check_client_auth(const struct agw_config *cfg, char *why, size_t len)
{
    if (cfg->tls_client_auth == AGW_TLS_CLIENT_NONE) {
        return true;
    }
    if (cfg->tls_listen == NULL) {
        snprintf(why, len, "client certificates need [server] tls_listen");
        return false;
    }
    if (cfg->tls_client_ca_file == NULL) {
        snprintf(why, len,
                 "client certificates need [server] tls_client_ca_file");
        return false;
    }
    return true;
}

static bool
validate_sha256_hex(const char *value, char *why, size_t len)
{
    if (strlen(value) != 64 ||
        value[strspn(value, "0123456789abcdefABCDEF")] != '\0') {
        snprintf(why, len,
                 "must be 64 hex digits, the SHA-256 of the token (printf "
                 "%%s \"$TOKEN\" | sha256sum), never the token itself");
        return false;
    }
    return true;
}

/* An operator listener others can reach must ask for a token. Checked on
 * a reload too, with the running listen (restart-only): a reload that
 * drops the token of such a listener is refused, the old one kept. */
static bool
check_admin_listen(const struct agw_config *cfg, char *why, size_t len)
{
    char host[AGW_LISTEN_HOST_MAX + 1];
    int port;

    if (cfg->admin_listen == NULL || cfg->admin_token_sha256 != NULL ||
        !agw_address_parse_listen(cfg->admin_listen, host, &port, why, len) ||
        agw_address_is_loopback(host)) {
        return true;
    }
    snprintf(why, len,
             "%s is not loopback (127.0.0.0/8 or [::1]): set [admin] "
             "token_sha256, or listen on loopback",
             host);
    return false;
}

/* ------------------------------------------------------------ loading */

/* Writes "FILE[:LINE]: [[section] key: ]problem" into the caller's buffer;
 * the first problem found is the one reported. */
static void
fail(struct load_ctx *ctx, int line, const struct key_def *k, const char *fmt,
     ...)
{
    char where[64] = "";
    char what[512];
    va_list ap;

    if (!agw_ini_first_problem(&ctx->rd, line) || ctx->errlen == 0) {
        return;
    }
    if (line > 0) {
        snprintf(where, sizeof(where), ":%d", line);
    }
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (k != NULL) {
        snprintf(ctx->err, ctx->errlen, "%s%s: [%s] %s: %s", ctx->path, where,
                 k->section, k->name, what);
    } else {
        snprintf(ctx->err, ctx->errlen, "%s%s: %s", ctx->path, where, what);
    }
}

static int
key_line(const struct load_ctx *ctx, const struct key_def *k)
{
    return ctx->lines[k - keys];
}

/* The reader's own problems, reported as the loader's. */
static void
reader_problem(void *user, int line, const char *problem)
{
    fail(user, line, NULL, "%s", problem);
}

static bool
read_config_file(struct load_ctx *ctx, char **text)
{
    char why[256];
    mode_t mode = 0;

    if (!agw_ini_read_file(ctx->path, CONFIG_MAX_BYTES, text, &ctx->rd.len,
                           &mode, why, sizeof(why))) {
        fail(ctx, 0, NULL, "%s", why);
        return false;
    }
    if (agw_mode_writable_by_others(mode)) {
        fail(ctx, 0, NULL,
             "writable by group or others (mode %04o): whoever may write it "
             "chooses the callers and the key; chmod go-w it",
             (unsigned)(mode & 07777));
        return false;
    }
    ctx->rd.buf = *text;
    return true;
}

/* inih never tells the handler about an unknown section with no keys. */
static bool
section_ok(void *user, const char *p, size_t n)
{
    struct load_ctx *ctx = user;
    const char *close = memchr(p, ']', n);

    if (close != NULL && !known_section(p + 1, (size_t)(close - p - 1))) {
        fail(ctx, ctx->rd.lineno, NULL, "unknown section [%.*s]",
             (int)(close - p - 1), p + 1);
        return false;
    }
    return true;
}

static int
on_key(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *ctx = user;
    const struct key_def *k = find_key(section, name);
    char why[256];

    if (section[0] == '\0') {
        fail(ctx, ctx->rd.lineno, NULL, "%s: key outside any [section]", name);
        return 0;
    }
    if (k == NULL) {
        fail(ctx, ctx->rd.lineno, NULL, "[%s] %s: unknown key", section, name);
        return 0;
    }
    if (key_line(ctx, k) != 0) {
        fail(ctx, ctx->rd.lineno, k, "duplicate key (first set on line %d)",
             key_line(ctx, k));
        return 0;
    }
    ctx->lines[k - keys] = ctx->rd.lineno;
    if (!set_value(ctx->cfg, k, value, why, sizeof(why))) {
        fail(ctx, ctx->rd.lineno, k, "%s", why);
        return 0;
    }
    return 1;
}

static bool
parse_text(struct load_ctx *ctx)
{
    ctx->rd.report = reader_problem;
    ctx->rd.section = section_ok;
    ctx->rd.user = ctx;
    return agw_ini_parse(&ctx->rd, on_key, "[section] or key = value");
}

/* The keys' agreement with one another; SUFFIX ends any message. */
static bool
run_cross_checks(struct load_ctx *ctx, const char *suffix)
{
    char why[256];

    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].check != NULL &&
            !keys[i].check(ctx->cfg, why, sizeof(why))) {
            fail(ctx, ctx->lines[i], &keys[i], "%s%s", why, suffix);
            return false;
        }
    }
    return true;
}

/* Each key's own value, then the keys together. */
static bool
run_checks(struct load_ctx *ctx)
{
    char why[256];
    const char *value;

    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].validate == NULL) {
            continue;
        }
        value = *(char **)field_of(ctx->cfg, &keys[i]);
        if (value != NULL && !keys[i].validate(value, why, sizeof(why))) {
            fail(ctx, ctx->lines[i], &keys[i], "%s", why);
            return false;
        }
    }
    return run_cross_checks(ctx, "");
}

/* The key goes into an HTTP header: printable ASCII without spaces only. */
static bool
key_chars_ok(const char *key, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)key[i] <= 0x20 || (unsigned char)key[i] >= 0x7f) {
            return false;
        }
    }
    return true;
}

static bool
store_key(struct load_ctx *ctx, const char *key, size_t len)
{
    ctx->cfg->api_key = malloc(len + 1);
    if (ctx->cfg->api_key == NULL) {
        fail(ctx, 0, NULL, "out of memory");
        return false;
    }
    memcpy(ctx->cfg->api_key, key, len);
    ctx->cfg->api_key[len] = '\0';
    return true;
}

/* Fills BUF with the key file's bytes; reports every failure but empty. */
static bool
read_key_bytes(struct load_ctx *ctx, const struct key_def *k, char *buf,
               size_t *len)
{
    const char *file = ctx->cfg->api_key_file;
    /* O_NONBLOCK: opening a FIFO must not hang start-up. */
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    ssize_t n = -1;

    if (fd < 0) {
        fail(ctx, key_line(ctx, k), k, "cannot read %s: %s", file,
             strerror(errno));
        return false;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(ctx, key_line(ctx, k), k, "cannot read %s: not a regular file",
             file);
    } else if ((n = agw_read_full(fd, buf, API_KEY_MAX + 1)) < 0) {
        fail(ctx, key_line(ctx, k), k, "cannot read %s: %s", file,
             strerror(errno));
    } else if (n > API_KEY_MAX) {
        fail(ctx, key_line(ctx, k), k, "%s is larger than %d bytes", file,
             API_KEY_MAX);
    } else if (agw_mode_writable_by_others(st.st_mode)) {
        fail(ctx, key_line(ctx, k), k,
             "%s is writable by group or others (mode %04o): whoever may "
             "write it chooses the key spent; chmod 600 it",
             file, (unsigned)(st.st_mode & 07777));
    } else if (agw_readable_by_strangers(&st)) {
        log_warn("%s: api_key_file %s is readable by group or others "
                 "(mode %04o); chmod 600 it, or 640 with the gateway's "
                 "own group",
                 ctx->path, file, (unsigned)(st.st_mode & 07777));
    }
    close(fd);
    *len = n > 0 ? (size_t)n : 0;
    return !ctx->rd.failed;
}

static bool
load_key_file(struct load_ctx *ctx)
{
    const struct key_def *k = find_key("upstream", "api_key_file");
    const char *file = ctx->cfg->api_key_file;
    char buf[API_KEY_MAX + 1];
    size_t len = 0;
    bool ok = read_key_bytes(ctx, k, buf, &len);

    while (len > 0 && isspace((unsigned char)buf[len - 1])) {
        len--;
    }
    if (ok && len == 0) {
        fail(ctx, key_line(ctx, k), k, "%s is empty", file);
    } else if (ok && !key_chars_ok(buf, len)) {
        fail(ctx, key_line(ctx, k), k,
             "%s: the key contains spaces, control or non-ASCII characters",
             file);
    } else if (ok) {
        store_key(ctx, buf, len);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return !ctx->rd.failed;
}

static bool
load_api_key(struct load_ctx *ctx)
{
    const char *env = getenv(API_KEY_ENV);

    if (ctx->cfg->api_key_file != NULL) {
        return load_key_file(ctx);
    }
    if (env == NULL || env[0] == '\0') {
        fail(ctx, 0, NULL,
             "no API key: set [upstream] api_key_file or " API_KEY_ENV);
        return false;
    }
    if (!key_chars_ok(env, strlen(env))) {
        fail(ctx, 0, NULL,
             API_KEY_ENV " contains spaces, control or non-ASCII characters");
        return false;
    }
    return store_key(ctx, env, strlen(env));
}

/* The sentinels' password: one line, like the API key file, and as
 * guarded (a secret). Read at start-up, by -t and on reloads alike. */
static bool
load_sentinel_password(struct load_ctx *ctx)
{
    const struct key_def *k = find_key("store", "sentinel_password_file");
    const char *file = ctx->cfg->sentinel_password_file;
    char buf[API_KEY_MAX + 1];
    int fd;
    ssize_t n;
    struct stat st;

    if (file == NULL) {
        return true;
    }
    fd = open(file, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fail(ctx, key_line(ctx, k), k, "cannot read %s: %s", file,
             fd < 0 ? strerror(errno) : "not a regular file");
    } else if (agw_mode_writable_by_others(st.st_mode)) {
        fail(ctx, key_line(ctx, k), k,
             "%s is writable by group or others (mode %04o); chmod 600 it",
             file, (unsigned)(st.st_mode & 07777));
    } else if ((n = agw_read_full(fd, buf, API_KEY_MAX)) < 0) {
        fail(ctx, key_line(ctx, k), k, "cannot read %s: %s", file,
             strerror(errno));
    } else {
        if (agw_readable_by_strangers(&st)) {
            log_warn("%s: sentinel_password_file %s is readable by group or "
                     "others (mode %04o); chmod 600 it",
                     ctx->path, file, (unsigned)(st.st_mode & 07777));
        }
        while (n > 0 && isspace((unsigned char)buf[n - 1])) {
            n--;
        }
        if (n == 0 || memchr(buf, '\n', (size_t)n) != NULL ||
            memchr(buf, '\0', (size_t)n) != NULL) {
            fail(ctx, key_line(ctx, k), k,
                 "%s: want one non-empty line (the password)", file);
        } else if ((ctx->cfg->sentinel_password = strndup(buf, (size_t)n)) ==
                   NULL) {
            fail(ctx, 0, NULL, "out of memory");
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    OPENSSL_cleanse(buf, sizeof(buf));
    return !ctx->rd.failed;
}

static int
keep_restart_only(struct agw_config *next, const struct agw_config *running,
                  void (*report)(const char *section, const char *key));

/* A reload: NEXT, valid on its own, must also hold together once its
 * restart-only keys are back at their running values. */
static bool
keep_running_values(struct load_ctx *ctx, const struct agw_config *running,
                    void (*report)(const char *section, const char *key))
{
    keep_restart_only(ctx->cfg, running, report);
    return run_cross_checks(ctx, ", with the running value of each key "
                                 "that needs a restart");
}

/* RUNNING is NULL at start-up and for -t. */
static bool
load(struct agw_config *cfg, const char *path, const struct agw_config *running,
     void (*report)(const char *section, const char *key), char *err,
     size_t errlen)
{
    int lines[NKEYS] = {0};
    struct load_ctx ctx = {
        .cfg = cfg, .path = path, .lines = lines, .err = err, .errlen = errlen};
    char *text = NULL;
    bool ok;

    if (errlen > 0) {
        err[0] = '\0';
    }
    agw_config_defaults(cfg);
    ok = read_config_file(&ctx, &text) && parse_text(&ctx) &&
         run_checks(&ctx) &&
         (running == NULL || keep_running_values(&ctx, running, report)) &&
         load_api_key(&ctx) && load_sentinel_password(&ctx);
    free(text);
    if (!ok) {
        agw_config_free(cfg);
    }
    return ok;
}

bool
agw_config_load(struct agw_config *cfg, const char *path, char *err,
                size_t errlen)
{
    return load(cfg, path, NULL, NULL, err, errlen);
}

bool
agw_config_reload(struct agw_config *next, const char *path,
                  const struct agw_config *running,
                  void (*report)(const char *section, const char *key),
                  char *err, size_t errlen)
{
    return load(next, path, running, report, err, errlen);
}

void
agw_config_defaults(struct agw_config *cfg)
{
    char why[256];

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < NKEYS; i++) {
        /* Only out of memory (or a bad table) gets here. */
        if (!set_value(cfg, &keys[i], keys[i].def, why, sizeof(why))) {
            fprintf(stderr, "[%s] %s: default: %s\n", keys[i].section,
                    keys[i].name, why);
            abort();
        }
    }
}

void
agw_config_free(struct agw_config *cfg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == T_STRING) {
            free(*(char **)field_of(cfg, &keys[i]));
        }
    }
    if (cfg->api_key != NULL) {
        OPENSSL_cleanse(cfg->api_key, strlen(cfg->api_key));
        free(cfg->api_key);
    }
    if (cfg->sentinel_password != NULL) {
        OPENSSL_cleanse(cfg->sentinel_password, strlen(cfg->sentinel_password));
        free(cfg->sentinel_password);
    }
    memset(cfg, 0, sizeof(*cfg));
}

/* ------------------------------------------------------------ reload */

struct agw_config *
agw_config_ref(struct agw_config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void
agw_config_unref(struct agw_config *cfg)
{
    if (cfg == NULL ||
        atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    agw_config_free(cfg);
    free(cfg);
}

static bool
same_value(const struct key_def *k, const struct agw_config *a,
           const struct agw_config *b)
{
    const void *x = field_of((struct agw_config *)a, k);
    const void *y = field_of((struct agw_config *)b, k);
    const char *s;
    const char *t;

    switch (k->type) {
    case T_STRING:
        s = *(char *const *)x;
        t = *(char *const *)y;
        return (s == NULL && t == NULL) ||
               (s != NULL && t != NULL && strcmp(s, t) == 0);
    case T_LONG:
        return *(const long *)x == *(const long *)y;
    case T_DOUBLE:
        return *(const double *)x == *(const double *)y;
    case T_BOOL:
        return *(const bool *)x == *(const bool *)y;
    default:
        return *(const int *)x == *(const int *)y;
    }
}

static void
copy_value(const struct key_def *k, struct agw_config *dst,
           const struct agw_config *src)
{
    void *to = field_of(dst, k);
    const void *from = field_of((struct agw_config *)src, k);
    const char *s;

    switch (k->type) {
    case T_STRING:
        s = *(char *const *)from;
        free(*(char **)to);
        *(char **)to = s != NULL ? strdup(s) : NULL;
        if (s != NULL && *(char **)to == NULL) {
            abort(); /* out of memory while reloading */
        }
        break;
    case T_LONG:
        *(long *)to = *(const long *)from;
        break;
    case T_DOUBLE:
        *(double *)to = *(const double *)from;
        break;
    case T_BOOL:
        *(bool *)to = *(const bool *)from;
        break;
    default:
        *(int *)to = *(const int *)from;
        break;
    }
}

/* Every key without F_RELOAD: the running value wins, and REPORT names
 * each one the new file changed. Returns how many. */
static int
keep_restart_only(struct agw_config *next, const struct agw_config *running,
                  void (*report)(const char *section, const char *key))
{
    int kept = 0;

    for (size_t i = 0; i < NKEYS; i++) {
        if ((keys[i].flags & F_RELOAD) != 0 ||
            same_value(&keys[i], next, running)) {
            continue;
        }
        copy_value(&keys[i], next, running);
        report(keys[i].section, keys[i].name);
        kept++;
    }
    return kept;
}

/* ------------------------------------------------------------ sample */

static void
print_sample_key(FILE *out, const struct key_def *k)
{
    char allowed[128];
    const char *value = k->sample != NULL ? k->sample : k->def;

    fprintf(out, "# %s\n# Default: %s.", k->doc,
            k->def[0] != '\0' ? k->def : "empty");
    if (k->type == T_ENUM) {
        list_names(k->names, allowed, sizeof(allowed));
        fprintf(out, " One of: %s.", allowed);
    } else if (k->type == T_BOOL) {
        fprintf(out, " One of: yes, no.");
    } else if (k->type != T_STRING) {
        describe_range(k, allowed, sizeof(allowed));
        fprintf(out, " Range: %s.", allowed);
    }
    fprintf(out, " %s\n",
            (k->flags & F_RELOAD) ? "SIGHUP applies changes."
                                  : "Changes need a restart.");
    if (k->note != NULL) {
        fprintf(out, "# %s\n", k->note);
    }
    fprintf(out, "%s%s =%s%s\n", (k->flags & F_SAMPLE_OFF) ? "# " : "", k->name,
            value[0] != '\0' ? " " : "", value);
}

void
agw_config_print_sample(FILE *out)
{
    const char *section = NULL;

    fputs("# asset-gateway configuration (SPEC section 6), as printed by\n"
          "# `asset-gateway --sample-config`: every key with its default.\n"
          "# INI syntax: [section], key = value; a line starting with # or ;\n"
          "# is a comment. The API key never goes in this file.\n",
          out);
    for (size_t i = 0; i < NKEYS; i++) {
        if (section == NULL || strcmp(section, keys[i].section) != 0) {
            section = keys[i].section;
            fprintf(out, "\n[%s]\n", section);
        } else {
            fputc('\n', out);
        }
        print_sample_key(out, &keys[i]);
    }
}
