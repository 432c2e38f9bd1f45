/*
 * spec_internal.h - helpers shared by the files of core/src/spec/.
 * Not part of the public API.
 */
#ifndef GW_SPEC_INTERNAL_H
#define GW_SPEC_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include <proton/codec.h>

#include "gw/spec.h"

/* Section descriptors (AMQP 1.0 part 3.2). */
#define GWI_SPEC_DESC_HEADER 0x70u
#define GWI_SPEC_DESC_PROPERTIES 0x73u
#define GWI_SPEC_DESC_DATA 0x75u
#define GWI_SPEC_DESC_SEQUENCE 0x76u
#define GWI_SPEC_DESC_VALUE 0x77u

/** printf into why (may be NULL), then replace control bytes so it stays one line. */
void gwi_spec_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** "a string", "an int", "a map"... for error texts. */
const char *gwi_spec_type_desc(pn_type_t type);

/**
 * Read the current node of data as an integer of any AMQP integer type
 * (byte..ulong). False if it is not an integer. ulong values above
 * INT64_MAX are reported as INT64_MAX (out of any range we accept anyway).
 */
bool gwi_spec_get_int(pn_data_t *data, int64_t *out);

#endif
