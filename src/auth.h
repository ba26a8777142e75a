/*
 * auth.h - caller authentication (SPEC §2): the clients file, loaded into
 * an immutable table, and the check of an "Authorization: Bearer" header.
 */
#ifndef AGW_AUTH_H
#define AGW_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The clients file is INI, one section per caller:
 *
 *     [billing-service]
 *     token_sha256 = 9f86d081884c7d65...15b0f00a08   (64 hex digits)
 *     businesses = 550e8400-e29b-41d4-a716-446655440000, 6ba7b810-...
 *
 * A section name (the caller's name, shown in logs) is 1 to
 * AGW_AUTH_NAME_MAX characters of [A-Za-z0-9._:-]. token_sha256 is the
 * SHA-256 of the caller's token in hex, never the token itself; an
 * operator makes it with
 *
 *     printf %s "$TOKEN" | sha256sum
 *
 * (printf, not echo: a trailing newline would be hashed too).
 * businesses lists business ids (UUIDs, any case) separated by commas, or
 * is `*` alone for every business. A line holds at most 197 characters,
 * so a long list may be split over several `businesses =` lines of one
 * section: they add up. Each caller needs both keys; names and token
 * hashes must be unique; anything else (an unknown key, bad hex, an
 * invalid id) fails the load. Values never appear in error messages.
 */

#define AGW_AUTH_NAME_MAX 48

/*
 * Callers identified by client certificate (SPEC §9, [auth] mode = mtls
 * or any) name it in their section instead of, or besides, a token:
 *
 *     cert_san = spiffe://example.org/ns/prod/sa/uploader
 *     cert_sha256 = 3b1f...  (SHA-256 of the DER certificate, 64 hex)
 *
 * cert_san is a URI or DNS name that must be one of the certificate's
 * subjectAltNames (URI compared exactly, DNS without regard to case);
 * an operator gets cert_sha256 with
 *
 *     openssl x509 -in client.pem -outform DER | sha256sum
 *
 * At most one of each per caller, each unique across callers; a caller
 * needs businesses and at least one of token_sha256, cert_san,
 * cert_sha256.
 */
#define AGW_PEER_SANS_MAX 8
#define AGW_PEER_SAN_LEN 256

/* What a verified client certificate says (tls_server.h fills it). */
struct agw_peer_cert {
    unsigned char sha256[32];
    char sans[AGW_PEER_SANS_MAX][AGW_PEER_SAN_LEN]; /* URI and DNS */
    size_t nsans;
};

enum agw_auth_result {
    AGW_AUTH_OK = 0,
    AGW_AUTH_MISSING,     /* no header, or not "Bearer <token>": 401 code 16 */
    AGW_AUTH_UNKNOWN,     /* no caller has this token: 401 code 16 */
    AGW_AUTH_FORBIDDEN,   /* known caller, business not allowed: 403 code 7 */
    AGW_AUTH_NO_CERT,     /* mode = mtls, no verified certificate: 401/16 */
    AGW_AUTH_UNKNOWN_CERT /* verified certificate, no caller: 401/16 */
};

struct agw_auth;

/*
 * Loads the clients file PATH. On success returns a table the caller owns
 * (free with agw_auth_free()); it is never modified afterwards, so threads
 * may read it without locks and a reload can swap in a new one. On failure
 * returns NULL and writes "FILE:LINE: [caller] key: problem" (or
 * "FILE: problem" when no line applies) into ERR. A file group or others
 * may write is refused (whoever may write it may add a caller); one they
 * may only read gets a warning (log_warn): it holds only hashes.
 */
struct agw_auth *agw_auth_load(const char *path, char *err, size_t errlen);

/* Drops a holder of A (NULL is fine); the last one frees it, and the
 * names handed out by agw_auth_check() die with it. */
void agw_auth_free(struct agw_auth *a);

/* Another holder of A (one per worker thread). Returns A. */
struct agw_auth *agw_auth_ref(struct agw_auth *a);

/* Callers in the table, for the start-up log line. */
size_t agw_auth_count(const struct agw_auth *a);

/*
 * Checks the Authorization header value AUTHORIZATION (NULL when absent)
 * for BUSINESS_ID (compared case-insensitively; NULL checks the token
 * only). The scheme "Bearer" is case-insensitive (RFC 7235); the token is
 * every visible ASCII character after it. The token's hash is compared in
 * constant time against every caller. On AGW_AUTH_OK and
 * AGW_AUTH_FORBIDDEN, *CALLER_NAME (when CALLER_NAME is not NULL) points
 * to the caller's name inside A, valid until A is freed; otherwise it is
 * set to NULL. Never logs.
 */
enum agw_auth_result agw_auth_check(const struct agw_auth *a,
                                    const char *authorization,
                                    const char *business_id,
                                    const char **caller_name);

/*
 * The call's caller under [auth] MODE (enum agw_auth_mode; not NONE):
 * token checks AUTHORIZATION as agw_auth_check() does; mtls matches CERT
 * (NULL: the call came without a verified certificate) by cert_sha256,
 * then cert_san in file order; any takes a certificate that names a
 * caller, else the bearer token (and says UNKNOWN_CERT when a
 * certificate came without a token). *CALLER_NAME as agw_auth_check().
 */
enum agw_auth_result agw_auth_identify(const struct agw_auth *a, int mode,
                                       const char *authorization,
                                       const struct agw_peer_cert *cert,
                                       const char *business_id,
                                       const char **caller_name);

/*
 * Priority class and cap (SPEC §11), in a caller's section:
 *
 *     class = batch      interactive (the default) or batch
 *     max_rate = 20      calls/s to Connectly, fleet-wide; default no cap
 *
 * A batch call books an upstream slot only while the fleet's backlog is
 * at most [ratelimit] batch_max_backlog_ms; max_rate is a number above 0.
 */
struct agw_caller_policy {
    bool batch;
    double max_rate; /* 0: no cap */
};

/* The class and cap of caller CALLER_NAME in A into *OUT: true when A
 * knows the name; otherwise *OUT is interactive without a cap. */
bool agw_auth_policy(const struct agw_auth *a, const char *caller_name,
                     struct agw_caller_policy *out);

#endif
