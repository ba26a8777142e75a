/*
 * sandbox_create.c - POST /v1/businesses/{businessId}/assets as the vendor
 * documents it: record, faults, key, own rate limit, validation, a real
 * fetch of the source, then the stored asset's description.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sandbox.h"

#define ACT_PUBLIC "ASSET_ACCESS_CONTROL_TYPE_PUBLIC"

static const char *const access_types[] = {
    ACT_PUBLIC,
    "ASSET_ACCESS_CONTROL_TYPE_PRIVATE",
    "ASSET_ACCESS_CONTROL_TYPE_CDN_PRIVATE",
};

/* One create call in flight: owned by its job (freed by create_done). */
struct create {
    struct sbx_server *srv;
    struct sbx_job *job;
    uint64_t seq;
    long latency_ms;
    char business_id[64];
    char *uri;          /* as sent */
    char *id;           /* custom id, NULL when absent */
    const char *access; /* one of access_types */
    char *echo_key;     /* echo_key fault: the X-API-Key sent, or NULL */
    struct sbx_fetch *fetch;
};

static void
create_done(void *priv, int status, int aborted)
{
    struct create *c = priv;

    if (!aborted) {
        sbx_calls_finish(c->srv->calls, c->seq, status);
    }
    sbx_fetch_cancel(c->fetch);
    free(c->uri);
    free(c->id);
    free(c->echo_key);
    free(c);
}

static void
answer(struct create *c)
{
    sbx_job_finish(c->job, c->latency_ms);
}

static void
answer_error(struct create *c, int status, int code, const char *message)
{
    sbx_job_set_error(c->job, status, code, message);
    answer(c);
}

/* --------------------------------------------------------- validation */

static int
is_uuid(const char *s)
{
    static const int dash[] = {8, 13, 18, 23};
    size_t d = 0;

    if (strlen(s) != 36) {
        return 0;
    }
    for (size_t i = 0; i < 36; i++) {
        if (d < 4 && (size_t)dash[d] == i) {
            if (s[i] != '-') {
                return 0;
            }
            d++;
        } else if (!isxdigit((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

/* The string member KEY of OBJ, or NULL when absent, null or not a
 * string without embedded NULs. */
static const char *
member_string(struct json_object *obj, const char *key)
{
    struct json_object *v;
    const char *s;

    if (obj == NULL || !json_object_object_get_ex(obj, key, &v) ||
        !json_object_is_type(v, json_type_string)) {
        return NULL;
    }
    s = json_object_get_string(v);
    if (strlen(s) != (size_t)json_object_get_string_len(v)) {
        return NULL;
    }
    return s;
}

/* Present and not JSON null. */
static int
has_member(struct json_object *obj, const char *key, struct json_object **val)
{
    return json_object_object_get_ex(obj, key, val) && *val != NULL;
}

static int
valid_id(const char *id)
{
    size_t len = strlen(id);

    if (len == 0 || len > SBX_MAX_ID_LEN) {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static const char *
check_access(struct json_object *meta)
{
    struct json_object *v;
    const char *s;

    if (!has_member(meta, "accessControlType", &v)) {
        return ACT_PUBLIC;
    }
    if (!json_object_is_type(v, json_type_string)) {
        return NULL;
    }
    s = json_object_get_string(v);
    for (size_t i = 0; i < sizeof(access_types) / sizeof(*access_types); i++) {
        if (strcmp(s, access_types[i]) == 0) {
            return access_types[i];
        }
    }
    return NULL;
}

/* Fills C from the body; on a bad request answers it and returns -1. */
static int
validate(struct create *c, const char *bid, struct json_object *body)
{
    struct json_object *v;
    const char *uri = member_string(body, "uri");

    if (!is_uuid(bid)) {
        answer_error(c, 400, 3, "XASSET.INVALID_ARGUMENT: invalid businessId");
        return -1;
    }
    if (body == NULL) {
        answer_error(c, 400, 3, "XASSET.INVALID_ARGUMENT: invalid JSON body");
        return -1;
    }
    if (uri == NULL || uri[0] == '\0') {
        answer_error(c, 400, 3, "XASSET.INVALID_ARGUMENT: uri is required");
        return -1;
    }
    if (has_member(body, "id", &v) &&
        (!json_object_is_type(v, json_type_string) ||
         member_string(body, "id") == NULL ||
         !valid_id(member_string(body, "id")))) {
        answer_error(c, 400, 3, "XASSET.INVALID_ARGUMENT: invalid id");
        return -1;
    }
    if (has_member(body, "metadata", &v) &&
        !json_object_is_type(v, json_type_object)) {
        answer_error(c, 400, 3,
                     "XASSET.INVALID_ARGUMENT: metadata must be an object");
        return -1;
    }
    c->access = has_member(body, "metadata", &v) ? check_access(v) : ACT_PUBLIC;
    if (c->access == NULL) {
        answer_error(c, 400, 3,
                     "XASSET.INVALID_ARGUMENT: invalid "
                     "metadata.accessControlType");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ success */

static void
new_uuid(char *out, size_t outlen)
{
    unsigned char b[16];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        for (size_t i = 0; i < sizeof(b); i++) {
            b[i] = (unsigned char)rand(); /* ids, not secrets */
        }
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, outlen,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
             "%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
             b[11], b[12], b[13], b[14], b[15]);
}

/* Percent-encodes what may not appear in a path segment (RFC 3986
 * pchar), so unreserved characters and ':' stay readable. */
static void
append_segment(struct evbuffer *out, const char *s)
{
    static const char keep[] = "-._~:@!$&'()*+,;=";

    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        if (isalnum(ch) || (ch != '\0' && strchr(keep, ch) != NULL)) {
            evbuffer_add(out, s, 1);
        } else {
            evbuffer_add_printf(out, "%%%02X", ch);
        }
    }
}

static char *
cdn_uri(struct sbx_server *srv, const char *id)
{
    struct evbuffer *b = evbuffer_new();
    char *s = NULL;
    size_t len;

    if (b == NULL) {
        return NULL;
    }
    evbuffer_add_printf(b, "%s/cdn/assets/", srv->cfg.cdn_base);
    append_segment(b, id);
    len = evbuffer_get_length(b);
    s = malloc(len + 1);
    if (s != NULL) {
        evbuffer_remove(b, s, len);
        s[len] = '\0';
    }
    evbuffer_free(b);
    return s;
}

static struct json_object *
asset_json(struct create *c, const char *id, const char *cdn)
{
    struct json_object *asset = json_object_new_object();
    struct json_object *source = json_object_new_object();
    struct json_object *meta = json_object_new_object();
    struct json_object *top = json_object_new_object();

    if (asset == NULL || source == NULL || meta == NULL || top == NULL) {
        json_object_put(asset);
        json_object_put(source);
        json_object_put(meta);
        json_object_put(top);
        return NULL;
    }
    json_object_object_add(asset, "id", json_object_new_string(id));
    json_object_object_add(asset, "ownerId",
                           json_object_new_string(c->business_id));
    json_object_object_add(asset, "uri", json_object_new_string(cdn));
    json_object_object_add(source, "uri", json_object_new_string(c->uri));
    json_object_object_add(asset, "source", source);
    json_object_object_add(meta, "accessControlType",
                           json_object_new_string(c->access));
    json_object_object_add(asset, "metadata", meta);
    json_object_object_add(top, "asset", asset);
    if (c->echo_key != NULL) {
        json_object_object_add(top, "echoedApiKey",
                               json_object_new_string(c->echo_key));
    }
    return top;
}

static void
answer_created(struct create *c, const char *ctype, const unsigned char *data,
               size_t len)
{
    char uuid[40];
    const char *id = c->id;
    char *cdn;
    struct json_object *o;
    struct evbuffer *b;

    if (id == NULL) {
        new_uuid(uuid, sizeof(uuid));
        id = uuid;
    }
    cdn = cdn_uri(c->srv, id);
    o = cdn != NULL ? asset_json(c, id, cdn) : NULL;
    b = evbuffer_new();
    if (o == NULL || b == NULL || sbx_json_append(b, o) != 0 ||
        sbx_store_put(c->srv->store, id, ctype, data, len) != 0) {
        answer_error(c, 500, 13, "XASSET.INTERNAL: cannot store asset");
    } else {
        sbx_job_set_reply(c->job, 200, "application/json", b);
        answer(c);
    }
    if (b != NULL) {
        evbuffer_free(b);
    }
    json_object_put(o);
    free(cdn);
}

static void
fetched(void *arg, int ok, const char *ctype, const unsigned char *data,
        size_t len)
{
    struct create *c = arg;

    c->fetch = NULL; /* the fetch frees itself after this returns */
    if (!ok) {
        answer_error(c, 400, 3,
                     "XASSET.INVALID_ARGUMENT: unable to fetch asset from "
                     "source URI");
        return;
    }
    answer_created(c, ctype, data, len);
}

/* ------------------------------------------------------------- checks */

static int
key_ok(struct sbx_server *srv, struct evhttp_request *req)
{
    const char *got =
        evhttp_find_header(evhttp_request_get_input_headers(req), "X-API-Key");
    unsigned char digest[32];
    unsigned int dlen = 0;

    if (got == NULL) {
        return 0;
    }
    /* Comparing digests keeps the time independent of where, and of
     * whether the lengths, differ. */
    if (EVP_Digest(got, strlen(got), digest, &dlen, EVP_sha256(), NULL) != 1 ||
        dlen != sizeof(digest)) {
        return 0;
    }
    return CRYPTO_memcmp(digest, srv->key_digest, sizeof(digest)) == 0;
}

static const char *
status_message(int status, int *code)
{
    switch (status) {
    case 400:
        *code = 3;
        return "XASSET.INVALID_ARGUMENT: injected fault";
    case 401:
        *code = 16;
        return "XASSET.UNAUTHENTICATED: injected fault";
    case 403:
        *code = 7;
        return "XASSET.PERMISSION_DENIED: injected fault";
    case 404:
        *code = 5;
        return "XASSET.NOT_FOUND: injected fault";
    case 429:
        *code = 8;
        return "XASSET.RESOURCE_EXHAUSTED: rate limit exceeded";
    case 500:
        *code = 13;
        return "XASSET.INTERNAL: injected fault";
    default:
        break;
    }
    *code = status >= 500 ? 14 : 2;
    return status >= 500 ? "XASSET.UNAVAILABLE: injected fault"
                         : "XASSET.UNKNOWN: injected fault";
}

static void
answer_forced(struct create *c, const struct sbx_fault_decision *fd)
{
    int code;
    const char *msg = status_message(fd->status, &code);
    char ra[24];
    char echoed[512];

    if (fd->status == 429 && fd->retry_after >= 0) {
        snprintf(ra, sizeof(ra), "%ld", fd->retry_after);
        evhttp_add_header(evhttp_request_get_output_headers(c->job->req),
                          "Retry-After", ra);
    }
    if (c->echo_key != NULL) {
        snprintf(echoed, sizeof(echoed), "%s (X-API-Key was %s)", msg,
                 c->echo_key);
        msg = echoed;
    }
    answer_error(c, fd->status, code, msg);
}

static void
drop(struct sbx_server *srv, struct evhttp_request *req, uint64_t seq,
     double t0)
{
    sbx_calls_finish(srv->calls, seq, 0);
    sbx_log_request(req, 0, t0);
    /* Freeing the connection from the request callback is safe for
     * incoming connections in libevent 2.1: nothing touches it after the
     * callback returns. It frees REQ too. */
    evhttp_connection_free(evhttp_request_get_connection(req));
}

static struct create *
create_new(struct sbx_server *srv, struct evhttp_request *req, double t0,
           uint64_t seq, const char *bid)
{
    struct create *c = calloc(1, sizeof(*c));

    if (c == NULL) {
        return NULL;
    }
    c->job = sbx_job_new(srv, req, t0);
    if (c->job == NULL) {
        free(c);
        return NULL;
    }
    c->srv = srv;
    c->seq = seq;
    snprintf(c->business_id, sizeof(c->business_id), "%s", bid);
    c->job->done = create_done;
    c->job->priv = c;
    return c;
}

/* Everything after faults: key, own limit, body, then the fetch. */
static void
process(struct create *c, const char *bid, struct json_object *body)
{
    struct evhttp_request *req = c->job->req;

    if (!key_ok(c->srv, req)) {
        answer_error(c, 401, 16,
                     "XASSET.UNAUTHENTICATED: missing or invalid API key");
        return;
    }
    if (!sbx_calls_admit(c->srv->calls, sbx_now())) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After",
                          "1");
        answer_error(c, 429, 8,
                     "XASSET.RESOURCE_EXHAUSTED: rate limit exceeded");
        return;
    }
    if (validate(c, bid, body) != 0) {
        return;
    }
    c->uri = strdup(member_string(body, "uri"));
    if (member_string(body, "id") != NULL) {
        c->id = strdup(member_string(body, "id"));
    }
    if (c->uri == NULL ||
        (member_string(body, "id") != NULL && c->id == NULL)) {
        answer_error(c, 500, 13, "XASSET.INTERNAL: out of memory");
        return;
    }
    c->fetch = sbx_fetch_start(c->srv, c->uri, fetched, c);
    if (c->fetch == NULL) {
        fetched(c, 0, NULL, NULL, 0);
    }
}

void
sbx_route_create(struct sbx_server *srv, struct evhttp_request *req,
                 const char *business_id, double t0)
{
    struct json_object *body;
    struct sbx_fault_decision fd;
    struct create *c;
    uint64_t seq;

    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          "POST");
        sbx_reply_error(req, t0, 405, 12,
                        "XASSET.UNIMPLEMENTED: method not allowed");
        return;
    }
    body = sbx_parse_body_object(req);
    seq = sbx_calls_record(srv->calls, t0, member_string(body, "uri"),
                           member_string(body, "id"));
    sbx_faults_next(srv->faults, &fd);
    if (fd.action == SBX_FAULT_DROP) {
        drop(srv, req, seq, t0);
        json_object_put(body);
        return;
    }
    c = create_new(srv, req, t0, seq, business_id);
    if (c == NULL) {
        sbx_calls_finish(srv->calls, seq, 500);
        sbx_reply_error(req, t0, 500, 13, "XASSET.INTERNAL: out of memory");
        json_object_put(body);
        return;
    }
    c->latency_ms = fd.latency_ms;
    if (fd.echo_key) {
        const char *sent = evhttp_find_header(
            evhttp_request_get_input_headers(req), "X-API-Key");

        c->echo_key = strdup(sent != NULL ? sent : "");
    }
    if (fd.action == SBX_FAULT_STATUS) {
        answer_forced(c, &fd);
    } else {
        process(c, business_id, body);
    }
    json_object_put(body);
}
