/*
 * test_admin.c - the pure parts of the operators' endpoints (SPEC §12):
 * the operators' token check, the loopback test of [admin] listen and
 * the config's refusal of a listener others can reach without a token
 * (start-up and reload), the calls-per-caller window and the ring of
 * upstream errors, and the purge's removal from the store's tables.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/buffer.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "address.h"
#include "admin.h"
#include "admin_stats.h"
#include "admin_status.h"
#include "limiter.h"
#include "metrics.h"
#include "config.h"
#include "store.h"

static char op_hash[65];

static void
hash_of(const char *text, char out[65])
{
    FILE *p;
    char cmd[256];

    /* The test's own SHA-256, independent of the code under test. */
    snprintf(cmd, sizeof(cmd), "printf %%s '%s' | sha256sum", text);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(out, 65, p));
    pclose(p);
    out[64] = '\0';
}

static void
test_token(void **state)
{
    char upper[65];

    hash_of("operators-secret", op_hash);
    assert_true(agw_admin_token_ok(NULL, NULL));
    assert_true(agw_admin_token_ok(op_hash, "Bearer operators-secret"));
    assert_true(agw_admin_token_ok(op_hash, "bearer operators-secret"));
    for (int i = 0; i < 65; i++) {
        upper[i] = (char)(op_hash[i] >= 'a' && op_hash[i] <= 'f'
                              ? op_hash[i] - 'a' + 'A'
                              : op_hash[i]);
    }
    assert_true(agw_admin_token_ok(upper, "Bearer operators-secret"));
    assert_false(agw_admin_token_ok(op_hash, NULL));
    assert_false(agw_admin_token_ok(op_hash, ""));
    assert_false(agw_admin_token_ok(op_hash, "Bearer "));
    assert_false(agw_admin_token_ok(op_hash, "Bearer operators-secreT"));
    assert_false(agw_admin_token_ok(op_hash, "Bearer operators-secret "));
    assert_false(agw_admin_token_ok(op_hash, "Basic operators-secret"));
    assert_false(agw_admin_token_ok(op_hash, "operators-secret"));
    /* The hash itself is not the token. */
    assert_false(agw_admin_token_ok(op_hash, op_hash));
    assert_false(agw_admin_token_ok("zz", "Bearer operators-secret"));
}

static void
test_loopback(void **state)
{
    assert_true(agw_address_is_loopback("127.0.0.1"));
    assert_true(agw_address_is_loopback("127.255.3.4"));
    assert_true(agw_address_is_loopback("::1"));
    assert_false(agw_address_is_loopback("128.0.0.1"));
    assert_false(agw_address_is_loopback("0.0.0.0"));
    assert_false(agw_address_is_loopback("10.0.0.1"));
    assert_false(agw_address_is_loopback("::"));
    assert_false(agw_address_is_loopback("::ffff:127.0.0.1"));
    assert_false(agw_address_is_loopback("localhost"));
    assert_false(agw_address_is_loopback(""));
}

/* ------------------------------------------------------------ config */

static char *
write_conf(const char *admin)
{
    char *path = strdup("/tmp/agw-admin-test-XXXXXX");
    FILE *f;
    int fd;

    assert_non_null(path);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f, "[auth]\nmode = none\n\n[admin]\n%s", admin);
    fclose(f);
    chmod(path, 0600);
    return path;
}

/* Loads "[admin]\n" ADMIN; true when accepted, else ERR has why. */
static bool
load_admin(const char *admin, char *err, size_t errlen)
{
    char *path = write_conf(admin);
    struct agw_config cfg;
    bool ok = agw_config_load(&cfg, path, err, errlen);

    if (ok) {
        agw_config_free(&cfg);
    }
    unlink(path);
    free(path);
    return ok;
}

static void
test_config_admin(void **state)
{
    char err[1024], text[256];

    setenv("ASSET_GATEWAY_API_KEY", "k", 1);
    hash_of("operators-secret", op_hash);
    assert_true(load_admin("", err, sizeof(err)));
    assert_true(load_admin("listen = 127.0.0.1:8081\n", err, sizeof(err)));
    assert_true(load_admin("listen = 127.9.9.9:8081\n", err, sizeof(err)));
    assert_true(load_admin("listen = [::1]:8081\n", err, sizeof(err)));
    assert_false(load_admin("listen = 0.0.0.0:8081\n", err, sizeof(err)));
    assert_non_null(strstr(err, ":5: [admin] listen: 0.0.0.0 is not "
                                "loopback"));
    assert_false(load_admin("listen = localhost:8081\n", err, sizeof(err)));
    assert_false(load_admin("listen = [::]:8081\n", err, sizeof(err)));
    snprintf(text, sizeof(text), "listen = 0.0.0.0:8081\ntoken_sha256 = %s\n",
             op_hash);
    assert_true(load_admin(text, err, sizeof(err)));
    assert_false(
        load_admin("listen = 127.0.0.1\n", err, sizeof(err))); /* no port */
    assert_false(load_admin("token_sha256 = abc\n", err, sizeof(err)));
    assert_non_null(strstr(err, "[admin] token_sha256: must be 64 hex"));
}

static void
report(const char *section, const char *key)
{
}

/* A reload keeps the running listen and may not drop its token. */
static void
test_config_reload_keeps_token(void **state)
{
    char err[1024], text[256];
    char *path;
    struct agw_config running, next;

    setenv("ASSET_GATEWAY_API_KEY", "k", 1);
    hash_of("operators-secret", op_hash);
    snprintf(text, sizeof(text), "listen = 0.0.0.0:8081\ntoken_sha256 = %s\n",
             op_hash);
    path = write_conf(text);
    assert_true(agw_config_load(&running, path, err, sizeof(err)));
    unlink(path);
    free(path);
    path = write_conf("listen = 0.0.0.0:8081\n");
    assert_false(
        agw_config_reload(&next, path, &running, report, err, sizeof(err)));
    assert_non_null(strstr(err, "token_sha256"));
    unlink(path);
    free(path);
    /* Moving the listener to loopback needs a restart: still refused. */
    path = write_conf("listen = 127.0.0.1:8081\n");
    assert_false(
        agw_config_reload(&next, path, &running, report, err, sizeof(err)));
    unlink(path);
    free(path);
    agw_config_free(&running);
}

/* ------------------------------------------------------------- stats */

static double fake_now;

static double
fake_clock(void)
{
    return fake_now;
}

static long
calls_of(const char *name)
{
    char *text = agw_admin_stats_calls_json();
    json_object *obj = json_tokener_parse(text);
    json_object *v;
    long n = json_object_object_get_ex(obj, name, &v)
                 ? (long)json_object_get_int64(v)
                 : 0;

    json_object_put(obj);
    free(text);
    return n;
}

static void
test_calls_window(void **state)
{
    agw_admin_stats_set_clock(fake_clock);
    fake_now = 1000000.0;
    agw_admin_stats_init("test");
    agw_admin_stats_upstream("alice", 200, NULL);
    agw_admin_stats_upstream("alice", 200, NULL);
    fake_now += 30;
    agw_admin_stats_upstream("alice", 201, NULL);
    agw_admin_stats_upstream("bob", 200, NULL);
    assert_int_equal(calls_of("alice"), 3);
    assert_int_equal(calls_of("bob"), 1);
    fake_now += 31; /* the first two are over a minute old */
    assert_int_equal(calls_of("alice"), 1);
    fake_now += 60;
    assert_int_equal(calls_of("alice"), 0);
    assert_int_equal(calls_of("bob"), 0);
    /* The slot of second S is reused 60 s later, not added to. */
    agw_admin_stats_upstream("alice", 200, NULL);
    assert_int_equal(calls_of("alice"), 1);
    agw_admin_stats_set_clock(NULL);
}

/* /metrics (rendered by metrics.c from agw_admin_stats_caller_total):
 * every caller's attempts since the start, window or not. */
static void
test_calls_total_metric(void **state)
{
    struct evbuffer *out = evbuffer_new();
    char *text;

    agw_admin_stats_set_clock(fake_clock);
    fake_now = 2000000.0;
    agw_admin_stats_upstream("carol", 200, NULL);
    agw_admin_stats_upstream("carol", 503, "unavailable");
    fake_now += 3600; /* long out of the minute's window */
    agw_admin_stats_upstream("carol", 0, "timed out");
    agw_admin_stats_upstream_class("dave", "batch", 200, NULL);
    assert_int_equal(agw_metrics_render(out), 0);
    evbuffer_add(out, "", 1);
    text = (char *)evbuffer_pullup(out, -1);
    assert_non_null(strstr(text, "# TYPE asset_gateway_upstream_calls_total "
                                 "counter\n"));
    /* SPEC section 11: each caller's series carries its class. */
    assert_non_null(strstr(text, "asset_gateway_upstream_calls_total{caller="
                                 "\"carol\",class=\"interactive\"} 3\n"));
    assert_non_null(strstr(text, "asset_gateway_upstream_calls_total{caller="
                                 "\"dave\",class=\"batch\"} 1\n"));
    evbuffer_free(out);
    agw_admin_stats_set_clock(NULL);
}

static void
test_errors_ring(void **state)
{
    struct agw_admin_error errs[AGW_ADMIN_ERRORS_MAX];
    size_t n;

    agw_admin_stats_set_clock(fake_clock);
    fake_now = 2000000.0;
    agw_admin_stats_upstream("a", 200, NULL); /* no error */
    agw_admin_stats_upstream("a", 400, NULL); /* Connectly's answer */
    for (int i = 0; i < 12; i++) {
        fake_now += 1;
        agw_admin_stats_upstream("a", i % 2 == 0 ? 503 : 0, "timed out");
    }
    n = agw_admin_stats_errors(errs);
    assert_int_equal(n, AGW_ADMIN_ERRORS_MAX);
    /* Oldest first: the first two of the twelve fell off. */
    assert_true(errs[0].at == 2000003.0);
    assert_int_equal(errs[0].status, 503);
    assert_string_equal(errs[0].error, "");
    assert_int_equal(errs[9].status, 0);
    assert_string_equal(errs[9].error, "timed out");
    assert_true(errs[9].at == 2000012.0);
    agw_admin_stats_set_clock(NULL);
}

/* ----------------------------------------------------------- history */

static int64_t
fake_backlog(struct agw_limiter *rl)
{
    return 1500; /* us */
}

static void
test_history_ring(void **state)
{
    static const struct agw_limiter_ops ops = {.backlog_us = fake_backlog};
    struct agw_limiter rl = {&ops};
    struct agw_admin_history *h = calloc(1, sizeof(*h));

    assert_non_null(h);
    agw_metrics_init("test");
    agw_admin_history_init(h);
    agw_metrics_count_cache(AGW_CACHE_HIT);
    agw_metrics_count_cache(AGW_CACHE_HIT);
    agw_metrics_count_cache(AGW_CACHE_MISS);
    agw_metrics_count_upstream(200);
    /* A rate needs time to pass: the clock counts whole microseconds. */
    usleep(1000);
    agw_admin_history_sample(h, &rl);
    assert_int_equal(h->n, 1);
    assert_int_equal(h->samples[0].hits, 2);
    assert_int_equal(h->samples[0].misses, 1);
    assert_true(h->samples[0].calls_per_s > 0);
    assert_true(h->samples[0].backlog_ms == 1.5);
    /* The next sample counts only what happened since. */
    agw_admin_history_sample(h, &rl);
    assert_int_equal(h->samples[1].hits, 0);
    assert_true(h->samples[1].calls_per_s == 0);
    for (int i = 0; i < AGW_ADMIN_HISTORY_MAX * 2; i++) {
        agw_admin_history_sample(h, &rl);
    }
    assert_int_equal(h->n, AGW_ADMIN_HISTORY_MAX);
    assert_int_equal(AGW_ADMIN_HISTORY_MAX * AGW_ADMIN_HISTORY_EVERY_S, 300);
    free(h);
}

/* ------------------------------------------------------------- purge */

static void
test_tables_forget(void **state)
{
    struct agw_store_tables *t =
        agw_store_tables_new(100, 1 << 20, 100, 1 << 20, 60000);
    struct agw_store *s = agw_store_new(t, NULL, NULL, 3600);
    struct agw_store_stats st;

    assert_non_null(s);
    s->ops->put(s, "k1", 200, "{}", 2, 3600);
    s->ops->put(s, "k2", 200, "{}", 2, 3600);
    assert_true(agw_store_tables_forget(t, "k1"));
    assert_false(agw_store_tables_forget(t, "k1"));
    assert_false(agw_store_tables_forget(t, "never"));
    agw_store_tables_stats(t, &st);
    assert_int_equal(st.memory_entries, 1);
    agw_store_tables_forget_l1(t); /* memory table untouched */
    agw_store_tables_stats(t, &st);
    assert_int_equal(st.memory_entries, 1);
    assert_int_equal(st.l1_entries, 0);
    s->ops->destroy(s);
    agw_store_tables_unref(t);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_config_admin),
        cmocka_unit_test(test_config_reload_keeps_token),
        cmocka_unit_test(test_calls_window),
        cmocka_unit_test(test_calls_total_metric),
        cmocka_unit_test(test_errors_ring),
        cmocka_unit_test(test_history_ring),
        cmocka_unit_test(test_tables_forget),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
