/*
 * sandbox_map.c - a string-keyed hash map that remembers insertion order,
 * so the asset store can evict its oldest entry and counters print stably.
 */
#include <stdlib.h>
#include <string.h>

#include "sandbox.h"

struct map_entry {
    char *key;
    void *val;
    uint64_t hash;
    struct map_entry *chain; /* next in the same bucket */
    struct map_entry *older; /* insertion order */
    struct map_entry *newer;
};

struct sbx_map {
    struct map_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    struct map_entry *oldest;
    struct map_entry *newest;
    void (*free_val)(void *);
};

static uint64_t
hash_key(const char *key)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */

    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

struct sbx_map *
sbx_map_new(void (*free_val)(void *))
{
    struct sbx_map *map = calloc(1, sizeof(*map));

    if (map == NULL) {
        return NULL;
    }
    map->nbuckets = 64;
    map->buckets = calloc(map->nbuckets, sizeof(*map->buckets));
    if (map->buckets == NULL) {
        free(map);
        return NULL;
    }
    map->free_val = free_val;
    return map;
}

static struct map_entry **
find_slot(const struct sbx_map *map, const char *key, uint64_t hash)
{
    struct map_entry **slot = &map->buckets[hash & (map->nbuckets - 1)];

    while (*slot != NULL) {
        if ((*slot)->hash == hash && strcmp((*slot)->key, key) == 0) {
            break;
        }
        slot = &(*slot)->chain;
    }
    return slot;
}

static void
unlink_order(struct sbx_map *map, struct map_entry *e)
{
    if (e->older != NULL) {
        e->older->newer = e->newer;
    } else {
        map->oldest = e->newer;
    }
    if (e->newer != NULL) {
        e->newer->older = e->older;
    } else {
        map->newest = e->older;
    }
    e->older = NULL;
    e->newer = NULL;
}

static void
link_newest(struct sbx_map *map, struct map_entry *e)
{
    e->older = map->newest;
    e->newer = NULL;
    if (map->newest != NULL) {
        map->newest->newer = e;
    } else {
        map->oldest = e;
    }
    map->newest = e;
}

static void
free_entry(struct sbx_map *map, struct map_entry *e)
{
    if (map->free_val != NULL && e->val != NULL) {
        map->free_val(e->val);
    }
    free(e->key);
    free(e);
}

/* Doubling keeps chains short; a failed allocation just leaves them long. */
static void
maybe_grow(struct sbx_map *map)
{
    size_t n = map->nbuckets * 2;
    struct map_entry **b;

    if (map->count < map->nbuckets) {
        return;
    }
    b = calloc(n, sizeof(*b));
    if (b == NULL) {
        return;
    }
    for (struct map_entry *e = map->oldest; e != NULL; e = e->newer) {
        e->chain = b[e->hash & (n - 1)];
        b[e->hash & (n - 1)] = e;
    }
    free(map->buckets);
    map->buckets = b;
    map->nbuckets = n;
}

void *
sbx_map_get(const struct sbx_map *map, const char *key)
{
    struct map_entry **slot = find_slot(map, key, hash_key(key));

    return *slot != NULL ? (*slot)->val : NULL;
}

int
sbx_map_put(struct sbx_map *map, const char *key, void *val)
{
    uint64_t hash = hash_key(key);
    struct map_entry **slot = find_slot(map, key, hash);
    struct map_entry *e = *slot;

    if (e != NULL) {
        if (map->free_val != NULL && e->val != NULL && e->val != val) {
            map->free_val(e->val);
        }
        e->val = val;
        unlink_order(map, e);
        link_newest(map, e);
        return 0;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL) {
        return -1;
    }
    e->key = strdup(key);
    if (e->key == NULL) {
        free(e);
        return -1;
    }
    e->val = val;
    e->hash = hash;
    e->chain = NULL;
    *slot = e;
    link_newest(map, e);
    map->count++;
    maybe_grow(map);
    return 0;
}

int
sbx_map_drop_oldest(struct sbx_map *map)
{
    struct map_entry *e = map->oldest;
    struct map_entry **slot;

    if (e == NULL) {
        return -1;
    }
    slot = &map->buckets[e->hash & (map->nbuckets - 1)];
    while (*slot != e) {
        slot = &(*slot)->chain;
    }
    *slot = e->chain;
    unlink_order(map, e);
    map->count--;
    free_entry(map, e);
    return 0;
}

void *
sbx_map_oldest(const struct sbx_map *map)
{
    return map->oldest != NULL ? map->oldest->val : NULL;
}

size_t
sbx_map_count(const struct sbx_map *map)
{
    return map->count;
}

void
sbx_map_foreach(const struct sbx_map *map,
                void (*fn)(const char *key, void *val, void *arg), void *arg)
{
    for (struct map_entry *e = map->oldest; e != NULL; e = e->newer) {
        fn(e->key, e->val, arg);
    }
}

void
sbx_map_clear(struct sbx_map *map)
{
    struct map_entry *e = map->oldest;

    while (e != NULL) {
        struct map_entry *next = e->newer;

        free_entry(map, e);
        e = next;
    }
    memset(map->buckets, 0, map->nbuckets * sizeof(*map->buckets));
    map->oldest = NULL;
    map->newest = NULL;
    map->count = 0;
}

void
sbx_map_free(struct sbx_map *map)
{
    if (map == NULL) {
        return;
    }
    sbx_map_clear(map);
    free(map->buckets);
    free(map);
}
