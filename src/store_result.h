/*
 * store_result.h - what a lookup of a stored answer yields: the store's
 * (store.h) and its Redis tier's (store_redis.h), which store.c passes
 * on as it comes.
 */
#ifndef AGW_STORE_RESULT_H
#define AGW_STORE_RESULT_H

#include <stddef.h>

enum agw_store_result { AGW_STORE_HIT, AGW_STORE_MISS, AGW_STORE_ERROR };

/*
 * Result of a lookup. On HIT, BODY (LEN bytes, not NUL-terminated is
 * allowed) and STATUS are valid only during the callback: copy them.
 */
typedef void (*agw_store_get_cb)(enum agw_store_result result, int status,
                                 const char *body, size_t len, void *arg);

#endif
