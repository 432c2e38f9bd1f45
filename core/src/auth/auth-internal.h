/*
 * auth-internal.h - helpers shared by the auth module's files.
 */
#ifndef GW_AUTH_INTERNAL_H
#define GW_AUTH_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gw/auth.h"

/* Largest file any auth loader reads (password file with 1M users fits). */
#define GW_AUTH_FILE_MAX (256u * 1024u * 1024u)

/* Read a whole regular file of at most max bytes into a NUL-terminated
 * malloc'd buffer (*out owned by the caller). GW_ERR_IO (errno kept),
 * GW_ERR_LIMIT (too large), GW_ERR_NOMEM. */
gw_err_t gw_auth__read_file(const char *path, size_t max, char **out, size_t *len);

/* Line iterator over a text; lines end at '\n' (a '\r' before it is
 * dropped). Yields lines of at most max bytes; a longer one is reported as
 * too long without being scanned twice. */
typedef struct gw_auth_lines {
    const char *p, *end;
    size_t lineno;
} gw_auth_lines_t;

typedef enum { GW_AUTH_LINE_OK, GW_AUTH_LINE_END, GW_AUTH_LINE_LONG } gw_auth_line_rc_t;

void gw_auth__lines_init(gw_auth_lines_t *it, const char *text, size_t len);
gw_auth_line_rc_t gw_auth__lines_next(gw_auth_lines_t *it, size_t max, const char **line,
                                      size_t *len);

/* errbuf (GW_AUTH_ERRBUF bytes or NULL) = "name:line: " + message. */
void gw_auth__err(char *errbuf, const char *name, size_t lineno, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* RFC 4648 base64 with padding. encode: out needs 4*ceil(n/3)+1 bytes,
 * NUL-terminated, returns length. decode: strict (padding required, no
 * whitespace); returns decoded length or -1; at most cap bytes. */
size_t gw_auth__b64_encode(const uint8_t *in, size_t n, char *out);
long gw_auth__b64_decode(const char *in, size_t n, uint8_t *out, size_t cap);

/* Validate a UTF-8 string without control characters / U+0000. */
bool gw_auth__text_ok(const char *s, size_t len);
/* Same, but tabs allowed (whole lines of the ACL and certificate map). */
bool gw_auth__line_ok(const char *s, size_t len);

/* One password file entry. */
typedef struct gw_auth_entry {
    const char *user; /* points into db->text, not NUL-terminated */
    size_t user_len;
    size_t lineno;
    uint32_t iterations;
    uint8_t salt[GW_AUTH_SALT_LEN];
    uint8_t hash[GW_AUTH_HASH_LEN];
} gw_auth_entry_t;

/* Binary search; NULL if absent. */
const gw_auth_entry_t *gw_auth__passwd_find(const gw_auth_passwd_t *db, const char *user,
                                            size_t userlen);

#endif
