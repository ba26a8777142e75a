/*
 * auth.c - the clients file (INI via inih, read through inifile.c for line
 * numbers) and the constant-time check of a caller's Bearer token.
 */
#include "auth.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "config.h"
#include "inifile.h"
#include "log.h"
#include "util.h"

#define CLIENTS_MAX_BYTES (1024 * 1024)
#define HASH_LEN 32
#define UUID_LEN 36
#define KEY_HASH "token_sha256"
#define KEY_BUSINESSES "businesses"
#define KEY_CERT_SAN "cert_san"
#define KEY_CERT_HASH "cert_sha256"
#define KEY_CLASS "class"
#define KEY_MAX_RATE "max_rate"
/* As [ratelimit] rate's own bound. */
#define MAX_RATE_MAX 1000000.0

/* SHA-256 of "": such a token can never be presented, so it is a typo. */
static const char empty_sha256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct caller {
    char name[AGW_AUTH_NAME_MAX + 1];
    unsigned char hash[HASH_LEN];
    bool all;                         /* businesses = * */
    char (*businesses)[UUID_LEN + 1]; /* lower case; owned */
    size_t nbusinesses, cap;
    unsigned char cert_hash[HASH_LEN];
    char *cert_san;      /* owned; NULL: none */
    int line;            /* of the [name] line */
    int hash_line;       /* 0 while token_sha256 is unset */
    int cert_hash_line;  /* 0 while cert_sha256 is unset */
    int cert_san_line;   /* 0 while cert_san is unset */
    int businesses_line; /* first businesses line; 0 while unset */
    bool batch;          /* class = batch */
    double max_rate;     /* 0: no cap */
    int class_line;      /* 0 while class is unset */
    int max_rate_line;   /* 0 while max_rate is unset */
};

struct agw_auth {
    struct caller *callers; /* owned */
    size_t n, cap;
    atomic_int refs; /* 0 means 1: calloc'd tables start with one holder */
};

struct load_ctx {
    struct agw_auth *auth;
    const char *path;
    struct agw_ini_reader rd; /* also the first problem and its line */
    char *err;
    size_t errlen;
};

/* ------------------------------------------------------------ errors */

/*
 * Writes "FILE[:LINE]: [[caller] ][key: ]problem" into the caller's
 * buffer; the first problem found is the one reported. Callers of this
 * never pass a value from the file: it could be a token.
 */
static void
fail(struct load_ctx *ctx, int line, const struct caller *c, const char *key,
     const char *fmt, ...)
{
    char where[32] = "";
    char who[AGW_AUTH_NAME_MAX + 8] = "";
    char what[256];
    va_list ap;

    if (!agw_ini_first_problem(&ctx->rd, line) || ctx->errlen == 0) {
        return;
    }
    if (line > 0) {
        snprintf(where, sizeof(where), ":%d", line);
    }
    if (c != NULL) {
        snprintf(who, sizeof(who), "[%s] ", c->name);
    }
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(ctx->err, ctx->errlen, "%s%s: %s%.32s%s%s", ctx->path, where, who,
             key != NULL ? key : "", key != NULL ? ": " : "", what);
}

/* ------------------------------------------------------------ callers */

static struct caller *
current(struct load_ctx *ctx)
{
    return ctx->auth->n > 0 ? &ctx->auth->callers[ctx->auth->n - 1] : NULL;
}

static bool
name_char_ok(char ch)
{
    return isalnum((unsigned char)ch) || ch == '.' || ch == '_' || ch == ':' ||
           ch == '-';
}

/* Only blanks or a comment may follow "[name]". */
static bool
rest_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == ';' || p[i] == '#') {
            return true;
        }
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') {
            return false;
        }
    }
    return true;
}

static bool
name_ok(const char *name, size_t len)
{
    if (len == 0 || len > AGW_AUTH_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!name_char_ok(name[i])) {
            return false;
        }
    }
    return true;
}

static struct caller *
find_caller(const struct agw_auth *a, const char *name, size_t len)
{
    for (size_t i = 0; i < a->n; i++) {
        if (strlen(a->callers[i].name) == len &&
            memcmp(a->callers[i].name, name, len) == 0) {
            return &a->callers[i];
        }
    }
    return NULL;
}

static bool
grow_callers(struct load_ctx *ctx)
{
    struct agw_auth *a = ctx->auth;
    size_t cap = a->cap > 0 ? a->cap * 2 : 8;
    struct caller *more;

    if (a->n < a->cap) {
        return true;
    }
    more = realloc(a->callers, cap * sizeof(*more));
    if (more == NULL) {
        fail(ctx, ctx->rd.lineno, NULL, NULL, "out of memory");
        return false;
    }
    a->callers = more;
    a->cap = cap;
    return true;
}

/*
 * A "[name]" line (P, N bytes, starting with '['): a new caller. The
 * reader calls this for every such line, also one with no keys below it.
 */
static bool
start_caller(void *user, const char *p, size_t n)
{
    struct load_ctx *ctx = user;
    const char *close = memchr(p, ']', n);
    size_t len;
    struct caller *c, *dup;

    if (close == NULL) {
        return true; /* inih reports the syntax error with its line */
    }
    len = (size_t)(close - p - 1);
    if (!name_ok(p + 1, len) ||
        !rest_ok(close + 1, (size_t)(p + n - close - 1))) {
        fail(ctx, ctx->rd.lineno, NULL, NULL,
             "a caller section is [name], the name 1 to %d characters of "
             "A-Z a-z 0-9 . _ : -",
             AGW_AUTH_NAME_MAX);
        return false;
    }
    dup = find_caller(ctx->auth, p + 1, len);
    if (dup != NULL) {
        fail(ctx, ctx->rd.lineno, dup, NULL,
             "duplicate caller name (first on line %d)", dup->line);
        return false;
    }
    if (!grow_callers(ctx)) {
        return false;
    }
    c = &ctx->auth->callers[ctx->auth->n++];
    memset(c, 0, sizeof(*c));
    memcpy(c->name, p + 1, len);
    c->name[len] = '\0';
    c->line = ctx->rd.lineno;
    return true;
}

/* ------------------------------------------------------------ values */

static bool
decode_hash(const char *hex, unsigned char out[HASH_LEN])
{
    if (strlen(hex) != 2 * HASH_LEN) {
        return false;
    }
    for (size_t i = 0; i < HASH_LEN; i++) {
        int hi = agw_hex_value(hex[2 * i]);
        int lo = agw_hex_value(hex[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

static bool
set_hash(struct load_ctx *ctx, struct caller *c, const char *value)
{
    const struct agw_auth *a = ctx->auth;

    if (c->hash_line != 0) {
        fail(ctx, ctx->rd.lineno, c, KEY_HASH,
             "duplicate key (first set on line %d)", c->hash_line);
        return false;
    }
    if (!decode_hash(value, c->hash)) {
        fail(ctx, ctx->rd.lineno, c, KEY_HASH,
             "must be 64 hex digits: the SHA-256 of the token "
             "(printf %%s \"$TOKEN\" | sha256sum), never the token itself");
        return false;
    }
    if (strcasecmp(value, empty_sha256) == 0) {
        fail(ctx, ctx->rd.lineno, c, KEY_HASH,
             "is the SHA-256 of an empty token (was the token unset?)");
        return false;
    }
    for (size_t i = 0; i + 1 < a->n; i++) {
        if (a->callers[i].hash_line != 0 &&
            memcmp(a->callers[i].hash, c->hash, HASH_LEN) == 0) {
            fail(ctx, ctx->rd.lineno, c, KEY_HASH,
                 "same token as caller [%s] (line %d); each caller needs "
                 "its own",
                 a->callers[i].name, a->callers[i].hash_line);
            return false;
        }
    }
    c->hash_line = ctx->rd.lineno;
    return true;
}

static bool
add_business(struct load_ctx *ctx, struct caller *c, const char *id)
{
    if (c->nbusinesses == c->cap) {
        size_t cap = c->cap > 0 ? c->cap * 2 : 4;
        char(*more)[UUID_LEN + 1] = realloc(c->businesses, cap * sizeof(*more));

        if (more == NULL) {
            fail(ctx, ctx->rd.lineno, c, KEY_BUSINESSES, "out of memory");
            return false;
        }
        c->businesses = more;
        c->cap = cap;
    }
    for (size_t i = 0; i <= UUID_LEN; i++) {
        c->businesses[c->nbusinesses][i] = (char)tolower((unsigned char)id[i]);
    }
    c->nbusinesses++;
    return true;
}

/* One comma-separated item (P, LEN bytes, trimmed), number NTH in line. */
static bool
add_item(struct load_ctx *ctx, struct caller *c, const char *p, size_t len,
         int nth)
{
    char id[UUID_LEN + 1];

    if (len == 0) {
        fail(ctx, ctx->rd.lineno, c, KEY_BUSINESSES,
             "item %d is empty (a stray comma?)", nth);
        return false;
    }
    if (len == 1 && p[0] == '*') {
        if (c->nbusinesses > 0 || c->all) {
            fail(ctx, ctx->rd.lineno, c, KEY_BUSINESSES,
                 "* allows every business and must stand alone");
            return false;
        }
        c->all = true;
        return true;
    }
    if (c->all) {
        fail(ctx, ctx->rd.lineno, c, KEY_BUSINESSES,
             "* allows every business and must stand alone");
        return false;
    }
    if (len == UUID_LEN) {
        memcpy(id, p, len);
        id[len] = '\0';
    }
    if (len != UUID_LEN || !agw_is_uuid(id)) {
        fail(ctx, ctx->rd.lineno, c, KEY_BUSINESSES,
             "item %d is not a business id (a UUID: 8-4-4-4-12 hex digits) "
             "nor *",
             nth);
        return false;
    }
    return add_business(ctx, c, id);
}

static bool
add_businesses(struct load_ctx *ctx, struct caller *c, const char *value)
{
    const char *p = value;
    int nth = 1;

    if (value[0] == '\0') {
        fail(ctx, ctx->rd.lineno, c, KEY_BUSINESSES,
             "must list business ids, or be * for every business");
        return false;
    }
    if (c->businesses_line == 0) {
        c->businesses_line = ctx->rd.lineno;
    }
    for (;;) {
        const char *comma = strchr(p, ',');
        const char *end = comma != NULL ? comma : p + strlen(p);

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }
        while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
            end--;
        }
        if (!add_item(ctx, c, p, (size_t)(end - p), nth++)) {
            return false;
        }
        if (comma == NULL) {
            return true;
        }
        p = comma + 1;
    }
}

static bool
set_cert_hash(struct load_ctx *ctx, struct caller *c, const char *value)
{
    const struct agw_auth *a = ctx->auth;

    if (c->cert_hash_line != 0) {
        fail(ctx, ctx->rd.lineno, c, KEY_CERT_HASH,
             "duplicate key (first set on line %d)", c->cert_hash_line);
        return false;
    }
    if (!decode_hash(value, c->cert_hash)) {
        fail(ctx, ctx->rd.lineno, c, KEY_CERT_HASH,
             "must be 64 hex digits: the SHA-256 of the DER certificate "
             "(openssl x509 -in CERT -outform DER | sha256sum)");
        return false;
    }
    for (size_t i = 0; i + 1 < a->n; i++) {
        if (a->callers[i].cert_hash_line != 0 &&
            memcmp(a->callers[i].cert_hash, c->cert_hash, HASH_LEN) == 0) {
            fail(ctx, ctx->rd.lineno, c, KEY_CERT_HASH,
                 "same certificate as caller [%s] (line %d)",
                 a->callers[i].name, a->callers[i].cert_hash_line);
            return false;
        }
    }
    c->cert_hash_line = ctx->rd.lineno;
    return true;
}

/* A URI or DNS name: visible ASCII, no blanks. */
static bool
san_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n >= AGW_PEER_SAN_LEN) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f) {
            return false;
        }
    }
    return true;
}

static bool
set_cert_san(struct load_ctx *ctx, struct caller *c, const char *value)
{
    const struct agw_auth *a = ctx->auth;

    if (c->cert_san_line != 0) {
        fail(ctx, ctx->rd.lineno, c, KEY_CERT_SAN,
             "duplicate key (first set on line %d)", c->cert_san_line);
        return false;
    }
    if (!san_ok(value)) {
        fail(ctx, ctx->rd.lineno, c, KEY_CERT_SAN,
             "must be a URI or DNS name of 1 to %d visible ASCII "
             "characters (a subjectAltName of the certificate)",
             AGW_PEER_SAN_LEN - 1);
        return false;
    }
    for (size_t i = 0; i + 1 < a->n; i++) {
        if (a->callers[i].cert_san != NULL &&
            strcasecmp(a->callers[i].cert_san, value) == 0) {
            fail(ctx, ctx->rd.lineno, c, KEY_CERT_SAN,
                 "same name as caller [%s] (line %d)", a->callers[i].name,
                 a->callers[i].cert_san_line);
            return false;
        }
    }
    c->cert_san = strdup(value);
    if (c->cert_san == NULL) {
        fail(ctx, ctx->rd.lineno, c, KEY_CERT_SAN, "out of memory");
        return false;
    }
    c->cert_san_line = ctx->rd.lineno;
    return true;
}

/* class = interactive | batch (SPEC §11). */
static bool
set_class(struct load_ctx *ctx, struct caller *c, const char *value)
{
    if (c->class_line != 0) {
        fail(ctx, ctx->rd.lineno, c, KEY_CLASS,
             "duplicate key (first set on line %d)", c->class_line);
        return false;
    }
    if (strcmp(value, "interactive") != 0 && strcmp(value, "batch") != 0) {
        fail(ctx, ctx->rd.lineno, c, KEY_CLASS, "must be interactive or batch");
        return false;
    }
    c->batch = strcmp(value, "batch") == 0;
    c->class_line = ctx->rd.lineno;
    return true;
}

/* max_rate = calls/s to Connectly, fleet-wide (SPEC §11). */
static bool
set_max_rate(struct load_ctx *ctx, struct caller *c, const char *value)
{
    char *end = NULL;
    double v;

    if (c->max_rate_line != 0) {
        fail(ctx, ctx->rd.lineno, c, KEY_MAX_RATE,
             "duplicate key (first set on line %d)", c->max_rate_line);
        return false;
    }
    errno = 0;
    v = strtod(value, &end);
    if (errno != 0 || end == value || *end != '\0' || !(v > 0) ||
        v > MAX_RATE_MAX) {
        fail(ctx, ctx->rd.lineno, c, KEY_MAX_RATE,
             "must be a number of calls per second above 0 and at most "
             "%.0f",
             MAX_RATE_MAX);
        return false;
    }
    c->max_rate = v;
    c->max_rate_line = ctx->rd.lineno;
    return true;
}

/* ------------------------------------------------------------ parsing */

static int
on_key(void *user, const char *section, const char *name, const char *value)
{
    struct load_ctx *ctx = user;
    struct caller *c = current(ctx);

    (void)section; /* inih truncates long names: ours come from the reader */
    if (ctx->rd.failed) {
        return 0;
    }
    if (c == NULL) {
        fail(ctx, ctx->rd.lineno, NULL, name,
             "key outside any [caller] section");
        return 0;
    }
    if (strcmp(name, KEY_HASH) == 0) {
        return set_hash(ctx, c, value);
    }
    if (strcmp(name, KEY_BUSINESSES) == 0) {
        return add_businesses(ctx, c, value);
    }
    if (strcmp(name, KEY_CERT_HASH) == 0) {
        return set_cert_hash(ctx, c, value);
    }
    if (strcmp(name, KEY_CERT_SAN) == 0) {
        return set_cert_san(ctx, c, value);
    }
    if (strcmp(name, KEY_CLASS) == 0) {
        return set_class(ctx, c, value);
    }
    if (strcmp(name, KEY_MAX_RATE) == 0) {
        return set_max_rate(ctx, c, value);
    }
    fail(ctx, ctx->rd.lineno, c, name,
         "unknown key (a caller has " KEY_HASH ", " KEY_CERT_SAN
         ", " KEY_CERT_HASH ", " KEY_BUSINESSES ", " KEY_CLASS
         " and " KEY_MAX_RATE ")");
    return 0;
}

/* The reader's own problems, reported as the loader's. */
static void
reader_problem(void *user, int line, const char *problem)
{
    fail(user, line, NULL, NULL, "%s", problem);
}

static bool
parse_text(struct load_ctx *ctx)
{
    ctx->rd.report = reader_problem;
    ctx->rd.section = start_caller;
    ctx->rd.user = ctx;
    return agw_ini_parse(&ctx->rd, on_key, "[name] or key = value");
}

static bool
check_complete(struct load_ctx *ctx)
{
    const struct agw_auth *a = ctx->auth;

    if (a->n == 0) {
        fail(ctx, 0, NULL, NULL,
             "no callers: add a [name] section with " KEY_HASH
             " and " KEY_BUSINESSES);
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        const struct caller *c = &a->callers[i];

        if (c->hash_line == 0 && c->cert_hash_line == 0 &&
            c->cert_san_line == 0) {
            fail(ctx, c->line, c, KEY_HASH,
                 "missing (a caller needs " KEY_HASH ", " KEY_CERT_SAN
                 " or " KEY_CERT_HASH ")");
            return false;
        }
        if (c->businesses_line == 0) {
            fail(ctx, c->line, c, KEY_BUSINESSES,
                 "missing (list business ids, or * for every business)");
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------ reading */

/* Whoever may write the file may add a caller: refused. Only hashes are
 * inside, so a file others may read is worth a warning, no more; a group
 * may read it (the packaged layout is root:asset-gateway 0640). */
static bool
check_mode(struct load_ctx *ctx, mode_t mode)
{
    if (agw_mode_writable_by_others(mode)) {
        fail(ctx, 0, NULL, NULL,
             "writable by group or others (mode %04o): they could add a "
             "caller; chmod 600 it",
             (unsigned)(mode & 07777));
        return false;
    }
    if (mode & S_IROTH) {
        log_warn("clients file %s is readable by group or others (mode "
                 "%04o); chmod 640 it",
                 ctx->path, (unsigned)(mode & 07777));
    }
    return true;
}

static bool
read_file(struct load_ctx *ctx, char **buf)
{
    char why[256];
    mode_t mode = 0;

    if (!agw_ini_read_file(ctx->path, CLIENTS_MAX_BYTES, buf, &ctx->rd.len,
                           &mode, why, sizeof(why))) {
        fail(ctx, 0, NULL, NULL, "%s", why);
        return false;
    }
    ctx->rd.buf = *buf;
    return check_mode(ctx, mode);
}

/* ------------------------------------------------------------ public */

struct agw_auth *
agw_auth_load(const char *path, char *err, size_t errlen)
{
    struct agw_auth *a = calloc(1, sizeof(*a));
    char *buf = NULL;
    struct load_ctx ctx = {
        .auth = a, .path = path, .err = err, .errlen = errlen};
    bool ok;

    if (errlen > 0) {
        err[0] = '\0';
    }
    if (a == NULL) {
        fail(&ctx, 0, NULL, NULL, "out of memory");
        ok = false;
    } else {
        ok = read_file(&ctx, &buf) && parse_text(&ctx) && check_complete(&ctx);
    }
    free(buf);
    if (!ok) {
        agw_auth_free(a);
        return NULL;
    }
    return a;
}

void
agw_auth_free(struct agw_auth *a)
{
    if (a == NULL ||
        atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) > 0) {
        return;
    }
    for (size_t i = 0; i < a->n; i++) {
        free(a->callers[i].businesses);
        free(a->callers[i].cert_san);
    }
    if (a->callers != NULL) {
        OPENSSL_cleanse(a->callers, a->cap * sizeof(*a->callers));
    }
    free(a->callers);
    free(a);
}

struct agw_auth *
agw_auth_ref(struct agw_auth *a)
{
    if (a != NULL) {
        atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    }
    return a;
}

size_t
agw_auth_count(const struct agw_auth *a)
{
    return a != NULL ? a->n : 0;
}

/*
 * "Bearer <token>": scheme case-insensitive (RFC 7235 §2.1), one or more
 * blanks, then visible ASCII up to the end (trailing blanks allowed).
 */
static bool
bearer_token(const char *h, const char **token, size_t *len)
{
    const char *t;

    if (h == NULL) {
        return false;
    }
    while (*h == ' ' || *h == '\t') {
        h++;
    }
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) {
        return false;
    }
    h += 6;
    while (*h == ' ' || *h == '\t') {
        h++;
    }
    t = h;
    while ((unsigned char)*h > 0x20 && (unsigned char)*h < 0x7f) {
        h++;
    }
    *token = t;
    *len = (size_t)(h - t);
    while (*h == ' ' || *h == '\t') {
        h++;
    }
    return *len > 0 && *h == '\0';
}

/*
 * Index + 1 of the caller whose hash is MD, 0 when none. Every entry is
 * compared, with no branch on the outcome, so the time taken does not
 * say which entry (or which prefix) matched.
 */
static size_t
find_hash(const struct agw_auth *a, const unsigned char md[HASH_LEN])
{
    size_t found = 0;

    for (size_t i = 0; i < a->n; i++) {
        size_t eq =
            (size_t)(a->callers[i].hash_line != 0 &&
                     CRYPTO_memcmp(a->callers[i].hash, md, HASH_LEN) == 0);
        size_t mask = (size_t)0 - eq;

        found = (found & ~mask) | ((i + 1) & mask);
    }
    return found;
}

static bool
business_allowed(const struct caller *c, const char *business_id)
{
    if (c->all || business_id == NULL) {
        return true;
    }
    for (size_t i = 0; i < c->nbusinesses; i++) {
        if (strcasecmp(c->businesses[i], business_id) == 0) {
            return true;
        }
    }
    return false;
}

enum agw_auth_result
agw_auth_check(const struct agw_auth *a, const char *authorization,
               const char *business_id, const char **caller_name)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const char *token;
    size_t len, found = 0;
    const struct caller *c;

    if (caller_name != NULL) {
        *caller_name = NULL;
    }
    if (!bearer_token(authorization, &token, &len)) {
        return AGW_AUTH_MISSING;
    }
    /* Only out of memory fails here: refusing is the safe answer. */
    if (a != NULL &&
        EVP_Digest(token, len, md, &mdlen, EVP_sha256(), NULL) == 1 &&
        mdlen == HASH_LEN) {
        found = find_hash(a, md);
    }
    OPENSSL_cleanse(md, sizeof(md));
    if (found == 0) {
        return AGW_AUTH_UNKNOWN;
    }
    c = &a->callers[found - 1];
    if (caller_name != NULL) {
        *caller_name = c->name;
    }
    return business_allowed(c, business_id) ? AGW_AUTH_OK : AGW_AUTH_FORBIDDEN;
}

/* ------------------------------------------------------------ certs */

static bool
names_caller(const struct caller *c, const struct agw_peer_cert *cert)
{
    if (c->cert_hash_line != 0 &&
        memcmp(c->cert_hash, cert->sha256, HASH_LEN) == 0) {
        return true;
    }
    return false;
}

/* A DNS name compares without regard to case; a URI exactly (its
 * scheme and host could differ in case, but SPIFFE ids never do). */
static bool
san_matches(const char *want, const char *san)
{
    if (strchr(want, ':') != NULL) {
        return strcmp(want, san) == 0;
    }
    return strcasecmp(want, san) == 0;
}

static const struct caller *
find_cert(const struct agw_auth *a, const struct agw_peer_cert *cert)
{
    for (size_t i = 0; a != NULL && i < a->n; i++) {
        if (names_caller(&a->callers[i], cert)) {
            return &a->callers[i];
        }
    }
    for (size_t i = 0; a != NULL && i < a->n; i++) {
        const struct caller *c = &a->callers[i];

        for (size_t j = 0; c->cert_san != NULL && j < cert->nsans; j++) {
            if (san_matches(c->cert_san, cert->sans[j])) {
                return c;
            }
        }
    }
    return NULL;
}

enum agw_auth_result
agw_auth_identify(const struct agw_auth *a, int mode, const char *authorization,
                  const struct agw_peer_cert *cert, const char *business_id,
                  const char **caller_name)
{
    const struct caller *c = cert != NULL ? find_cert(a, cert) : NULL;
    enum agw_auth_result res;

    if (caller_name != NULL) {
        *caller_name = NULL;
    }
    if (mode == AGW_AUTH_TOKEN) {
        return agw_auth_check(a, authorization, business_id, caller_name);
    }
    if (c == NULL && mode == AGW_AUTH_MTLS) {
        return cert == NULL ? AGW_AUTH_NO_CERT : AGW_AUTH_UNKNOWN_CERT;
    }
    if (c == NULL) {
        res = agw_auth_check(a, authorization, business_id, caller_name);
        return res == AGW_AUTH_MISSING && cert != NULL ? AGW_AUTH_UNKNOWN_CERT
                                                       : res;
    }
    if (caller_name != NULL) {
        *caller_name = c->name;
    }
    return business_allowed(c, business_id) ? AGW_AUTH_OK : AGW_AUTH_FORBIDDEN;
}

bool
agw_auth_policy(const struct agw_auth *a, const char *caller_name,
                struct agw_caller_policy *out)
{
    const struct caller *c;

    *out = (struct agw_caller_policy){false, 0};
    if (a == NULL || caller_name == NULL) {
        return false;
    }
    c = find_caller(a, caller_name, strlen(caller_name));
    if (c == NULL) {
        return false;
    }
    out->batch = c->batch;
    out->max_rate = c->max_rate;
    return true;
}
