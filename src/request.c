/*
 * request.c - parses and validates a Create Asset call (SPEC §2), builds
 * the body sent to Connectly and the dedupe key (SPEC §3).
 */
#include "request.h"

#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "parse_memo.h"
#include "uri.h"
#include "util.h"

const char *const agw_access_types[3] = {
    "ASSET_ACCESS_CONTROL_TYPE_PUBLIC",
    "ASSET_ACCESS_CONTROL_TYPE_PRIVATE",
    "ASSET_ACCESS_CONTROL_TYPE_CDN_PRIVATE",
};

#define MSG_NOT_OBJECT "request body must be a JSON object"
#define MSG_OOM "request could not be validated: out of memory"

/*
 * json-c lets \u0000 into a string; C code downstream would silently cut
 * the value at it, so such strings are refused.
 */
static bool
string_has_nul(json_object *v)
{
    const char *s = json_object_get_string(v);

    return strlen(s) != (size_t)json_object_get_string_len(v);
}

/* A member that is absent or JSON null yields NULL, as in proto3 JSON. */
static json_object *
member(json_object *obj, const char *key)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(obj, key, &v)) {
        return NULL;
    }
    return v;
}

/*
 * One json_tokener per thread, reused for every body (a new one costs
 * three allocations); freed when the thread ends.
 */
static pthread_once_t tok_once = PTHREAD_ONCE_INIT;
static pthread_key_t tok_key;
static bool tok_key_ok; /* written once under tok_once */
static _Thread_local json_tokener *thread_tok;

static void
tok_free(void *arg)
{
    json_tokener_free(arg);
    thread_tok = NULL; /* runs on the exiting thread itself */
}

static void
tok_init_once(void)
{
    tok_key_ok = pthread_key_create(&tok_key, tok_free) == 0;
}

/* This thread's tokener, or NULL when memory ran out. */
static json_tokener *
tok_get(void)
{
    json_tokener *tok = thread_tok;

    if (tok != NULL) {
        return tok;
    }
    pthread_once(&tok_once, tok_init_once);
    if (!tok_key_ok) {
        return NULL;
    }
    /*
     * json-c's depth counts one more than the container levels it allows:
     * json_tokener_new_ex(16) takes only 15 nested objects/arrays.
     */
    tok = json_tokener_new_ex(AGW_JSON_MAX_DEPTH + 1);
    if (tok == NULL) {
        return NULL;
    }
    json_tokener_set_flags(tok,
                           JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    if (pthread_setspecific(tok_key, tok) != 0) {
        json_tokener_free(tok);
        return NULL;
    }
    thread_tok = tok;
    return tok;
}

/*
 * The whole body must be exactly one JSON object (trailing whitespace
 * aside). json-c's STRICT mode refuses trailing garbage itself; comparing
 * the parse end with LEN also catches a NUL byte, where json-c stops.
 */
static bool
parse_body(json_tokener *tok, const char *body, size_t len, json_object **out,
           char *err, size_t errlen)
{
    json_object *root;
    enum json_tokener_error jerr;

    *out = NULL;
    if (body == NULL || len == 0 || len > INT_MAX) {
        agw_set_err(err, errlen, MSG_NOT_OBJECT);
        return false;
    }
    json_tokener_reset(tok);
    root = json_tokener_parse_ex(tok, body, (int)len);
    jerr = json_tokener_get_error(tok);
    if (root != NULL && json_tokener_get_parse_end(tok) == len &&
        json_object_is_type(root, json_type_object)) {
        *out = root;
        return true;
    }
    json_object_put(root);
    /* A failed parse leaves partial objects on the tokener's stack. */
    json_tokener_reset(tok);
    if (jerr == json_tokener_error_depth) {
        agw_set_err(err, errlen, "request body nests deeper than %d levels",
                    AGW_JSON_MAX_DEPTH);
    } else {
        agw_set_err(err, errlen, MSG_NOT_OBJECT);
    }
    return false;
}

/*
 * The validated fields while the parsed body is alive: strings point
 * into json-c's tree, except NORM, which is malloc'd.
 */
struct fields {
    const char *uri;
    size_t uri_len;
    char *norm;
    const char *id; /* NULL when absent */
    size_t id_len;
    const char *access;
    bool access_given;
};

static bool
take_uri(struct fields *f, json_object *root, bool allow_private, char *err,
         size_t errlen)
{
    json_object *v = member(root, "uri");
    enum agw_uri_status st;

    if (v == NULL) {
        agw_set_err(err, errlen, "uri is required"); /* the vendor's text */
        return false;
    }
    if (!json_object_is_type(v, json_type_string)) {
        agw_set_err(err, errlen, "uri must be a string");
        return false;
    }
    if (string_has_nul(v)) {
        agw_set_err(err, errlen, "uri must not contain NUL characters");
        return false;
    }
    st = agw_uri_check(json_object_get_string(v), allow_private, &f->norm);
    if (st != AGW_URI_OK) {
        agw_set_err(err, errlen, "uri %s", agw_uri_status_text(st));
        return false;
    }
    if (f->norm == NULL) {
        agw_set_err(err, errlen, MSG_OOM);
        return false;
    }
    f->uri = json_object_get_string(v);
    f->uri_len = (size_t)json_object_get_string_len(v);
    return true;
}

static bool
id_is_valid(json_object *v)
{
    const char *s;
    int len, i;

    if (!json_object_is_type(v, json_type_string)) {
        return false;
    }
    s = json_object_get_string(v);
    len = json_object_get_string_len(v);
    if (len < 1 || len > AGW_ID_MAX_LEN) {
        return false;
    }
    /* Stepping over LEN bytes, not to the NUL, refuses embedded NULs. */
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

static bool
take_id(struct fields *f, json_object *root, char *err, size_t errlen)
{
    json_object *v = member(root, "id");

    if (v == NULL) {
        return true;
    }
    if (!id_is_valid(v)) {
        agw_set_err(err, errlen,
                    "id must be 1-%d characters of A-Z a-z 0-9 . _ : -",
                    AGW_ID_MAX_LEN);
        return false;
    }
    f->id = json_object_get_string(v);
    f->id_len = (size_t)json_object_get_string_len(v);
    return true;
}

/* The static string in agw_access_types equal to V, or NULL. */
static const char *
access_type_of(json_object *v)
{
    size_t i;

    if (!json_object_is_type(v, json_type_string) || string_has_nul(v)) {
        return NULL;
    }
    for (i = 0; i < 3; i++) {
        if (strcmp(json_object_get_string(v), agw_access_types[i]) == 0) {
            return agw_access_types[i];
        }
    }
    return NULL;
}

static bool
take_metadata(struct fields *f, json_object *root, char *err, size_t errlen)
{
    json_object *meta = member(root, "metadata");
    json_object *v;

    f->access = agw_access_types[0];
    if (meta == NULL) {
        return true;
    }
    if (!json_object_is_type(meta, json_type_object)) {
        agw_set_err(err, errlen, "metadata must be an object");
        return false;
    }
    v = member(meta, "accessControlType");
    if (v == NULL) {
        return true;
    }
    f->access = access_type_of(v);
    if (f->access == NULL) {
        agw_set_err(
            err, errlen, "metadata.accessControlType must be one of %s, %s, %s",
            agw_access_types[0], agw_access_types[1], agw_access_types[2]);
        return false;
    }
    f->access_given = true;
    return true;
}

static bool
add_string(json_object *obj, const char *key, const char *value)
{
    json_object *s = json_object_new_string(value);

    if (s == NULL) {
        return false;
    }
    if (json_object_object_add(obj, key, s) != 0) {
        json_object_put(s);
        return false;
    }
    return true;
}

/*
 * Only validated fields go upstream, rebuilt by json-c: unknown fields
 * stay behind, and Connectly never sees a duplicate key, lenient syntax
 * json-c tolerated, or a value other than the one that was checked.
 * Malloc'd; NULL when memory ran out.
 */
static char *
json_c_upstream_body(const struct fields *f)
{
    json_object *obj = json_object_new_object();
    json_object *meta = NULL;
    char *out = NULL;
    bool ok;

    ok = obj != NULL && add_string(obj, "uri", f->uri) &&
         (f->id == NULL || add_string(obj, "id", f->id));
    if (ok && f->access_given) {
        meta = json_object_new_object();
        ok = meta != NULL && add_string(meta, "accessControlType", f->access) &&
             json_object_object_add(obj, "metadata", meta) == 0;
        if (!ok) {
            json_object_put(meta);
        }
    }
    if (ok) {
        const char *s = json_object_to_json_string_ext(
            obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

        out = s != NULL ? strdup(s) : NULL;
    }
    json_object_put(obj);
    return out;
}

/* True when json-c would write S (LEN bytes) into a JSON string as is. */
static bool
json_plain(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            return false;
        }
    }
    return true;
}

#define UP_URI "{\"uri\":\""
#define UP_ID "\",\"id\":\""
#define UP_META "\",\"metadata\":{\"accessControlType\":\""
#define UP_END_META "\"}}"
#define UP_END "\"}"
#define LIT(s) (s), sizeof(s) - 1

static char *
put_str(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

/*
 * The upstream body is written directly: byte for byte what the json-c
 * builder above writes (same key order, PLAIN, slashes unescaped) as long
 * as no value needs escaping, which the URI and id checks already
 * guarantee; should one ever need it, json-c writes the body instead.
 */
static size_t
up_body_len(const struct fields *f)
{
    size_t n = sizeof(UP_URI) - 1 + f->uri_len;

    if (f->id != NULL) {
        n += sizeof(UP_ID) - 1 + f->id_len;
    }
    if (f->access_given) {
        n += sizeof(UP_META) - 1 + strlen(f->access) + sizeof(UP_END_META) - 1;
    } else {
        n += sizeof(UP_END) - 1;
    }
    return n;
}

static bool
up_body_plain(const struct fields *f)
{
    return json_plain(f->uri, f->uri_len) &&
           (f->id == NULL || json_plain(f->id, f->id_len));
}

/* Writes up_body_len(F) bytes and a NUL into OUT. */
static void
write_up_body(const struct fields *f, char *out)
{
    char *p = put_str(out, LIT(UP_URI));

    p = put_str(p, f->uri, f->uri_len);
    if (f->id != NULL) {
        p = put_str(p, LIT(UP_ID));
        p = put_str(p, f->id, f->id_len);
    }
    if (f->access_given) {
        p = put_str(p, LIT(UP_META));
        p = put_str(p, f->access, strlen(f->access));
        p = put_str(p, LIT(UP_END_META));
    } else {
        p = put_str(p, LIT(UP_END));
    }
    *p = '\0';
}

/*
 * Puts the four strings into one allocation that starts at REQ->uri, so
 * agw_request_clear() has one thing to free. UP is the upstream body when
 * json-c wrote it (copied), or NULL to write it here.
 */
static bool
fill_strings(struct agw_request *req, const struct fields *f, const char *up)
{
    size_t norm_len = strlen(f->norm);
    size_t up_len = up != NULL ? strlen(up) : up_body_len(f);
    size_t total = f->uri_len + 1 + norm_len + 1 + up_len + 1 +
                   (f->id != NULL ? f->id_len + 1 : 0);
    char *p = malloc(total);

    if (p == NULL) {
        return false;
    }
    req->uri = p;
    p = put_str(p, f->uri, f->uri_len + 1);
    req->uri_normalized = p;
    p = put_str(p, f->norm, norm_len + 1);
    req->upstream_body = p;
    if (up != NULL) {
        p = put_str(p, up, up_len + 1);
    } else {
        write_up_body(f, p);
        p += up_len + 1;
    }
    if (f->id != NULL) {
        req->id = p;
        put_str(p, f->id, f->id_len + 1);
    }
    req->access = f->access;
    req->access_given = f->access_given;
    return true;
}

/* Validates the parsed body ROOT into REQ's strings. */
static bool
take_fields(struct agw_request *req, json_object *root, bool allow_private,
            char *err, size_t errlen)
{
    struct fields f = {0};
    char *up = NULL;
    bool ok;

    ok = take_uri(&f, root, allow_private, err, errlen) &&
         take_id(&f, root, err, errlen) && take_metadata(&f, root, err, errlen);
    if (ok && !up_body_plain(&f)) {
        up = json_c_upstream_body(&f);
        ok = up != NULL;
        if (!ok) {
            agw_set_err(err, errlen, MSG_OOM);
        }
    }
    if (ok && !fill_strings(req, &f, up)) {
        agw_set_err(err, errlen, MSG_OOM);
        ok = false;
    }
    free(up);
    free(f.norm);
    return ok;
}

/*
 * The memo (parse_memo.h) keeps a parse as a struct agw_request followed
 * by its strings. A copy out is the caller's (agw_request_clear()); false
 * when memory ran out.
 */
static bool
memo_take(struct agw_request *req, const void *value)
{
    const struct agw_request *kept = value;
    char *strings = malloc(agw_request_strings_len(kept));

    if (strings == NULL) {
        return false;
    }
    agw_request_copy(req, kept, strings);
    return true;
}

static void
memo_keep(uint64_t hash, bool allow_private, const char *body, size_t len,
          const struct agw_request *req)
{
    size_t slen = agw_request_strings_len(req);
    struct agw_request *kept = agw_parse_memo_put(
        hash, req->business_id, allow_private, body, len, sizeof(*kept) + slen);

    if (kept != NULL) {
        agw_request_copy(kept, req, (char *)(kept + 1));
    }
}

bool
agw_request_parse(struct agw_request *req, const char *business_id,
                  const char *body, size_t len, bool allow_private, char *err,
                  size_t errlen)
{
    json_tokener *tok;
    json_object *root = NULL;
    bool ok;
    int found;
    uint64_t hash = 0;
    const void *kept = NULL;

    memset(req, 0, sizeof(*req));
    if (!agw_is_uuid(business_id)) {
        agw_set_err(err, errlen, "businessId must be a UUID");
        return false;
    }
    tok = tok_get();
    if (tok == NULL) {
        agw_set_err(err, errlen, MSG_OOM);
        return false;
    }
    found =
        agw_parse_memo_get(business_id, allow_private, body, len, &kept, &hash);
    if (found == 1 && !memo_take(req, kept)) {
        found = -1;
    }
    switch (found) {
    case 1:
        return true;
    case -1:
        agw_set_err(err, errlen, MSG_OOM);
        return false;
    default:
        break;
    }
    memcpy(req->business_id, business_id, sizeof(req->business_id));
    ok = parse_body(tok, body, len, &root, err, errlen) &&
         take_fields(req, root, allow_private, err, errlen);
    json_object_put(root);
    if (!ok) {
        agw_request_clear(req);
        return false;
    }
    agw_dedupe_key(req->business_id, req->uri_normalized, req->access, req->id,
                   req->dedupe_key);
    memo_keep(hash, allow_private, body, len, req);
    return true;
}

/* The four strings are one allocation, starting at uri. */
void
agw_request_clear(struct agw_request *req)
{
    if (req == NULL) {
        return;
    }
    free(req->uri);
    memset(req, 0, sizeof(*req));
}

/* The last string is id when present, else upstream_body (fill_strings). */
size_t
agw_request_strings_len(const struct agw_request *req)
{
    const char *last = req->id != NULL ? req->id : req->upstream_body;

    return (size_t)(last - req->uri) + strlen(last) + 1;
}

void
agw_request_copy(struct agw_request *to, const struct agw_request *from,
                 char *dst)
{
    memcpy(dst, from->uri, agw_request_strings_len(from));
    *to = *from;
    to->uri = dst;
    to->uri_normalized = dst + (from->uri_normalized - from->uri);
    to->upstream_body = dst + (from->upstream_body - from->uri);
    if (from->id != NULL) {
        to->id = dst + (from->id - from->uri);
    }
}

/*
 * UUIDs are case-insensitive (RFC 4122 §3), so the business id is
 * lower-cased here: "550E8400-..." and "550e8400-..." are one business
 * and share cached answers. req->business_id keeps the caller's spelling
 * for the upstream path. NULL ACCESS means the default, PUBLIC; NULL
 * strings otherwise hash as empty. Each part is hashed with its NUL so
 * that ("ab", "c") and ("a", "bc") differ.
 */
static void
lower_copy(char *dst, const char *src, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        char c = src[i];

        dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
}

void
agw_dedupe_key(const char *business_id, const char *uri_normalized,
               const char *access, const char *id, char out[65])
{
    char small[40];
    char *biz = small;
    struct agw_span parts[4];
    size_t n;

    business_id = business_id != NULL ? business_id : "";
    n = strlen(business_id) + 1;
    if (n > sizeof(small)) {
        biz = malloc(n); /* never for a UUID */
        if (biz == NULL) {
            /* A made-up key could return another request's asset. */
            fputs("asset-gateway: out of memory building a dedupe key\n",
                  stderr);
            abort();
        }
    }
    lower_copy(biz, business_id, n);
    uri_normalized = uri_normalized != NULL ? uri_normalized : "";
    access = access != NULL ? access : agw_access_types[0];
    id = id != NULL ? id : "";
    parts[0] = (struct agw_span){biz, n};
    parts[1] = (struct agw_span){uri_normalized, strlen(uri_normalized) + 1};
    parts[2] = (struct agw_span){access, strlen(access) + 1};
    parts[3] = (struct agw_span){id, strlen(id) + 1};
    agw_sha256_hex_parts(parts, 4, out);
    if (biz != small) {
        free(biz);
    }
}
