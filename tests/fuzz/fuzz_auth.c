/*
 * fuzz_auth.c - libFuzzer target: the input as a clients file
 * (agw_auth_load) and as an Authorization header and business id
 * (agw_auth_check against a fixed table).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "log.h"

#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_auth: %s:%d: %s\n", __FILE__, __LINE__,      \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define BIZ "550e8400-e29b-41d4-a716-446655440000"

/* sha256("test") and sha256("fuzz"). */
static const char fixed_table[] =
    "[one]\n"
    "token_sha256 = "
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n"
    "businesses = " BIZ "\n"
    "[all]\n"
    "token_sha256 = "
    "93850b707585e404e4951a3ddc1f05a34b3d4f5fc081d616f46d8a2e8f1c8e68\n"
    "businesses = *\n";

static int memfd = -1;
static char path[64];
static struct agw_auth *fixed;

static void
put_bytes(const void *data, size_t size)
{
    REQUIRE(ftruncate(memfd, 0) == 0);
    REQUIRE(size == 0 || pwrite(memfd, data, size, 0) == (ssize_t)size);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char err[512];

    (void)argc;
    (void)argv;
    agw_log_level = -1;
    memfd = memfd_create("fuzz_auth", MFD_CLOEXEC);
    if (memfd < 0 || fchmod(memfd, 0600) != 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
    put_bytes(fixed_table, sizeof(fixed_table) - 1);
    fixed = agw_auth_load(path, err, sizeof(err));
    if (fixed == NULL) {
        fprintf(stderr, "fuzz_auth: fixed table: %s\n", err);
        abort();
    }
    return 0;
}

static void
check_answer(const struct agw_auth *a, const char *header, const char *biz)
{
    const char *name = "unset";
    enum agw_auth_result r = agw_auth_check(a, header, biz, &name);

    switch (r) {
    case AGW_AUTH_OK:
    case AGW_AUTH_FORBIDDEN:
        REQUIRE(name != NULL && name[0] != '\0');
        REQUIRE(strlen(name) <= AGW_AUTH_NAME_MAX);
        break;
    case AGW_AUTH_MISSING:
    case AGW_AUTH_UNKNOWN:
        REQUIRE(name == NULL);
        break;
    default:
        REQUIRE(!"result out of range");
    }
}

static void
load_input(const uint8_t *data, size_t size)
{
    char err[512];
    struct agw_auth *a;

    put_bytes(data, size);
    err[0] = 'x';
    a = agw_auth_load(path, err, sizeof(err));
    if (a == NULL) {
        REQUIRE(strncmp(err, path, strlen(path)) == 0);
        return;
    }
    REQUIRE(agw_auth_count(a) >= 1);
    check_answer(a, "Bearer test", BIZ);
    check_answer(a, "Bearer fuzz", "6ba7b810-9dad-11d1-80b4-00c04fd430c8");
    check_answer(a, "Bearer test", NULL);
    agw_auth_free(a);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    load_input(data, size);
    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    check_answer(fixed, s, BIZ);
    check_answer(fixed, s, NULL);
    check_answer(fixed, "Bearer test", s);
    free(s);
    return 0;
}
