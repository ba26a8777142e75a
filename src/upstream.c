/*
 * upstream.c - the Connectly client (SPEC §5): calls wait in a FIFO for one
 * of a few disposable keep-alive evhttp connections, one request each at a
 * time, and every attempt ends in exactly one classified outcome.
 */
#include "upstream.h"

#include <errno.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#ifdef HAVE_CONFIG_H
#include "agw_autoconf.h" /* PACKAGE_VERSION */
#endif
#include "address.h"
#include "admin_stats.h"
#include "config.h"
#include "log.h"
#include "redact.h"
#include "retry.h"
#include "tls.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.0.0"
#endif

#define USER_AGENT "asset-gateway/" PACKAGE_VERSION
#define MAX_RESPONSE_BODY (1024 * 1024)
#define MAX_RESPONSE_HEADERS (64 * 1024)
/* Idle connections are closed before a typical server keep-alive limit
 * (60 s and up) so a reused connection is rarely closed under a request. */
#define IDLE_TIMEOUT_MS 15000
#define DETAIL_LEN 200

enum call_state {
    CALL_QUEUED,     /* waiting for a connection */
    CALL_ACTIVE,     /* its request is on a connection */
    CALL_DONE,       /* result stored, callback scheduled */
    CALL_DELIVERING, /* callback running */
};

enum conn_where { CONN_IDLE, CONN_BUSY, CONN_DEAD };

/* The plain-http warning, once per process. */
static atomic_bool warned_plain_http;

struct conn {
    struct agw_upstream *up;
    struct evhttp_connection *evcon; /* owns the bufferevent and SSL */
    SSL *ssl;                        /* NULL for http; owned by evcon */
    struct agw_upstream_call *call;  /* in flight; NULL when idle */
    enum conn_where where;
    bool established; /* a request reached the output: it may be sent */
    bool closed;      /* libevent reset it: never reuse */
    int served;       /* responses read on it */
    int64_t opened_us;
    const char *tls_detail; /* static OpenSSL text, from the handshake */
    TAILQ_ENTRY(conn) link;
};
TAILQ_HEAD(conn_list, conn);

/*
 * An API key in use: the current one, or one a reload replaced that
 * calls posted before it still carry. Every response body is redacted
 * of every key on the list (SPEC §8), so a rotation does not let the old
 * key through while it is still being sent.
 */
struct used_key {
    char *key; /* secret: wiped on free */
    int refs;  /* live calls posted with it, +1 while it is the current */
    struct used_key *next;
};

struct agw_upstream_call {
    struct agw_upstream *up;
    struct conn *conn;          /* while ACTIVE */
    struct evhttp_request *req; /* ours until req_made, then libevent's */
    bool req_made;
    enum call_state state;
    struct event *ev; /* the attempt deadline, then the delivery */
    agw_upstream_cb cb;
    void *arg;
    char *uri;            /* prefix + path */
    char *request_id;     /* may be NULL */
    struct used_key *key; /* the key it was posted with; a ref */
    int timeout_ms;
    struct timeval stall_tv; /* libevent's read/write bound: timeout_ms */
    int64_t start_us;
    bool reused;
    /* Told of the departure, then cleared (agw_upstream_request). */
    void (*on_sent)(void *sent_arg, int64_t sent_us);
    void *sent_arg;
    bool lib_error_set;
    enum evhttp_request_error lib_error;
    int sock_err;
    struct agw_upstream_result res;
    char *body;
    char detail[DETAIL_LEN];
    TAILQ_ENTRY(agw_upstream_call) link;  /* up->calls: every live call */
    TAILQ_ENTRY(agw_upstream_call) qlink; /* up->waiting, while QUEUED */
};
TAILQ_HEAD(call_list, agw_upstream_call);

struct agw_upstream {
    struct event_base *base;
    struct evdns_base *dns;
    bool https;
    char *host;        /* for connect and TLS: no brackets */
    char *host_header; /* with brackets and a non-default port */
    char *prefix;      /* "" or "/p", no trailing slash */
    int port;
    struct used_key *keys;    /* every key in use */
    struct used_key *current; /* the key for new calls (on KEYS) */
    SSL_CTX *ssl_ctx;
    SSL_SESSION *session; /* last resumable session, for new connections */
    struct timeval connect_tv, stall_tv, idle_tv;
    int max_conns;
    int request_timeout_ms;
    int nconns; /* idle + busy */
    struct conn_list idle, busy, dead;
    struct call_list waiting, calls;
    struct event *pool_ev; /* frees dead connections, serves the queue */
};

static void start_call(struct agw_upstream_call *call, struct conn *conn);
static void departed(struct agw_upstream_call *call, int64_t sent_us);
static void output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                      void *arg);

static struct timeval
ms_to_tv(int ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* ------------------------------------------------------------ keys */

/* A reference on KEY's entry (made when new); NULL when out of memory. */
static struct used_key *
key_ref(struct agw_upstream *up, const char *key)
{
    struct used_key *k;

    for (k = up->keys; k != NULL; k = k->next) {
        if (strcmp(k->key, key) == 0) {
            k->refs++;
            return k;
        }
    }
    k = calloc(1, sizeof(*k));
    if (k == NULL || (k->key = strdup(key)) == NULL) {
        free(k);
        return NULL;
    }
    k->refs = 1;
    k->next = up->keys;
    up->keys = k;
    return k;
}

static void
key_unref(struct agw_upstream *up, struct used_key *gone)
{
    if (gone == NULL || --gone->refs > 0) {
        return;
    }
    for (struct used_key **p = &up->keys; *p != NULL; p = &(*p)->next) {
        if (*p == gone) {
            *p = gone->next;
            break;
        }
    }
    OPENSSL_cleanse(gone->key, strlen(gone->key));
    free(gone->key);
    free(gone);
}

int
agw_upstream_redact(const struct agw_upstream *up, const char *body, size_t len,
                    char **out, size_t *out_len)
{
    const char *few[4] = {NULL};
    const char **keys = few;
    size_t n = 0;
    int rc;

    for (const struct used_key *k = up->keys; k != NULL; k = k->next) {
        n++;
    }
    if (n > sizeof(few) / sizeof(few[0]) &&
        (keys = malloc(n * sizeof(*keys))) == NULL) {
        return -1;
    }
    n = 0;
    for (const struct used_key *k = up->keys; k != NULL; k = k->next) {
        keys[n++] = k->key;
    }
    rc = agw_redact(body, len, keys, n, out, out_len);
    if (keys != few) {
        free(keys);
    }
    return rc;
}

static const char *
outcome_name(enum agw_attempt_outcome outcome)
{
    switch (outcome) {
    case AGW_ATTEMPT_RESPONSE:
        return "response";
    case AGW_ATTEMPT_CONNECT_FAILED:
        return "connect_failed";
    case AGW_ATTEMPT_TIMEOUT:
        return "timeout";
    case AGW_ATTEMPT_BROKEN:
        return "broken";
    }
    return "?";
}

/* ------------------------------------------------------------ the pool */

static struct conn_list *
list_of(struct agw_upstream *up, enum conn_where where)
{
    switch (where) {
    case CONN_IDLE:
        return &up->idle;
    case CONN_BUSY:
        return &up->busy;
    case CONN_DEAD:
        break;
    }
    return &up->dead;
}

static void
move_conn(struct conn *conn, enum conn_where where)
{
    struct agw_upstream *up = conn->up;

    TAILQ_REMOVE(list_of(up, conn->where), conn, link);
    conn->where = where;
    if (where == CONN_IDLE) {
        /* LIFO: the warm connection serves, the others idle out. */
        TAILQ_INSERT_HEAD(&up->idle, conn, link);
    } else {
        TAILQ_INSERT_TAIL(list_of(up, where), conn, link);
    }
}

static void
kick(struct agw_upstream *up)
{
    event_active(up->pool_ev, EV_TIMEOUT, 0);
}

/*
 * Retires CONN: it is never used again and is freed from pool_cb, since
 * freeing an evhttp_connection inside its own callbacks is unsafe.
 */
static void
drop_conn(struct conn *conn)
{
    if (conn->where == CONN_DEAD) {
        return;
    }
    move_conn(conn, CONN_DEAD);
    conn->up->nconns--;
    agw_admin_stats_upstream_conns(-1);
    kick(conn->up);
}

static void
free_conn(struct conn *conn)
{
    if (conn->ssl != NULL) {
        SSL_set_info_callback(conn->ssl, NULL);
        SSL_set_app_data(conn->ssl, NULL);
    }
    /* The bufferevent may outlive this call (deferred callbacks hold it). */
    evbuffer_remove_cb(
        bufferevent_get_output(evhttp_connection_get_bufferevent(conn->evcon)),
        output_cb, conn);
    conn->where = CONN_DEAD; /* the close callback may run: ignore it */
    evhttp_connection_free(conn->evcon);
    free(conn);
}

/* libevent reset the connection: the peer closed it, or it failed. */
static void
conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
    struct conn *conn = arg;

    conn->closed = true;
    /* A busy connection is settled by the request's done callback. */
    if (conn->where == CONN_IDLE) {
        drop_conn(conn);
    }
}

/*
 * The request reached the connection's output, which evhttp only does
 * once connected (and, for TLS, after the handshake): from here on a
 * failure may follow a request the server saw. It is also the moment to
 * replace the connect bound with the much longer stall bound, since in
 * libevent 2.1 the connection timeout also bounds every read and write.
 */
static void
output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *conn = arg;
    struct agw_upstream_call *call = conn->call;

    if (info->n_added == 0) {
        return;
    }
    if (call != NULL) {
        departed(call, agw_now_us());
    }
    if (conn->established) {
        return;
    }
    conn->established = true;
    evhttp_connection_set_timeout_tv(
        conn->evcon, call != NULL ? &call->stall_tv : &conn->up->stall_tv);
}

/* Keeps the handshake's failure reason before libevent resets the SSL. */
static void
tls_info_cb(const SSL *ssl, int where, int ret)
{
    struct conn *conn = SSL_get_app_data(ssl);
    long verify;

    if (conn == NULL || (where & SSL_CB_ALERT) == 0 ||
        (ret >> 8) != SSL3_AL_FATAL) {
        return;
    }
    verify = SSL_get_verify_result(ssl);
    if ((where & SSL_CB_WRITE) != 0 && verify != X509_V_OK) {
        conn->tls_detail = X509_verify_cert_error_string(verify);
    } else {
        conn->tls_detail = SSL_alert_desc_string_long(ret);
    }
}

static struct bufferevent *
new_tls_bev(struct conn *conn)
{
    struct agw_upstream *up = conn->up;
    struct bufferevent *bev;
    SSL *ssl = agw_tls_client_ssl(up->ssl_ctx, up->host);

    if (ssl == NULL) {
        return NULL;
    }
    if (up->session != NULL) {
        SSL_set_session(ssl, up->session);
    }
    SSL_set_app_data(ssl, conn);
    SSL_set_info_callback(ssl, tls_info_cb);
    bev = bufferevent_openssl_socket_new(
        up->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    /* A peer that closes without close_notify is common; the response
     * length is known from its headers, so an EOF is not a truncation. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    conn->ssl = ssl;
    return bev;
}

static struct conn *
new_conn(struct agw_upstream *up)
{
    struct conn *conn = calloc(1, sizeof(*conn));
    struct bufferevent *bev;

    if (conn == NULL) {
        return NULL;
    }
    conn->up = up;
    conn->opened_us = agw_now_us();
    if (up->https) {
        bev = new_tls_bev(conn);
    } else {
        bev = bufferevent_socket_new(
            up->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    }
    if (bev == NULL) {
        free(conn);
        return NULL;
    }
    conn->evcon = evhttp_connection_base_bufferevent_new(
        up->base, up->dns, bev, up->host, (uint16_t)up->port);
    if (conn->evcon == NULL ||
        evbuffer_add_cb(bufferevent_get_output(bev), output_cb, conn) == NULL) {
        if (conn->evcon != NULL) {
            evhttp_connection_free(conn->evcon);
        } else {
            bufferevent_free(bev);
        }
        free(conn);
        return NULL;
    }
    /* Issue #975: an SSL evhttp_connection does not reconnect reliably,
     * so a connection is never retried, only replaced. */
    evhttp_connection_set_retries(conn->evcon, 0);
    evhttp_connection_set_timeout_tv(conn->evcon, &up->connect_tv);
    evhttp_connection_set_closecb(conn->evcon, conn_close_cb, conn);
    evhttp_connection_set_max_body_size(conn->evcon, MAX_RESPONSE_BODY);
    evhttp_connection_set_max_headers_size(conn->evcon, MAX_RESPONSE_HEADERS);
    conn->where = CONN_BUSY;
    TAILQ_INSERT_TAIL(&up->busy, conn, link);
    up->nconns++;
    agw_admin_stats_upstream_conns(1);
    return conn;
}

/* An idle connection, else a new one under the cap; NULL with *FAILED
 * false when the caller must wait, true when one could not be made. */
static struct conn *
take_conn(struct agw_upstream *up, bool *failed)
{
    struct conn *conn = TAILQ_FIRST(&up->idle);

    *failed = false;
    if (conn != NULL) {
        move_conn(conn, CONN_BUSY);
        return conn;
    }
    if (up->nconns >= up->max_conns) {
        return NULL;
    }
    conn = new_conn(up);
    *failed = conn == NULL;
    return conn;
}

/* After a response: keep the connection for the next call, or retire it. */
static void
release_conn(struct conn *conn, bool ok)
{
    struct agw_upstream *up = conn->up;

    conn->call = NULL;
    if (!ok || conn->closed) {
        drop_conn(conn);
        return;
    }
    evhttp_connection_set_timeout_tv(conn->evcon, &up->idle_tv);
    move_conn(conn, CONN_IDLE);
    if (!TAILQ_EMPTY(&up->waiting)) {
        kick(up);
    }
}

static void
save_session(struct conn *conn)
{
    struct agw_upstream *up = conn->up;
    SSL_SESSION *sess, *copy;

    if (conn->ssl == NULL || conn->served != 1) {
        return;
    }
    sess = SSL_get1_session(conn->ssl);
    if (sess == NULL) {
        return;
    }
    /* A copy: libevent's reset of this connection runs SSL_clear, which
     * marks the live session not resumable (ssl_clear_bad_session). */
    copy = SSL_SESSION_is_resumable(sess) ? SSL_SESSION_dup(sess) : NULL;
    SSL_SESSION_free(sess);
    if (copy == NULL) {
        return;
    }
    SSL_SESSION_free(up->session);
    up->session = copy;
}

/* ------------------------------------------------------- finishing */

/* Tells the call's departure (SENT_US, or 0: never) once: the first
 * report stands, later ones do nothing. */
static void
departed(struct agw_upstream_call *call, int64_t sent_us)
{
    void (*on_sent)(void *, int64_t) = call->on_sent;

    call->on_sent = NULL;
    if (on_sent != NULL) {
        on_sent(call->sent_arg, sent_us);
    }
}

static void
finish(struct agw_upstream_call *call, enum agw_attempt_outcome outcome)
{
    call->res.outcome = outcome;
    call->state = CALL_DONE;
    /* Delivered from our own event: never inside agw_upstream_post or a
     * libevent http callback, so the callback may post, cancel or free. */
    event_del(call->ev);
    event_active(call->ev, EV_TIMEOUT, 0);
}

static void
fail_now(struct agw_upstream_call *call, enum agw_attempt_outcome outcome,
         const char *detail)
{
    snprintf(call->detail, sizeof(call->detail), "%s", detail);
    finish(call, outcome);
}

static void
free_call(struct agw_upstream_call *call)
{
    if (call->req != NULL && !call->req_made) {
        evhttp_request_free(call->req);
    }
    if (call->ev != NULL) {
        event_free(call->ev);
    }
    key_unref(call->up, call->key);
    free(call->uri);
    free(call->request_id);
    free(call->body);
    free(call);
}

static void
log_attempt(const struct agw_upstream_call *call)
{
    long long ms = (long long)((agw_now_us() - call->start_us) / 1000);
    const char *how = "no";

    if (call->conn != NULL || call->res.outcome == AGW_ATTEMPT_RESPONSE) {
        how = call->reused ? "reused" : "new";
    }
    rlog_debug(call->request_id,
               "upstream POST %s: %s status=%d %lld ms, %s connection%s%s",
               call->uri, outcome_name(call->res.outcome), call->res.status, ms,
               how, call->detail[0] != '\0' ? ": " : "", call->detail);
}

static void
deliver(struct agw_upstream_call *call)
{
    struct agw_upstream_result *res = &call->res;

    call->state = CALL_DELIVERING;
    TAILQ_REMOVE(&call->up->calls, call, link);
    if (res->outcome == AGW_ATTEMPT_RESPONSE) {
        res->body = call->body;
        res->detail = NULL;
    } else {
        res->status = 0;
        res->body = NULL;
        res->len = 0;
        res->retry_after_s = -1;
        res->detail = call->detail;
    }
    log_attempt(call);
    call->conn = NULL;
    key_unref(call->up, call->key);
    call->key = NULL;
    departed(call, 0); /* before a retry can ask the limiter again */
    /* The callback may free the client: touch nothing of it afterwards. */
    call->cb(res, call->arg);
    free_call(call);
}

/* The request is abandoned mid-flight: the connection goes with it. */
static void
abort_active(struct agw_upstream_call *call)
{
    struct conn *conn = call->conn;
    struct evhttp_request *req = call->req;

    call->req = NULL;
    conn->call = NULL;
    drop_conn(conn);
    if (req != NULL) {
        /* Runs the error callback (CANCEL, ignored), never the done one. */
        evhttp_cancel_request(req);
    }
}

static void
on_deadline(struct agw_upstream_call *call)
{
    const char *what = "no connection came free";

    if (call->state == CALL_QUEUED) {
        TAILQ_REMOVE(&call->up->waiting, call, qlink);
    } else {
        what = call->conn->established ? "no response"
                                       : "connect or TLS handshake not done";
        abort_active(call);
    }
    snprintf(call->detail, sizeof(call->detail), "%s within %d ms", what,
             call->timeout_ms);
    call->res.outcome = AGW_ATTEMPT_TIMEOUT;
    deliver(call);
}

static void
call_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct agw_upstream_call *call = arg;

    if (call->state == CALL_DONE) {
        deliver(call);
    } else {
        on_deadline(call);
    }
}

/* --------------------------------------------------- classification */

static const char *
lib_error_text(enum evhttp_request_error err)
{
    switch (err) {
    case EVREQ_HTTP_TIMEOUT:
        return "read or write timed out";
    case EVREQ_HTTP_EOF:
        return "connection closed";
    case EVREQ_HTTP_INVALID_HEADER:
        return "invalid response";
    case EVREQ_HTTP_BUFFER_ERROR:
        return "I/O error";
    case EVREQ_HTTP_REQUEST_CANCEL:
        return "cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG:
        return "response too large";
    }
    return "failed";
}

static unsigned long
first_openssl_error(struct bufferevent *bev)
{
    unsigned long e, first = 0;

    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        if (first == 0) {
            first = e;
        }
    }
    return first;
}

/*
 * A socket error worth naming: from the error callback, OpenSSL's system
 * error, or errno as libevent left it (its connect-failure path reports
 * none), kept only when it is a plausible connect error.
 */
static int
connect_errno(const struct agw_upstream_call *call, unsigned long ssl_err,
              int saved_errno)
{
    int e = call->sock_err;

    if (e == 0 && ssl_err != 0 && ERR_GET_LIB(ssl_err) == ERR_LIB_SYS) {
        e = ERR_GET_REASON(ssl_err);
    }
    if (e == 0) {
        e = saved_errno;
    }
    switch (e) {
    case ECONNREFUSED:
    case ECONNRESET:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ETIMEDOUT:
    case EADDRNOTAVAIL:
        return e;
    default:
        return 0;
    }
}

/* Why a connection that never carried the request failed. */
static void
describe_connect_failure(struct agw_upstream_call *call, struct conn *conn,
                         int saved_errno)
{
    struct agw_upstream *up = call->up;
    struct bufferevent *bev = evhttp_connection_get_bufferevent(conn->evcon);
    int dns_err = bufferevent_socket_get_dns_error(bev);
    unsigned long ssl_err = up->https ? first_openssl_error(bev) : 0;
    const char *reason = ssl_err != 0 ? ERR_reason_error_string(ssl_err) : NULL;
    int64_t ms = (agw_now_us() - conn->opened_us) / 1000;
    int64_t bound =
        up->connect_tv.tv_sec * 1000 + up->connect_tv.tv_usec / 1000;
    int err;

    if (dns_err != 0) {
        snprintf(call->detail, sizeof(call->detail), "resolving %s: %s",
                 up->host, evutil_gai_strerror(dns_err));
    } else if (conn->tls_detail != NULL ||
               (reason != NULL && ERR_GET_LIB(ssl_err) != ERR_LIB_SYS)) {
        snprintf(call->detail, sizeof(call->detail),
                 "TLS handshake with %s: %s", up->host,
                 conn->tls_detail != NULL ? conn->tls_detail : reason);
    } else if (ms >= bound * 9 / 10) { /* libevent's clock is cached */
        snprintf(call->detail, sizeof(call->detail),
                 "connect to %s:%d timed out after %lld ms", up->host, up->port,
                 (long long)ms);
    } else {
        err = connect_errno(call, ssl_err, saved_errno);
        snprintf(call->detail, sizeof(call->detail), "connect to %s:%d: %s",
                 up->host, up->port,
                 err != 0 ? strerror(err) : "refused or unreachable");
    }
}

/* Why a connection that carried the request failed. */
static void
describe_broken(struct agw_upstream_call *call, struct conn *conn)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(conn->evcon);
    unsigned long ssl_err = call->up->https ? first_openssl_error(bev) : 0;
    const char *why = call->lib_error_set ? lib_error_text(call->lib_error)
                                          : "connection lost";
    const char *extra = "";

    if (ssl_err != 0 && ERR_reason_error_string(ssl_err) != NULL) {
        extra = ERR_reason_error_string(ssl_err);
    } else if (call->sock_err != 0) {
        extra = strerror(call->sock_err);
    }
    snprintf(call->detail, sizeof(call->detail),
             "after sending the request: %s%s%s", why,
             extra[0] != '\0' ? ": " : "", extra);
}

/* Takes every key in use out of the body (SPEC §8): it is stored and
 * passed on from here. False when memory ran out. */
static bool
redact_body(struct agw_upstream_call *call, size_t *len)
{
    char *clean = NULL;
    size_t clean_len = 0;
    int rc =
        agw_upstream_redact(call->up, call->body, *len, &clean, &clean_len);

    if (rc <= 0) {
        return rc == 0;
    }
    rlog_warn(call->request_id,
              "Connectly's answer (status %d) held the API key: redacted",
              call->res.status);
    OPENSSL_cleanse(call->body, *len);
    free(call->body);
    call->body = clean;
    *len = clean_len;
    return true;
}

static bool
store_response(struct agw_upstream_call *call, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *ra;

    call->body = malloc(len + 1);
    if (call->body == NULL) {
        return false;
    }
    if (len > 0 && evbuffer_copyout(in, call->body, len) != (ev_ssize_t)len) {
        return false;
    }
    call->body[len] = '\0';
    call->res.status = evhttp_request_get_response_code(req);
    if (!redact_body(call, &len)) {
        return false;
    }
    ra = evhttp_find_header(evhttp_request_get_input_headers(req),
                            "Retry-After");
    call->res.len = len;
    call->res.retry_after_s = ra != NULL ? agw_retry_after_parse(ra) : -1;
    return true;
}

/*
 * evhttp's done callback. In libevent 2.1.12 a failed connect arrives
 * here with response code 0 and no error callback
 * (evhttp_connection_cb_cleanup), while later failures (and TLS handshake
 * failures) go through evhttp_connection_fail_, which calls the error
 * callback first and then this with REQ NULL. Neither says whether the
 * request left, so that is tracked by the connection (output_cb).
 */
static void
req_done_cb(struct evhttp_request *req, void *arg)
{
    int saved_errno = errno; /* before anything here can change it */
    struct agw_upstream_call *call = arg;
    struct conn *conn = call->conn;
    int code = req != NULL ? evhttp_request_get_response_code(req) : 0;

    call->req = NULL; /* libevent frees it after this returns */
    if (call->state != CALL_ACTIVE || conn == NULL) {
        return;
    }
    if (code != 0 && (code < 200 || code > 599)) {
        /* libevent takes any non-zero atoi() of the status ("-1", "2",
         * "1000") and ends the exchange at an interim 1xx: relayed, either
         * would reach the caller as a broken or never-final status line. */
        snprintf(call->detail, sizeof(call->detail),
                 "invalid response status %d", code);
        release_conn(conn, false);
        finish(call, AGW_ATTEMPT_BROKEN);
        return;
    }
    if (code != 0) {
        conn->served++;
        if (store_response(call, req)) {
            save_session(conn);
            release_conn(conn, true);
            finish(call, AGW_ATTEMPT_RESPONSE);
            return;
        }
        release_conn(conn, false);
        fail_now(call, AGW_ATTEMPT_BROKEN, "out of memory for the response");
        return;
    }
    if (!conn->established) {
        describe_connect_failure(call, conn, saved_errno);
        release_conn(conn, false);
        finish(call, AGW_ATTEMPT_CONNECT_FAILED);
        return;
    }
    describe_broken(call, conn);
    release_conn(conn, false);
    finish(call, call->lib_error_set && call->lib_error == EVREQ_HTTP_TIMEOUT
                     ? AGW_ATTEMPT_TIMEOUT
                     : AGW_ATTEMPT_BROKEN);
}

static void
req_error_cb(enum evhttp_request_error err, void *arg)
{
    struct agw_upstream_call *call = arg;

    if (err == EVREQ_HTTP_REQUEST_CANCEL) {
        return; /* our own cancel: the call is settled already */
    }
    call->lib_error_set = true;
    call->lib_error = err;
    /* evhttp_connection_fail_ restores the socket error for us, though
     * often it is only a leftover of the non-blocking connect. */
    call->sock_err = EVUTIL_SOCKET_ERROR();
    if (call->sock_err == EINPROGRESS || call->sock_err == EAGAIN ||
        call->sock_err == EWOULDBLOCK) {
        call->sock_err = 0;
    }
}

/* ------------------------------------------------------ dispatching */

static void
start_call(struct agw_upstream_call *call, struct conn *conn)
{
    int rc;

    call->state = CALL_ACTIVE;
    call->conn = conn;
    call->reused = conn->served > 0;
    conn->call = call;
    if (conn->established) {
        /* Back from idle: the response may take as long as it needs. */
        evhttp_connection_set_timeout_tv(conn->evcon, &call->stall_tv);
    }
    call->req_made = true;
    /* A connect that fails at once runs req_done_cb inside this call. */
    rc =
        evhttp_make_request(conn->evcon, call->req, EVHTTP_REQ_POST, call->uri);
    if (rc != 0 && call->state == CALL_ACTIVE) {
        /* Who owns the request now differs by failure inside libevent;
         * leaking it beats freeing it twice (only seen out of memory). */
        call->req = NULL;
        release_conn(conn, false);
        fail_now(call, AGW_ATTEMPT_CONNECT_FAILED, "cannot start the request");
    }
}

static void
serve_queue(struct agw_upstream *up)
{
    struct agw_upstream_call *call;
    struct conn *conn;
    bool failed;

    while ((call = TAILQ_FIRST(&up->waiting)) != NULL) {
        conn = take_conn(up, &failed);
        if (conn == NULL && !failed) {
            return;
        }
        TAILQ_REMOVE(&up->waiting, call, qlink);
        if (conn == NULL) {
            fail_now(call, AGW_ATTEMPT_CONNECT_FAILED,
                     "cannot create a connection");
            continue;
        }
        start_call(call, conn);
    }
}

static void
pool_cb(evutil_socket_t fd, short what, void *arg)
{
    struct agw_upstream *up = arg;
    struct conn *conn;

    while ((conn = TAILQ_FIRST(&up->dead)) != NULL) {
        TAILQ_REMOVE(&up->dead, conn, link);
        free_conn(conn);
    }
    serve_queue(up);
}

/* ------------------------------------------------------------ calls */

static bool
path_ok(const char *path)
{
    const unsigned char *p = (const unsigned char *)path;

    if (path == NULL || path[0] != '/') {
        return false;
    }
    for (; *p != '\0'; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return false;
        }
    }
    return true;
}

/* Goes into a header: no control characters. */
static bool
key_ok(const char *key)
{
    const unsigned char *p = (const unsigned char *)key;

    if (key == NULL || key[0] == '\0') {
        return false;
    }
    for (; *p != '\0'; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return false;
        }
    }
    return true;
}

static bool
add_headers(struct agw_upstream *up, struct agw_upstream_call *call,
            const char *api_key)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(call->req);

    if (api_key == NULL || !key_ok(api_key)) {
        api_key = up->current->key;
    }
    call->key = key_ref(up, api_key);
    if (call->key == NULL ||
        evhttp_add_header(h, "Host", up->host_header) != 0 ||
        evhttp_add_header(h, "X-API-Key", api_key) != 0 ||
        evhttp_add_header(h, "Content-Type", "application/json") != 0 ||
        evhttp_add_header(h, "Accept", "application/json") != 0 ||
        evhttp_add_header(h, "User-Agent", USER_AGENT) != 0 ||
        evhttp_add_header(h, "Connection", "keep-alive") != 0) {
        return false;
    }
    /* An id libevent refuses (CR/LF) is dropped, not fatal. */
    if (call->request_id != NULL) {
        evhttp_add_header(h, "X-Request-Id", call->request_id);
    }
    return true;
}

/* Builds the request; false leaves a reason in call->detail. */
static bool
prepare(struct agw_upstream_call *call, const struct agw_upstream_request *rq)
{
    struct agw_upstream *up = call->up;
    const char *path = rq->path;
    size_t ulen;

    if (path == NULL || !path_ok(path)) {
        snprintf(call->detail, sizeof(call->detail), "invalid request path");
        return false;
    }
    ulen = strlen(up->prefix) + strlen(path) + 1;
    call->uri = malloc(ulen);
    call->req = evhttp_request_new(req_done_cb, call);
    if (call->uri == NULL || call->req == NULL ||
        !add_headers(up, call, rq->api_key) ||
        (rq->len > 0 &&
         evbuffer_add(evhttp_request_get_output_buffer(call->req), rq->body,
                      rq->len) != 0)) {
        snprintf(call->detail, sizeof(call->detail), "out of memory");
        return false;
    }
    snprintf(call->uri, ulen, "%s%s", up->prefix, path);
    evhttp_request_set_error_cb(call->req, req_error_cb);
    return true;
}

struct agw_upstream_call *
agw_upstream_post(struct agw_upstream *up,
                  const struct agw_upstream_request *rq, agw_upstream_cb cb,
                  void *arg)
{
    const char *request_id = rq->request_id;
    struct agw_upstream_call *call = calloc(1, sizeof(*call));
    struct timeval tv;
    struct conn *conn = NULL;
    bool failed = false;

    if (call == NULL) {
        if (rq->on_sent != NULL) {
            rq->on_sent(rq->sent_arg, 0);
        }
        return NULL;
    }
    call->up = up;
    call->cb = cb;
    call->arg = arg;
    call->on_sent = rq->on_sent;
    call->sent_arg = rq->sent_arg;
    call->start_us = agw_now_us();
    call->timeout_ms =
        rq->timeout_ms > 0 ? rq->timeout_ms : up->request_timeout_ms;
    call->stall_tv = ms_to_tv(call->timeout_ms);
    call->res.retry_after_s = -1;
    call->ev = evtimer_new(up->base, call_ev_cb, call);
    if (call->ev == NULL || (request_id != NULL &&
                             (call->request_id = strdup(request_id)) == NULL)) {
        departed(call, 0);
        free_call(call);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&up->calls, call, link);
    if (!prepare(call, rq)) {
        finish(call, AGW_ATTEMPT_CONNECT_FAILED);
        return call;
    }
    tv = ms_to_tv(call->timeout_ms);
    evtimer_add(call->ev, &tv);
    if (TAILQ_EMPTY(&up->waiting)) {
        conn = take_conn(up, &failed);
    }
    if (conn != NULL) {
        start_call(call, conn);
    } else if (failed) {
        fail_now(call, AGW_ATTEMPT_CONNECT_FAILED,
                 "cannot create a connection");
    } else {
        call->state = CALL_QUEUED;
        TAILQ_INSERT_TAIL(&up->waiting, call, qlink);
    }
    return call;
}

void
agw_upstream_cancel(struct agw_upstream_call *call)
{
    if (call == NULL) {
        return;
    }
    switch (call->state) {
    case CALL_DELIVERING:
        return; /* inside its own callback: freed when that returns */
    case CALL_QUEUED:
        TAILQ_REMOVE(&call->up->waiting, call, qlink);
        break;
    case CALL_ACTIVE:
        abort_active(call);
        break;
    case CALL_DONE:
        break;
    }
    departed(call, 0);
    TAILQ_REMOVE(&call->up->calls, call, link);
    free_call(call);
}

int
agw_upstream_connections(const struct agw_upstream *up)
{
    return up->nconns;
}

/* ------------------------------------------------- client lifecycle */

static bool
parse_base_url(struct agw_upstream *up, const char *url, char *err,
               size_t errlen)
{
    struct agw_base_url u;
    char why[256];

    if (!agw_address_parse_base_url(url, &u, why, sizeof(why))) {
        snprintf(err, errlen, "base_url %s", why);
        return false;
    }
    /* Owned by UP from here: agw_upstream_free() frees them. */
    up->https = u.https;
    up->port = u.port;
    up->host = u.host;
    up->host_header = u.host_header;
    up->prefix = u.prefix;
    return true;
}

static void
apply_timeouts(struct agw_upstream *up, const struct agw_config *cfg)
{
    up->request_timeout_ms =
        cfg->request_timeout_ms > 0 ? cfg->request_timeout_ms : 15000;
    up->connect_tv =
        ms_to_tv(cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 2000);
    up->stall_tv = ms_to_tv(up->request_timeout_ms);
}

void
agw_upstream_reconfigure(struct agw_upstream *up, const struct agw_config *cfg)
{
    struct used_key *key;

    apply_timeouts(up, cfg);
    if (!key_ok(cfg->api_key) || (key = key_ref(up, cfg->api_key)) == NULL) {
        log_error("reload: the new API key is unusable; keeping the old one");
        return;
    }
    /* The old key stays on the list while calls posted with it live. */
    key_unref(up, up->current);
    up->current = key;
}

static bool
setup(struct agw_upstream *up, const struct agw_config *cfg, char *err,
      size_t errlen)
{
    if (!parse_base_url(up, cfg->base_url, err, errlen)) {
        return false;
    }
    if (!key_ok(cfg->api_key)) {
        snprintf(err, errlen,
                 "the API key is missing or has control "
                 "characters");
        return false;
    }
    up->current = key_ref(up, cfg->api_key);
    up->pool_ev = event_new(up->base, -1, 0, pool_cb, up);
    if (up->current == NULL || up->pool_ev == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    if (up->https) {
        up->ssl_ctx = agw_tls_client_ctx(cfg->ca_file, err, errlen);
        return up->ssl_ctx != NULL;
    }
    /* Said once, not once per worker. */
    if (!atomic_exchange(&warned_plain_http, true)) {
        log_warn("upstream %s is plain http: the API key travels "
                 "unencrypted",
                 cfg->base_url);
    }
    return true;
}

struct agw_upstream *
agw_upstream_new(struct event_base *base, struct evdns_base *dns,
                 const struct agw_config *cfg, char *err, size_t errlen)
{
    struct agw_upstream *up = calloc(1, sizeof(*up));

    if (up == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    up->base = base;
    up->dns = dns;
    TAILQ_INIT(&up->idle);
    TAILQ_INIT(&up->busy);
    TAILQ_INIT(&up->dead);
    TAILQ_INIT(&up->waiting);
    TAILQ_INIT(&up->calls);
    up->max_conns = cfg->max_connections > 0 ? cfg->max_connections : 1;
    apply_timeouts(up, cfg);
    up->idle_tv = ms_to_tv(IDLE_TIMEOUT_MS);
    if (!setup(up, cfg, err, errlen)) {
        agw_upstream_free(up);
        return NULL;
    }
    return up;
}

static void
free_conn_list(struct conn_list *list)
{
    struct conn *conn;

    while ((conn = TAILQ_FIRST(list)) != NULL) {
        TAILQ_REMOVE(list, conn, link);
        free_conn(conn);
    }
}

void
agw_upstream_free(struct agw_upstream *up)
{
    if (up == NULL) {
        return;
    }
    while (!TAILQ_EMPTY(&up->calls)) {
        agw_upstream_cancel(TAILQ_FIRST(&up->calls));
    }
    free_conn_list(&up->idle);
    free_conn_list(&up->busy);
    free_conn_list(&up->dead);
    if (up->pool_ev != NULL) {
        event_free(up->pool_ev);
    }
    SSL_SESSION_free(up->session);
    SSL_CTX_free(up->ssl_ctx);
    key_unref(up, up->current); /* the last: calls are cancelled */
    free(up->host);
    free(up->host_header);
    free(up->prefix);
    free(up);
}
