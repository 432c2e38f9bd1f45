/*
 * acl.c - ACL file: sections (user, tenant, anonymous, pattern), topic
 * rules with %u/%c/%t substitution, and the filter relations (covers,
 * intersects) that decide SUBSCRIBE with wildcards. Semantics for
 * operators: docs/security.md.
 *
 * Rule filters are split into levels once at load time. A level that holds
 * a substitution is compared by expanding it on the fly, so a check never
 * allocates nor copies; substituted values may not contain '/', '+' or '#'
 * (checked per request), so a substitution never changes the level
 * structure of a rule.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth-internal.h"
#include "gw/mqtt.h"

#define ACL_LINE_MAX 4096
#define ACL_MAX_RULES 1000000u

enum { LV_LIT, LV_PLUS, LV_HASH, LV_TMPL };
enum { SEC_USER, SEC_TENANT, SEC_ANON, SEC_PATTERN };
enum { VAR_U = 1, VAR_C = 2, VAR_T = 4 };
#define ACC_DENY 4u

typedef struct lvl {
    uint8_t kind;
    const char *p;
    size_t n;
} lvl_t;

typedef struct rule {
    size_t section;
    size_t first_level, nlevels;
    uint8_t access; /* GW_ACL_READ | GW_ACL_WRITE, or ACC_DENY */
    uint8_t vars;   /* VAR_* used by the filter */
} rule_t;

typedef struct section {
    uint8_t kind;
    const char *name; /* into acl->text; NULL for anonymous/pattern */
    size_t name_len;
    size_t lineno;
    size_t first_rule, nrules;
} section_t;

struct gw_auth_acl {
    char *text;
    lvl_t *levels;
    size_t nlevels, cap_levels;
    rule_t *rules;
    size_t nrules, cap_rules;
    section_t *sections;
    size_t nsections, cap_sections;
    section_t **users, **tenants; /* sorted by name */
    size_t nusers, ntenants;
    section_t *anon, *pattern;
};

/* ------------------------------------------------------------------ */
/* Level cursors and the two filter relations                          */
/* ------------------------------------------------------------------ */

typedef struct subst {
    const char *v[3]; /* u, c, t */
    size_t n[3];
} subst_t;

typedef struct cursor {
    const lvl_t *arr; /* rule levels, or NULL for a string */
    size_t i, count;
    const char *s;
    size_t slen, pos; /* pos > slen: exhausted */
} cursor_t;

static void cur_str(cursor_t *c, const char *s, size_t len)
{
    memset(c, 0, sizeof(*c));
    c->s = s;
    c->slen = len;
}

static void cur_rule(cursor_t *c, const lvl_t *arr, size_t count)
{
    memset(c, 0, sizeof(*c));
    c->arr = arr;
    c->count = count;
}

static bool cur_next(cursor_t *c, lvl_t *out)
{
    if (c->arr) {
        if (c->i >= c->count)
            return false;
        *out = c->arr[c->i++];
        return true;
    }
    if (c->pos > c->slen)
        return false;
    const char *start = c->s + c->pos;
    const char *sl = memchr(start, '/', c->slen - c->pos);
    size_t n = sl ? (size_t)(sl - start) : c->slen - c->pos;
    c->pos += n + 1;
    out->p = start;
    out->n = n;
    out->kind = (n == 1 && start[0] == '+') ? LV_PLUS : (n == 1 && start[0] == '#') ? LV_HASH
                                                                                  : LV_LIT;
    return true;
}

static int var_index(char c)
{
    return c == 'u' ? 0 : c == 'c' ? 1 : c == 't' ? 2 : -1;
}

/* First byte of a literal or template level after expansion; -1 if empty. */
static int lvl_first(const lvl_t *l, const subst_t *sub)
{
    if (l->n == 0)
        return -1;
    if (l->kind == LV_TMPL && l->n >= 2 && l->p[0] == '%' && var_index(l->p[1]) >= 0) {
        int k = var_index(l->p[1]);
        if (sub && sub->n[k])
            return (unsigned char)sub->v[k][0];
        /* Empty or missing values never reach here (rule skipped). */
        return -1;
    }
    return (unsigned char)l->p[0];
}

static bool is_dollar(const lvl_t *l, const subst_t *sub)
{
    return (l->kind == LV_LIT || l->kind == LV_TMPL) && lvl_first(l, sub) == '$';
}

/* Expanded a (literal or template) equals literal b? */
static bool lvl_eq(const lvl_t *a, const lvl_t *b, const subst_t *sub)
{
    if (a->kind == LV_LIT)
        return a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
    size_t j = 0;
    for (size_t i = 0; i < a->n; i++) {
        int k = (a->p[i] == '%' && i + 1 < a->n) ? var_index(a->p[i + 1]) : -1;
        if (k >= 0) {
            size_t vn = sub ? sub->n[k] : 0;
            if (b->n - j < vn || memcmp(b->p + j, sub->v[k], vn) != 0)
                return false;
            j += vn;
            i++;
        } else {
            if (j >= b->n || b->p[j] != a->p[i])
                return false;
            j++;
        }
    }
    return j == b->n;
}

static bool is_concrete(const lvl_t *l)
{
    return l->kind == LV_LIT || l->kind == LV_TMPL;
}

/* Every topic matched by inner is matched by outer. */
static bool covers(cursor_t *o, cursor_t *in, const subst_t *sub)
{
    lvl_t ol, il;
    bool first = true;
    bool no_prefix_topic = true; /* the levels so far do not form a topic */

    for (;; first = false) {
        bool ho = cur_next(o, &ol), hi = cur_next(in, &il);
        if (!ho)
            return !hi;
        if (ol.kind == LV_HASH) {
            /* MQTT-4.7.2-1: a leading wildcard does not match '$' topics. */
            if (first && hi && is_dollar(&il, sub))
                return false;
            return true; /* also the parent level: "a/#" covers "a" */
        }
        if (!hi)
            return false;
        if (ol.kind == LV_PLUS) {
            if (first && is_dollar(&il, sub))
                return false;
            if (il.kind == LV_HASH) {
                /* P/+/# covers P/# only when P itself is no topic: "+/#"
                 * covers "#", "/+/#" covers "/#" (the zero-length topic
                 * does not exist); otherwise P/# also matches P. */
                cursor_t peek = *o;
                lvl_t nl;
                if (!no_prefix_topic || !cur_next(&peek, &nl) || nl.kind != LV_HASH)
                    return false;
                return true;
            }
            no_prefix_topic = first && is_concrete(&il) && il.n == 0;
            continue;
        }
        if (!is_concrete(&il) || !lvl_eq(&ol, &il, sub))
            return false;
        no_prefix_topic = first && il.n == 0;
    }
}

/* Some topic is matched by both. */
static bool intersects(cursor_t *a, cursor_t *b, const subst_t *sub)
{
    lvl_t al, bl;
    bool first = true;
    bool only_empty = false; /* the common prefix is the one empty level "" */

    for (;; first = false) {
        bool ha = cur_next(a, &al), hb = cur_next(b, &bl);
        if (!ha && !hb)
            return true;
        /* "a" and "a/#" share "a" (the parent level), but "+" and "/#"
         * would only share the zero-length topic, which is not a topic. */
        if (!ha)
            return bl.kind == LV_HASH && !only_empty;
        if (!hb)
            return al.kind == LV_HASH && !only_empty;
        only_empty = first && ((is_concrete(&al) && al.n == 0) || (is_concrete(&bl) && bl.n == 0));
        if (al.kind == LV_HASH || bl.kind == LV_HASH) {
            if (first && (is_dollar(&al, sub) || is_dollar(&bl, sub)))
                return false; /* the other side is a leading wildcard */
            return true;
        }
        if (al.kind == LV_PLUS || bl.kind == LV_PLUS) {
            if (first && (is_dollar(&al, sub) || is_dollar(&bl, sub)))
                return false;
            continue;
        }
        /* Both concrete; at most the rule side (a) is a template. */
        if (!lvl_eq(&al, &bl, sub))
            return false;
    }
}

bool gw_auth_filter_covers(const char *outer, size_t olen, const char *inner, size_t ilen)
{
    cursor_t o, i;
    cur_str(&o, outer, olen);
    cur_str(&i, inner, ilen);
    return covers(&o, &i, NULL);
}

bool gw_auth_filter_intersects(const char *a, size_t alen, const char *b, size_t blen)
{
    cursor_t ca, cb;
    cur_str(&ca, a, alen);
    cur_str(&cb, b, blen);
    return intersects(&ca, &cb, NULL);
}

/* ------------------------------------------------------------------ */
/* Check                                                               */
/* ------------------------------------------------------------------ */

enum { V_ABSENT, V_OK, V_DANGEROUS };

static int value_state(const char *v, size_t n)
{
    if (!v)
        return V_ABSENT;
    /* Empty or containing a level separator / wildcard: substituting it
     * could widen a rule (mosquitto refuses such names likewise). */
    if (n == 0 || memchr(v, '/', n) || memchr(v, '+', n) || memchr(v, '#', n))
        return V_DANGEROUS;
    return V_OK;
}

/* Returns -1: deny now; 1: some allow rule covers; 0: nothing. */
static int check_section(const gw_auth_acl_t *acl, const section_t *sec, const subst_t *sub,
                         const int state[3], const char *topic, size_t len, unsigned access)
{
    int allowed = 0;

    for (size_t r = sec->first_rule; r < sec->first_rule + sec->nrules; r++) {
        const rule_t *rule = &acl->rules[r];
        bool absent = false, dangerous = false;
        cursor_t rc, tc;

        for (int k = 0; k < 3; k++) {
            if (!(rule->vars & (1 << k)))
                continue;
            absent |= state[k] == V_ABSENT;
            dangerous |= state[k] == V_DANGEROUS;
        }
        if (absent)
            continue; /* e.g. %u for an anonymous client: rule does not apply */
        if (rule->access == ACC_DENY) {
            if (dangerous)
                return -1; /* fail closed: a deny rule is never narrowed */
            cur_rule(&rc, &acl->levels[rule->first_level], rule->nlevels);
            cur_str(&tc, topic, len);
            if (intersects(&rc, &tc, sub))
                return -1;
        } else if (!allowed && !dangerous && (rule->access & access)) {
            cur_rule(&rc, &acl->levels[rule->first_level], rule->nlevels);
            cur_str(&tc, topic, len);
            if (covers(&rc, &tc, sub))
                allowed = 1;
        }
    }
    return allowed;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    if (c)
        return c;
    return alen < blen ? -1 : alen > blen;
}

static const section_t *find_section(section_t *const *arr, size_t n, const char *name,
                                     size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(name, len, arr[mid]->name, arr[mid]->name_len);
        if (c == 0)
            return arr[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

bool gw_auth_acl_check(const gw_auth_acl_t *acl, const gw_auth_subject_t *subject,
                       const char *topic, size_t len, unsigned access, bool is_filter)
{
    const section_t *secs[3];
    size_t nsecs = 0;
    subst_t sub;
    int state[3];
    bool allowed = false;

    if (!acl)
        return true; /* no ACL configured */
    if (!subject || !topic || len == 0 || (access != GW_ACL_READ && access != GW_ACL_WRITE))
        return false;
    /* A topic name never holds wildcards; refuse rather than widen. */
    if (!is_filter && (memchr(topic, '+', len) || memchr(topic, '#', len)))
        return false;

    sub.v[0] = subject->user;
    sub.n[0] = subject->user ? subject->user_len : 0;
    sub.v[1] = subject->client_id && subject->client_id_len ? subject->client_id : NULL;
    sub.n[1] = sub.v[1] ? subject->client_id_len : 0;
    sub.v[2] = subject->tenant;
    sub.n[2] = subject->tenant ? subject->tenant_len : 0;
    for (int k = 0; k < 3; k++)
        state[k] = value_state(sub.v[k], sub.n[k]);

    if (subject->user) {
        const section_t *s = find_section(acl->users, acl->nusers, subject->user,
                                          subject->user_len);
        if (s)
            secs[nsecs++] = s;
    } else if (acl->anon) {
        secs[nsecs++] = acl->anon;
    }
    if (subject->tenant) {
        const section_t *s = find_section(acl->tenants, acl->ntenants, subject->tenant,
                                          subject->tenant_len);
        if (s)
            secs[nsecs++] = s;
    }
    if (acl->pattern)
        secs[nsecs++] = acl->pattern;

    /* Deny wins over allow whatever the section or order: scan everything. */
    for (size_t i = 0; i < nsecs; i++) {
        int r = check_section(acl, secs[i], &sub, state, topic, len, access);
        if (r < 0)
            return false;
        if (r > 0)
            allowed = true;
    }
    return allowed;
}

/* ------------------------------------------------------------------ */
/* Parsing                                                             */
/* ------------------------------------------------------------------ */

void gw_auth_acl_free(gw_auth_acl_t *acl)
{
    if (!acl)
        return;
    free(acl->text);
    free(acl->levels);
    free(acl->rules);
    free(acl->sections);
    free(acl->users);
    free(acl->tenants);
    free(acl);
}

static bool grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *n = realloc(*arr, ncap * elem);
    if (!n)
        return false;
    *arr = n;
    *cap = ncap;
    return true;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Next whitespace-delimited token of [*p, end); false at the end. */
static bool token(const char **p, const char *end, const char **tok, size_t *n)
{
    const char *s = *p;
    while (s < end && is_blank(*s))
        s++;
    if (s == end)
        return false;
    const char *e = s;
    while (e < end && !is_blank(*e))
        e++;
    *tok = s;
    *n = (size_t)(e - s);
    *p = e;
    return true;
}

static bool tok_is(const char *tok, size_t n, const char *word)
{
    size_t wl = strlen(word);
    return n == wl && memcmp(tok, word, n) == 0;
}

/* Rest of the line after *p, blanks trimmed on both sides. */
static void rest(const char *p, const char *end, const char **out, size_t *n)
{
    while (p < end && is_blank(*p))
        p++;
    while (end > p && is_blank(end[-1]))
        end--;
    *out = p;
    *n = (size_t)(end - p);
}

static int sec_cmp(const void *a, const void *b)
{
    const section_t *x = *(section_t *const *)a, *y = *(section_t *const *)b;
    return name_cmp(x->name, x->name_len, y->name, y->name_len);
}

static int rule_cmp(const void *a, const void *b)
{
    const rule_t *x = a, *y = b;
    if (x->section != y->section)
        return x->section < y->section ? -1 : 1;
    return x->first_level < y->first_level ? -1 : x->first_level > y->first_level;
}

static gw_err_t add_section(gw_auth_acl_t *acl, uint8_t kind, const char *name, size_t n,
                            size_t lineno, size_t *idx)
{
    if (!grow((void **)&acl->sections, &acl->cap_sections, acl->nsections + 1,
              sizeof(section_t)))
        return GW_ERR_NOMEM;
    section_t *s = &acl->sections[acl->nsections];
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->name = name;
    s->name_len = n;
    s->lineno = lineno;
    *idx = acl->nsections++;
    return GW_OK;
}

/* Parse one rule filter into levels. Returns NULL or a reason. */
static const char *add_rule(gw_auth_acl_t *acl, size_t section, uint8_t access,
                            const char *f, size_t n, bool substitute)
{
    gw_err_t verr = gw_topic_filter_validate(NULL, f, n);
    rule_t r = {.section = section, .first_level = acl->nlevels, .access = access};
    cursor_t c;
    lvl_t l;

    if (verr == GW_ERR_MQTT_TOPIC_EMPTY)
        return "missing topic filter";
    if (verr != GW_OK)
        return "invalid topic filter";
    if (acl->nrules >= ACL_MAX_RULES)
        return "too many rules";
    cur_str(&c, f, n);
    while (cur_next(&c, &l)) {
        if (substitute && l.kind == LV_LIT) {
            for (size_t i = 0; i + 1 < l.n; i++) {
                int k = l.p[i] == '%' ? var_index(l.p[i + 1]) : -1;
                if (k >= 0) {
                    l.kind = LV_TMPL;
                    r.vars |= (uint8_t)(1 << k);
                    i++;
                }
            }
        }
        if (!grow((void **)&acl->levels, &acl->cap_levels, acl->nlevels + 1, sizeof(lvl_t)))
            return "out of memory";
        acl->levels[acl->nlevels++] = l;
        r.nlevels++;
    }
    if (!grow((void **)&acl->rules, &acl->cap_rules, acl->nrules + 1, sizeof(rule_t)))
        return "out of memory";
    acl->rules[acl->nrules++] = r;
    return NULL;
}

static const char *parse_access(const char *tok, size_t n, uint8_t *access)
{
    if (tok_is(tok, n, "read"))
        *access = GW_ACL_READ;
    else if (tok_is(tok, n, "write"))
        *access = GW_ACL_WRITE;
    else if (tok_is(tok, n, "readwrite"))
        *access = GW_ACL_READ | GW_ACL_WRITE;
    else if (tok_is(tok, n, "deny"))
        *access = ACC_DENY;
    else
        return "x";
    return NULL;
}

/* "topic|pattern [access] <filter>": the access word is optional
 * (readwrite) when the filter is the only argument. */
static const char *parse_rule_args(const char *p, const char *end, uint8_t *access,
                                   const char **f, size_t *fn)
{
    const char *tok, *q = p;
    size_t tn;

    *access = GW_ACL_READ | GW_ACL_WRITE;
    if (!token(&q, end, &tok, &tn))
        return "missing topic filter";
    const char *after = q;
    const char *tok2;
    size_t tn2;
    if (token(&q, end, &tok2, &tn2)) {
        if (parse_access(tok, tn, access) != NULL)
            return "unknown access (want read, write, readwrite or deny)";
        rest(after, end, f, fn);
    } else {
        rest(p, end, f, fn);
    }
    return NULL;
}

gw_err_t gw_auth_acl_parse(const char *text, size_t len, const char *name, gw_auth_acl_t **out,
                           char *errbuf)
{
    gw_err_t err = GW_ERR_CONFIG;
    gw_auth_acl_t *acl = calloc(1, sizeof(*acl));
    gw_auth_lines_t it;
    const char *line, *why = NULL;
    size_t llen;
    size_t cur = SIZE_MAX; /* current section index */
    gw_auth_line_rc_t rc;

    *out = NULL;
    if (!acl || !(acl->text = malloc(len + 1))) {
        err = GW_ERR_NOMEM;
        gw_auth__err(errbuf, name, 0, "out of memory");
        goto cleanup;
    }
    memcpy(acl->text, text, len);
    acl->text[len] = '\0';
    gw_auth__lines_init(&it, acl->text, len);
    while ((rc = gw_auth__lines_next(&it, ACL_LINE_MAX, &line, &llen)) != GW_AUTH_LINE_END) {
        const char *p = line, *end = line + llen, *kw, *arg;
        size_t kn, an;

        if (rc == GW_AUTH_LINE_LONG) {
            why = "line longer than 4096 bytes";
            goto bad;
        }
        if (!gw_auth__line_ok(line, llen)) {
            why = "invalid UTF-8 or control character";
            goto bad;
        }
        if (!token(&p, end, &kw, &kn) || kw[0] == '#')
            continue;
        if (tok_is(kw, kn, "user") || tok_is(kw, kn, "tenant")) {
            bool user = kw[0] == 'u';
            rest(p, end, &arg, &an);
            if (an == 0) {
                why = user ? "missing user name" : "missing tenant name";
                goto bad;
            }
            if ((err = add_section(acl, user ? SEC_USER : SEC_TENANT, arg, an, it.lineno,
                                   &cur)) != GW_OK)
                goto nomem;
        } else if (tok_is(kw, kn, "anonymous") || (tok_is(kw, kn, "pattern") &&
                                                   (rest(p, end, &arg, &an), an == 0))) {
            bool anon = kw[0] == 'a';
            rest(p, end, &arg, &an);
            if (an != 0) {
                why = "'anonymous' takes no argument";
                goto bad;
            }
            if ((err = add_section(acl, anon ? SEC_ANON : SEC_PATTERN, NULL, 0, it.lineno,
                                   &cur)) != GW_OK)
                goto nomem;
        } else if (tok_is(kw, kn, "topic") || tok_is(kw, kn, "pattern")) {
            bool single_pattern = kw[0] == 'p';
            uint8_t access;
            const char *f;
            size_t fn;
            size_t sec = cur;
            if (!single_pattern && cur == SIZE_MAX) {
                why = "topic rule outside a section (start one with user, tenant, anonymous "
                      "or pattern)";
                goto bad;
            }
            if ((why = parse_rule_args(p, end, &access, &f, &fn)) != NULL)
                goto bad;
            if (single_pattern) {
                /* mosquitto style "pattern <access> <filter>": a rule for everyone. */
                if ((err = add_section(acl, SEC_PATTERN, NULL, 0, it.lineno, &sec)) != GW_OK)
                    goto nomem;
            }
            uint8_t kind = acl->sections[sec].kind;
            if ((why = add_rule(acl, sec, access, f, fn,
                                kind == SEC_PATTERN || kind == SEC_TENANT)) != NULL)
                goto bad;
        } else {
            why = "unknown keyword (want user, tenant, anonymous, pattern or topic)";
            goto bad;
        }
        continue;
    bad:
        gw_auth__err(errbuf, name, it.lineno, "%s", why);
        err = GW_ERR_CONFIG;
        goto cleanup;
    }

    /* Index user/tenant sections, merge repeated anonymous/pattern sections
     * into the first of each, make rules contiguous per section, refuse
     * duplicate user/tenant sections. */
    acl->users = calloc(acl->nsections + 1, sizeof(section_t *));
    acl->tenants = calloc(acl->nsections + 1, sizeof(section_t *));
    if (!acl->users || !acl->tenants)
        goto nomem;
    for (size_t i = 0; i < acl->nsections; i++) {
        section_t *s = &acl->sections[i];
        section_t **merged = s->kind == SEC_ANON ? &acl->anon
                             : s->kind == SEC_PATTERN ? &acl->pattern
                                                      : NULL;
        if (s->kind == SEC_USER)
            acl->users[acl->nusers++] = s;
        else if (s->kind == SEC_TENANT)
            acl->tenants[acl->ntenants++] = s;
        else if (!*merged)
            *merged = s;
    }
    /* Repeated anonymous/pattern sections: one range spanning them all is
     * not contiguous, so renumber their rules into the first one. */
    for (int pass = 0; pass < 2; pass++) {
        section_t *first = pass ? acl->pattern : acl->anon;
        uint8_t kind = pass ? SEC_PATTERN : SEC_ANON;
        if (!first)
            continue;
        for (size_t r = 0; r < acl->nrules; r++)
            if (acl->sections[acl->rules[r].section].kind == kind)
                acl->rules[r].section = (size_t)(first - acl->sections);
    }
    if (acl->nrules)
        qsort(acl->rules, acl->nrules, sizeof(rule_t), rule_cmp);
    for (size_t r = 0; r < acl->nrules; r++) {
        section_t *s = &acl->sections[acl->rules[r].section];
        if (s->nrules++ == 0)
            s->first_rule = r;
    }
    for (int pass = 0; pass < 2; pass++) {
        section_t **arr = pass ? acl->tenants : acl->users;
        size_t n = pass ? acl->ntenants : acl->nusers;
        if (n)
            qsort(arr, n, sizeof(section_t *), sec_cmp);
        for (size_t i = 1; i < n; i++) {
            if (sec_cmp(&arr[i - 1], &arr[i]) == 0) {
                size_t a = arr[i - 1]->lineno, b = arr[i]->lineno;
                gw_auth__err(errbuf, name, a > b ? a : b, "duplicate %s section (first on line %zu)",
                             pass ? "tenant" : "user", a < b ? a : b);
                err = GW_ERR_CONFIG;
                goto cleanup;
            }
        }
    }
    *out = acl;
    acl = NULL;
    err = GW_OK;
    goto cleanup;
nomem:
    gw_auth__err(errbuf, name, 0, "out of memory");
    err = GW_ERR_NOMEM;
cleanup:
    gw_auth_acl_free(acl);
    return err;
}

gw_err_t gw_auth_acl_load(const char *path, gw_auth_acl_t **out, char *errbuf)
{
    char *text = NULL;
    size_t len = 0;
    gw_err_t err = gw_auth__read_file(path, GW_AUTH_FILE_MAX, &text, &len);

    *out = NULL;
    if (err == GW_ERR_IO) {
        gw_auth__err(errbuf, path, 0, "%s", strerror(errno));
        return err;
    }
    if (err == GW_ERR_LIMIT) {
        gw_auth__err(errbuf, path, 0, "file too large");
        return GW_ERR_CONFIG;
    }
    if (err != GW_OK) {
        gw_auth__err(errbuf, path, 0, "out of memory");
        return err;
    }
    err = gw_auth_acl_parse(text, len, path, out, errbuf);
    free(text);
    return err;
}
