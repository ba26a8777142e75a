/*
 * sandbox_faults.c - fault switches tests flip through POST
 * /_sandbox/faults: added latency, forced statuses, dropped connections.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox.h"

#define MAX_LATENCY_MS 600000L
/* Absurd values included: a gateway must cap what a 429 asks for. */
#define MAX_RETRY_AFTER 99999999999L

struct sbx_faults {
    long latency_ms;   /* every create answer, until reset */
    int status;        /* 0: none */
    long status_count; /* creates left to force, -1 = all */
    long retry_after;  /* with a forced 429, -1 = no header */
    long drop_count;   /* creates left to drop, -1 = all */
    int echo_key;      /* 1: answers quote the X-API-Key they got */
};

struct sbx_faults *
sbx_faults_new(void)
{
    struct sbx_faults *faults = calloc(1, sizeof(*faults));

    if (faults != NULL) {
        sbx_faults_reset(faults);
    }
    return faults;
}

void
sbx_faults_free(struct sbx_faults *faults)
{
    free(faults);
}

void
sbx_faults_reset(struct sbx_faults *faults)
{
    faults->latency_ms = 0;
    faults->status = 0;
    faults->status_count = 0;
    faults->retry_after = -1;
    faults->drop_count = 0;
    faults->echo_key = 0;
}

/* Uses up one of COUNT (-1 never runs out); 1 when the fault applies. */
static int
take(long *count)
{
    if (*count == 0) {
        return 0;
    }
    if (*count > 0) {
        (*count)--;
    }
    return 1;
}

void
sbx_faults_next(struct sbx_faults *faults, struct sbx_fault_decision *out)
{
    memset(out, 0, sizeof(*out));
    out->retry_after = -1;
    out->latency_ms = faults->latency_ms;
    out->echo_key = faults->echo_key;
    if (take(&faults->drop_count)) {
        out->action = SBX_FAULT_DROP;
        return;
    }
    if (faults->status != 0 && take(&faults->status_count)) {
        out->action = SBX_FAULT_STATUS;
        out->status = faults->status;
        out->retry_after = faults->retry_after;
    }
}

struct fault_field {
    const char *name;
    long min;
    long max;
    int allow_minus_one;
};

static const struct fault_field fields[] = {
    {"latency_ms", 0, MAX_LATENCY_MS, 0},
    {"status", 400, 599, 0},
    {"status_count", 0, 1000000000L, 1},
    {"retry_after", 0, MAX_RETRY_AFTER, 1},
    {"drop_count", 0, 1000000000L, 1},
    {"echo_key", 0, 1, 0},
};

#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

/* Reads field I of OBJ into VAL; 1 when present, 0 absent, -1 bad. */
static int
read_field(struct json_object *obj, size_t i, long *val, char *err,
           size_t errlen)
{
    struct json_object *v;
    int64_t n;

    if (!json_object_object_get_ex(obj, fields[i].name, &v)) {
        return 0;
    }
    if (!json_object_is_type(v, json_type_int)) {
        snprintf(err, errlen, "%s must be an integer", fields[i].name);
        return -1;
    }
    n = json_object_get_int64(v);
    if ((n == -1 && fields[i].allow_minus_one) || (i == 1 && n == 0) ||
        (n >= fields[i].min && n <= fields[i].max)) {
        *val = (long)n;
        return 1;
    }
    snprintf(err, errlen, "%s out of range", fields[i].name);
    return -1;
}

static int
check_keys(struct json_object *obj, char *err, size_t errlen)
{
    json_object_object_foreach(obj, key, val)
    {
        size_t i = 0;

        (void)val;
        while (i < NFIELDS && strcmp(fields[i].name, key) != 0) {
            i++;
        }
        if (i == NFIELDS) {
            snprintf(err, errlen, "unknown fault switch %.64s", key);
            return -1;
        }
    }
    return 0;
}

int
sbx_faults_apply(struct sbx_faults *faults, struct json_object *obj, char *err,
                 size_t errlen)
{
    long v[NFIELDS];
    int has[NFIELDS];

    if (obj == NULL || !json_object_is_type(obj, json_type_object)) {
        snprintf(err, errlen, "body must be a JSON object");
        return -1;
    }
    if (check_keys(obj, err, errlen) != 0) {
        return -1;
    }
    for (size_t i = 0; i < NFIELDS; i++) {
        has[i] = read_field(obj, i, &v[i], err, errlen);
        if (has[i] < 0) {
            return -1;
        }
    }
    if (has[0]) {
        faults->latency_ms = v[0];
    }
    /* A new status starts a new episode: its count and Retry-After come
     * from this body or fall back to "all" and "no header". */
    if (has[1]) {
        faults->status = (int)v[1];
        faults->status_count = -1;
        faults->retry_after = -1;
    }
    if (has[2]) {
        faults->status_count = v[2];
    }
    if (has[3]) {
        faults->retry_after = v[3];
    }
    if (has[4]) {
        faults->drop_count = v[4];
    }
    if (has[5]) {
        faults->echo_key = (int)v[5];
    }
    return 0;
}

struct json_object *
sbx_faults_describe(const struct sbx_faults *faults)
{
    struct json_object *o = json_object_new_object();

    if (o == NULL) {
        return NULL;
    }
    json_object_object_add(o, "latency_ms",
                           json_object_new_int64(faults->latency_ms));
    json_object_object_add(o, "status", json_object_new_int(faults->status));
    json_object_object_add(o, "status_count",
                           json_object_new_int64(faults->status_count));
    json_object_object_add(o, "retry_after",
                           faults->retry_after < 0
                               ? NULL
                               : json_object_new_int64(faults->retry_after));
    json_object_object_add(o, "drop_count",
                           json_object_new_int64(faults->drop_count));
    json_object_object_add(o, "echo_key",
                           json_object_new_int(faults->echo_key));
    return o;
}
