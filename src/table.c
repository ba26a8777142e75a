/*
 * table.c - chained hash table from strings to pointers (FNV-1a hash,
 * power-of-two bucket count, doubles at 3/4 load).
 */
#include "table.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MIN_BUCKETS 16

struct agw_table_node {
    struct agw_table_node *chain; /* next in the same bucket */
    uint64_t hash;
    void *value;
    char key[];
};

struct agw_table {
    struct agw_table_node **buckets;
    size_t nbuckets; /* a power of two */
    size_t count;
};

uint64_t
agw_table_hash(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(1099511628211);
    }
    return h;
}

/* The link that points at KEY's node, or the NULL at its chain's end. */
static struct agw_table_node **
slot_of(const struct agw_table *t, const char *key, uint64_t hash)
{
    struct agw_table_node **p = &t->buckets[hash & (t->nbuckets - 1)];

    while (*p != NULL && ((*p)->hash != hash || strcmp((*p)->key, key) != 0)) {
        p = &(*p)->chain;
    }
    return p;
}

struct agw_table *
agw_table_new(size_t expected)
{
    struct agw_table *t = calloc(1, sizeof(*t));
    size_t n = MIN_BUCKETS;

    if (t == NULL) {
        return NULL;
    }
    /* Room for EXPECTED below the growth threshold. */
    while (n - n / 4 < expected && n < SIZE_MAX / 4) {
        n *= 2;
    }
    t->buckets = calloc(n, sizeof(*t->buckets));
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    t->nbuckets = n;
    return t;
}

void
agw_table_free(struct agw_table *t)
{
    if (t == NULL) {
        return;
    }
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct agw_table_node *n = t->buckets[i];

        while (n != NULL) {
            struct agw_table_node *chain = n->chain;

            free(n);
            n = chain;
        }
    }
    free(t->buckets);
    free(t);
}

void *
agw_table_get(const struct agw_table *t, const char *key)
{
    struct agw_table_node *n = *slot_of(t, key, agw_table_hash(key));

    return n != NULL ? n->value : NULL;
}

/* Doubles the buckets; on allocation failure keeps the longer chains. */
static void
grow(struct agw_table *t)
{
    size_t n = t->nbuckets * 2;
    struct agw_table_node **b = calloc(n, sizeof(*b));

    if (b == NULL) {
        return;
    }
    for (size_t i = 0; i < t->nbuckets; i++) {
        struct agw_table_node *e = t->buckets[i];

        while (e != NULL) {
            struct agw_table_node *chain = e->chain;

            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = chain;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

bool
agw_table_put(struct agw_table *t, const char *key, void *value)
{
    uint64_t hash = agw_table_hash(key);
    struct agw_table_node **slot = slot_of(t, key, hash);
    size_t klen;

    if (*slot != NULL) {
        (*slot)->value = value;
        return true;
    }
    klen = strlen(key);
    *slot = malloc(sizeof(**slot) + klen + 1);
    if (*slot == NULL) {
        return false;
    }
    (*slot)->chain = NULL;
    (*slot)->hash = hash;
    (*slot)->value = value;
    memcpy((*slot)->key, key, klen + 1);
    t->count++;
    if (t->count > t->nbuckets - t->nbuckets / 4) {
        grow(t);
    }
    return true;
}

void *
agw_table_remove(struct agw_table *t, const char *key)
{
    struct agw_table_node **slot = slot_of(t, key, agw_table_hash(key));
    struct agw_table_node *n = *slot;
    void *value;

    if (n == NULL) {
        return NULL;
    }
    *slot = n->chain;
    value = n->value;
    free(n);
    t->count--;
    return value;
}

size_t
agw_table_count(const struct agw_table *t)
{
    return t->count;
}

void
agw_table_iter_init(const struct agw_table *t, struct agw_table_iter *it)
{
    it->t = t;
    it->bucket = 0;
    it->next = NULL;
}

bool
agw_table_next(struct agw_table_iter *it, const char **key, void **value)
{
    struct agw_table_node *n = it->next;

    while (n == NULL && it->bucket < it->t->nbuckets) {
        n = it->t->buckets[it->bucket++];
    }
    if (n == NULL) {
        return false;
    }
    /* Fetched now, so the caller may free N by removing it. */
    it->next = n->chain;
    if (key != NULL) {
        *key = n->key;
    }
    if (value != NULL) {
        *value = n->value;
    }
    return true;
}
