/* hono_internal.h - helpers shared by the files of core/src/hono/. */
#ifndef GW_HONO_INTERNAL_H
#define GW_HONO_INTERNAL_H

#include <stdbool.h>

#include "gw/hono.h"

/** s equals the NUL-terminated literal lit. */
bool gw_hono__eq(gw_hono_str_t s, const char *lit);
/** a and b hold the same bytes. */
bool gw_hono__str_eq(gw_hono_str_t a, gw_hono_str_t b);

#endif
