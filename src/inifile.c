/*
 * inifile.c - reading an INI file with Debian's libinih and knowing line
 * numbers; the settings file and the clients file both go through here.
 */
#include "inifile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* inih's line buffer also holds "\r\n\0"; longer lines it would split. */
#define LINE_MAX_CHARS (INI_MAX_LINE - 3)

static bool
read_fd(int fd, size_t max, char *buf, size_t *len, mode_t *mode, char *err,
        size_t errlen)
{
    struct stat st;
    ssize_t n;

    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        agw_set_err(err, errlen, "cannot read: not a regular file");
        return false;
    }
    n = agw_read_full(fd, buf, max + 1);
    if (n < 0) {
        agw_set_err(err, errlen, "cannot read: %s", strerror(errno));
        return false;
    }
    if ((size_t)n > max) {
        agw_set_err(err, errlen, "larger than %zu bytes", max);
        return false;
    }
    *len = (size_t)n;
    if (mode != NULL) {
        *mode = st.st_mode;
    }
    return true;
}

bool
agw_ini_read_file(const char *path, size_t max, char **buf, size_t *len,
                  mode_t *mode, char *err, size_t errlen)
{
    int fd;
    bool ok;

    *buf = NULL;
    *len = 0;
    /* O_NONBLOCK: opening a FIFO must not hang start-up or a reload. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        agw_set_err(err, errlen, "cannot read: %s", strerror(errno));
        return false;
    }
    *buf = malloc(max + 1);
    if (*buf == NULL) {
        agw_set_err(err, errlen, "out of memory");
        ok = false;
    } else {
        ok = read_fd(fd, max, *buf, len, mode, err, errlen);
    }
    close(fd);
    if (!ok) {
        free(*buf);
        *buf = NULL;
        *len = 0;
    }
    return ok;
}

bool
agw_ini_first_problem(struct agw_ini_reader *rd, int line)
{
    if (rd->failed) {
        return false;
    }
    rd->failed = true;
    rd->err_line = line;
    return true;
}

/* What inih would silently mangle (long lines, NUL bytes) or never tell
 * the handler about (a section with no keys) is looked at here. */
static bool
line_ok(struct agw_ini_reader *rd, const char *p, size_t n, int num)
{
    char problem[64];

    if (memchr(p, '\0', n) != NULL) {
        rd->report(rd->user, rd->lineno, "NUL byte in line");
        return false;
    }
    if (n > LINE_MAX_CHARS || n >= (size_t)num) {
        snprintf(problem, sizeof(problem), "line longer than %d characters",
                 LINE_MAX_CHARS);
        rd->report(rd->user, rd->lineno, problem);
        return false;
    }
    if (rd->section != NULL && n > 0 && p[0] == '[') {
        return rd->section(rd->user, p, n);
    }
    return true;
}

/*
 * inih's fgets-style reader over the file in memory: counts lines
 * (Debian's inih has no INI_HANDLER_LINENO), drops a BOM and leading
 * blanks (so an indented key never continues the previous value) and
 * stops at the first problem, be it found here or by the handler.
 */
static char *
next_line(char *str, int num, void *stream)
{
    struct agw_ini_reader *rd = stream;
    const char *p = rd->buf + rd->pos;
    const char *end = rd->buf + rd->len;
    const char *nl;
    size_t n;

    if (rd->failed || p >= end) {
        return NULL;
    }
    nl = memchr(p, '\n', (size_t)(end - p));
    n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
    rd->pos += n + (nl != NULL);
    if (rd->lineno++ == 0 && n >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) {
        p += 3;
        n -= 3;
    }
    while (n > 0 && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    if (!line_ok(rd, p, n, num)) {
        return NULL;
    }
    memcpy(str, p, n);
    str[n] = '\0';
    return str;
}

bool
agw_ini_parse(struct agw_ini_reader *rd, ini_handler handler,
              const char *expected)
{
    char problem[128];
    int rc = ini_parse_stream(next_line, rd, handler, rd->user);

    /* inih reports the first bad line, be it its syntax or our handler. */
    if (rc > 0 && (!rd->failed || rc < rd->err_line)) {
        rd->failed = false;
        snprintf(problem, sizeof(problem), "syntax error: expected %s",
                 expected);
        rd->report(rd->user, rc, problem);
    } else if (rc < 0 && !rd->failed) {
        snprintf(problem, sizeof(problem), "inih failed (%d)", rc);
        rd->report(rd->user, 0, problem);
    }
    return !rd->failed;
}
