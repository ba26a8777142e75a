/*
 * admin.h - the operators' listener (SPEC §12): GET /admin/status (JSON),
 * POST /admin/purge, GET /admin/ (the status page, admin_page.html), on
 * an evhttp of its own at [admin] listen; nothing else is served there,
 * and the callers' listeners never serve /admin/.
 */
#ifndef AGW_ADMIN_H
#define AGW_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

struct agw_gateway;
struct agw_store_tables;
struct agw_admin;

/*
 * Serves the admin routes on GW's loop (the first worker's: see admin.c)
 * at GW's cfg->admin_listen, which must be set. GW is borrowed and read
 * on its loop only (its cfg is the running snapshot: a reload's token
 * applies to the next request). TABLES (borrowed) are the process's
 * store tables; WORKERS is how many workers the process runs. NULL with
 * ERR on failure.
 */
struct agw_admin *agw_admin_start(struct agw_gateway *gw,
                                  struct agw_store_tables *tables, int workers,
                                  char *err, size_t errlen);

/* Stops accepting (a drain); requests in progress are answered. */
void agw_admin_stop_accepting(struct agw_admin *adm);

/* Frees ADM (NULL is fine); Redis replies still out find it gone and
 * answer nothing. Call before GW's Redis connections are freed. */
void agw_admin_free(struct agw_admin *adm);

/*
 * Whether AUTHORIZATION (the header's value, NULL when absent) is
 * "Bearer <token>" with SHA-256(token) equal to TOKEN_SHA256 (64 hex,
 * either case); compared in constant time. TOKEN_SHA256 NULL: true.
 */
bool agw_admin_token_ok(const char *token_sha256, const char *authorization);

/* The page (admin_page.html, embedded at build time). */
extern const unsigned char agw_admin_page[];
extern const size_t agw_admin_page_len;

#endif
