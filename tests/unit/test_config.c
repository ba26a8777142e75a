/*
 * test_config.c - config.c against real temp files: defaults, each value
 * type, every error's FILE:LINE: [section] key, the API key, the sample
 * file; and log.c's two line formats.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "config.h"
#include "log.h"

#define KEY_ENV "ASSET_GATEWAY_API_KEY"
/* Distinctive, so finding it in any message is never a coincidence. */
#define SECRET "sk-test-Zq8Xw3SECRETk7Lp"
#define FILE_SECRET "fk-FILE-Vb61SECRETq0Rt"

/* A self-signed CA certificate (public; its key was thrown away). */
#define TEST_CA_PEM                                                            \
    "-----BEGIN CERTIFICATE-----\n"                                            \
    "MIIBjDCCATOgAwIBAgIUODTbPtgJR17KlwmG6EknFVWJUwAwCgYIKoZIzj0EAwIw\n"       \
    "GzEZMBcGA1UEAwwQYWd3LXVuaXQtdGVzdC1jYTAgFw0yNjEyMDQwNTI2NDRaGA8y\n"       \
    "MTI2MTExMDA1MjY0NFowGzEZMBcGA1UEAwwQYWd3LXVuaXQtdGVzdC1jYTBZMBMG\n"       \
    "ByqGSM49AgEGCCqGSM49AwEHA0IABB8tY+CQCj829JtS4RIOEZdWoGYheuiL5oZU\n"       \
    "1eri4FlCT9aXTJYTV6751WwojGR59tQBFUK6EBSVweb+xIIoJQOjUzBRMB0GA1Ud\n"       \
    "DgQWBBQoffYEcB0qtrMMDWd0G6N1ZJfXuTAfBgNVHSMEGDAWgBQoffYEcB0qtrMM\n"       \
    "DWd0G6N1ZJfXuTAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIDQZ\n"       \
    "NTylYB7nxsYoZKOMDlhxoorIXHhLx7WFyS5AkhXhAiB7iUJHU1sIi7lbrwnwiPfv\n"       \
    "TFURl6LeRF0Zoc3d1ijFVQ==\n"                                               \
    "-----END CERTIFICATE-----\n"

static const char *
tmp_dir(void)
{
    const char *dir = getenv("TMPDIR");

    return dir != NULL && dir[0] != '\0' ? dir : "/tmp";
}

/* Writes TEXT to a new temp file with MODE; returns its path (malloc'd). */
static char *
write_temp_mode(const char *text, mode_t mode)
{
    size_t len = strlen(tmp_dir()) + 32;
    char *path = malloc(len);
    int fd;

    assert_non_null(path);
    snprintf(path, len, "%s/agw-test-XXXXXX", tmp_dir());
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

static char *
write_temp(const char *text)
{
    return write_temp_mode(text, 0600);
}

static void
remove_temp(char *path)
{
    unlink(path);
    free(path);
}

static void
assert_zeroed(const struct agw_config *cfg)
{
    static const struct agw_config zero;

    assert_memory_equal(cfg, &zero, sizeof(zero));
}

/*
 * Loads TEXT and expects failure with a message that starts with
 * "PATH:LINE: " (or "PATH: " when LINE is 0), contains WHAT, and never
 * contains a key. The config must come back freed.
 */
static void
expect_error(const char *text, int line, const char *what)
{
    struct agw_config cfg = {0};
    char err[512];
    char prefix[300];
    char *path = write_temp(text);
    bool ok = agw_config_load(&cfg, path, err, sizeof(err));

    if (line > 0) {
        snprintf(prefix, sizeof(prefix), "%s:%d: ", path, line);
    } else {
        snprintf(prefix, sizeof(prefix), "%s: ", path);
    }
    if (ok || strncmp(err, prefix, strlen(prefix)) != 0 ||
        strstr(err, what) == NULL) {
        print_error("input:\n%s\nwant prefix \"%s\" and \"%s\"\ngot %s: %s\n",
                    text, prefix, what, ok ? "success" : "error", err);
        fail();
    }
    assert_null(strstr(err, SECRET));
    assert_null(strstr(err, FILE_SECRET));
    assert_zeroed(&cfg);
    remove_temp(path);
}

/* Loads TEXT, which must succeed. */
static void
load_ok(const char *text, struct agw_config *cfg)
{
    char err[512] = "";
    char *path = write_temp(text);

    if (!agw_config_load(cfg, path, err, sizeof(err))) {
        print_error("input:\n%s\nunexpected error: %s\n", text, err);
        fail();
    }
    remove_temp(path);
}

static void
assert_same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        assert_ptr_equal(a, b);
    } else {
        assert_string_equal(a, b);
    }
}

/* Every field but the API key. */
static void
assert_config_equal(const struct agw_config *a, const struct agw_config *b)
{
    assert_same_str(a->listen, b->listen);
    assert_int_equal(a->workers, b->workers);
    assert_int_equal(a->max_body_bytes, b->max_body_bytes);
    assert_int_equal(a->client_timeout_ms, b->client_timeout_ms);
    assert_int_equal(a->drain_timeout_ms, b->drain_timeout_ms);
    assert_int_equal(a->request_deadline_ms, b->request_deadline_ms);
    assert_same_str(a->base_url, b->base_url);
    assert_same_str(a->api_key_file, b->api_key_file);
    assert_same_str(a->ca_file, b->ca_file);
    assert_int_equal(a->connect_timeout_ms, b->connect_timeout_ms);
    assert_int_equal(a->request_timeout_ms, b->request_timeout_ms);
    assert_int_equal(a->max_retries, b->max_retries);
    assert_int_equal(a->max_connections, b->max_connections);
    assert_int_equal(a->store_backend, b->store_backend);
    assert_same_str(a->redis_url, b->redis_url);
    assert_same_str(a->key_prefix, b->key_prefix);
    assert_int_equal(a->cache_ttl_s, b->cache_ttl_s);
    assert_int_equal(a->cache_max_entries, b->cache_max_entries);
    assert_true(a->rate == b->rate);
    assert_int_equal(a->burst, b->burst);
    assert_int_equal(a->max_wait_ms, b->max_wait_ms);
    assert_int_equal(a->expected_instances, b->expected_instances);
    assert_true(a->fallback_rate == b->fallback_rate);
    assert_int_equal(a->auth_mode, b->auth_mode);
    assert_same_str(a->clients_file, b->clients_file);
    assert_int_equal(a->allow_private_sources, b->allow_private_sources);
    assert_int_equal(a->log_level, b->log_level);
    assert_int_equal(a->log_format, b->log_format);
}

static int
test_setup(void **state)
{
    return setenv(KEY_ENV, SECRET, 1);
}

/* ------------------------------------------------------------ values */

static void
test_defaults_when_absent(void **state)
{
    struct agw_config cfg = {0};
    struct agw_config def;

    load_ok("[auth]\nmode = none\n", &cfg);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    assert_int_equal(cfg.workers, 0); /* auto */
    assert_true(agw_config_workers(&cfg) >= 1);
    assert_int_equal(cfg.max_body_bytes, 65536);
    assert_int_equal(cfg.client_timeout_ms, 10000);
    assert_int_equal(cfg.drain_timeout_ms, 10000);
    assert_int_equal(cfg.request_deadline_ms, 30000);
    assert_string_equal(cfg.base_url, "https://api.connectly.ai");
    assert_null(cfg.api_key_file);
    assert_null(cfg.ca_file);
    assert_int_equal(cfg.connect_timeout_ms, 2000);
    assert_int_equal(cfg.request_timeout_ms, 15000);
    assert_int_equal(cfg.max_retries, 2);
    assert_int_equal(cfg.max_connections, 16);
    assert_int_equal(cfg.store_backend, AGW_STORE_MEMORY);
    assert_string_equal(cfg.redis_url, "redis://127.0.0.1:6379/0");
    assert_string_equal(cfg.key_prefix, "agw:");
    assert_int_equal(cfg.cache_ttl_s, 2592000);
    assert_int_equal(cfg.cache_max_entries, 100000);
    assert_true(cfg.rate == 95.0);
    assert_int_equal(cfg.burst, 0);
    assert_int_equal(cfg.max_wait_ms, 2000);
    assert_int_equal(cfg.expected_instances, 1);
    assert_true(cfg.fallback_rate == 0.0);
    assert_int_equal(cfg.batch_max_backlog_ms, 100);
    assert_int_equal(cfg.batch_max_wait_ms, 30000);
    assert_int_equal(cfg.auth_mode, AGW_AUTH_NONE);
    assert_null(cfg.clients_file);
    assert_false(cfg.allow_private_sources);
    assert_int_equal(cfg.log_level, AGW_LOG_INFO);
    assert_int_equal(cfg.log_format, AGW_LOGFMT_JSON);

    /* agw_config_defaults() is the same thing, but for the SPEC's token. */
    agw_config_defaults(&def);
    assert_int_equal(def.auth_mode, AGW_AUTH_TOKEN);
    def.auth_mode = AGW_AUTH_NONE;
    assert_config_equal(&cfg, &def);
    assert_null(def.api_key);
    agw_config_free(&def);
    agw_config_free(&cfg);
}

static void
test_each_type(void **state)
{
    struct agw_config cfg = {0};
    char *ca = write_temp(TEST_CA_PEM);
    char text[1024];

    snprintf(text, sizeof(text),
             "; a comment\n"
             "# another\n"
             "[server]\n"
             "listen = [::1]:9000\n"
             "  client_timeout_ms = 1234\n" /* indented: not a continuation */
             "\tmax_body_bytes = 100 ; inline comment\n"
             "[upstream]\r\n"
             "base_url = http://127.0.0.1:8081/prefix\r\n"
             "ca_file = %s\n"
             "max_retries = 0\n"
             "[store]\n"
             "cache_ttl_s = 60\n"
             "key_prefix = test:\n"
             "[ratelimit]\n"
             "rate = 12.5\n"
             "fallback_rate = 0.25\n"
             "burst = 3\n"
             "[auth]\n"
             "mode = none\n"
             "clients_file =\n"
             "[security]\n"
             "allow_private_sources = yes\n"
             "[log]\n"
             "level = debug\n"
             "format = text\n",
             ca);
    load_ok(text, &cfg);
    assert_string_equal(cfg.listen, "[::1]:9000");
    assert_int_equal(cfg.client_timeout_ms, 1234);
    assert_int_equal(cfg.max_body_bytes, 100);
    assert_string_equal(cfg.base_url, "http://127.0.0.1:8081/prefix");
    assert_string_equal(cfg.ca_file, ca);
    assert_int_equal(cfg.max_retries, 0);
    assert_int_equal(cfg.cache_ttl_s, 60);
    assert_string_equal(cfg.key_prefix, "test:");
    assert_true(cfg.rate == 12.5);
    assert_true(cfg.fallback_rate == 0.25);
    assert_int_equal(cfg.burst, 3);
    assert_null(cfg.clients_file);
    assert_true(cfg.allow_private_sources);
    assert_int_equal(cfg.log_level, AGW_LOG_DEBUG);
    assert_int_equal(cfg.log_format, AGW_LOGFMT_TEXT);
    assert_string_equal(cfg.api_key, SECRET);
    agw_config_free(&cfg);
    remove_temp(ca);
}

static void
test_bool_spellings(void **state)
{
    static const struct {
        const char *text;
        bool value;
    } cases[] = {{"yes", true},    {"true", true}, {"on", true},
                 {"1", true},      {"YES", true},  {"no", false},
                 {"false", false}, {"off", false}, {"0", false},
                 {"Off", false}};
    char text[128];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct agw_config cfg = {0};

        snprintf(text, sizeof(text),
                 "[auth]\nmode = none\n[security]\n"
                 "allow_private_sources = %s\n",
                 cases[i].text);
        load_ok(text, &cfg);
        assert_int_equal(cfg.allow_private_sources, cases[i].value);
        agw_config_free(&cfg);
    }
}

static void
test_reuse_after_free(void **state)
{
    struct agw_config cfg = {0};

    load_ok("[auth]\nmode = none\n[server]\nworkers = 1\n", &cfg);
    agw_config_free(&cfg);
    assert_zeroed(&cfg);
    load_ok("[auth]\nmode = none\n[log]\nlevel = warn\n", &cfg);
    assert_int_equal(cfg.log_level, AGW_LOG_WARN);
    agw_config_free(&cfg);
}

/* ------------------------------------------------------------ errors */

#define AUTH_OK "[auth]\nmode = none\n"

static void
test_syntax_errors(void **state)
{
    expect_error(AUTH_OK "[server]\nthis is not a key\n", 4, "syntax error");
    expect_error(AUTH_OK "[server\nworkers = 1\n", 3, "syntax error");
    /* An earlier syntax error wins over a later bad value. */
    expect_error(AUTH_OK "[server]\nnonsense\nworkers = x\n", 4,
                 "syntax error");
    expect_error("workers = 1\n" AUTH_OK, 1, "workers: key outside any");
}

static void
test_unknown_section_and_key(void **state)
{
    expect_error(AUTH_OK "[servre]\nlisten = 127.0.0.1:1\n", 3,
                 "unknown section [servre]");
    expect_error(AUTH_OK "\n[empty]\n", 4, "unknown section [empty]");
    expect_error(AUTH_OK "[server]\nlistne = 127.0.0.1:1\n", 4,
                 "[server] listne: unknown key");
    /* A real key in the wrong section is unknown there. */
    expect_error(AUTH_OK "[server]\nrate = 5\n", 4,
                 "[server] rate: unknown key");
}

static void
test_duplicate_key(void **state)
{
    expect_error(AUTH_OK "[server]\nworkers = 1\n\nworkers = 1\n", 6,
                 "[server] workers: duplicate key (first set on line 4)");
    expect_error("[server]\nworkers = 1\n" AUTH_OK "[server]\nworkers = 1\n", 6,
                 "[server] workers: duplicate key (first set on line 2)");
}

static void
test_bad_numbers(void **state)
{
    expect_error(AUTH_OK "[upstream]\nmax_retries = two\n", 4,
                 "[upstream] max_retries: \"two\" is not an integer");
    expect_error(AUTH_OK "[upstream]\nmax_retries = 2x\n", 4,
                 "[upstream] max_retries: \"2x\" is not an integer");
    expect_error(AUTH_OK "[upstream]\nmax_retries =\n", 4,
                 "[upstream] max_retries: \"\" is not an integer");
    expect_error(AUTH_OK "[upstream]\nmax_retries = 11\n", 4,
                 "[upstream] max_retries: 11 is out of range (0 to 10)");
    expect_error(AUTH_OK "[ratelimit]\nburst = -1\n", 4,
                 "[ratelimit] burst: -1 is out of range");
    expect_error(AUTH_OK "[server]\nmax_body_bytes = 99999999999999999999\n", 4,
                 "[server] max_body_bytes: ");
    expect_error(AUTH_OK "[store]\ncache_ttl_s = 0\n", 4,
                 "[store] cache_ttl_s: 0 is out of range");
    expect_error(AUTH_OK "[ratelimit]\nrate = fast\n", 4,
                 "[ratelimit] rate: \"fast\" is not a number");
    expect_error(AUTH_OK "[ratelimit]\nrate = inf\n", 4,
                 "[ratelimit] rate: \"inf\" is not a number");
    expect_error(AUTH_OK "[ratelimit]\nrate = 0\n", 4,
                 "[ratelimit] rate: 0 is out of range (more than 0");
    expect_error(AUTH_OK "[ratelimit]\nfallback_rate = -0.5\n", 4,
                 "[ratelimit] fallback_rate: -0.5 is out of range");
}

static void
test_bad_names(void **state)
{
    expect_error(AUTH_OK "[store]\nbackend = disk\n", 4,
                 "[store] backend: \"disk\" is not one of: memory, redis");
    expect_error(AUTH_OK "[log]\nlevel = verbose\n", 4,
                 "[log] level: \"verbose\" is not one of: error, warn, info, "
                 "debug");
    expect_error(AUTH_OK "[log]\nformat = xml\n", 4,
                 "[log] format: \"xml\" is not one of: json, text");
    expect_error("[auth]\nmode = maybe\n", 2,
                 "[auth] mode: \"maybe\" is not one of: none, token");
    expect_error(AUTH_OK "[security]\nallow_private_sources = maybe\n", 4,
                 "[security] allow_private_sources: \"maybe\" is not a "
                 "boolean");
}

static void
test_bad_listen(void **state)
{
    static const char *const bad[] = {
        "8080", "localhost:", "localhost:0", "localhost:65536",
        ":80",  "::1:80",     "[]:80",       "127.0.0.1:80x"};
    char text[128];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), AUTH_OK "[server]\nlisten = %s\n", bad[i]);
        expect_error(text, 4, "[server] listen: ");
        expect_error(text, 4, "must be host:port");
    }
    expect_error(AUTH_OK "[server]\nlisten =\n", 4,
                 "[server] listen: empty, and so is tls_listen");
}

/* SPEC §9: what the TLS keys need of one another, and of [auth] mode. */
static void
test_tls_keys(void **state)
{
    expect_error(AUTH_OK "[server]\ntls_listen = 127.0.0.1:8443\n", 4,
                 "[server] tls_listen: needs [server] tls_cert_file and "
                 "tls_key_file");
    expect_error(AUTH_OK "[server]\ntls_listen = 127.0.0.1:0x\n", 4,
                 "[server] tls_listen: ");
    expect_error(AUTH_OK "[server]\ntls_client_auth = require\n", 4,
                 "[server] tls_client_auth: client certificates need "
                 "[server] tls_listen");
    expect_error(AUTH_OK "[server]\ntls_client_auth = sometimes\n", 4,
                 "is not one of: none, optional, require");
    expect_error(AUTH_OK "[server]\ntls_min_version = 1.1\n", 4,
                 "\"1.1\" is not one of: 1.2, 1.3");
    expect_error(AUTH_OK "[server]\ntls_cert_file = /nonexistent/c.pem\n", 4,
                 "[server] tls_cert_file: cannot read /nonexistent/c.pem");
    expect_error(AUTH_OK "[server]\ntls_key_file = /nonexistent/k.pem\n", 4,
                 "[server] tls_key_file: cannot read /nonexistent/k.pem");
    expect_error("[auth]\nmode = mtls\nclients_file = /c\n", 2,
                 "[auth] mode: mode = mtls needs [server] tls_client_auth = "
                 "require");
    expect_error("[auth]\nmode = any\n", 2,
                 "[auth] mode: mode = any needs [auth] clients_file");
}

/* What the server's own parser refuses, -t refuses too: before, these
 * passed the config and failed only when the server split them. */
static void
test_listen_as_the_server_parses_it(void **state)
{
    static const struct {
        const char *value;
        const char *what;
    } bad[] = {
        {"999.1.1.1:80", "is not an IPv4 address"},
        {"127.0.0.1.:80", "is not an IPv4 address"},
        {"[zz]:80", "is not an IPv6 address"},
        {"[127.0.0.1]:80", "is not an IPv6 address"},
        {"bad/host:80", "is not a host name"},
    };
    static const char *const good[] = {"localhost:1", "0.0.0.0:65535",
                                       "[::]:8080", "gw.internal-1:8080"};
    struct agw_config cfg = {0};
    char text[512];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), AUTH_OK "[server]\nlisten = %s\n",
                 bad[i].value);
        expect_error(text, 4, "[server] listen: ");
        expect_error(text, 4, bad[i].what);
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(text, sizeof(text), AUTH_OK "[server]\nlisten = %s\n",
                 good[i]);
        load_ok(text, &cfg);
        assert_string_equal(cfg.listen, good[i]);
        agw_config_free(&cfg);
    }
}

static void
test_bad_base_url(void **state)
{
    static const struct {
        const char *value;
        const char *what;
    } bad[] = {
        {"ftp://api.connectly.ai", "must be http:// or https://"},
        {"api.connectly.ai", "must be http:// or https://"},
        {"https://", "has no host"},
        {"https:///v1", "has no host"},
        {"http://exa mple.com", "is not a URL"},
        /* What the upstream client refused at start-up, -t now refuses. */
        {"https://api.connectly.ai/v1?x=1", "must not carry a query"},
        {"https://api.connectly.ai/v1#top", "must not carry a fragment"},
        {"https://u:" SECRET "@api.connectly.ai/",
         "must not carry credentials"},
        {"https://api.connectly.ai:0/", "has a bad port"},
        {"https://api.connectly.ai:70000/", "is not a URL"},
    };
    char text[256];
    char want[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), AUTH_OK "\n[upstream]\nbase_url = %s\n",
                 bad[i].value);
        snprintf(want, sizeof(want), "[upstream] base_url: %s", bad[i].what);
        expect_error(text, 5, want); /* and SECRET never in the message */
    }
}

static void
test_good_base_url(void **state)
{
    static const char *const good[] = {
        "https://api.connectly.ai", "https://api.connectly.ai/v1/",
        "http://127.0.0.1:8081/prefix", "http://[::1]:8081"};
    struct agw_config cfg = {0};
    char text[256];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(text, sizeof(text), AUTH_OK "[upstream]\nbase_url = %s\n",
                 good[i]);
        load_ok(text, &cfg);
        assert_string_equal(cfg.base_url, good[i]);
        agw_config_free(&cfg);
    }
}

/* ca_file is loaded for real at load time, base_url http or https. */
static void
test_ca_file_loaded(void **state)
{
    char *ca = write_temp(TEST_CA_PEM);
    char *empty = write_temp("");
    char *junk = write_temp("-----BEGIN CERTIFICATE-----\nnot base64\n"
                            "-----END CERTIFICATE-----\n");
    struct agw_config cfg = {0};
    char text[512];
    char want[512];

    snprintf(text, sizeof(text),
             AUTH_OK "[upstream]\nbase_url = https://h\nca_file = %s\n", ca);
    load_ok(text, &cfg);
    assert_string_equal(cfg.ca_file, ca);
    agw_config_free(&cfg);

    snprintf(text, sizeof(text),
             AUTH_OK
             "[upstream]\nbase_url = http://h\nca_file = %s/agw-no-ca\n",
             tmp_dir());
    snprintf(want, sizeof(want),
             "[upstream] ca_file: cannot read %s/agw-no-ca: No such file",
             tmp_dir());
    expect_error(text, 5, want);
    snprintf(text, sizeof(text), AUTH_OK "[upstream]\nca_file = %s\n",
             tmp_dir());
    expect_error(text, 4, "[upstream] ca_file: cannot read");
    expect_error(text, 4, "not a regular file");
    snprintf(text, sizeof(text), AUTH_OK "[upstream]\nca_file = %s\n", empty);
    snprintf(want, sizeof(want), "[upstream] ca_file: cannot load CAs from %s",
             empty);
    expect_error(text, 4, want);
    snprintf(text, sizeof(text), AUTH_OK "[upstream]\nca_file = %s\n", junk);
    expect_error(text, 4, "[upstream] ca_file: cannot load CAs from");
    remove_temp(ca);
    remove_temp(empty);
    remove_temp(junk);
}

/* Parsed by agw_redis_url_parse() whatever the backend, at its own line,
 * never echoing the password. */
static void
test_bad_redis_url(void **state)
{
    expect_error(AUTH_OK "[store]\nbackend = memory\nredis_url = http://x\n", 5,
                 "[store] redis_url: want redis://");
    expect_error(AUTH_OK "[store]\nredis_url = redis://:" SECRET
                         "@127.0.0.1:99999/0\nbackend = redis\n",
                 4, "[store] redis_url: bad port");
    expect_error(AUTH_OK "[store]\nredis_url = redis://h/x\n", 4,
                 "[store] redis_url: bad database number");
    expect_error(AUTH_OK "[store]\nredis_url = rediss://h\n", 4,
                 "[store] redis_url: rediss:// (TLS) is not supported");
}

static void
test_timeout_exceeds_deadline(void **state)
{
    expect_error(AUTH_OK "[upstream]\nrequest_timeout_ms = 30001\n", 4,
                 "[upstream] request_timeout_ms: 30001 must not exceed "
                 "[server] request_deadline_ms (30000)");
    /* Only the deadline is in the file: the default timeout is blamed. */
    expect_error(AUTH_OK "[server]\nrequest_deadline_ms = 1000\n", 0,
                 "[upstream] request_timeout_ms: 15000 must not exceed "
                 "[server] request_deadline_ms (1000)");
}

static void
test_buffered_below_one_request(void **state)
{
    struct agw_config cfg = {0};

    expect_error(AUTH_OK "[server]\nmax_body_bytes = 1048576\n"
                         "max_buffered_bytes = 1048576\n",
                 5,
                 "[server] max_buffered_bytes: 1048576 is below [server] "
                 "max_body_bytes + 16384 (1064960)");
    load_ok(AUTH_OK "[server]\nmax_body_bytes = 1048576\n"
                    "max_buffered_bytes = 1064960\n",
            &cfg);
    assert_int_equal(cfg.max_buffered_bytes, 1064960);
    agw_config_free(&cfg);
}

static void
test_workers(void **state)
{
    struct agw_config cfg = {0};

    load_ok("[auth]\nmode = none\n[server]\nworkers = 4\n", &cfg);
    assert_int_equal(agw_config_workers(&cfg), 4);
    agw_config_free(&cfg);
    load_ok("[auth]\nmode = none\n[server]\nworkers = auto\n", &cfg);
    assert_int_equal(cfg.workers, 0);
    assert_int_equal(agw_config_workers(&cfg), sysconf(_SC_NPROCESSORS_ONLN));
    agw_config_free(&cfg);
}

static void
test_unsupported_features(void **state)
{
    expect_error(AUTH_OK "[server]\nworkers = many\n", 4,
                 "[server] workers: \"many\" is not an integer or auto");
    expect_error(AUTH_OK "[server]\nworkers = 65\n", 4, "[server] workers:");
    expect_error(AUTH_OK "[store]\nbackend = redis\nredis_url = http://x\n", 5,
                 "[store] redis_url: ");
    expect_error("[server]\nworkers = 1\n[auth]\nmode = token\n", 4,
                 "[auth] mode: mode = token needs [auth] clients_file");
    /* token is the default: a file that names no clients file fails. */
    expect_error("[server]\nworkers = 1\n", 0,
                 "[auth] mode: mode = token needs [auth] clients_file");
    expect_error("", 0, "[auth] mode: mode = token needs");
}

static void
test_line_too_long(void **state)
{
    char text[400];
    char value[300];

    memset(value, 'a', 250);
    value[250] = '\0';
    snprintf(text, sizeof(text), AUTH_OK "[store]\nkey_prefix = %s\n", value);
    expect_error(text, 4, "line longer than");
}

static void
test_unreadable_config(void **state)
{
    struct agw_config cfg = {0};
    char err[512];
    char path[300];

    snprintf(path, sizeof(path), "%s/agw-no-such-file.conf", tmp_dir());
    assert_false(agw_config_load(&cfg, path, err, sizeof(err)));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file or directory"));
    assert_zeroed(&cfg);

    assert_false(agw_config_load(&cfg, tmp_dir(), err, sizeof(err)));
    assert_non_null(strstr(err, "cannot read"));
    assert_zeroed(&cfg);
}

/* ------------------------------------------------------------ API key */

static void
test_key_from_env(void **state)
{
    struct agw_config cfg = {0};

    load_ok(AUTH_OK, &cfg);
    assert_string_equal(cfg.api_key, SECRET);
    agw_config_free(&cfg);
    assert_null(cfg.api_key);
}

static void
test_key_from_file_wins(void **state)
{
    struct agw_config cfg = {0};
    char *key = write_temp(FILE_SECRET " \r\n\n");
    char text[400];

    snprintf(text, sizeof(text), AUTH_OK "[upstream]\napi_key_file = %s\n",
             key);
    load_ok(text, &cfg);
    assert_string_equal(cfg.api_key, FILE_SECRET);
    assert_string_equal(cfg.api_key_file, key);
    agw_config_free(&cfg);
    remove_temp(key);
}

static void
test_key_file_errors(void **state)
{
    char *empty = write_temp(" \n\n");
    char *spaced = write_temp("fk-FILE-Vb61 SECRETq0Rt\n");
    char *inner = write_temp(FILE_SECRET "\nsecond line\n");
    char text[400];
    char want[400];

    snprintf(text, sizeof(text), AUTH_OK "[upstream]\napi_key_file = %s\n",
             empty);
    snprintf(want, sizeof(want), "[upstream] api_key_file: %s is empty", empty);
    expect_error(text, 4, want);

    snprintf(text, sizeof(text), AUTH_OK "[upstream]\napi_key_file = %s\n",
             spaced);
    expect_error(text, 4, "the key contains spaces");
    snprintf(text, sizeof(text), AUTH_OK "[upstream]\napi_key_file = %s\n",
             inner);
    expect_error(text, 4, "the key contains spaces");

    snprintf(text, sizeof(text),
             AUTH_OK "[upstream]\napi_key_file = %s/agw-no-such-key\n",
             tmp_dir());
    snprintf(want, sizeof(want),
             "[upstream] api_key_file: cannot read %s/agw-no-such-key: No "
             "such file or directory",
             tmp_dir());
    expect_error(text, 4, want);

    snprintf(text, sizeof(text), AUTH_OK "[upstream]\napi_key_file = %s\n",
             tmp_dir());
    expect_error(text, 4, "not a regular file");

    remove_temp(empty);
    remove_temp(spaced);
    remove_temp(inner);
}

static void
test_no_key(void **state)
{
    assert_int_equal(unsetenv(KEY_ENV), 0);
    expect_error(AUTH_OK, 0,
                 "no API key: set [upstream] api_key_file or " KEY_ENV);
    assert_int_equal(setenv(KEY_ENV, "", 1), 0);
    expect_error(AUTH_OK, 0, "no API key");
    assert_int_equal(setenv(KEY_ENV, SECRET "\n", 1), 0);
    expect_error(AUTH_OK, 0, KEY_ENV " contains spaces");
}

/* Runs FN with stderr sent to a temp file; returns what it wrote. */
static char *
capture_stderr(void (*fn)(void *), void *arg)
{
    char *path = write_temp("");
    int fd = open(path, O_RDWR);
    int saved = dup(STDERR_FILENO);
    char *out = calloc(1, 8192);
    ssize_t n;

    assert_true(fd >= 0 && saved >= 0 && out != NULL);
    fflush(stderr);
    dup2(fd, STDERR_FILENO);
    fn(arg);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    n = pread(fd, out, 8191, 0);
    assert_true(n >= 0);
    close(fd);
    remove_temp(path);
    return out;
}

static void
load_quietly(void *arg)
{
    const char *path = arg;
    struct agw_config cfg = {0};
    char err[512];

    if (agw_config_load(&cfg, path, err, sizeof(err))) {
        agw_config_free(&cfg);
    }
}

static void
test_key_file_mode_warning(void **state)
{
    char *open_key = write_temp_mode(FILE_SECRET "\n", 0644);
    char *closed_key = write_temp_mode(FILE_SECRET "\n", 0600);
    char *group_key = write_temp_mode(FILE_SECRET "\n", 0600);
    char text[400];
    char *conf;
    char *out;

    snprintf(text, sizeof(text), AUTH_OK "[upstream]\napi_key_file = %s\n",
             open_key);
    conf = write_temp(text);
    out = capture_stderr(load_quietly, conf);
    assert_non_null(strstr(out, "readable by group or others"));
    assert_non_null(strstr(out, open_key));
    assert_null(strstr(out, FILE_SECRET));
    free(out);
    remove_temp(conf);

    /* The packaged layout: root:asset-gateway 0640, read through the
     * gateway's own group. */
    assert_int_equal(chmod(group_key, 0640), 0);
    assert_int_equal(chown(group_key, (uid_t)-1, getegid()), 0);
    snprintf(text, sizeof(text), AUTH_OK "[upstream]\napi_key_file = %s\n",
             group_key);
    conf = write_temp(text);
    out = capture_stderr(load_quietly, conf);
    assert_string_equal(out, "");
    free(out);
    remove_temp(conf);
    remove_temp(group_key);

    snprintf(text, sizeof(text), AUTH_OK "[upstream]\napi_key_file = %s\n",
             closed_key);
    conf = write_temp(text);
    out = capture_stderr(load_quietly, conf);
    assert_string_equal(out, "");
    free(out);
    remove_temp(conf);
    remove_temp(open_key);
    remove_temp(closed_key);
}

/* Loads TEXT from a file of MODE; returns the error ("" on success). */
static char *
load_with_mode(const char *text, mode_t mode, char **path)
{
    struct agw_config cfg = {0};
    char *err = calloc(1, 512);

    assert_non_null(err);
    *path = write_temp_mode(text, mode);
    if (agw_config_load(&cfg, *path, err, 512)) {
        agw_config_free(&cfg);
        err[0] = '\0';
    } else {
        assert_zeroed(&cfg);
    }
    return err;
}

/* A config or key file others may write is refused, naming it (SPEC §8);
 * one they may only read still loads (a warning for the key file). */
static void
test_writable_files_refused(void **state)
{
    static const mode_t loose[] = {0620, 0602, 0660, 0666};
    static const mode_t fine[] = {0600, 0640, 0400};
    char *key_path;
    char *conf;
    char *err;
    char text[400];
    char want[400];

    for (size_t i = 0; i < sizeof(loose) / sizeof(loose[0]); i++) {
        err = load_with_mode(AUTH_OK, loose[i], &conf);
        snprintf(want, sizeof(want),
                 "%s: writable by group or others (mode "
                 "%04o)",
                 conf, (unsigned)loose[i]);
        if (strstr(err, want) != err) {
            print_error("want \"%s\", got \"%s\"\n", want, err);
            fail();
        }
        free(err);
        remove_temp(conf);

        key_path = write_temp_mode(FILE_SECRET "\n", loose[i]);
        snprintf(text, sizeof(text), AUTH_OK "[upstream]\napi_key_file = %s\n",
                 key_path);
        snprintf(want, sizeof(want),
                 "[upstream] api_key_file: %s is writable by group or others "
                 "(mode %04o)",
                 key_path, (unsigned)loose[i]);
        expect_error(text, 4, want);
        remove_temp(key_path);
    }
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++) {
        err = load_with_mode(AUTH_OK, fine[i], &conf);
        assert_string_equal(err, "");
        free(err);
        remove_temp(conf);
    }
}

/* ------------------------------------------------------------ reload */

static char reported[256];

static void
report_kept(const char *section, const char *key)
{
    size_t n = strlen(reported);

    snprintf(reported + n, sizeof(reported) - n, "[%s] %s;", section, key);
}

/* Reloads TEXT over RUNNING; returns whether it loaded (ERR says why). */
static bool
reload_text(const char *text, const struct agw_config *running,
            struct agw_config *next, char *err, size_t errlen)
{
    char *path = write_temp(text);
    bool ok;

    reported[0] = '\0';
    ok = agw_config_reload(next, path, running, report_kept, err, errlen);
    remove_temp(path);
    return ok;
}

/* Issue #11: token -> none on SIGHUP keeps token, and what the reload
 * hands back already says token, so nothing can derive "none" from it. */
static void
test_reload_keeps_auth_mode(void **state)
{
    struct agw_config running = {0};
    struct agw_config next = {0};
    char err[512];

    load_ok("[auth]\nmode = token\nclients_file = /c1\n"
            "[ratelimit]\nrate = 10\n",
            &running);
    assert_true(reload_text("[auth]\nmode = none\nclients_file = /c2\n"
                            "[ratelimit]\nrate = 20\n",
                            &running, &next, err, sizeof(err)));
    assert_int_equal(next.auth_mode, AGW_AUTH_TOKEN);
    assert_string_equal(next.clients_file, "/c2"); /* reloadable */
    assert_true(next.rate == 20.0);
    assert_string_equal(reported, "[auth] mode;");
    assert_string_equal(next.api_key, SECRET);
    agw_config_free(&next);

    /* The kept token mode has no clients file in the new file: refused. */
    assert_false(reload_text("[auth]\nmode = none\n", &running, &next, err,
                             sizeof(err)));
    assert_non_null(strstr(err, "[auth] mode: mode = token needs [auth] "
                                "clients_file"));
    assert_non_null(strstr(err, "with the running value of each key that "
                                "needs a restart"));
    assert_zeroed(&next);
    agw_config_free(&running);
}

/* A reload refuses exactly what a load (-t, start-up) refuses, restart-only
 * keys included: their new values are checked before they are set aside. */
static void
test_reload_refuses_what_load_refuses(void **state)
{
    struct agw_config running = {0};
    struct agw_config next = {0};
    char err[512];

    load_ok(AUTH_OK, &running);
    assert_false(reload_text(AUTH_OK "[upstream]\nbase_url = "
                                     "https://h/v1?x=1\n",
                             &running, &next, err, sizeof(err)));
    assert_non_null(strstr(err, ":4: [upstream] base_url: must not carry a "
                                "query"));
    assert_zeroed(&next);
    assert_false(reload_text(AUTH_OK "[server]\nlisten = 1.2.3:80\n", &running,
                             &next, err, sizeof(err)));
    assert_non_null(strstr(err, ":4: [server] listen: "));
    assert_true(reload_text(AUTH_OK "[server]\nlisten = 127.0.0.1:9\n",
                            &running, &next, err, sizeof(err)));
    assert_string_equal(next.listen, running.listen);
    assert_string_equal(reported, "[server] listen;");
    agw_config_free(&next);
    agw_config_free(&running);
}

/* ------------------------------------------------------------ sample */

static void
test_sample_loads_back(void **state)
{
    struct agw_config cfg = {0};
    struct agw_config def;
    char err[512];
    char *path = write_temp("");
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    agw_config_print_sample(f);
    assert_int_equal(fclose(f), 0);
    if (!agw_config_load(&cfg, path, err, sizeof(err))) {
        print_error("sample does not load: %s\n", err);
        fail();
    }
    agw_config_defaults(&def);
    def.auth_mode = AGW_AUTH_NONE; /* the one value the sample changes */
    assert_config_equal(&cfg, &def);
    assert_string_equal(cfg.api_key, SECRET);
    agw_config_free(&def);
    agw_config_free(&cfg);
    remove_temp(path);
}

static void
test_sample_documents_keys(void **state)
{
    char *path = write_temp("");
    FILE *f = fopen(path, "w+");
    char text[16384];
    size_t n;

    assert_non_null(f);
    agw_config_print_sample(f);
    rewind(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    assert_non_null(strstr(text, "\n[server]\n"));
    assert_non_null(strstr(text, "\nlisten = 127.0.0.1:8080\n"));
    assert_non_null(strstr(text, "\n# Default: 127.0.0.1:8080."));
    assert_non_null(strstr(text, "\n# api_key_file = "));
    assert_non_null(strstr(text, "\n[auth]\n"));
    assert_non_null(strstr(text, "\nmode = none\n"));
    assert_non_null(strstr(text, "One of: memory, redis."));
    assert_null(strstr(text, "\napi_key_file ="));
    remove_temp(path);
}

/* ------------------------------------------------------------ log */

static void
log_samples(void *arg)
{
    log_info("plain %d", 42);
    rlog_warn("rid-7", "quote \" and\nnewline");
    log_debug("hidden");
}

static void
test_log_text(void **state)
{
    char *out;
    char *second;

    agw_log_setup(AGW_LOG_INFO, AGW_LOGFMT_TEXT, "test");
    out = capture_stderr(log_samples, NULL);
    /* 2026-11-23T10:41:00.123Z info plain 42 */
    assert_true(strlen(out) > 25);
    assert_int_equal(out[10], 'T');
    assert_int_equal(out[23], 'Z');
    assert_memory_equal(out + 24, " info plain 42\n", 15);
    second = out + 24 + 15;
    assert_non_null(strstr(second, "Z warn [rid-7] quote \" and newline\n"));
    assert_null(strstr(out, "hidden"));
    assert_null(strchr(strchr(second, '\n') + 1, '\n'));
    free(out);
}

static void
test_log_json(void **state)
{
    char *out;
    char *nl;
    struct json_object *obj;
    struct json_object *v;

    agw_log_setup(AGW_LOG_DEBUG, AGW_LOGFMT_JSON, "test-prog");
    out = capture_stderr(log_samples, NULL);
    agw_log_setup(AGW_LOG_INFO, AGW_LOGFMT_TEXT, "asset-gateway");
    nl = strchr(out, '\n');
    assert_non_null(nl);
    obj = json_tokener_parse(nl + 1); /* the second line: warn */
    assert_non_null(obj);
    assert_true(json_object_object_get_ex(obj, "level", &v));
    assert_string_equal(json_object_get_string(v), "warn");
    assert_true(json_object_object_get_ex(obj, "program", &v));
    assert_string_equal(json_object_get_string(v), "test-prog");
    assert_true(json_object_object_get_ex(obj, "request_id", &v));
    assert_string_equal(json_object_get_string(v), "rid-7");
    assert_true(json_object_object_get_ex(obj, "msg", &v));
    assert_string_equal(json_object_get_string(v), "quote \" and\nnewline");
    assert_true(json_object_object_get_ex(obj, "ts", &v));
    assert_int_equal(strlen(json_object_get_string(v)), 24);
    json_object_put(obj);
    /* debug is on: three lines, and the first has no request_id */
    assert_non_null(strstr(out, "\"msg\":\"hidden\""));
    assert_null(memmem(out, (size_t)(nl - out), "request_id", 10));
    free(out);
}

static void
test_log_level_parse(void **state)
{
    assert_int_equal(agw_log_level_parse("error"), AGW_LOG_ERROR);
    assert_int_equal(agw_log_level_parse("warn"), AGW_LOG_WARN);
    assert_int_equal(agw_log_level_parse("info"), AGW_LOG_INFO);
    assert_int_equal(agw_log_level_parse("debug"), AGW_LOG_DEBUG);
    assert_int_equal(agw_log_level_parse("loud"), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults_when_absent, test_setup),
        cmocka_unit_test_setup(test_each_type, test_setup),
        cmocka_unit_test_setup(test_bool_spellings, test_setup),
        cmocka_unit_test_setup(test_reuse_after_free, test_setup),
        cmocka_unit_test_setup(test_syntax_errors, test_setup),
        cmocka_unit_test_setup(test_unknown_section_and_key, test_setup),
        cmocka_unit_test_setup(test_duplicate_key, test_setup),
        cmocka_unit_test_setup(test_bad_numbers, test_setup),
        cmocka_unit_test_setup(test_bad_names, test_setup),
        cmocka_unit_test_setup(test_bad_listen, test_setup),
        cmocka_unit_test_setup(test_listen_as_the_server_parses_it, test_setup),
        cmocka_unit_test_setup(test_tls_keys, test_setup),
        cmocka_unit_test_setup(test_bad_base_url, test_setup),
        cmocka_unit_test_setup(test_good_base_url, test_setup),
        cmocka_unit_test_setup(test_ca_file_loaded, test_setup),
        cmocka_unit_test_setup(test_bad_redis_url, test_setup),
        cmocka_unit_test_setup(test_timeout_exceeds_deadline, test_setup),
        cmocka_unit_test_setup(test_buffered_below_one_request, test_setup),
        cmocka_unit_test_setup(test_workers, test_setup),
        cmocka_unit_test_setup(test_unsupported_features, test_setup),
        cmocka_unit_test_setup(test_line_too_long, test_setup),
        cmocka_unit_test_setup(test_unreadable_config, test_setup),
        cmocka_unit_test_setup(test_key_from_env, test_setup),
        cmocka_unit_test_setup(test_key_from_file_wins, test_setup),
        cmocka_unit_test_setup(test_key_file_errors, test_setup),
        cmocka_unit_test_setup(test_no_key, test_setup),
        cmocka_unit_test_setup(test_key_file_mode_warning, test_setup),
        cmocka_unit_test_setup(test_writable_files_refused, test_setup),
        cmocka_unit_test_setup(test_reload_keeps_auth_mode, test_setup),
        cmocka_unit_test_setup(test_reload_refuses_what_load_refuses,
                               test_setup),
        cmocka_unit_test_setup(test_sample_loads_back, test_setup),
        cmocka_unit_test_setup(test_sample_documents_keys, test_setup),
        cmocka_unit_test(test_log_text),
        cmocka_unit_test(test_log_json),
        cmocka_unit_test(test_log_level_parse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
