/*
 * sandbox_store.c - the sandbox's "CDN": fetched asset bytes kept in
 * memory by asset id, bounded in count and bytes (oldest evicted first).
 */
#include <stdlib.h>
#include <string.h>

#include "sandbox.h"

struct asset {
    char *ctype;
    unsigned char *data;
    size_t len;
};

struct sbx_store {
    struct sbx_map *assets; /* id -> struct asset */
    size_t max_assets;
    size_t max_bytes;
    size_t bytes;
};

static void
asset_free(void *p)
{
    struct asset *a = p;

    free(a->ctype);
    free(a->data);
    free(a);
}

struct sbx_store *
sbx_store_new(size_t max_assets, size_t max_bytes)
{
    struct sbx_store *store = calloc(1, sizeof(*store));

    if (store == NULL) {
        return NULL;
    }
    store->assets = sbx_map_new(asset_free);
    if (store->assets == NULL) {
        free(store);
        return NULL;
    }
    store->max_assets = max_assets;
    store->max_bytes = max_bytes;
    return store;
}

void
sbx_store_free(struct sbx_store *store)
{
    if (store == NULL) {
        return;
    }
    sbx_map_free(store->assets);
    free(store);
}

static struct asset *
asset_new(const char *ctype, const unsigned char *data, size_t len)
{
    struct asset *a = calloc(1, sizeof(*a));

    if (a == NULL) {
        return NULL;
    }
    a->ctype = strdup(ctype);
    a->data = malloc(len > 0 ? len : 1);
    if (a->ctype == NULL || a->data == NULL) {
        asset_free(a);
        return NULL;
    }
    memcpy(a->data, data, len);
    a->len = len;
    return a;
}

static void
evict(struct sbx_store *store)
{
    while (sbx_map_count(store->assets) > store->max_assets ||
           store->bytes > store->max_bytes) {
        struct asset *old = sbx_map_oldest(store->assets);

        if (old == NULL) {
            break;
        }
        store->bytes -= old->len;
        sbx_map_drop_oldest(store->assets);
    }
}

int
sbx_store_put(struct sbx_store *store, const char *id, const char *ctype,
              const unsigned char *data, size_t len)
{
    const struct asset *old;
    size_t old_len;
    struct asset *a;

    if (len > store->max_bytes) {
        return -1;
    }
    a = asset_new(ctype, data, len);
    if (a == NULL) {
        return -1;
    }
    old = sbx_map_get(store->assets, id);
    old_len = old != NULL ? old->len : 0;
    if (sbx_map_put(store->assets, id, a) != 0) {
        asset_free(a);
        return -1;
    }
    store->bytes -= old_len; /* the map has released the replaced asset */
    store->bytes += len;
    evict(store);
    return 0;
}

int
sbx_store_get(const struct sbx_store *store, const char *id, const char **ctype,
              const unsigned char **data, size_t *len)
{
    const struct asset *a = sbx_map_get(store->assets, id);

    if (a == NULL) {
        return -1;
    }
    *ctype = a->ctype;
    *data = a->data;
    *len = a->len;
    return 0;
}
