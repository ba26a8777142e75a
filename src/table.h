/*
 * table.h - a hash table from strings to pointers: chained, grows as it
 * fills, and lets an iteration remove the entry it stands on. The one map
 * under the stores, the flight boards and single flight.
 */
#ifndef AGW_TABLE_H
#define AGW_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agw_table;
struct agw_table_node;

/*
 * Ownership: the table keeps its own copy of every key (in the entry's
 * allocation, freed with the entry) and only borrows values: it never
 * frees or reads one, so the caller frees them (iterate before
 * agw_table_free when the table held the last pointer).
 *
 * Thread-safety: none. A table shared between threads is guarded by its
 * owner's lock, every call included.
 *
 * Out of memory: agw_table_new and agw_table_put report it (NULL /
 * false) and leave the table as it was; a failed growth only makes
 * chains longer.
 */

/* An empty table sized for about EXPECTED entries (0: small). */
struct agw_table *agw_table_new(size_t expected);

/* Frees the table and its keys, not the values. NULL is a no-op. */
void agw_table_free(struct agw_table *t);

/* The value under KEY, or NULL when there is none. */
void *agw_table_get(const struct agw_table *t, const char *key);

/*
 * Sets KEY to VALUE (not NULL), replacing any value it had (the old one
 * is the caller's to free: get it first). Returns false when memory ran
 * out; the table is then unchanged. Not allowed during an iteration.
 */
bool agw_table_put(struct agw_table *t, const char *key, void *value);

/* Removes KEY; returns its value, or NULL when there was none. */
void *agw_table_remove(struct agw_table *t, const char *key);

/* Entries held. */
size_t agw_table_count(const struct agw_table *t);

/* The hash a key's bucket comes from (64-bit FNV-1a): the low bits of it
 * pick the bucket. */
uint64_t agw_table_hash(const char *key);

/*
 * Iteration, in no particular order:
 *
 *     struct agw_table_iter it;
 *     const char *key;
 *     void *value;
 *
 *     agw_table_iter_init(t, &it);
 *     while (agw_table_next(&it, &key, &value)) { ... }
 *
 * Inside the loop the current entry may be removed (agw_table_remove of
 * KEY, after which KEY is gone too: copy it first if still needed), and
 * so may entries already visited. Removing an entry not yet visited, or
 * putting anything, leaves the rest of the iteration undefined.
 */
struct agw_table_iter {
    const struct agw_table *t;
    size_t bucket;               /* next bucket to start on */
    struct agw_table_node *next; /* next entry, fetched ahead */
};

void agw_table_iter_init(const struct agw_table *t, struct agw_table_iter *it);

/* The next entry (KEY and VALUE, either may be NULL), or false at the end. */
bool agw_table_next(struct agw_table_iter *it, const char **key, void **value);

#endif
