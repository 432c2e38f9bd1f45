#include "gw/log.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

volatile int gw_log_current_level = GW_LOG_LEVEL_INFO;
static volatile int gw_log_format = GW_LOG_FORMAT_TEXT;
static volatile int gw_log_fd = STDERR_FILENO;

static const char *const gw_log_names[] = {"error", "warn", "info", "debug", "trace"};

void gw_log_set_level(gw_log_level_t lvl) { gw_log_current_level = (int)lvl; }
void gw_log_set_format(gw_log_format_t fmt) { gw_log_format = (int)fmt; }
void gw_log_set_fd(int fd) { gw_log_fd = fd; }

const char *gw_log_level_name(gw_log_level_t lvl)
{
    if ((unsigned)lvl > GW_LOG_LEVEL_TRACE)
        return "unknown";
    return gw_log_names[lvl];
}

int gw_log_level_parse(const char *s)
{
    for (int i = 0; i <= GW_LOG_LEVEL_TRACE; i++)
        if (strcasecmp(s, gw_log_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return GW_LOG_LEVEL_WARN;
    return -1;
}

/* Append src to buf[*pos..cap) escaping quotes, backslashes and control
 * characters, so that a client id or topic from the wire can never forge a
 * log field or a line. */
static void gw_log_escape(char *buf, size_t *pos, size_t cap, const char *src)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)src; *p && *pos + 7 < cap; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            buf[(*pos)++] = '\\';
            buf[(*pos)++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            buf[(*pos)++] = '\\';
            buf[(*pos)++] = 'u';
            buf[(*pos)++] = '0';
            buf[(*pos)++] = '0';
            buf[(*pos)++] = hex[c >> 4];
            buf[(*pos)++] = hex[c & 15];
        } else {
            buf[(*pos)++] = (char)c;
        }
    }
}

static void gw_log_append(char *buf, size_t *pos, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (*pos + 1 >= cap)
        return; /* full: keep the last byte for the newline */
    if (n > cap - *pos - 1)
        n = cap - *pos - 1;
    memcpy(buf + *pos, s, n);
    *pos += n;
}

void gw_log_vwrite(gw_log_level_t lvl, const char *module, const char *conn, const char *fmt,
                   va_list ap)
{
    char msg[2048];
    char line[4096];
    size_t pos = 0;
    struct timeval tv;
    struct tm tm;
    char ts[96];

    vsnprintf(msg, sizeof msg, fmt, ap);
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(tv.tv_usec / 1000));

    if (gw_log_format == GW_LOG_FORMAT_JSON) {
        gw_log_append(line, &pos, sizeof line, "{\"ts\":\"");
        gw_log_append(line, &pos, sizeof line, ts);
        gw_log_append(line, &pos, sizeof line, "\",\"level\":\"");
        gw_log_append(line, &pos, sizeof line, gw_log_level_name(lvl));
        gw_log_append(line, &pos, sizeof line, "\",\"module\":\"");
        gw_log_escape(line, &pos, sizeof line, module ? module : "-");
        if (conn) {
            gw_log_append(line, &pos, sizeof line, "\",\"conn\":\"");
            gw_log_escape(line, &pos, sizeof line, conn);
        }
        gw_log_append(line, &pos, sizeof line, "\",\"msg\":\"");
        gw_log_escape(line, &pos, sizeof line, msg);
        gw_log_append(line, &pos, sizeof line, "\"}\n");
    } else {
        gw_log_append(line, &pos, sizeof line, "ts=");
        gw_log_append(line, &pos, sizeof line, ts);
        gw_log_append(line, &pos, sizeof line, " level=");
        gw_log_append(line, &pos, sizeof line, gw_log_level_name(lvl));
        gw_log_append(line, &pos, sizeof line, " module=");
        gw_log_escape(line, &pos, sizeof line, module ? module : "-");
        if (conn) {
            gw_log_append(line, &pos, sizeof line, " conn=\"");
            gw_log_escape(line, &pos, sizeof line, conn);
            gw_log_append(line, &pos, sizeof line, "\"");
        }
        gw_log_append(line, &pos, sizeof line, " msg=\"");
        gw_log_escape(line, &pos, sizeof line, msg);
        gw_log_append(line, &pos, sizeof line, "\"\n");
    }
    if (pos == sizeof line - 1)
        line[pos - 1] = '\n'; /* truncated: still end the line */
    /* One write per line: atomic for lines below PIPE_BUF on pipes, and never
     * interleaved mid-line with other threads' writes on files. */
    ssize_t r = write(gw_log_fd, line, pos);
    (void)r;
}

void gw_log_write(gw_log_level_t lvl, const char *module, const char *conn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_log_vwrite(lvl, module, conn, fmt, ap);
    va_end(ap);
}

static void gw_log_libevent_cb(int severity, const char *msg)
{
    gw_log_level_t lvl = GW_LOG_LEVEL_DEBUG;
    switch (severity) {
    case EVENT_LOG_ERR:
        lvl = GW_LOG_LEVEL_ERROR;
        break;
    case EVENT_LOG_WARN:
        lvl = GW_LOG_LEVEL_WARN;
        break;
    case EVENT_LOG_MSG:
        lvl = GW_LOG_LEVEL_INFO;
        break;
    default:
        lvl = GW_LOG_LEVEL_DEBUG;
        break;
    }
    GW_LOG(lvl, "libevent", NULL, "%s", msg);
}

void gw_log_route_libevent(void) { event_set_log_callback(gw_log_libevent_cb); }
