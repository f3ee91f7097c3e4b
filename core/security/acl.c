/* Topic access control in mosquitto's acl_file format: parsing, and the read/write/subscribe decisions.
 * Loading: any thread. Checks: any thread; a loaded rule set is never modified. */
#include "security/acl.h"
#include "ringmq/errbuf.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DENY 0
/* Substituted patterns up to this size are built on the stack; longer ones need an allocation. */
#define SUBST_STACK 512
/* A line longer than a maximal topic filter plus the keywords is certainly garbage. */
#define MAX_LINE (65535 + 64)
/* A whole file larger than this is not an ACL file someone meant to load. */
#define MAX_FILE (64u << 20)

struct rule {
	uint8_t *filter;
	size_t len;
	int access;      /* DENY or a mask of RMQ_ACL_READ / RMQ_ACL_WRITE */
	bool subst;      /* pattern containing %c or %u */
	bool needs_user; /* pattern containing %u */
};

/* Denies are kept apart and checked first, as mosquitto does by moving them to the list front. */
struct rules {
	struct rule *deny, *allow;
	size_t ndeny, nallow, capdeny, capallow;
};

struct user_sec {
	uint8_t *name;
	size_t len;
	struct rules r;
};

struct rmq_acl {
	struct rules anon;     /* `topic` lines before the first `user` line */
	struct user_sec *user; /* sorted by name after loading */
	size_t nuser, capuser;
	struct rules pattern;
	size_t ntopic;
};

/* ---- topic filter algebra ---------------------------------------------------------------------- */

struct lv {
	const uint8_t *s;
	size_t len, pos;
	bool done;
};

static bool lv_next(struct lv *it, const uint8_t **p, size_t *n)
{
	if (it->done)
		return false;
	const uint8_t *start = it->s + it->pos;
	const uint8_t *slash = memchr(start, '/', it->len - it->pos);
	if (slash) {
		*n = (size_t)(slash - start);
		it->pos += *n + 1;
	} else {
		*n = it->len - it->pos;
		it->done = true;
	}
	*p = start;
	return true;
}

static bool is1(const uint8_t *p, size_t n, char c)
{
	return n == 1 && p[0] == c;
}

/* [MQTT-4.7.2-1] a filter starting with a wildcard does not match topics starting with '$'. True when
 * a's first level is a wildcard and b's first level is a '$' literal, or the other way round. */
static bool dollar_split(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	bool a_wild = alen && (a[0] == '+' || a[0] == '#') && (alen == 1 || a[1] == '/');
	bool b_wild = blen && (b[0] == '+' || b[0] == '#') && (blen == 1 || b[1] == '/');
	return (a_wild && blen && b[0] == '$' && !b_wild) || (b_wild && alen && a[0] == '$' && !a_wild);
}

/* Does filter r match every topic that filter (or topic name) f matches? With f a topic name this is
 * the ordinary "topic matches filter" test. */
static bool covers(const uint8_t *r, size_t rlen, const uint8_t *f, size_t flen)
{
	if (dollar_split(r, rlen, f, flen))
		return false;
	struct lv ri = { .s = r, .len = rlen }, fi = { .s = f, .len = flen };
	const uint8_t *rp, *fp;
	size_t rn, fn;
	for (;;) {
		bool hr = lv_next(&ri, &rp, &rn), hf = lv_next(&fi, &fp, &fn);
		if (!hr)
			return !hf;
		if (is1(rp, rn, '#'))
			return true; /* also matches the parent level: "a/#" covers "a" */
		if (!hf || is1(fp, fn, '#'))
			return false;
		if (is1(rp, rn, '+'))
			continue;
		if (is1(fp, fn, '+') || rn != fn || memcmp(rp, fp, rn) != 0)
			return false;
	}
}

/* Is there a topic that both filters match? */
static bool intersects(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	if (dollar_split(a, alen, b, blen))
		return false;
	struct lv ai = { .s = a, .len = alen }, bi = { .s = b, .len = blen };
	const uint8_t *ap, *bp;
	size_t an, bn;
	for (;;) {
		bool ha = lv_next(&ai, &ap, &an), hb = lv_next(&bi, &bp, &bn);
		if (!ha || !hb)
			return ha ? is1(ap, an, '#') : !hb || is1(bp, bn, '#');
		if (is1(ap, an, '#') || is1(bp, bn, '#'))
			return true;
		if (is1(ap, an, '+') || is1(bp, bn, '+'))
			continue;
		if (an != bn || memcmp(ap, bp, an) != 0)
			return false;
	}
}

/* Topic filter syntax: non-empty, '#' alone in the last level, '+' alone in its level, no NUL. */
static bool filter_valid(const uint8_t *f, size_t len)
{
	if (len == 0 || len > 65535 || memchr(f, '\0', len))
		return false;
	struct lv it = { .s = f, .len = len };
	const uint8_t *p;
	size_t n;
	while (lv_next(&it, &p, &n)) {
		if ((memchr(p, '#', n) && (!is1(p, n, '#') || !it.done)) || (memchr(p, '+', n) && !is1(p, n, '+')))
			return false;
	}
	return true;
}

/* ---- decisions --------------------------------------------------------------------------------- */

struct eval {
	const uint8_t *target; /* topic name, or filter for a subscribe check */
	size_t len;
	int want;
	bool is_filter;
	bool seen_allow, seen_deny; /* some, not all, of the filter's topics were decided */
	bool decided;
	int result;
};

/* Applies one rule; returns true once the decision is made. */
static bool visit(struct eval *ev, const uint8_t *f, size_t flen, int access)
{
	if (access != DENY && !(access & ev->want))
		return false;
	if (covers(f, flen, ev->target, ev->len)) {
		if (access == DENY)
			ev->result = ev->seen_allow ? RMQ_ACL_FILTERED : -EACCES;
		else
			ev->result = ev->seen_deny ? RMQ_ACL_FILTERED : 0;
		ev->decided = true;
		return true;
	}
	if (ev->is_filter && intersects(f, flen, ev->target, ev->len)) {
		if (access == DENY)
			ev->seen_deny = true;
		else
			ev->seen_allow = true;
	}
	return false;
}

static bool visit_list(struct eval *ev, const struct rule *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (visit(ev, r[i].filter, r[i].len, r[i].access))
			return true;
	return false;
}

static size_t subst_len(const struct rule *r, const struct rmq_acl_who *who)
{
	size_t n = 0;
	for (size_t i = 0; i < r->len; i++, n++) {
		if (r->filter[i] == '%' && i + 1 < r->len && r->filter[i + 1] == 'c') {
			n += who->client_id_len - 1;
			i++;
		} else if (r->filter[i] == '%' && i + 1 < r->len && r->filter[i + 1] == 'u' && who->username) {
			n += who->username_len - 1;
			i++;
		}
	}
	return n;
}

static void subst(const struct rule *r, const struct rmq_acl_who *who, uint8_t *out)
{
	for (size_t i = 0; i < r->len; i++) {
		if (r->filter[i] == '%' && i + 1 < r->len && r->filter[i + 1] == 'c') {
			memcpy(out, who->client_id, who->client_id_len);
			out += who->client_id_len;
			i++;
		} else if (r->filter[i] == '%' && i + 1 < r->len && r->filter[i + 1] == 'u' && who->username) {
			memcpy(out, who->username, who->username_len);
			out += who->username_len;
			i++;
		} else {
			*out++ = r->filter[i];
		}
	}
}

/* Returns true once decided; a failed allocation decides "deny" (fail closed). */
static bool visit_pattern(struct eval *ev, const struct rule *r, const struct rmq_acl_who *who)
{
	if (r->needs_user && !who->username)
		return false;
	if (!r->subst)
		return visit(ev, r->filter, r->len, r->access);
	uint8_t stack[SUBST_STACK] = {0};  /* zeroed only to quiet -O2 maybe-uninitialized */
	size_t n = subst_len(r, who);
	uint8_t *buf = n <= sizeof(stack) ? stack : malloc(n);
	if (!buf) {
		ev->result = -EACCES;
		ev->decided = true;
		return true;
	}
	subst(r, who, buf);
	bool done = visit(ev, buf, n, r->access);
	if (buf != stack)
		free(buf);
	return done;
}

static bool visit_patterns(struct eval *ev, const struct rule *r, size_t n, const struct rmq_acl_who *who)
{
	for (size_t i = 0; i < n; i++)
		if (visit_pattern(ev, &r[i], who))
			return true;
	return false;
}

static int cmp_name(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static const struct rules *rules_of(const struct rmq_acl *acl, const struct rmq_acl_who *who)
{
	if (!who->username)
		return &acl->anon;
	size_t lo = 0, hi = acl->nuser;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_name(who->username, who->username_len, acl->user[mid].name, acl->user[mid].len);
		if (c == 0)
			return &acl->user[mid].r;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static bool has_wildcard(const uint8_t *s, size_t n)
{
	return s && (memchr(s, '+', n) || memchr(s, '#', n));
}

static int decide(const struct rmq_acl *acl, const struct rmq_acl_who *who, struct eval *ev)
{
	const struct rules *own = rules_of(acl, who);
	if (own && (visit_list(ev, own->deny, own->ndeny) || visit_list(ev, own->allow, own->nallow)))
		return ev->result;
	const struct rules *p = &acl->pattern;
	if (p->ndeny + p->nallow > 0) {
		/* A '+' or '#' in an id would turn "cars/%u/#" into a wildcard over other clients' topics. */
		if (has_wildcard(who->username, who->username_len) || has_wildcard(who->client_id, who->client_id_len))
			return ev->seen_allow ? RMQ_ACL_FILTERED : -EACCES;
		if (visit_patterns(ev, p->deny, p->ndeny, who) || visit_patterns(ev, p->allow, p->nallow, who))
			return ev->result;
	}
	return ev->seen_allow ? RMQ_ACL_FILTERED : -EACCES;
}

int rmq_acl_check(const struct rmq_acl *acl, const struct rmq_acl_who *who, const uint8_t *topic, size_t len,
		  int access)
{
	if (!acl)
		return 0;
	if (len == 0 || (access != RMQ_ACL_READ && access != RMQ_ACL_WRITE))
		return -EACCES;
	struct eval ev = { .target = topic, .len = len, .want = access };
	return decide(acl, who, &ev) == 0 ? 0 : -EACCES;
}

int rmq_acl_check_subscribe(const struct rmq_acl *acl, const struct rmq_acl_who *who, const uint8_t *filter,
			    size_t len)
{
	if (!acl)
		return 0;
	static const char share[] = "$share/";
	if (len > sizeof(share) - 1 && memcmp(filter, share, sizeof(share) - 1) == 0) {
		const uint8_t *group = filter + sizeof(share) - 1;
		const uint8_t *slash = memchr(group, '/', len - (size_t)(group - filter));
		if (!slash)
			return -EACCES;
		len -= (size_t)(slash + 1 - filter);
		filter = slash + 1;
	}
	if (len == 0)
		return -EACCES;
	struct eval ev = { .target = filter, .len = len, .want = RMQ_ACL_READ, .is_filter = true };
	return decide(acl, who, &ev);
}

/* ---- loading ----------------------------------------------------------------------------------- */

static void rules_free(struct rules *r)
{
	for (size_t i = 0; i < r->ndeny; i++)
		free(r->deny[i].filter);
	for (size_t i = 0; i < r->nallow; i++)
		free(r->allow[i].filter);
	free(r->deny);
	free(r->allow);
}

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? *cap * 2 : 8;
	void *p = realloc(*arr, ncap * size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

static int rules_add(struct rules *r, const char *filter, size_t len, int access, bool pattern)
{
	struct rule **arr = access == DENY ? &r->deny : &r->allow;
	size_t *n = access == DENY ? &r->ndeny : &r->nallow;
	size_t *cap = access == DENY ? &r->capdeny : &r->capallow;
	if (grow((void **)arr, cap, *n, sizeof(**arr)) < 0)
		return -ENOMEM;
	struct rule *x = &(*arr)[*n];
	x->filter = malloc(len);
	if (!x->filter)
		return -ENOMEM;
	memcpy(x->filter, filter, len);
	x->len = len;
	x->access = access;
	x->needs_user = pattern && memmem(filter, len, "%u", 2);
	x->subst = x->needs_user || (pattern && memmem(filter, len, "%c", 2));
	(*n)++;
	return 0;
}

/* The user section named `name`, created when absent (sections are sorted once loading ends). */
static struct rules *section(struct rmq_acl *acl, const char *name, size_t len)
{
	for (size_t i = 0; i < acl->nuser; i++)
		if (cmp_name((const uint8_t *)name, len, acl->user[i].name, acl->user[i].len) == 0)
			return &acl->user[i].r;
	if (grow((void **)&acl->user, &acl->capuser, acl->nuser, sizeof(*acl->user)) < 0)
		return NULL;
	struct user_sec *u = &acl->user[acl->nuser];
	memset(u, 0, sizeof(*u));
	u->name = malloc(len ? len : 1);
	if (!u->name)
		return NULL;
	memcpy(u->name, name, len);
	u->len = len;
	acl->nuser++;
	return &u->r;
}

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Splits off the next blank-separated word of [*s, end). */
static bool word(const char **s, const char *end, const char **w, size_t *wn)
{
	while (*s < end && blank(**s))
		(*s)++;
	if (*s == end)
		return false;
	*w = *s;
	while (*s < end && !blank(**s))
		(*s)++;
	*wn = (size_t)(*s - *w);
	return true;
}

static void trim_end(const char *s, const char **end)
{
	while (*end > s && blank((*end)[-1]))
		(*end)--;
}

static bool word_is(const char *w, size_t n, const char *lit)
{
	return n == strlen(lit) && memcmp(w, lit, n) == 0;
}

struct parser {
	struct rmq_acl *acl;
	struct rules *cur; /* where `topic` lines go */
	const char *name;
	unsigned line;
	char *err;
	size_t errlen;
};

static int bad(struct parser *ps, const char *fmt, const char *w, size_t n)
{
	char what[160];
	snprintf(what, sizeof(what), fmt, (int)(n > 80 ? 80 : n), w);
	rmq_errbuf_printf(ps->err, ps->errlen, "%s:%u: %s", ps->name, ps->line, what);
	return -EINVAL;
}

static int parse_rule(struct parser *ps, const char *rest, const char *end, bool pattern)
{
	const char *w, *t;
	size_t wn, tn;
	if (!word(&rest, end, &w, &wn))
		return bad(ps, "'%.*s' needs a topic filter", pattern ? "pattern" : "topic", pattern ? 7 : 5);
	int access = RMQ_ACL_READ | RMQ_ACL_WRITE;
	const char *after = rest;
	if (word(&after, end, &t, &tn)) {
		if (word_is(w, wn, "read"))
			access = RMQ_ACL_READ;
		else if (word_is(w, wn, "write"))
			access = RMQ_ACL_WRITE;
		else if (word_is(w, wn, "readwrite"))
			access = RMQ_ACL_READ | RMQ_ACL_WRITE;
		else if (word_is(w, wn, "deny"))
			access = DENY;
		else
			return bad(ps, "unknown access '%.*s' (want read, write, readwrite or deny)", w, wn);
		tn = (size_t)(end - t); /* the filter is the rest of the line: it may contain blanks */
	} else {
		t = w;
		tn = wn;
	}
	if (!filter_valid((const uint8_t *)t, tn))
		return bad(ps, "invalid topic filter '%.*s' ('+' and '#' must fill a level, '#' only last)", t, tn);
	struct rules *dst = pattern ? &ps->acl->pattern : ps->cur;
	if (rules_add(dst, t, tn, access, pattern) < 0)
		return -ENOMEM;
	if (!pattern)
		ps->acl->ntopic++;
	return 0;
}

static int parse_line(struct parser *ps, const char *s, const char *end)
{
	trim_end(s, &end);
	const char *w;
	size_t wn;
	if (!word(&s, end, &w, &wn) || w[0] == '#')
		return 0;
	if (word_is(w, wn, "topic"))
		return parse_rule(ps, s, end, false);
	if (word_is(w, wn, "pattern"))
		return parse_rule(ps, s, end, true);
	if (word_is(w, wn, "user")) {
		while (s < end && blank(*s))
			s++;
		if (s == end)
			return bad(ps, "'%.*s' needs a user name", "user", 4);
		ps->cur = section(ps->acl, s, (size_t)(end - s));
		return ps->cur ? 0 : -ENOMEM;
	}
	return bad(ps, "unknown keyword '%.*s' (want user, topic or pattern)", w, wn);
}

static int cmp_user(const void *a, const void *b)
{
	const struct user_sec *x = a, *y = b;
	return cmp_name(x->name, x->len, y->name, y->len);
}

int rmq_acl_parse(const char *text, size_t len, const char *name, struct rmq_acl **out, char *err, size_t errlen)
{
	*out = NULL;
	struct rmq_acl *acl = calloc(1, sizeof(*acl));
	if (!acl) {
		rmq_errbuf_printf(err, errlen, "%s: out of memory", name);
		return -ENOMEM;
	}
	struct parser ps = { .acl = acl, .cur = &acl->anon, .name = name, .err = err, .errlen = errlen };
	const char *p = text, *end = text + len;
	int rc = 0;
	while (p < end && rc == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		ps.line++;
		if (le - p > MAX_LINE)
			rc = bad(&ps, "line longer than %.*s bytes", "65599", 5);
		else if (memchr(p, '\0', (size_t)(le - p)))
			rc = bad(&ps, "%.*s byte in line", "NUL", 3);
		else
			rc = parse_line(&ps, p, le);
		p = nl ? nl + 1 : end;
	}
	if (rc == -ENOMEM)
		rmq_errbuf_printf(err, errlen, "%s: out of memory", name);
	if (rc < 0) {
		rmq_acl_free(acl);
		return rc;
	}
	if (acl->nuser > 1)
		qsort(acl->user, acl->nuser, sizeof(*acl->user), cmp_user);
	*out = acl;
	return 0;
}

int rmq_acl_load(const char *path, struct rmq_acl **out, char *err, size_t errlen)
{
	*out = NULL;
	FILE *f = fopen(path, "re");
	if (!f) {
		int rc = -errno;
		rmq_errbuf_printf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	char *buf = NULL;
	size_t cap = 0, n = 0, got;
	char chunk[8192];
	int rc = 0;
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (n + got > MAX_FILE) {
			rc = -EFBIG;
			rmq_errbuf_printf(err, errlen, "%s: larger than %u bytes", path, MAX_FILE);
			break;
		}
		if (n + got > cap) {
			size_t ncap = cap ? cap * 2 : sizeof(chunk) * 2;
			char *nb = realloc(buf, ncap);
			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			buf = nb;
			cap = ncap;
		}
		memcpy(buf + n, chunk, got);
		n += got;
	}
	if (rc == 0 && ferror(f)) {
		rc = -EIO;
		rmq_errbuf_printf(err, errlen, "%s: read error", path);
	} else if (rc == -ENOMEM) {
		rmq_errbuf_printf(err, errlen, "%s: out of memory", path);
	}
	fclose(f);
	if (rc == 0)
		rc = rmq_acl_parse(buf ? buf : "", n, path, out, err, errlen);
	free(buf);
	return rc;
}

void rmq_acl_counts(const struct rmq_acl *acl, size_t *users, size_t *topics, size_t *patterns)
{
	*users = acl ? acl->nuser : 0;
	*topics = acl ? acl->ntopic : 0;
	*patterns = acl ? acl->pattern.ndeny + acl->pattern.nallow : 0;
}

void rmq_acl_free(struct rmq_acl *acl)
{
	if (!acl)
		return;
	rules_free(&acl->anon);
	rules_free(&acl->pattern);
	for (size_t i = 0; i < acl->nuser; i++) {
		free(acl->user[i].name);
		rules_free(&acl->user[i].r);
	}
	free(acl->user);
	free(acl);
}
