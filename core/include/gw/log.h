/*
 * log.h - leveled, structured logging.
 *
 * GW_LOG checks the level before evaluating its arguments, so a disabled
 * debug line costs one load and one compare. Every line carries a module and
 * an optional connection/client id. Output is one write(2) per line to
 * stderr (or the configured fd), so lines from worker threads never
 * interleave. Two formats: key=value text (default) and JSON.
 *
 *   GW_LOG_INFO("gateway", client_id, "connected keepalive=%u", ka);
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdarg.h>

typedef enum gw_log_level {
    GW_LOG_LEVEL_ERROR = 0,
    GW_LOG_LEVEL_WARN = 1,
    GW_LOG_LEVEL_INFO = 2,
    GW_LOG_LEVEL_DEBUG = 3,
    GW_LOG_LEVEL_TRACE = 4,
} gw_log_level_t;

typedef enum gw_log_format {
    GW_LOG_FORMAT_TEXT = 0, /* ts=... level=info module=gateway conn=c1 msg="..." */
    GW_LOG_FORMAT_JSON = 1, /* {"ts":"...","level":"info","module":...,"msg":"..."} */
} gw_log_format_t;

/* Current level; read without a lock (a stale read only delays a change). */
extern volatile int gw_log_current_level;

#define GW_LOG(lvl, module, conn, ...)                                          \
    do {                                                                        \
        if ((int)(lvl) <= gw_log_current_level)                                 \
            gw_log_write((lvl), (module), (conn), __VA_ARGS__);                 \
    } while (0)

#define GW_LOG_ERROR(module, conn, ...) GW_LOG(GW_LOG_LEVEL_ERROR, module, conn, __VA_ARGS__)
#define GW_LOG_WARN(module, conn, ...) GW_LOG(GW_LOG_LEVEL_WARN, module, conn, __VA_ARGS__)
#define GW_LOG_INFO(module, conn, ...) GW_LOG(GW_LOG_LEVEL_INFO, module, conn, __VA_ARGS__)
#define GW_LOG_DEBUG(module, conn, ...) GW_LOG(GW_LOG_LEVEL_DEBUG, module, conn, __VA_ARGS__)
#define GW_LOG_TRACE(module, conn, ...) GW_LOG(GW_LOG_LEVEL_TRACE, module, conn, __VA_ARGS__)

/** Write one line unconditionally. conn may be NULL. */
void gw_log_write(gw_log_level_t lvl, const char *module, const char *conn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void gw_log_vwrite(gw_log_level_t lvl, const char *module, const char *conn, const char *fmt,
                   va_list ap) __attribute__((format(printf, 4, 0)));

void gw_log_set_level(gw_log_level_t lvl);
void gw_log_set_format(gw_log_format_t fmt);
/** Send lines to fd instead of stderr (tests). The fd is not owned. */
void gw_log_set_fd(int fd);
/** Parse "error|warn|info|debug|trace"; returns -1 if unknown. */
int gw_log_level_parse(const char *s);
const char *gw_log_level_name(gw_log_level_t lvl);

/** Route libevent's internal log messages into gw_log (module "libevent"). */
void gw_log_route_libevent(void);

#endif
