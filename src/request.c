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
#include <openssl/rand.h>

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
 * A memo of recent successful parses, keyed by the exact input: business
 * id as sent, allow_private and the body bytes. agw_create_parse() is a
 * pure function of those, and most creates repeat a body seen moments
 * before (that is what makes them cache hits), so a repeat skips the JSON
 * parse, the URI checks and SHA-256: a hash of the input, a comparison
 * and one copy. Set-associative (least recently used way goes first),
 * bodies up to MEMO_BODY_MAX bytes, at most MEMO_BYTES per thread. The
 * hash only picks a set; entries are compared byte for byte, so a crafted
 * collision costs a miss, never a wrong answer.
 */
#define MEMO_SETS 512 /* a power of two */
#define MEMO_WAYS 4
#define MEMO_SLOTS (MEMO_SETS * MEMO_WAYS)
#define MEMO_BODY_MAX 4096
#define MEMO_BYTES (1024 * 1024)

struct memo_entry {
    uint64_t hash;
    uint64_t used;      /* memo clock at the last hit */
    size_t size;        /* bytes charged to the memo */
    size_t body_len;
    size_t strings_len;
    bool allow_private;
    struct agw_create req; /* its strings are the bytes after the body */
    char body[];           /* body_len bytes, then strings_len bytes */
};

/*
 * Per-thread parsing state: the memo, and one json_tokener reused for
 * every body (a new one costs three allocations); freed when the thread
 * ends.
 */
struct thread_state {
    json_tokener *tok;
    uint64_t seed;  /* random: where entries land is not predictable */
    uint64_t clock; /* counts memo lookups */
    size_t bytes;   /* charged by entries now held */
    size_t rover;   /* next slot to give up when over MEMO_BYTES */
    struct memo_entry *slots[MEMO_SLOTS];
};

static pthread_once_t state_once = PTHREAD_ONCE_INIT;
static pthread_key_t state_key;
static bool state_key_ok; /* written once under state_once */
static _Thread_local struct thread_state *thread_state;

static void
state_free(void *arg)
{
    struct thread_state *ts = arg;
    size_t i;

    for (i = 0; i < MEMO_SLOTS; i++) {
        free(ts->slots[i]);
    }
    json_tokener_free(ts->tok);
    free(ts);
    thread_state = NULL; /* runs on the exiting thread itself */
}

static void
state_init_once(void)
{
    state_key_ok = pthread_key_create(&state_key, state_free) == 0;
}

/* This thread's state, or NULL when memory ran out. */
static struct thread_state *
state_get(void)
{
    struct thread_state *ts = thread_state;

    if (ts != NULL) {
        return ts;
    }
    pthread_once(&state_once, state_init_once);
    ts = calloc(1, sizeof(*ts));
    if (ts == NULL || !state_key_ok ||
        pthread_setspecific(state_key, ts) != 0) {
        free(ts);
        return NULL;
    }
    /*
     * json-c's depth counts one more than the container levels it allows:
     * json_tokener_new_ex(16) takes only 15 nested objects/arrays.
     */
    ts->tok = json_tokener_new_ex(AGW_JSON_MAX_DEPTH + 1);
    if (ts->tok == NULL) {
        pthread_setspecific(state_key, NULL);
        free(ts);
        return NULL;
    }
    json_tokener_set_flags(ts->tok,
                           JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    if (RAND_bytes((unsigned char *)&ts->seed, sizeof(ts->seed)) != 1) {
        ts->seed = (uint64_t)agw_now_us(); /* only spreads the sets */
    }
    thread_state = ts;
    return ts;
}

static uint64_t
mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ULL;
    return h ^ (h >> 32);
}

static uint64_t
mix_bytes(uint64_t h, const char *p, size_t len)
{
    uint64_t w;

    for (; len >= 8; p += 8, len -= 8) {
        memcpy(&w, p, 8);
        h = mix(h, w);
    }
    w = 0;
    memcpy(&w, p, len);
    return mix(h, w);
}

static _Thread_local bool forced;
static _Thread_local uint64_t forced_hash;

void
agw_create_memo_force_hash(bool force, unsigned long long hash)
{
    forced = force;
    forced_hash = hash;
}

static uint64_t
memo_hash(const struct thread_state *ts, const char *business_id,
          bool allow_private, const char *body, size_t len)
{
    uint64_t h;

    if (forced) {
        return forced_hash;
    }
    h = mix(ts->seed, (uint64_t)len << 1 | allow_private);
    h = mix_bytes(h, business_id, 36);
    h = mix_bytes(h, body, len);
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 32);
}

static struct memo_entry **
memo_set(struct thread_state *ts, uint64_t hash)
{
    return &ts->slots[(hash >> 16 & (MEMO_SETS - 1)) * MEMO_WAYS];
}

static bool
memo_matches(const struct memo_entry *e, uint64_t hash,
             const char *business_id, bool allow_private, const char *body,
             size_t len)
{
    return e != NULL && e->hash == hash && e->body_len == len &&
           e->allow_private == allow_private &&
           memcmp(e->req.business_id, business_id, 37) == 0 &&
           memcmp(e->body, body, len) == 0;
}

/*
 * Copies FROM into TO with its strings moved to DST, where a copy of
 * them, laid out as fill_strings() does (starting at uri), already is.
 */
static void
rebase(struct agw_create *to, const struct agw_create *from, char *dst)
{
    *to = *from;
    to->uri = dst;
    to->uri_normalized = dst + (from->uri_normalized - from->uri);
    to->upstream_body = dst + (from->upstream_body - from->uri);
    if (from->id != NULL) {
        to->id = dst + (from->id - from->uri);
    }
}

/*
 * Fills REQ from the memo: 1 when found, 0 when not, -1 when found but
 * memory ran out.
 */
static int
memo_get(struct thread_state *ts, uint64_t hash, struct agw_create *req,
         const char *business_id, bool allow_private, const char *body,
         size_t len)
{
    struct memo_entry **set = memo_set(ts, hash);
    struct memo_entry *e;
    char *strings;
    size_t i;

    ts->clock++;
    for (i = 0; i < MEMO_WAYS; i++) {
        e = set[i];
        if (!memo_matches(e, hash, business_id, allow_private, body, len)) {
            continue;
        }
        strings = malloc(e->strings_len);
        if (strings == NULL) {
            return -1;
        }
        memcpy(strings, e->req.uri, e->strings_len);
        rebase(req, &e->req, strings);
        e->used = ts->clock;
        return 1;
    }
    return 0;
}

static void
memo_drop(struct thread_state *ts, struct memo_entry **slot)
{
    if (*slot != NULL) {
        ts->bytes -= (*slot)->size;
        free(*slot);
        *slot = NULL;
    }
}

/* The way of SET to fill: an empty one, else the least recently used. */
static struct memo_entry **
memo_victim(struct memo_entry **set)
{
    struct memo_entry **victim = &set[0];
    size_t i;

    for (i = 0; i < MEMO_WAYS; i++) {
        if (set[i] == NULL) {
            return &set[i];
        }
        if (set[i]->used < (*victim)->used) {
            victim = &set[i];
        }
    }
    return victim;
}

/* The length of REQ's strings, laid out as fill_strings() does. */
static size_t
strings_len(const struct agw_create *req)
{
    const char *last = req->id != NULL ? req->id : req->upstream_body;

    return (size_t)(last - req->uri) + strlen(last) + 1;
}

/* Remembers REQ, just parsed from this input; best effort. */
static void
memo_put(struct thread_state *ts, uint64_t hash, const struct agw_create *req,
         bool allow_private, const char *body, size_t len)
{
    struct memo_entry **slot = memo_victim(memo_set(ts, hash));
    struct memo_entry *e;
    size_t slen = strings_len(req);
    size_t size = sizeof(*e) + len + slen;
    size_t tries;

    memo_drop(ts, slot);
    /* Over budget: give up other entries, in slot order, a few at most. */
    for (tries = 0; ts->bytes + size > MEMO_BYTES && tries < 8; tries++) {
        memo_drop(ts, &ts->slots[ts->rover]);
        ts->rover = (ts->rover + 1) % MEMO_SLOTS;
    }
    if (ts->bytes + size > MEMO_BYTES) {
        return;
    }
    e = malloc(size);
    if (e == NULL) {
        return;
    }
    e->hash = hash;
    e->used = ts->clock;
    e->size = size;
    e->body_len = len;
    e->strings_len = slen;
    e->allow_private = allow_private;
    memcpy(e->body, body, len);
    memcpy(e->body + len, req->uri, slen);
    rebase(&e->req, req, e->body + len);
    ts->bytes += size;
    *slot = e;
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
        agw_set_err(err, errlen,
                "metadata.accessControlType must be one of %s, %s, %s",
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
        ok = meta != NULL &&
             add_string(meta, "accessControlType", f->access) &&
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
 * agw_create_clear() has one thing to free. UP is the upstream body when
 * json-c wrote it (copied), or NULL to write it here.
 */
static bool
fill_strings(struct agw_create *req, const struct fields *f, const char *up)
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
take_fields(struct agw_create *req, json_object *root, bool allow_private,
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

bool
agw_create_parse(struct agw_create *req, const char *business_id,
                 const char *body, size_t len, bool allow_private, char *err,
                 size_t errlen)
{
    struct thread_state *ts;
    json_object *root = NULL;
    bool memo, ok;
    uint64_t hash = 0;

    memset(req, 0, sizeof(*req));
    if (!agw_is_uuid(business_id)) {
        agw_set_err(err, errlen, "businessId must be a UUID");
        return false;
    }
    ts = state_get();
    if (ts == NULL) {
        agw_set_err(err, errlen, MSG_OOM);
        return false;
    }
    memo = body != NULL && len <= MEMO_BODY_MAX;
    if (memo) {
        hash = memo_hash(ts, business_id, allow_private, body, len);
        switch (memo_get(ts, hash, req, business_id, allow_private, body,
                         len)) {
        case 1:
            return true;
        case -1:
            agw_set_err(err, errlen, MSG_OOM);
            return false;
        default:
            break;
        }
    }
    memcpy(req->business_id, business_id, sizeof(req->business_id));
    ok = parse_body(ts->tok, body, len, &root, err, errlen) &&
         take_fields(req, root, allow_private, err, errlen);
    json_object_put(root);
    if (!ok) {
        agw_create_clear(req);
        return false;
    }
    agw_dedupe_key(req->business_id, req->uri_normalized, req->access, req->id,
                   req->dedupe_key);
    if (memo) {
        memo_put(ts, hash, req, allow_private, body, len);
    }
    return true;
}

/* The four strings are one allocation, starting at uri. */
void
agw_create_clear(struct agw_create *req)
{
    if (req == NULL) {
        return;
    }
    free(req->uri);
    memset(req, 0, sizeof(*req));
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
