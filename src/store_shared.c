/*
 * store_shared.c - one synchronous store (memory) shared by every worker
 * thread: each call under one mutex, callbacks after it is released.
 */
#include "store_shared.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

/* Answers up to this size are copied to the stack; bigger ones to the heap. */
#define STACK_COPY_MAX 4096

struct store_shared {
    struct agw_store base; /* first: the ops receive &base */
    struct agw_store *inner;
    pthread_mutex_t lock;
    atomic_int refs;
};

/* What INNER answered, copied while the lock is held. */
struct answer {
    enum agw_store_result result;
    int status;
    char *body;
    size_t len;
    char *heap;
    char stack[STACK_COPY_MAX];
};

static struct store_shared *
shared_of(struct agw_store *store)
{
    return (struct store_shared *)store;
}

static void
on_inner_get(enum agw_store_result result, int status, const char *body,
             size_t len, void *arg)
{
    struct answer *a = arg;

    a->result = result;
    a->status = status;
    a->len = 0;
    a->body = a->stack;
    if (result != AGW_STORE_HIT || body == NULL) {
        return;
    }
    if (len > sizeof(a->stack)) {
        a->heap = malloc(len);
        a->body = a->heap;
    }
    if (a->body == NULL) {
        a->result = AGW_STORE_ERROR; /* out of memory: as if it failed */
        return;
    }
    memcpy(a->body, body, len);
    a->len = len;
}

/* INNER's answer for KEY into A (free A->heap afterwards). */
static void
look_up(struct store_shared *s, const char *key, struct answer *a)
{
    a->result = AGW_STORE_ERROR;
    a->heap = NULL;
    pthread_mutex_lock(&s->lock);
    s->inner->ops->get(s->inner, key, on_inner_get, a);
    pthread_mutex_unlock(&s->lock);
}

static void
shared_get(struct agw_store *store, const char *key, agw_store_get_cb cb,
           void *arg)
{
    struct answer a;

    look_up(shared_of(store), key, &a);
    cb(a.result, a.status, a.body, a.len, arg);
    free(a.heap);
}

static bool
shared_peek(struct agw_store *store, const char *key, agw_store_get_cb cb,
            void *arg)
{
    struct answer a;

    look_up(shared_of(store), key, &a);
    if (a.result == AGW_STORE_HIT) {
        cb(a.result, a.status, a.body, a.len, arg);
    }
    free(a.heap);
    return a.result == AGW_STORE_HIT;
}

static void
shared_put(struct agw_store *store, const char *key, int status,
           const char *body, size_t len, long ttl_s)
{
    struct store_shared *s = shared_of(store);

    pthread_mutex_lock(&s->lock);
    s->inner->ops->put(s->inner, key, status, body, len, ttl_s);
    pthread_mutex_unlock(&s->lock);
}

static void
shared_destroy(struct agw_store *store)
{
    struct store_shared *s = shared_of(store);

    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1) {
        return;
    }
    s->inner->ops->destroy(s->inner);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static const struct agw_store_ops shared_ops = {
    .name = "memory",
    .get = shared_get,
    .peek = shared_peek,
    .put = shared_put,
    .destroy = shared_destroy,
};

struct agw_store *
agw_store_shared_new(struct agw_store *inner)
{
    struct store_shared *s;

    if (inner == NULL) {
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL || pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        inner->ops->destroy(inner);
        return NULL;
    }
    s->base.ops = &shared_ops;
    s->inner = inner;
    atomic_init(&s->refs, 1);
    return &s->base;
}

struct agw_store *
agw_store_shared_ref(struct agw_store *store)
{
    atomic_fetch_add_explicit(&shared_of(store)->refs, 1, memory_order_relaxed);
    return store;
}
