/*
 * config.c - table-driven configuration loader (see gw/config.h).
 *
 * Values are first staged in one slot per table entry; each source (default,
 * file, environment, flags) parses its text into the slot, replacing what a
 * lower source put there. After every source has been read, one validation
 * pass checks the bounds of the final values, and only when nothing failed
 * are the staged values moved into the caller's struct, so an error never
 * leaves a half-filled struct (or anything to free) behind.
 */
#include "gw/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GW_CFG_NAME_MAX 64   /* longest option name accepted in a table */
#define GW_CFG_PREFIX_MAX 64 /* longest environment prefix */
#define GW_CFG_ENV_MAX (GW_CFG_PREFIX_MAX + GW_CFG_NAME_MAX + 1)
#define GW_CFG_QUOTE_MAX 80 /* bytes of a value echoed in a message */
#define GW_CFG_WHERE_MAX 4096 /* bytes of a file path echoed in a message */

typedef union gw_cfg_value {
    bool b;
    int64_t i;
    int e;
    char *s;
    gw_config_list_t l;
} gw_cfg_value_t;

/* Where a value came from, for messages. */
typedef struct gw_cfg_origin {
    gw_config_source_t src;
    const char *where; /* file path or environment variable; NULL otherwise */
} gw_cfg_origin_t;

typedef struct gw_cfg_slot {
    gw_cfg_value_t v;
    gw_cfg_origin_t origin;
    bool set;
    bool flag_list;   /* LIST: a flag already replaced the lower sources */
    const char *text; /* the value as written (borrowed from argv/env/table, or == owned) */
    char *owned;      /* text copied out of the JSON document */
} gw_cfg_slot_t;

/* One "--name[=value]" from argv, applied after file and environment. */
typedef struct gw_cfg_flag {
    size_t opt;
    const char *text;
} gw_cfg_flag_t;

typedef struct gw_cfg_ctx {
    const gw_config_spec_t *spec;
    FILE *err;
    gw_cfg_slot_t *slots;
    char (*envnames)[GW_CFG_ENV_MAX + 1];
    char envconfig[GW_CFG_ENV_MAX + 1];
    int nerr;
} gw_cfg_ctx_t;

static const char *const gw_cfg_reserved[] = {"config", "help", "version", NULL};

const char *gw_config_source_name(gw_config_source_t src)
{
    switch (src) {
    case GW_CFG_SRC_DEFAULT:
        return "default";
    case GW_CFG_SRC_FILE:
        return "file";
    case GW_CFG_SRC_ENV:
        return "env";
    case GW_CFG_SRC_FLAG:
        return "flag";
    }
    return "unknown";
}

static const char *gw_cfg_program(const gw_config_spec_t *spec)
{
    return spec->program ? spec->program : "config";
}

static const char *gw_cfg_type_name(gw_config_type_t t)
{
    switch (t) {
    case GW_CFG_BOOL:
        return "bool";
    case GW_CFG_INT:
        return "int";
    case GW_CFG_DURATION:
        return "duration";
    case GW_CFG_SIZE:
        return "size";
    case GW_CFG_STRING:
        return "string";
    case GW_CFG_ENUM:
        return "enum";
    case GW_CFG_LIST:
        return "list";
    }
    return "unknown";
}

static bool gw_cfg_has_bounds(const gw_config_opt_t *opt)
{
    return opt->min != 0 || opt->max != 0;
}

/* ------------------------------------------------------------------ */
/* messages                                                            */

/* Echo input (a value, a JSON key, a flag as typed), escaping quotes,
 * backslashes and control characters (an environment variable may hold
 * anything), at most max bytes of it: one error, one line. */
static void gw_cfg_escape(FILE *f, const char *s, size_t max)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, n++) {
        if (n == max) {
            fputs("...", f);
            break;
        }
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
}

/* A value between quotes, escaped and cut by gw_cfg_escape(). */
static void gw_cfg_quote(FILE *f, const char *s)
{
    fputc('"', f);
    gw_cfg_escape(f, s, GW_CFG_QUOTE_MAX);
    fputc('"', f);
}

/* One line: prog: KEY: "VALUE" REASON (SOURCE). An option name as KEY gets
 * "--" for a flag; key and value may be NULL. */
static void gw_cfg_err(gw_cfg_ctx_t *ctx, const gw_cfg_origin_t *o, const char *key,
                       const char *value, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void gw_cfg_err(gw_cfg_ctx_t *ctx, const gw_cfg_origin_t *o, const char *key,
                       const char *value, const char *fmt, ...)
{
    va_list ap;
    FILE *f = ctx->err;

    ctx->nerr++;
    fprintf(f, "%s: ", gw_cfg_program(ctx->spec));
    if (key) {
        /* keys come from the input too (JSON keys, unknown flags) */
        fputs(o->src == GW_CFG_SRC_FLAG && key[0] != '-' ? "--" : "", f);
        gw_cfg_escape(f, key, GW_CFG_QUOTE_MAX);
        fputs(": ", f);
    }
    if (value) {
        gw_cfg_quote(f, value);
        fputc(' ', f);
    }
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    if (o->where) {
        /* a file path may hold anything too; long ones are still useful */
        fprintf(f, " (%s ", gw_config_source_name(o->src));
        gw_cfg_escape(f, o->where, GW_CFG_WHERE_MAX);
        fputs(")\n", f);
    } else
        fprintf(f, " (%s)\n", gw_config_source_name(o->src));
}

static void gw_cfg_nomem(gw_cfg_ctx_t *ctx)
{
    ctx->nerr++;
    fprintf(ctx->err, "%s: out of memory\n", gw_cfg_program(ctx->spec));
}

/* Levenshtein distance, for "did you mean". Both strings <= GW_CFG_NAME_MAX. */
static size_t gw_cfg_distance(const char *a, size_t la, const char *b)
{
    size_t lb = strlen(b);
    size_t prev[GW_CFG_NAME_MAX + 1], cur[GW_CFG_NAME_MAX + 1];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

/* Closest option name to name[0..len), or NULL if nothing is close. */
static const char *gw_cfg_suggest(const gw_config_spec_t *spec, const char *name, size_t len,
                                  bool with_reserved)
{
    const char *best = NULL;
    size_t bestd = (size_t)-1;
    size_t limit = len / 3 > 2 ? len / 3 : 2;

    if (len > GW_CFG_NAME_MAX)
        return NULL;
    for (size_t i = 0; i < spec->nopts; i++) {
        size_t d = gw_cfg_distance(name, len, spec->opts[i].name);
        if (d < bestd) {
            bestd = d;
            best = spec->opts[i].name;
        }
    }
    for (size_t i = 0; with_reserved && gw_cfg_reserved[i]; i++) {
        size_t d = gw_cfg_distance(name, len, gw_cfg_reserved[i]);
        if (d < bestd) {
            bestd = d;
            best = gw_cfg_reserved[i];
        }
    }
    return bestd <= limit ? best : NULL;
}

/* ------------------------------------------------------------------ */
/* value syntax                                                        */

static bool gw_cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

typedef struct gw_cfg_unit {
    const char *name;
    int64_t factor;
} gw_cfg_unit_t;

static const gw_cfg_unit_t gw_cfg_duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {NULL, 0},
};

#define GW_CFG_KIB INT64_C(1024)
static const gw_cfg_unit_t gw_cfg_size_units[] = {
    {"", 1},
    {"b", 1},
    {"k", GW_CFG_KIB},
    {"kb", GW_CFG_KIB},
    {"kib", GW_CFG_KIB},
    {"m", GW_CFG_KIB << 10},
    {"mb", GW_CFG_KIB << 10},
    {"mib", GW_CFG_KIB << 10},
    {"g", GW_CFG_KIB << 20},
    {"gb", GW_CFG_KIB << 20},
    {"gib", GW_CFG_KIB << 20},
    {"t", GW_CFG_KIB << 30},
    {"tb", GW_CFG_KIB << 30},
    {"tib", GW_CFG_KIB << 30},
    {NULL, 0},
};

typedef enum { GW_CFG_PARSE_OK, GW_CFG_PARSE_SYNTAX, GW_CFG_PARSE_RANGE } gw_cfg_parse_t;

/* DIGITS[UNIT] with no sign and no blanks. Units of durations are case
 * sensitive ("m" is minutes, never months); units of sizes are not. */
static gw_cfg_parse_t gw_cfg_parse_scaled(const char *s, const gw_cfg_unit_t *units, bool icase,
                                          int64_t *out)
{
    int64_t n = 0;
    bool overflow = false;
    const char *p = s;

    if (!isdigit((unsigned char)*p))
        return GW_CFG_PARSE_SYNTAX;
    for (; isdigit((unsigned char)*p); p++)
        if (__builtin_mul_overflow(n, 10, &n) || __builtin_add_overflow(n, *p - '0', &n))
            overflow = true; /* keep scanning: "99999x" is a syntax error first */
    for (const gw_cfg_unit_t *u = units; u->name; u++) {
        if ((icase ? strcasecmp(p, u->name) : strcmp(p, u->name)) != 0)
            continue;
        if (overflow || __builtin_mul_overflow(n, u->factor, out))
            return GW_CFG_PARSE_RANGE;
        return GW_CFG_PARSE_OK;
    }
    return GW_CFG_PARSE_SYNTAX;
}

static gw_cfg_parse_t gw_cfg_parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;
    const char *p = s[0] == '-' ? s + 1 : s;

    if (!isdigit((unsigned char)*p))
        return GW_CFG_PARSE_SYNTAX;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (*end != '\0')
        return GW_CFG_PARSE_SYNTAX;
    if (errno == ERANGE)
        return GW_CFG_PARSE_RANGE;
    *out = (int64_t)v;
    return GW_CFG_PARSE_OK;
}

/* The largest unit that divides v exactly: "90s", "256k", "1h". */
static void gw_cfg_format_scaled(char *buf, size_t cap, gw_config_type_t type, int64_t v)
{
    static const gw_cfg_unit_t dur[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000},
                                        {"s", 1000},     {"ms", 1},      {NULL, 0}};
    static const gw_cfg_unit_t size[] = {{"T", GW_CFG_KIB << 30},
                                         {"G", GW_CFG_KIB << 20},
                                         {"M", GW_CFG_KIB << 10},
                                         {"k", GW_CFG_KIB},
                                         {"", 1},
                                         {NULL, 0}};
    const gw_cfg_unit_t *u = type == GW_CFG_DURATION ? dur : type == GW_CFG_SIZE ? size : NULL;

    for (; u && u->name; u++) {
        if (v != 0 && v % u->factor == 0) {
            snprintf(buf, cap, "%" PRId64 "%s", v / u->factor, u->name);
            return;
        }
    }
    snprintf(buf, cap, "%" PRId64 "%s", v, type == GW_CFG_DURATION ? "ms" : "");
}

/* "a, b, c" into buf, truncated with "..." if needed. */
static void gw_cfg_join(char *buf, size_t cap, const char *const *items, size_t n, const char *sep)
{
    size_t pos = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && items[i]; i++) {
        int w = snprintf(buf + pos, cap - pos, "%s%s", i ? sep : "", items[i]);
        if (w < 0 || (size_t)w >= cap - pos) {
            if (cap >= 4)
                memcpy(buf + cap - 4, "...", 4);
            return;
        }
        pos += (size_t)w;
    }
}

static void gw_cfg_list_clear(gw_config_list_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static bool gw_cfg_list_push(gw_config_list_t *l, const char *s, size_t n)
{
    char **items = realloc(l->items, (l->count + 1) * sizeof *items);
    if (!items)
        return false;
    l->items = items;
    if (!(items[l->count] = strndup(s, n)))
        return false;
    l->count++;
    return true;
}

/* Comma-separated (environment, default); blanks around items are trimmed
 * and empty items dropped, so "" is the empty list. */
static bool gw_cfg_list_split(gw_config_list_t *l, const char *s)
{
    while (*s) {
        const char *end = strchr(s, ',');
        const char *next;
        if (!end)
            end = s + strlen(s);
        next = *end ? end + 1 : end;
        while (s < end && isspace((unsigned char)*s))
            s++;
        while (end > s && isspace((unsigned char)end[-1]))
            end--;
        if (end > s && !gw_cfg_list_push(l, s, (size_t)(end - s)))
            return false;
        s = next;
    }
    return true;
}

static void gw_cfg_value_free(const gw_config_opt_t *opt, gw_cfg_value_t *v)
{
    if (opt->type == GW_CFG_STRING)
        free(v->s);
    else if (opt->type == GW_CFG_LIST)
        gw_cfg_list_clear(&v->l);
    memset(v, 0, sizeof *v);
}

/* Parse text as a value of opt. On error reports it (naming key, text and
 * origin) and returns false with *v holding nothing to free. */
static bool gw_cfg_parse_text(gw_cfg_ctx_t *ctx, const gw_config_opt_t *opt,
                              const gw_cfg_origin_t *o, const char *text, gw_cfg_value_t *v)
{
    gw_cfg_parse_t r;
    char allowed[512];

    memset(v, 0, sizeof *v);
    switch (opt->type) {
    case GW_CFG_BOOL:
        if (gw_cfg_parse_bool(text, &v->b))
            return true;
        gw_cfg_err(ctx, o, opt->name, text, "not a boolean (true/false, yes/no, on/off, 1/0)");
        return false;
    case GW_CFG_INT:
        r = gw_cfg_parse_int(text, &v->i);
        if (r == GW_CFG_PARSE_OK)
            return true;
        gw_cfg_err(ctx, o, opt->name, text, "%s",
                   r == GW_CFG_PARSE_RANGE ? "out of range (64-bit integer)"
                                           : "not a decimal integer");
        return false;
    case GW_CFG_DURATION:
        r = gw_cfg_parse_scaled(text, gw_cfg_duration_units, false, &v->i);
        if (r == GW_CFG_PARSE_OK)
            return true;
        gw_cfg_err(ctx, o, opt->name, text, "%s",
                   r == GW_CFG_PARSE_RANGE
                       ? "out of range (64-bit milliseconds)"
                       : "not a duration (milliseconds, or a number with ms, s, m, h or d)");
        return false;
    case GW_CFG_SIZE:
        r = gw_cfg_parse_scaled(text, gw_cfg_size_units, true, &v->i);
        if (r == GW_CFG_PARSE_OK)
            return true;
        gw_cfg_err(ctx, o, opt->name, text, "%s",
                   r == GW_CFG_PARSE_RANGE ? "out of range (64-bit bytes)"
                                           : "not a size (bytes, or a number with k, M, G or T)");
        return false;
    case GW_CFG_STRING:
        if ((v->s = strdup(text)))
            return true;
        gw_cfg_nomem(ctx);
        return false;
    case GW_CFG_ENUM:
        for (int i = 0; opt->enum_values[i]; i++) {
            if (strcasecmp(text, opt->enum_values[i]) == 0) {
                v->e = i;
                return true;
            }
        }
        gw_cfg_join(allowed, sizeof allowed, opt->enum_values, (size_t)-1, ", ");
        gw_cfg_err(ctx, o, opt->name, text, "not one of: %s", allowed);
        return false;
    case GW_CFG_LIST:
        if (gw_cfg_list_split(&v->l, text))
            return true;
        gw_cfg_list_clear(&v->l);
        gw_cfg_nomem(ctx);
        return false;
    }
    return false;
}

/* Replace slot i by a new value (ownership of *v and owned moves in). */
static void gw_cfg_slot_set(gw_cfg_ctx_t *ctx, size_t i, const gw_cfg_origin_t *o, const char *text,
                            char *owned, gw_cfg_value_t *v)
{
    gw_cfg_slot_t *slot = &ctx->slots[i];
    gw_cfg_value_free(&ctx->spec->opts[i], &slot->v);
    free(slot->owned);
    slot->v = *v;
    memset(v, 0, sizeof *v);
    slot->origin = *o;
    slot->set = true;
    slot->text = owned ? owned : text;
    slot->owned = owned;
}

/* Bounds of one value (if bounds) and presence of a required one (if
 * required: only known once every source has been read). */
static void gw_cfg_validate(gw_cfg_ctx_t *ctx, size_t i, bool bounds, bool required)
{
    const gw_config_opt_t *opt = &ctx->spec->opts[i];
    gw_cfg_slot_t *slot = &ctx->slots[i];
    const gw_cfg_origin_t *o = &slot->origin;
    char bound[64], joined[GW_CFG_QUOTE_MAX + 8];
    size_t n;

    switch (opt->type) {
    case GW_CFG_INT:
    case GW_CFG_DURATION:
    case GW_CFG_SIZE:
        if (!bounds || !slot->set || !gw_cfg_has_bounds(opt))
            return;
        if (slot->v.i < opt->min) {
            gw_cfg_format_scaled(bound, sizeof bound, opt->type, opt->min);
            gw_cfg_err(ctx, o, opt->name, slot->text, "below minimum %s", bound);
        } else if (slot->v.i > opt->max) {
            gw_cfg_format_scaled(bound, sizeof bound, opt->type, opt->max);
            gw_cfg_err(ctx, o, opt->name, slot->text, "above maximum %s", bound);
        }
        return;
    case GW_CFG_STRING:
        n = slot->v.s ? strlen(slot->v.s) : 0;
        if (bounds && opt->max > 0 && n > (uint64_t)opt->max)
            gw_cfg_err(ctx, o, opt->name, slot->text, "longer than %" PRId64 " bytes", opt->max);
        else if (bounds && opt->min > 0 && slot->v.s && n < (uint64_t)opt->min)
            gw_cfg_err(ctx, o, opt->name, slot->text, "shorter than %" PRId64 " bytes", opt->min);
        break;
    case GW_CFG_LIST:
        n = slot->v.l.count;
        gw_cfg_join(joined, sizeof joined, (const char *const *)slot->v.l.items, n, ",");
        if (bounds && opt->max > 0 && n > (uint64_t)opt->max)
            gw_cfg_err(ctx, o, opt->name, joined, "has %zu items, more than maximum %" PRId64, n,
                       opt->max);
        else if (bounds && opt->min > 0 && n > 0 && n < (uint64_t)opt->min)
            gw_cfg_err(ctx, o, opt->name, joined, "has %zu items, fewer than minimum %" PRId64, n,
                       opt->min);
        break;
    case GW_CFG_BOOL:
    case GW_CFG_ENUM:
        return;
    }
    /* STRING/LIST with min > 0 are required. */
    if (required && opt->min > 0 &&
        ((opt->type == GW_CFG_STRING && !slot->v.s) ||
         (opt->type == GW_CFG_LIST && slot->v.l.count == 0))) {
        ctx->nerr++;
        fprintf(ctx->err, "%s: %s: missing, required (set --%s, %s%s\"%s\" in the config file)\n",
                gw_cfg_program(ctx->spec), opt->name, opt->name,
                ctx->spec->env_prefix ? ctx->envnames[i] : "",
                ctx->spec->env_prefix ? " or " : "or ", opt->name);
    }
}

/* ------------------------------------------------------------------ */
/* sources                                                             */

/* Programming errors in the table itself; nothing else is looked at then. */
static void gw_cfg_check_table(gw_cfg_ctx_t *ctx)
{
    const gw_config_spec_t *spec = ctx->spec;
    const gw_cfg_origin_t o = {GW_CFG_SRC_DEFAULT, NULL};

    if (spec->env_prefix && strlen(spec->env_prefix) > GW_CFG_PREFIX_MAX)
        gw_cfg_err(ctx, &o, "env_prefix", spec->env_prefix, "invalid table: longer than %d",
                   GW_CFG_PREFIX_MAX);
    if (spec->nopts && !spec->opts)
        gw_cfg_err(ctx, &o, NULL, NULL, "invalid table: opts is NULL");
    for (size_t i = 0; spec->opts && i < spec->nopts; i++) {
        const gw_config_opt_t *opt = &spec->opts[i];
        const char *name = opt->name;
        size_t len = name ? strlen(name) : 0;
        bool ok = len > 0 && len <= GW_CFG_NAME_MAX && islower((unsigned char)name[0]);

        for (size_t k = 0; ok && k < len; k++)
            ok = islower((unsigned char)name[k]) || isdigit((unsigned char)name[k]) ||
                 name[k] == '-';
        if (!ok) {
            gw_cfg_err(ctx, &o, NULL, name ? name : "(null)",
                       "invalid table: option names are 1..%d of [a-z0-9-]", GW_CFG_NAME_MAX);
            continue;
        }
        for (size_t k = 0; gw_cfg_reserved[k]; k++)
            if (strcmp(name, gw_cfg_reserved[k]) == 0)
                gw_cfg_err(ctx, &o, name, NULL, "invalid table: reserved option name");
        for (size_t k = 0; k < i; k++)
            if (spec->opts[k].name && strcmp(spec->opts[k].name, name) == 0)
                gw_cfg_err(ctx, &o, name, NULL, "invalid table: duplicate option name");
        if ((unsigned)opt->type > GW_CFG_LIST)
            gw_cfg_err(ctx, &o, name, NULL, "invalid table: unknown type %d", (int)opt->type);
        else if (opt->type == GW_CFG_ENUM && (!opt->enum_values || !opt->enum_values[0]))
            gw_cfg_err(ctx, &o, name, NULL, "invalid table: enum without values");
        else if (opt->min > opt->max && !(opt->type == GW_CFG_STRING || opt->type == GW_CFG_LIST))
            gw_cfg_err(ctx, &o, name, NULL, "invalid table: min %" PRId64 " > max %" PRId64,
                       opt->min, opt->max);
        else if ((opt->type == GW_CFG_STRING || opt->type == GW_CFG_LIST) &&
                 (opt->min < 0 || opt->max < 0 || (opt->max > 0 && opt->min > opt->max)))
            gw_cfg_err(ctx, &o, name, NULL, "invalid table: bad min/max %" PRId64 "/%" PRId64,
                       opt->min, opt->max);
    }
}

static void gw_cfg_load_defaults(gw_cfg_ctx_t *ctx)
{
    const gw_cfg_origin_t o = {GW_CFG_SRC_DEFAULT, NULL};
    for (size_t i = 0; i < ctx->spec->nopts; i++) {
        const gw_config_opt_t *opt = &ctx->spec->opts[i];
        gw_cfg_value_t v;
        if (!opt->def)
            continue;
        if (!gw_cfg_parse_text(ctx, opt, &o, opt->def, &v))
            continue;
        gw_cfg_slot_set(ctx, i, &o, opt->def, NULL, &v);
        /* A bad default is a bug even when a higher source hides it today. */
        gw_cfg_validate(ctx, i, true, false);
    }
}

static const char *gw_cfg_json_type(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

/* Report a JSON value of the wrong type for key. */
static void gw_cfg_json_type_err(gw_cfg_ctx_t *ctx, const gw_cfg_origin_t *o, const char *key,
                                 const json_t *j, const char *expected)
{
    char *dump = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
    gw_cfg_err(ctx, o, key, dump ? dump : "?", "is %s, expected %s", gw_cfg_json_type(j), expected);
    free(dump);
}

/* One key of the file. */
static void gw_cfg_file_value(gw_cfg_ctx_t *ctx, size_t i, const gw_cfg_origin_t *o, json_t *j)
{
    const gw_config_opt_t *opt = &ctx->spec->opts[i];
    gw_cfg_value_t v;
    char *owned = NULL;
    const char *s;
    char num[32];

    memset(&v, 0, sizeof v);
    switch (opt->type) {
    case GW_CFG_BOOL:
        if (!json_is_boolean(j)) {
            gw_cfg_json_type_err(ctx, o, opt->name, j, "true or false");
            return;
        }
        v.b = json_is_true(j);
        owned = strdup(v.b ? "true" : "false");
        break;
    case GW_CFG_INT:
    case GW_CFG_DURATION:
    case GW_CFG_SIZE:
        if (json_is_integer(j)) {
            v.i = (int64_t)json_integer_value(j);
            snprintf(num, sizeof num, "%" PRId64, v.i);
            if (opt->type != GW_CFG_INT && v.i < 0) {
                gw_cfg_err(ctx, o, opt->name, num, "is negative");
                return;
            }
            owned = strdup(num);
            break;
        }
        if (opt->type == GW_CFG_INT || !json_is_string(j)) {
            gw_cfg_json_type_err(ctx, o, opt->name, j,
                                 opt->type == GW_CFG_INT ? "an integer" : "an integer or a string");
            return;
        }
        /* a string such as "5s" or "64k": parsed like the other sources */
        /* fall through */
    case GW_CFG_STRING:
    case GW_CFG_ENUM:
        if (!json_is_string(j)) {
            gw_cfg_json_type_err(ctx, o, opt->name, j, "a string");
            return;
        }
        /* jansson refuses "\u0000" (no JSON_ALLOW_NUL), so C strings are whole */
        s = json_string_value(j);
        if (!gw_cfg_parse_text(ctx, opt, o, s, &v))
            return;
        owned = strdup(s);
        break;
    case GW_CFG_LIST: {
        size_t k;
        json_t *item;
        char key[GW_CFG_NAME_MAX + 32];
        if (!json_is_array(j)) {
            gw_cfg_json_type_err(ctx, o, opt->name, j, "an array of strings");
            return;
        }
        json_array_foreach (j, k, item) {
            snprintf(key, sizeof key, "%s[%zu]", opt->name, k);
            if (!json_is_string(item)) {
                gw_cfg_json_type_err(ctx, o, key, item, "a string");
                gw_cfg_list_clear(&v.l);
                return;
            }
            s = json_string_value(item);
            if (!gw_cfg_list_push(&v.l, s, strlen(s))) {
                gw_cfg_list_clear(&v.l);
                gw_cfg_nomem(ctx);
                return;
            }
        }
        owned = json_dumps(j, JSON_COMPACT);
        break;
    }
    }
    if (!owned) {
        gw_cfg_value_free(opt, &v);
        gw_cfg_nomem(ctx);
        return;
    }
    gw_cfg_slot_set(ctx, i, o, NULL, owned, &v);
}

static size_t gw_cfg_find(const gw_config_spec_t *spec, const char *name, size_t len)
{
    for (size_t i = 0; i < spec->nopts; i++)
        if (strncmp(spec->opts[i].name, name, len) == 0 && spec->opts[i].name[len] == '\0')
            return i;
    return (size_t)-1;
}

/* The JSON file; `from` says where its path came from (flag or env). */
static void gw_cfg_load_file(gw_cfg_ctx_t *ctx, const char *path, const gw_cfg_origin_t *from)
{
    const gw_cfg_origin_t o = {GW_CFG_SRC_FILE, path};
    json_error_t jerr;
    json_t *root = NULL;
    const char *key;
    json_t *val;
    FILE *f = NULL;

    if (path[0] == '\0') {
        gw_cfg_err(ctx, from, "config", path, "is an empty path");
        goto cleanup;
    }
    if (!(f = fopen(path, "r"))) {
        gw_cfg_err(ctx, from, "config", path, "cannot be opened: %s", strerror(errno));
        goto cleanup;
    }
    /* Duplicate keys would silently hide one of the two values. */
    if (!(root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr))) {
        /* jansson quotes the offending input raw (newlines included): escape
         * it so that one error stays one line (found by fuzz_config). */
        char text[sizeof jerr.text * 4 + 1];
        size_t o2 = 0;
        for (const unsigned char *p = (const unsigned char *)jerr.text; *p && o2 + 5 < sizeof text;
             p++) {
            if (*p < 0x20 || *p == 0x7f)
                o2 += (size_t)snprintf(text + o2, sizeof text - o2, "\\x%02x", *p);
            else
                text[o2++] = (char)*p;
        }
        text[o2] = '\0';
        gw_cfg_err(ctx, from, "config", path, "is not valid JSON: line %d column %d: %s", jerr.line,
                   jerr.column, text);
        goto cleanup;
    }
    if (!json_is_object(root)) {
        gw_cfg_err(ctx, from, "config", path, "must hold a JSON object, not %s",
                   gw_cfg_json_type(root));
        goto cleanup;
    }
    json_object_foreach (root, key, val) {
        size_t i = gw_cfg_find(ctx->spec, key, strlen(key));
        if (i == (size_t)-1) {
            const char *near = gw_cfg_suggest(ctx->spec, key, strlen(key), false);
            if (strcmp(key, "config") == 0)
                gw_cfg_err(ctx, &o, key, NULL,
                           "unknown key (a config file cannot include "
                           "another)");
            else if (near)
                gw_cfg_err(ctx, &o, key, NULL, "unknown key, did you mean \"%s\"?", near);
            else
                gw_cfg_err(ctx, &o, key, NULL, "unknown key");
            continue;
        }
        gw_cfg_file_value(ctx, i, &o, val);
    }

cleanup:
    json_decref(root);
    if (f)
        fclose(f);
}

static void gw_cfg_load_env(gw_cfg_ctx_t *ctx)
{
    if (!ctx->spec->env_prefix)
        return;
    for (size_t i = 0; i < ctx->spec->nopts; i++) {
        const gw_config_opt_t *opt = &ctx->spec->opts[i];
        const gw_cfg_origin_t o = {GW_CFG_SRC_ENV, ctx->envnames[i]};
        const char *text = getenv(ctx->envnames[i]);
        gw_cfg_value_t v;
        if (!text)
            continue;
        if (gw_cfg_parse_text(ctx, opt, &o, text, &v))
            gw_cfg_slot_set(ctx, i, &o, text, NULL, &v);
    }
}

static void gw_cfg_apply_flags(gw_cfg_ctx_t *ctx, const gw_cfg_flag_t *flags, size_t n)
{
    const gw_cfg_origin_t o = {GW_CFG_SRC_FLAG, NULL};
    for (size_t k = 0; k < n; k++) {
        size_t i = flags[k].opt;
        const gw_config_opt_t *opt = &ctx->spec->opts[i];
        gw_cfg_slot_t *slot = &ctx->slots[i];
        gw_cfg_value_t v;

        if (opt->type == GW_CFG_LIST) {
            /* The first --route replaces the lower sources' list; the
             * following ones accumulate. A flag is one item, never split. */
            if (!slot->flag_list) {
                memset(&v, 0, sizeof v);
                gw_cfg_slot_set(ctx, i, &o, flags[k].text, NULL, &v);
                slot->flag_list = true;
            }
            if (!gw_cfg_list_push(&slot->v.l, flags[k].text, strlen(flags[k].text)))
                gw_cfg_nomem(ctx);
            continue;
        }
        if (gw_cfg_parse_text(ctx, opt, &o, flags[k].text, &v))
            gw_cfg_slot_set(ctx, i, &o, flags[k].text, NULL, &v);
    }
}

/* argv into flags[]; --config into *config. Reports syntax errors. */
static size_t gw_cfg_scan_argv(gw_cfg_ctx_t *ctx, int argc, char **argv, gw_cfg_flag_t *flags,
                               const char **config)
{
    const gw_cfg_origin_t o = {GW_CFG_SRC_FLAG, NULL};
    const gw_config_spec_t *spec = ctx->spec;
    size_t n = 0;
    bool positional_only = false;

    for (int k = 1; k < argc; k++) {
        const char *a = argv[k];
        const char *name, *eq, *value, *near;
        char shown[GW_CFG_NAME_MAX + 8];
        const char *next = k + 1 < argc ? argv[k + 1] : NULL;
        size_t len, i;

        if (positional_only || a[0] != '-' || a[1] == '\0') {
            gw_cfg_err(ctx, &o, NULL, a, "positional arguments are not accepted");
            continue;
        }
        if (strcmp(a, "--") == 0) {
            positional_only = true;
            continue;
        }
        if (a[1] != '-') {
            gw_cfg_err(ctx, &o, NULL, a, "unknown option (options are --name or --name=VALUE)");
            continue;
        }
        name = a + 2;
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        /* A value may follow as the next argument unless that is a flag;
         * a value starting with "--" must be given as --name=--value. */
        value = eq ? eq + 1 : (next && strncmp(next, "--", 2) != 0 ? next : NULL);

        if (len == 6 && strncmp(name, "config", 6) == 0) {
            if (!value) {
                gw_cfg_err(ctx, &o, "config", NULL, "missing value");
                continue;
            }
            *config = value;
            if (!eq)
                k++;
            continue;
        }
        /* "--name" as typed, for messages; bounded like any echoed input */
        snprintf(shown, sizeof shown, "--%.*s%s",
                 (int)(len > GW_CFG_NAME_MAX ? GW_CFG_NAME_MAX : len), name,
                 len > GW_CFG_NAME_MAX ? "..." : "");
        if ((len == 4 && strncmp(name, "help", 4) == 0) ||
            (len == 7 && strncmp(name, "version", 7) == 0)) {
            /* only "--help=x" gets here: plain --help was handled before */
            gw_cfg_err(ctx, &o, shown, eq + 1, "not accepted, %s takes no value", shown);
            continue;
        }
        i = gw_cfg_find(spec, name, len);
        if (i == (size_t)-1 && len > 3 && strncmp(name, "no-", 3) == 0) {
            size_t b = gw_cfg_find(spec, name + 3, len - 3);
            if (b != (size_t)-1) {
                if (spec->opts[b].type != GW_CFG_BOOL)
                    gw_cfg_err(ctx, &o, shown, NULL, "--%s is not a boolean option",
                               spec->opts[b].name);
                else if (eq)
                    gw_cfg_err(ctx, &o, shown, eq + 1,
                               "not accepted, %s takes no value (use --%s=VALUE)", shown,
                               spec->opts[b].name);
                else
                    flags[n++] = (gw_cfg_flag_t){b, "false"};
                continue;
            }
        }
        if (i == (size_t)-1) {
            near = gw_cfg_suggest(spec, name, len, true);
            if (!near && len > 3 && strncmp(name, "no-", 3) == 0)
                near = gw_cfg_suggest(spec, name + 3, len - 3, false);
            if (near)
                gw_cfg_err(ctx, &o, shown, NULL, "unknown option, did you mean --%s?", near);
            else
                gw_cfg_err(ctx, &o, shown, NULL, "unknown option (see --help)");
            /* Skip what was most likely its value, to report one error, not two. */
            if (!eq && next && next[0] != '-')
                k++;
            continue;
        }
        if (spec->opts[i].type == GW_CFG_BOOL) {
            /* A bool never takes the next argument: "--retain x" is a positional x. */
            flags[n++] = (gw_cfg_flag_t){i, eq ? eq + 1 : "true"};
            continue;
        }
        if (!value) {
            gw_cfg_err(ctx, &o, spec->opts[i].name, NULL, "missing value");
            continue;
        }
        flags[n++] = (gw_cfg_flag_t){i, value};
        if (!eq)
            k++;
    }
    return n;
}

/* --help / -h / --version before anything else, so that they work even
 * with a broken command line. Returns 'h', 'v' or 0. */
static int gw_cfg_wants_info(int argc, char **argv)
{
    for (int k = 1; k < argc; k++) {
        if (strcmp(argv[k], "--") == 0)
            return 0;
        if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0)
            return 'h';
        if (strcmp(argv[k], "--version") == 0)
            return 'v';
    }
    return 0;
}

/* The environment asks for the Markdown reference (exactly "1"). */
static bool gw_cfg_wants_markdown(void)
{
    const char *v = getenv("GW_CONFIG_MARKDOWN");
    return v && strcmp(v, "1") == 0;
}

/* Move the staged values into the caller's struct. */
static void gw_cfg_store(gw_cfg_ctx_t *ctx, void *cfg)
{
    char *base = cfg;
    for (size_t i = 0; i < ctx->spec->nopts; i++) {
        const gw_config_opt_t *opt = &ctx->spec->opts[i];
        gw_cfg_value_t *v = &ctx->slots[i].v;
        void *field = base + opt->offset;
        switch (opt->type) {
        case GW_CFG_BOOL:
            *(bool *)field = v->b;
            break;
        case GW_CFG_INT:
        case GW_CFG_DURATION:
        case GW_CFG_SIZE:
            *(int64_t *)field = v->i;
            break;
        case GW_CFG_STRING:
            *(char **)field = v->s;
            break;
        case GW_CFG_ENUM:
            *(int *)field = v->e;
            break;
        case GW_CFG_LIST:
            *(gw_config_list_t *)field = v->l;
            break;
        }
        memset(v, 0, sizeof *v);
    }
}

gw_config_result_t gw_config_load_io(const gw_config_spec_t *spec, void *cfg, int argc, char **argv,
                                     FILE *out, FILE *err)
{
    gw_cfg_ctx_t ctx = {.spec = spec, .err = err ? err : stderr};
    gw_cfg_flag_t *flags = NULL;
    const char *config = NULL;
    gw_cfg_origin_t config_from = {GW_CFG_SRC_FLAG, NULL};
    gw_config_result_t result = GW_CONFIG_ERROR;
    size_t nflags;

    if (!spec || !cfg || argc < 0 || (argc > 0 && !argv)) {
        fprintf(ctx.err, "config: invalid arguments to gw_config_load\n");
        return GW_CONFIG_ERROR;
    }
    out = out ? out : stdout;
    /* GW_CONFIG_MARKDOWN=1: print the reference table and exit, before any
     * argument or source is looked at, so every program can feed
     * tools/gen_config_docs.sh without code of its own. A broken table is
     * reported instead of being documented. */
    if (gw_cfg_wants_markdown()) {
        gw_cfg_check_table(&ctx);
        if (ctx.nerr)
            return GW_CONFIG_ERROR;
        gw_config_print_markdown(spec, out);
        return GW_CONFIG_EXIT;
    }
    switch (gw_cfg_wants_info(argc, argv)) {
    case 'h':
        gw_config_print_help(spec, out);
        return GW_CONFIG_EXIT;
    case 'v':
        fprintf(out, "%s %s\n", gw_cfg_program(spec), GW_VERSION);
        return GW_CONFIG_EXIT;
    default:
        break;
    }

    gw_cfg_check_table(&ctx);
    if (ctx.nerr)
        goto cleanup;
    ctx.slots = calloc(spec->nopts + 1, sizeof *ctx.slots);
    ctx.envnames = calloc(spec->nopts + 1, sizeof *ctx.envnames);
    flags = calloc((size_t)argc + 1, sizeof *flags);
    if (!ctx.slots || !ctx.envnames || !flags) {
        gw_cfg_nomem(&ctx);
        goto cleanup;
    }
    if (spec->env_prefix) {
        for (size_t i = 0; i < spec->nopts; i++) {
            char *p = ctx.envnames[i];
            p += snprintf(p, GW_CFG_ENV_MAX, "%s", spec->env_prefix);
            for (const char *s = spec->opts[i].name; *s; s++)
                *p++ = *s == '-' ? '_' : (char)toupper((unsigned char)*s);
            *p = '\0';
        }
        snprintf(ctx.envconfig, sizeof ctx.envconfig, "%sCONFIG", spec->env_prefix);
    }

    nflags = gw_cfg_scan_argv(&ctx, argc, argv, flags, &config);
    if (!config && spec->env_prefix) {
        config = getenv(ctx.envconfig);
        if (config && !config[0])
            config = NULL; /* GW_CONFIG= means no file */
        config_from = (gw_cfg_origin_t){GW_CFG_SRC_ENV, ctx.envconfig};
    }
    gw_cfg_load_defaults(&ctx);
    if (config)
        gw_cfg_load_file(&ctx, config, &config_from);
    gw_cfg_load_env(&ctx);
    gw_cfg_apply_flags(&ctx, flags, nflags);

    /* The one validation pass over the final values (defaults were checked
     * as they were loaded, overridden or not). */
    for (size_t i = 0; i < spec->nopts; i++)
        gw_cfg_validate(&ctx, i, ctx.slots[i].origin.src != GW_CFG_SRC_DEFAULT, true);
    if (ctx.nerr)
        goto cleanup;
    gw_cfg_store(&ctx, cfg);
    result = GW_CONFIG_OK;

cleanup:
    for (size_t i = 0; ctx.slots && i < spec->nopts; i++) {
        gw_cfg_value_free(&spec->opts[i], &ctx.slots[i].v);
        free(ctx.slots[i].owned);
    }
    free(ctx.slots);
    free(ctx.envnames);
    free(flags);
    return result;
}

gw_config_result_t gw_config_load(const gw_config_spec_t *spec, void *cfg, int argc, char **argv,
                                  FILE *err)
{
    return gw_config_load_io(spec, cfg, argc, argv, NULL, err);
}

void gw_config_free(const gw_config_spec_t *spec, void *cfg)
{
    char *base = cfg;
    if (!spec || !cfg)
        return;
    for (size_t i = 0; i < spec->nopts; i++) {
        void *field = base + spec->opts[i].offset;
        if (spec->opts[i].type == GW_CFG_STRING) {
            free(*(char **)field);
            *(char **)field = NULL;
        } else if (spec->opts[i].type == GW_CFG_LIST) {
            gw_cfg_list_clear((gw_config_list_t *)field);
        }
    }
}

/* ------------------------------------------------------------------ */
/* --help and the Markdown reference                                   */

static void gw_cfg_describe_bounds(const gw_config_opt_t *opt, char *buf, size_t cap)
{
    char lo[32], hi[32];
    buf[0] = '\0';
    switch (opt->type) {
    case GW_CFG_INT:
    case GW_CFG_DURATION:
    case GW_CFG_SIZE:
        if (gw_cfg_has_bounds(opt)) {
            gw_cfg_format_scaled(lo, sizeof lo, opt->type, opt->min);
            gw_cfg_format_scaled(hi, sizeof hi, opt->type, opt->max);
            snprintf(buf, cap, "%s .. %s", lo, hi);
        }
        break;
    case GW_CFG_STRING:
        if (opt->min > 0 && opt->max > 0)
            snprintf(buf, cap, "%" PRId64 " .. %" PRId64 " bytes", opt->min, opt->max);
        else if (opt->min > 0)
            snprintf(buf, cap, "at least %" PRId64 " bytes", opt->min);
        else if (opt->max > 0)
            snprintf(buf, cap, "at most %" PRId64 " bytes", opt->max);
        break;
    case GW_CFG_LIST:
        if (opt->min > 0 && opt->max > 0)
            snprintf(buf, cap, "repeatable, %" PRId64 " .. %" PRId64 " items", opt->min, opt->max);
        else if (opt->min > 0)
            snprintf(buf, cap, "repeatable, at least %" PRId64 " items", opt->min);
        else if (opt->max > 0)
            snprintf(buf, cap, "repeatable, at most %" PRId64 " items", opt->max);
        else
            snprintf(buf, cap, "repeatable");
        break;
    case GW_CFG_ENUM:
        if (cap > 8) {
            memcpy(buf, "one of ", 8);
            gw_cfg_join(buf + 7, cap - 7, opt->enum_values, (size_t)-1, ", ");
        }
        break;
    case GW_CFG_BOOL:
        break;
    }
}

static void gw_cfg_env_name(const gw_config_spec_t *spec, const char *name, char *buf, size_t cap)
{
    size_t pos;
    if (!spec->env_prefix) {
        snprintf(buf, cap, "-");
        return;
    }
    pos = (size_t)snprintf(buf, cap, "%s", spec->env_prefix);
    for (; *name && pos + 1 < cap; name++)
        buf[pos++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
    if (pos < cap)
        buf[pos] = '\0';
}

static const char *gw_cfg_metavar(const gw_config_opt_t *opt)
{
    switch (opt->type) {
    case GW_CFG_BOOL:
        return "";
    case GW_CFG_INT:
        return "=INT";
    case GW_CFG_DURATION:
        return "=DURATION";
    case GW_CFG_SIZE:
        return "=SIZE";
    case GW_CFG_STRING:
        return "=STRING";
    case GW_CFG_ENUM:
        return "=CHOICE";
    case GW_CFG_LIST:
        return "=VALUE";
    }
    return "";
}

void gw_config_print_help(const gw_config_spec_t *spec, FILE *out)
{
    char env[GW_CFG_ENV_MAX + 1], bounds[512];

    fprintf(out, "Usage: %s [OPTIONS]\n", gw_cfg_program(spec));
    if (spec->summary)
        fprintf(out, "%s\n", spec->summary);
    fprintf(out, "\nOptions (precedence: default < config file < environment < flag):\n");
    gw_cfg_env_name(spec, "config", env, sizeof env);
    fprintf(out,
            "  --config=PATH\n      JSON file of option values; keys are option names.\n"
            "      path; env %s\n",
            env);
    for (size_t i = 0; i < spec->nopts; i++) {
        const gw_config_opt_t *opt = &spec->opts[i];
        gw_cfg_describe_bounds(opt, bounds, sizeof bounds);
        gw_cfg_env_name(spec, opt->name, env, sizeof env);
        fprintf(out, "  --%s%s%s\n", opt->type == GW_CFG_BOOL ? "[no-]" : "", opt->name,
                gw_cfg_metavar(opt));
        if (opt->help)
            fprintf(out, "      %s\n", opt->help);
        fprintf(out, "      %s; default %s%s%s; env %s\n", gw_cfg_type_name(opt->type),
                opt->def ? opt->def : "none", bounds[0] ? "; " : "", bounds, env);
    }
    fprintf(out, "  --help, -h\n      Print this help and exit.\n"
                 "  --version\n      Print the version and exit.\n");
}

/* A Markdown table cell: '|' escaped, line breaks flattened. */
static void gw_cfg_md_cell(FILE *out, const char *s, bool code)
{
    fputs(code ? " `" : " ", out);
    for (; s && *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '\n' || *s == '\r')
            fputc(' ', out);
        else
            fputc(*s, out);
    }
    fputs(code ? "` |" : " |", out);
}

void gw_config_print_markdown(const gw_config_spec_t *spec, FILE *out)
{
    char env[GW_CFG_ENV_MAX + 1], bounds[512], flag[GW_CFG_NAME_MAX + 8];

    fprintf(out, "### %s\n\n", gw_cfg_program(spec));
    if (spec->summary)
        fprintf(out, "%s\n\n", spec->summary);
    fprintf(out, "Precedence: default < config file < environment < flag.\n\n");
    fprintf(out, "| Option | Type | Default | Bounds | Environment | Description |\n"
                 "| --- | --- | --- | --- | --- | --- |\n");
    gw_cfg_env_name(spec, "config", env, sizeof env);
    fprintf(out,
            "| `--config` | path | | | `%s` | JSON file of option values; keys are option "
            "names. |\n",
            env);
    for (size_t i = 0; i < spec->nopts; i++) {
        const gw_config_opt_t *opt = &spec->opts[i];
        gw_cfg_describe_bounds(opt, bounds, sizeof bounds);
        gw_cfg_env_name(spec, opt->name, env, sizeof env);
        snprintf(flag, sizeof flag, "--%s%s", opt->type == GW_CFG_BOOL ? "[no-]" : "", opt->name);
        fputc('|', out);
        gw_cfg_md_cell(out, flag, true);
        gw_cfg_md_cell(out, gw_cfg_type_name(opt->type), false);
        if (opt->def && opt->def[0])
            gw_cfg_md_cell(out, opt->def, true);
        else
            gw_cfg_md_cell(out, opt->def ? "\"\"" : "", false);
        gw_cfg_md_cell(out, bounds, false);
        gw_cfg_md_cell(out, env, spec->env_prefix != NULL);
        gw_cfg_md_cell(out, opt->help, false);
        fputc('\n', out);
    }
}

/* ------------------------------------------------------------------ */
/* helpers for values with structure                                   */

gw_err_t gw_config_parse_hostport(const char *s, char *host, size_t hostcap, uint16_t *port)
{
    const char *h, *hend, *p;
    size_t hlen;
    unsigned long v = 0;

    if (!s || !host || !port || hostcap == 0)
        return GW_ERR_INVAL;
    if (s[0] == '[') {
        /* [v6]:port; the colons inside the brackets belong to the address */
        h = s + 1;
        hend = strchr(h, ']');
        if (!hend || hend == h || hend[1] != ':')
            return GW_ERR_CONFIG;
        bool zone = false; /* after '%': an interface name ("fe80::1%eth0") */
        for (const char *c = h; c < hend; c++) {
            if (*c == '%' && !zone && c > h && c + 1 < hend)
                zone = true;
            else if (zone ? !(isalnum((unsigned char)*c) || *c == '-' || *c == '_' || *c == '.')
                          : !(isxdigit((unsigned char)*c) || *c == ':' || *c == '.'))
                return GW_ERR_CONFIG;
        }
        if (!memchr(h, ':', (size_t)(hend - h)))
            return GW_ERR_CONFIG; /* brackets are for IPv6 addresses only */
        p = hend + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) {
            h = hend = s; /* "5672" */
            p = s;
        } else {
            if (memchr(s, ':', (size_t)(colon - s)))
                return GW_ERR_CONFIG; /* an IPv6 address needs brackets */
            h = s;
            hend = colon;
            p = colon + 1;
        }
        for (const char *c = h; c < hend; c++)
            if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != '_')
                return GW_ERR_CONFIG;
    }
    if (*p == '\0')
        return GW_ERR_CONFIG;
    for (const char *c = p; *c; c++) {
        if (!isdigit((unsigned char)*c))
            return GW_ERR_CONFIG;
        v = v * 10 + (unsigned long)(*c - '0');
        if (v > 65535)
            return GW_ERR_CONFIG;
    }
    hlen = (size_t)(hend - h);
    if (hlen + 1 > hostcap)
        return GW_ERR_NOSPACE;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return GW_OK;
}

gw_err_t gw_config_parse_route(const char *s, char **prefix, char **url)
{
    const char *eq;

    if (prefix)
        *prefix = NULL;
    if (url)
        *url = NULL;
    if (!s || !prefix || !url)
        return GW_ERR_INVAL;
    eq = strchr(s, '=');
    if (!eq || eq == s || eq[1] == '\0')
        return GW_ERR_CONFIG;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c <= 0x20 || *c == 0x7f)
            return GW_ERR_CONFIG;
    *prefix = strndup(s, (size_t)(eq - s));
    *url = strdup(eq + 1);
    if (!*prefix || !*url) {
        free(*prefix);
        free(*url);
        *prefix = *url = NULL;
        return GW_ERR_NOMEM;
    }
    return GW_OK;
}
