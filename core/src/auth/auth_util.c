/*
 * auth_util.c - bounded file reading, line iteration, error text, base64.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth-internal.h"
#include "gw/mqtt.h"

gw_err_t gw_auth__read_file(const char *path, size_t max, char **out, size_t *len)
{
    gw_err_t err = GW_ERR_IO;
    char *buf = NULL;
    size_t have = 0;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    *out = NULL;
    *len = 0;
    if (fd < 0)
        return GW_ERR_IO;
    if (fstat(fd, &st) != 0)
        goto cleanup;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        goto cleanup;
    }
    if ((uint64_t)st.st_size > max) {
        err = GW_ERR_LIMIT;
        goto cleanup;
    }
    /* The size is a hint only (the file may grow): never read past max. */
    size_t cap = (size_t)st.st_size + 1;
    buf = malloc(cap + 1);
    if (!buf) {
        err = GW_ERR_NOMEM;
        goto cleanup;
    }
    for (;;) {
        if (have == cap) {
            if (cap > max) {
                err = GW_ERR_LIMIT;
                goto cleanup;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                err = GW_ERR_NOMEM;
                goto cleanup;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + have, cap - have);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            goto cleanup;
        }
        if (n == 0)
            break;
        have += (size_t)n;
    }
    if (have > max) {
        err = GW_ERR_LIMIT;
        goto cleanup;
    }
    buf[have] = '\0';
    *out = buf;
    *len = have;
    buf = NULL;
    err = GW_OK;
cleanup:
    free(buf);
    {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return err;
}

void gw_auth__lines_init(gw_auth_lines_t *it, const char *text, size_t len)
{
    it->p = text;
    it->end = text + len;
    it->lineno = 0;
}

gw_auth_line_rc_t gw_auth__lines_next(gw_auth_lines_t *it, size_t max, const char **line,
                                      size_t *len)
{
    if (it->p >= it->end)
        return GW_AUTH_LINE_END;
    it->lineno++;
    const char *start = it->p;
    const char *nl = memchr(start, '\n', (size_t)(it->end - start));
    const char *stop = nl ? nl : it->end;
    it->p = nl ? nl + 1 : it->end;
    if (stop > start && stop[-1] == '\r')
        stop--;
    *line = start;
    *len = (size_t)(stop - start);
    return *len > max ? GW_AUTH_LINE_LONG : GW_AUTH_LINE_OK;
}

void gw_auth__err(char *errbuf, const char *name, size_t lineno, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!errbuf)
        return;
    if (lineno)
        n = snprintf(errbuf, GW_AUTH_ERRBUF, "%s:%zu: ", name ? name : "-", lineno);
    else
        n = snprintf(errbuf, GW_AUTH_ERRBUF, "%s: ", name ? name : "-");
    if (n < 0 || n >= GW_AUTH_ERRBUF)
        return;
    va_start(ap, fmt);
    vsnprintf(errbuf + n, GW_AUTH_ERRBUF - (size_t)n, fmt, ap);
    va_end(ap);
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t gw_auth__b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = b64_alphabet[v >> 18];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long gw_auth__b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    size_t o = 0;

    if (n == 0 || n % 4 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = in[i + k];
            if (c == '=') {
                /* Padding only in the last quantum, only in its last two places. */
                if (i + 4 != n || k < 2)
                    return -1;
                pad++;
                v[k] = 0;
            } else {
                if (pad)
                    return -1; /* data after '=' */
                v[k] = b64_val(c);
                if (v[k] < 0)
                    return -1;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        size_t nbytes = 3 - (size_t)pad;
        /* Non-canonical: bits that padding drops must be zero. */
        if ((pad == 1 && (w & 0xff)) || (pad == 2 && (w & 0xffff)))
            return -1;
        if (o + nbytes > cap)
            return -1;
        out[o++] = (uint8_t)(w >> 16);
        if (nbytes > 1)
            out[o++] = (uint8_t)(w >> 8);
        if (nbytes > 2)
            out[o++] = (uint8_t)w;
    }
    return (long)o;
}

bool gw_auth__text_ok(const char *s, size_t len)
{
    if (gw_utf8_validate(s, len) != GW_OK)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

bool gw_auth__line_ok(const char *s, size_t len)
{
    if (gw_utf8_validate(s, len) != GW_OK)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}
