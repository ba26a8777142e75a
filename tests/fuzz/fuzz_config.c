/*
 * fuzz_config.c - libFuzzer target: the input as the daemon's settings
 * file through agw_config_load() and agw_config_free(). The loader takes
 * a path, so the bytes go to a memfd opened as /proc/self/fd/N.
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

#include "config.h"
#include "log.h"

#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_config: %s:%d: %s\n", __FILE__, __LINE__,    \
                    #cond);                                                    \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define API_KEY "fuzz-api-key-0123456789"

static int memfd = -1;
static char path[64];

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    agw_log_level = -1; /* the loader's warnings would flood the output */
    /* Without a key file in the input, the load still runs to the end. */
    setenv("ASSET_GATEWAY_API_KEY", API_KEY, 1);
    memfd = memfd_create("fuzz_config", MFD_CLOEXEC);
    if (memfd < 0 || fchmod(memfd, 0600) != 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
    return 0;
}

static void
put_input(const uint8_t *data, size_t size)
{
    REQUIRE(ftruncate(memfd, 0) == 0);
    REQUIRE(size == 0 || pwrite(memfd, data, size, 0) == (ssize_t)size);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct agw_config cfg;
    char err[512];

    put_input(data, size);
    memset(&cfg, 0, sizeof(cfg));
    err[0] = 'x';
    if (!agw_config_load(&cfg, path, err, sizeof(err))) {
        /* Every failure names the file, and never the key (unless the
         * input itself holds the key's text: values are quoted). */
        REQUIRE(strncmp(err, path, strlen(path)) == 0);
        REQUIRE(strstr(err, API_KEY) == NULL ||
                memmem(data, size, API_KEY, strlen(API_KEY)) != NULL);
        REQUIRE(cfg.listen == NULL && cfg.api_key == NULL);
        return 0;
    }
    REQUIRE(cfg.listen != NULL && cfg.base_url != NULL);
    REQUIRE(cfg.api_key != NULL && cfg.api_key[0] != '\0');
    REQUIRE(agw_config_workers(&cfg) >= 1 && cfg.max_body_bytes >= 1);
    REQUIRE(cfg.request_timeout_ms <= cfg.request_deadline_ms);
    agw_config_free(&cfg);
    REQUIRE(cfg.listen == NULL && cfg.api_key == NULL);
    return 0;
}
