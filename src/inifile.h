/*
 * inifile.h - an INI file through Debian's libinih with line numbers: the
 * whole file read into memory, then fed to inih by our own line reader.
 */
#ifndef AGW_INIFILE_H
#define AGW_INIFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <ini.h>

/*
 * Reads the regular file PATH whole. On success *BUF is a malloc'ed buffer
 * the caller frees (MAX + 1 bytes, the file in the first *LEN) and *MODE,
 * unless MODE is NULL, the file's st_mode. The open does not block: a FIFO
 * is refused, not waited on. On failure *BUF is NULL, *LEN 0, and ERR
 * (ERRLEN bytes) gets the problem without the file name, such as
 * "cannot read: not a regular file" or "larger than MAX bytes".
 */
bool agw_ini_read_file(const char *path, size_t max, char **buf, size_t *len,
                       mode_t *mode, char *err, size_t errlen);

/*
 * One parse. The caller sets BUF, LEN, REPORT, SECTION and USER and zeroes
 * the rest; BUF is not owned and must outlive agw_ini_parse(). Only the
 * first problem found, by the reader or by the caller, is reported.
 */
struct agw_ini_reader {
    const char *buf; /* the file's bytes; not owned */
    size_t len;
    size_t pos;   /* where the next line starts */
    int lineno;   /* of the line the reader last handed to inih */
    bool failed;  /* a problem was found: reading stops */
    int err_line; /* line of that problem, 0 for the whole file */
    /* Reports PROBLEM (a message without the file name) found on LINE,
     * recording it with agw_ini_first_problem() as the caller's own
     * failures do: that is what stops the parse. */
    void (*report)(void *user, int line, const char *problem);
    /* May be NULL. Sees every line starting with '[' (N bytes, leading
     * blanks and a BOM dropped, no NUL in it), also a section inih never
     * tells the handler about because no key follows. Returns false, after
     * reporting, to stop the parse. */
    bool (*section)(void *user, const char *line, size_t n);
    void *user; /* passed to REPORT, SECTION and the handler; not owned */
};

/*
 * Records a problem found on LINE (0: the whole file). True when it is the
 * first, which the caller then reports; false when one is already known.
 */
bool agw_ini_first_problem(struct agw_ini_reader *rd, int line);

/*
 * Runs inih over RD's bytes; HANDLER gets RD->user and may read RD->lineno
 * for the line of the key. A line inih cannot parse is reported as
 * "syntax error: expected " EXPECTED. Refuses a NUL byte and a line longer
 * than inih's buffer holds. True when no problem was found.
 */
bool agw_ini_parse(struct agw_ini_reader *rd, ini_handler handler,
                   const char *expected);

#endif
