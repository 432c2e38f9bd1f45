/*
 * mqtt-passwd - create and edit the gateway's password file.
 *
 *   mqtt-passwd [-c] [-b] [-D] [-i ITER] FILE USER [PASSWORD]
 *
 * -c  create FILE (replacing any existing one) with just USER
 * -b  batch: PASSWORD is taken from the command line
 * -D  delete USER
 * -i  PBKDF2 iterations (default 210000)
 * Without -b the password is prompted for twice with echo off when stdin is
 * a terminal, else read as one line from stdin.
 *
 * The existing file is validated in full first (a malformed file is never
 * rewritten), then written to a temporary file in the same directory,
 * fsync'ed and renamed over FILE (mode 0600), and the directory fsync'ed.
 * Exit status: 0 done, 1 error, 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth/auth-internal.h"
#include "gw/auth.h"

#define PASS_MAX 65535 /* MQTT password field (MQTT-3.1.3.5) */

static const char *prog = "mqtt-passwd";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [-c] [-b] [-D] [-i ITERATIONS] FILE USER [PASSWORD]\n"
            "  -c  create FILE (overwrites an existing file)\n"
            "  -b  batch mode: PASSWORD on the command line\n"
            "  -D  delete USER from FILE\n"
            "  -i  PBKDF2-HMAC-SHA512 iterations (%u..%u, default %u)\n"
            "Without -b the password is prompted for (twice, echo off) on a terminal,\n"
            "or read as one line from stdin otherwise.\n",
            prog, GW_AUTH_MIN_ITERATIONS, GW_AUTH_MAX_ITERATIONS, GW_AUTH_DEFAULT_ITERATIONS);
}

/* One line from fd into buf (at most PASS_MAX bytes, newline stripped).
 * Returns the length, -1 on error/EOF before any byte, -2 if too long. */
static long read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    bool any = false;

    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1); /* byte at a time: never read past the line */
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        any = true;
        if (c == '\n')
            break;
        if (n + 1 >= cap) {
            /* drain the rest of the line so the terminal is left clean */
            while ((r = read(fd, &c, 1)) == 1 && c != '\n')
                ;
            return -2;
        }
        buf[n++] = c;
    }
    if (!any)
        return -1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (long)n;
}

/* Echo is switched off BEFORE the prompt appears, and typeahead is kept
 * (TCSANOW, not TCSAFLUSH): a password pasted as soon as the prompt shows
 * is neither echoed nor lost. */
static long prompt(const char *text, char *buf, size_t cap)
{
    struct termios old, noecho;
    long n;

    if (tcgetattr(STDIN_FILENO, &old) != 0)
        return -1;
    noecho = old;
    noecho.c_lflag &= ~(tcflag_t)ECHO;
    noecho.c_lflag |= ECHONL;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &noecho) != 0)
        return -1;
    fputs(text, stderr);
    fflush(stderr);
    n = read_line(STDIN_FILENO, buf, cap);
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    return n;
}

/* Get the password into buf; returns its length or -1 (message printed). */
static long get_password(char *buf, char *buf2, size_t cap)
{
    long n;

    if (isatty(STDIN_FILENO)) {
        n = prompt("Password: ", buf, cap);
        if (n >= 0) {
            long n2 = prompt("Reenter password: ", buf2, cap);
            if (n2 != n || memcmp(buf, buf2, (size_t)n) != 0) {
                fprintf(stderr, "%s: passwords do not match\n", prog);
                return -1;
            }
        }
    } else {
        n = read_line(STDIN_FILENO, buf, cap);
    }
    if (n == -2) {
        fprintf(stderr, "%s: password longer than %d bytes\n", prog, PASS_MAX);
        return -1;
    }
    if (n < 0) {
        fprintf(stderr, "%s: no password given\n", prog);
        return -1;
    }
    return n;
}

/* Write text atomically to path with mode 0600. */
static int write_atomic(const char *path, const char *text, size_t len)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    char *dircopy = strdup(path);
    int fd = -1, rc = -1;

    if (!tmp || !dircopy) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto cleanup;
    }
    snprintf(tmp, plen + 16, "%s.tmpXXXXXX", path);
    fd = mkstemp(tmp); /* O_EXCL, mode 0600 */
    if (fd < 0) {
        fprintf(stderr, "%s: %s: %s\n", prog, tmp, strerror(errno));
        tmp[0] = '\0';
        goto cleanup;
    }
    if (fchmod(fd, 0600) != 0)
        goto io;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto io;
        off += (size_t)w;
    }
    if (fsync(fd) != 0)
        goto io;
    if (close(fd) != 0) {
        fd = -1;
        goto io;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto io;
    tmp[0] = '\0';
    /* Make the rename itself durable. */
    int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
    goto cleanup;
io:
    fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
cleanup:
    if (fd >= 0)
        close(fd);
    if (tmp && tmp[0])
        unlink(tmp);
    free(tmp);
    free(dircopy);
    return rc;
}

int main(int argc, char **argv)
{
    bool create = false, batch = false, del = false;
    unsigned long iterations = GW_AUTH_DEFAULT_ITERATIONS;
    char *pass = NULL, *pass2 = NULL, *old = NULL, *out = NULL;
    size_t oldlen = 0, outlen = 0;
    long passlen = -1;
    char hash[GW_AUTH_HASH_STR_MAX];
    char errbuf[GW_AUTH_ERRBUF];
    const char *why;
    int status = 1, opt;

    while ((opt = getopt(argc, argv, "cbDi:h")) != -1) {
        switch (opt) {
        case 'c': create = true; break;
        case 'b': batch = true; break;
        case 'D': del = true; break;
        case 'i': {
            char *end;
            errno = 0;
            iterations = strtoul(optarg, &end, 10);
            if (errno || *end || optarg[0] == '-' || iterations < GW_AUTH_MIN_ITERATIONS ||
                iterations > GW_AUTH_MAX_ITERATIONS) {
                fprintf(stderr, "%s: -i: \"%s\" not in %u..%u\n", prog, optarg,
                        GW_AUTH_MIN_ITERATIONS, GW_AUTH_MAX_ITERATIONS);
                return 2;
            }
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    int npos = argc - optind;
    if (npos < 2 || npos > 3 || (batch && npos != 3) || (!batch && npos == 3) ||
        (del && (create || batch))) {
        usage(stderr);
        return 2;
    }
    const char *path = argv[optind], *user = argv[optind + 1];
    size_t userlen = strlen(user);
    if (gw_auth_user_validate(user, userlen, &why) != GW_OK) {
        fprintf(stderr, "%s: %s\n", prog, why);
        return 2;
    }

    /* Validate the existing file in full before touching it. */
    if (!create) {
        gw_auth_passwd_t *db = NULL;
        gw_err_t err = gw_auth_passwd_load(path, &db, errbuf);
        if (err != GW_OK) {
            fprintf(stderr, "%s: %s\n", prog, errbuf);
            goto cleanup;
        }
        gw_auth_passwd_free(db);
        err = gw_auth__read_file(path, GW_AUTH_FILE_MAX, &old, &oldlen);
        if (err != GW_OK) {
            fprintf(stderr, "%s: %s: %s\n", prog, path, gw_err_str(err));
            goto cleanup;
        }
    }

    if (!del) {
        pass = malloc(PASS_MAX + 2);
        pass2 = malloc(PASS_MAX + 2);
        if (!pass || !pass2) {
            fprintf(stderr, "%s: out of memory\n", prog);
            goto cleanup;
        }
        if (batch) {
            passlen = (long)strlen(argv[optind + 2]);
            if (passlen > PASS_MAX) {
                fprintf(stderr, "%s: password longer than %d bytes\n", prog, PASS_MAX);
                goto cleanup;
            }
            memcpy(pass, argv[optind + 2], (size_t)passlen + 1);
            /* Shorten the window in which ps / /proc/PID/cmdline show it. */
            OPENSSL_cleanse(argv[optind + 2], (size_t)passlen);
        } else if ((passlen = get_password(pass, pass2, PASS_MAX + 2)) < 0) {
            goto cleanup;
        }
        if (passlen == 0) {
            fprintf(stderr, "%s: empty password refused\n", prog);
            goto cleanup;
        }
        if (gw_auth_passwd_hash(pass, (size_t)passlen, (uint32_t)iterations, hash,
                                sizeof(hash)) != GW_OK) {
            fprintf(stderr, "%s: hashing failed\n", prog);
            goto cleanup;
        }
    }

    /* Copy every line but USER's; replace it in place or append it. */
    out = malloc(oldlen + userlen + sizeof(hash) + 4);
    if (!out) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto cleanup;
    }
    bool found = false;
    gw_auth_lines_t it;
    const char *line;
    size_t llen;
    gw_auth__lines_init(&it, old ? old : "", oldlen);
    while (gw_auth__lines_next(&it, GW_AUTH_LINE_MAX, &line, &llen) == GW_AUTH_LINE_OK) {
        bool mine = llen > userlen && line[userlen] == ':' && line[0] != '#' &&
                    memcmp(line, user, userlen) == 0;
        if (mine) {
            found = true;
            if (del)
                continue;
            outlen += (size_t)sprintf(out + outlen, "%s:%s\n", user, hash);
            continue;
        }
        memcpy(out + outlen, line, llen);
        outlen += llen;
        out[outlen++] = '\n';
    }
    if (del && !found) {
        fprintf(stderr, "%s: user %s not found in %s\n", prog, user, path);
        goto cleanup;
    }
    if (!del && !found)
        outlen += (size_t)sprintf(out + outlen, "%s:%s\n", user, hash);
    if (write_atomic(path, out, outlen) != 0)
        goto cleanup;
    status = 0;
cleanup:
    if (pass)
        OPENSSL_cleanse(pass, PASS_MAX + 2);
    if (pass2)
        OPENSSL_cleanse(pass2, PASS_MAX + 2);
    OPENSSL_cleanse(hash, sizeof(hash));
    free(pass);
    free(pass2);
    free(old);
    free(out);
    return status;
}
