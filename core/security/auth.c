/* Password authentication: mosquitto-format password files ($7$/$6$), hash encoding, failed-login limiter.
 * Loading: any thread; checks: any thread (read-only db); a rate limiter: only its owning reactor thread. */
#include "security/auth.h"
#include "ringmq/errbuf.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <xxhash.h>

enum hash_type { HASH_SHA512 = 6, HASH_PBKDF2 = 7 };

struct entry {
	char *user;     /* not NUL-terminated in general use: compare with ulen */
	size_t ulen;
	enum hash_type type;
	uint32_t iterations;
	uint8_t salt[RMQ_AUTH_SALT_LEN];
	uint8_t hash[RMQ_AUTH_HASH_LEN];
};

struct rmq_auth {
	struct entry *e;   /* sorted by user bytes, for binary search */
	size_t n;
	/* Unknown users are checked against this, so that they cost a PBKDF2 run like the costliest real
	 * user (a file may mix iteration counts): "no such user" must not answer faster. */
	struct entry dummy;
};

static void set_dummy(struct rmq_auth *db)
{
	static const uint8_t salt[RMQ_AUTH_SALT_LEN] = "ringmq-dummy";
	db->dummy = (struct entry){ .user = NULL, .type = HASH_PBKDF2, .iterations = RMQ_AUTH_PBKDF2_ITERATIONS };
	memcpy(db->dummy.salt, salt, sizeof(salt));
	for (size_t i = 0; i < db->n; i++)
		if (db->e[i].type == HASH_PBKDF2 && db->e[i].iterations > db->dummy.iterations)
			db->dummy.iterations = db->e[i].iterations;
}

/* Strict standard base64 (with padding, no newlines) into exactly `want` bytes. */
static int b64_decode_exact(const char *s, size_t len, uint8_t *out, size_t want)
{
	if (len == 0 || len % 4 != 0 || len > 4 * ((want + 2) / 3) + 4)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
			  c == '/' || (c == '=' && i >= len - 2);
		if (!ok)
			return -EINVAL;
	}
	size_t pad = (s[len - 1] == '=') + (s[len - 2] == '=');
	if (s[len - 2] == '=' && s[len - 1] != '=')
		return -EINVAL;
	uint8_t tmp[4 * RMQ_AUTH_HASH_LEN];
	if (len / 4 * 3 > sizeof(tmp))
		return -EINVAL;
	int n = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len);
	if (n < 0 || (size_t)n - pad != want)
		return -EINVAL;
	memcpy(out, tmp, want);
	return 0;
}

static int digest(const struct entry *e, const uint8_t *pass, size_t plen, uint8_t out[RMQ_AUTH_HASH_LEN])
{
	static const uint8_t empty[1];
	if (!pass)
		pass = empty;
	if (e->type == HASH_PBKDF2) {
		if (plen > INT_MAX)
			return -EINVAL;
		return PKCS5_PBKDF2_HMAC((const char *)pass, (int)plen, e->salt, RMQ_AUTH_SALT_LEN,
					 (int)e->iterations, EVP_sha512(), RMQ_AUTH_HASH_LEN, out) == 1 ? 0 : -EIO;
	}
	/* mosquitto 1.x: SHA512(password || salt) */
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int outlen = 0;
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 && EVP_DigestUpdate(ctx, pass, plen) == 1 &&
		 EVP_DigestUpdate(ctx, e->salt, RMQ_AUTH_SALT_LEN) == 1 && EVP_DigestFinal_ex(ctx, out, &outlen) == 1 &&
		 outlen == RMQ_AUTH_HASH_LEN;
	EVP_MD_CTX_free(ctx);
	return ok ? 0 : -EIO;
}

/* Parses "$7$ITER$SALT$HASH" or "$6$SALT$HASH" (exactly, no trailing fields) into e. */
static int parse_encoded(const char *s, size_t len, struct entry *e, const char **why)
{
	if (len < 3 || s[0] != '$' || (s[1] != '6' && s[1] != '7') || s[2] != '$') {
		*why = "unknown hash type (want $6$ or $7$; plain-text passwords are not accepted)";
		return -EINVAL;
	}
	e->type = s[1] == '7' ? HASH_PBKDF2 : HASH_SHA512;
	const char *p = s + 3, *end = s + len;
	e->iterations = 1;
	if (e->type == HASH_PBKDF2) {
		uint64_t it = 0;
		const char *d = p;
		while (p < end && *p >= '0' && *p <= '9' && it <= RMQ_AUTH_MAX_ITERATIONS)
			it = it * 10 + (uint64_t)(*p++ - '0');
		if (p == d || p >= end || *p != '$' || it < 1 || it > RMQ_AUTH_MAX_ITERATIONS) {
			*why = "bad iteration count (1..1000000)";
			return -EINVAL;
		}
		e->iterations = (uint32_t)it;
		p++;
	}
	const char *dollar = memchr(p, '$', (size_t)(end - p));
	if (!dollar || b64_decode_exact(p, (size_t)(dollar - p), e->salt, RMQ_AUTH_SALT_LEN) < 0) {
		*why = "bad salt (want 12 bytes of base64)";
		return -EINVAL;
	}
	p = dollar + 1;
	if (memchr(p, '$', (size_t)(end - p)) ||
	    b64_decode_exact(p, (size_t)(end - p), e->hash, RMQ_AUTH_HASH_LEN) < 0) {
		*why = "bad hash (want 64 bytes of base64)";
		return -EINVAL;
	}
	return 0;
}

static int cmp_user(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);
	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

static int cmp_entry(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	return cmp_user((const uint8_t *)x->user, x->ulen, (const uint8_t *)y->user, y->ulen);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void trim(char **s, size_t *len)
{
	while (*len && is_blank(**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && is_blank((*s)[*len - 1]))
		(*len)--;
}

/* Parses one non-comment line into e (user is malloc'd). */
static int parse_line(char *line, size_t len, struct entry *e, const char **why)
{
	char *colon = memchr(line, ':', len);
	if (!colon) {
		*why = "no ':' between user and hash";
		return -EINVAL;
	}
	char *user = line, *hash = colon + 1;
	size_t ulen = (size_t)(colon - line), hlen = len - ulen - 1;
	trim(&user, &ulen);
	trim(&hash, &hlen);
	if (ulen == 0 || ulen > RMQ_AUTH_MAX_FIELD) {
		*why = "empty or over-long user name";
		return -EINVAL;
	}
	int rc = parse_encoded(hash, hlen, e, why);
	if (rc < 0)
		return rc;
	e->user = malloc(ulen + 1);
	if (!e->user)
		return -ENOMEM;
	memcpy(e->user, user, ulen);
	e->user[ulen] = '\0';
	e->ulen = ulen;
	return 0;
}

static int push_entry(struct rmq_auth *db, size_t *cap, const struct entry *e)
{
	if (db->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct entry *ne = realloc(db->e, ncap * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		db->e = ne;
		*cap = ncap;
	}
	db->e[db->n++] = *e;
	return 0;
}

/* Longest line we accept: two maximal fields plus the hash syntax. */
#define MAX_LINE (2 * RMQ_AUTH_MAX_FIELD + 256)

static int load_lines(FILE *f, struct rmq_auth *db, char *err, size_t errlen, const char *path)
{
	char *line = NULL;
	size_t lcap = 0, cap = 0;
	ssize_t n;
	unsigned lineno = 0;
	int rc = 0;
	while ((n = getline(&line, &lcap, f)) >= 0) {
		lineno++;
		if (n > MAX_LINE) {
			rmq_errbuf_printf(err, errlen, "%s:%u: line longer than %d bytes", path, lineno, MAX_LINE);
			rc = -EINVAL;
			break;
		}
		char *s = line;
		size_t len = (size_t)n;
		trim(&s, &len);
		if (len == 0 || s[0] == '#')
			continue;
		struct entry e = { 0 };
		const char *why = "";
		rc = parse_line(s, len, &e, &why);
		if (rc == -EINVAL)
			rmq_errbuf_printf(err, errlen, "%s:%u: %s", path, lineno, why);
		if (rc == 0 && (rc = push_entry(db, &cap, &e)) < 0)
			free(e.user);
		if (rc < 0)
			break;
	}
	if (rc == 0 && ferror(f)) {
		rc = -EIO;
		rmq_errbuf_printf(err, errlen, "%s: read error", path);
	}
	free(line);
	return rc;
}

int rmq_auth_load(const char *path, struct rmq_auth **out, char *err, size_t errlen)
{
	*out = NULL;
	FILE *f = fopen(path, "re");
	if (!f) {
		int rc = -errno;
		rmq_errbuf_printf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	struct rmq_auth *db = calloc(1, sizeof(*db));
	if (!db) {
		fclose(f);
		rmq_errbuf_printf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	int rc = load_lines(f, db, err, errlen, path);
	fclose(f);
	if (rc == -ENOMEM)
		rmq_errbuf_printf(err, errlen, "%s: out of memory", path);
	if (rc == 0 && db->n > 1) {
		qsort(db->e, db->n, sizeof(*db->e), cmp_entry);
		for (size_t i = 1; i < db->n; i++) {
			if (cmp_entry(&db->e[i - 1], &db->e[i]) == 0) {
				rmq_errbuf_printf(err, errlen, "%s: user '%s' appears more than once", path, db->e[i].user);
				rc = -EINVAL;
				break;
			}
		}
	}
	if (rc < 0) {
		rmq_auth_free(db);
		return rc;
	}
	set_dummy(db);
	*out = db;
	return 0;
}

static const struct entry *find(const struct rmq_auth *db, const uint8_t *user, size_t ulen)
{
	size_t lo = 0, hi = db->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp_user(user, ulen, (const uint8_t *)db->e[mid].user, db->e[mid].ulen);
		if (c == 0)
			return &db->e[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

int rmq_auth_check(const struct rmq_auth *db, const uint8_t *user, size_t ulen, const uint8_t *pass,
		   size_t plen)
{
	static const uint8_t empty[1];
	static const struct entry no_db = { .type = HASH_PBKDF2, .iterations = RMQ_AUTH_PBKDF2_ITERATIONS };
	const struct entry *e = db ? find(db, user ? user : empty, user ? ulen : 0) : NULL;
	const struct entry *use = e ? e : db ? &db->dummy : &no_db;
	uint8_t got[RMQ_AUTH_HASH_LEN];
	if (digest(use, pass, pass ? plen : 0, got) < 0)
		return -EACCES;
	int same = CRYPTO_memcmp(got, use->hash, RMQ_AUTH_HASH_LEN) == 0;
	OPENSSL_cleanse(got, sizeof(got));
	return e && same ? 0 : -EACCES;
}

size_t rmq_auth_count(const struct rmq_auth *db)
{
	return db ? db->n : 0;
}

void rmq_auth_free(struct rmq_auth *db)
{
	if (!db)
		return;
	for (size_t i = 0; i < db->n; i++)
		free(db->e[i].user);
	OPENSSL_cleanse(db->e, db->n * sizeof(*db->e));
	free(db->e);
	free(db);
}

int rmq_auth_encode(const uint8_t *pass, size_t plen, char *out, size_t cap)
{
	if (cap < RMQ_AUTH_ENCODED_MAX)
		return -ENOSPC;
	struct entry e = { .type = HASH_PBKDF2, .iterations = RMQ_AUTH_PBKDF2_ITERATIONS };
	if (RAND_bytes(e.salt, RMQ_AUTH_SALT_LEN) != 1 || digest(&e, pass, plen, e.hash) < 0)
		return -EIO;
	char salt64[4 * ((RMQ_AUTH_SALT_LEN + 2) / 3) + 1], hash64[4 * ((RMQ_AUTH_HASH_LEN + 2) / 3) + 1];
	EVP_EncodeBlock((unsigned char *)salt64, e.salt, RMQ_AUTH_SALT_LEN);
	EVP_EncodeBlock((unsigned char *)hash64, e.hash, RMQ_AUTH_HASH_LEN);
	int n = snprintf(out, cap, "$7$%u$%s$%s", e.iterations, salt64, hash64);
	OPENSSL_cleanse(&e, sizeof(e));
	return n > 0 && (size_t)n < cap ? 0 : -ENOSPC;
}

int rmq_auth_verify_encoded(const char *encoded, const uint8_t *pass, size_t plen)
{
	struct entry e = { 0 };
	const char *why;
	if (parse_encoded(encoded, strlen(encoded), &e, &why) < 0)
		return -EINVAL;
	uint8_t got[RMQ_AUTH_HASH_LEN];
	if (digest(&e, pass, plen, got) < 0)
		return -EIO;
	return CRYPTO_memcmp(got, e.hash, RMQ_AUTH_HASH_LEN) == 0 ? 0 : -EACCES;
}

/* ---- rate limiter ------------------------------------------------------------------------------ */

/* Linear probing over this many slots; beyond it the least suspicious entry is evicted, which bounds
 * every lookup to 8 compares whatever an attacker does. */
#define PROBE 8
#define MILLI 1000u

struct rl_slot {
	uint8_t key[16];
	uint64_t last_ms;
	uint64_t tokens;   /* in thousandths of a token, so slow refill rates stay exact enough */
	bool used;
};

struct rmq_auth_ratelimit {
	struct rl_slot *slot;
	uint32_t mask;
	uint64_t burst;    /* milli-tokens */
	uint32_t per_minute;
	uint64_t seed;
	struct rmq_auth_ratelimit_stats st;
};

struct rmq_auth_ratelimit *rmq_auth_ratelimit_new(uint32_t slots, uint32_t burst, uint32_t per_minute)
{
	if (slots == 0 || slots > (1u << 20) || burst == 0 || per_minute == 0)
		return NULL;
	uint32_t n = 16;
	while (n < slots)
		n <<= 1;
	struct rmq_auth_ratelimit *rl = calloc(1, sizeof(*rl));
	if (!rl)
		return NULL;
	rl->slot = calloc(n, sizeof(*rl->slot));
	if (!rl->slot || getrandom(&rl->seed, sizeof(rl->seed), 0) != sizeof(rl->seed)) {
		free(rl->slot);
		free(rl);
		return NULL;
	}
	rl->mask = n - 1;
	rl->burst = (uint64_t)burst * MILLI;
	rl->per_minute = per_minute;
	return rl;
}

void rmq_auth_ratelimit_free(struct rmq_auth_ratelimit *rl)
{
	if (!rl)
		return;
	free(rl->slot);
	free(rl);
}

/* IPv4 (and v4-mapped IPv6) keep the whole address; native IPv6 is cut to its /64. */
static bool addr_key(const struct sockaddr *sa, uint8_t key[16])
{
	memset(key, 0, 16);
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &in->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
			memcpy(key, &in6->sin6_addr, 16);
		else
			memcpy(key, &in6->sin6_addr, 8);
		return true;
	}
	return false;
}

static void refill(const struct rmq_auth_ratelimit *rl, struct rl_slot *s, uint64_t now_ms)
{
	if (now_ms <= s->last_ms)
		return;
	uint64_t dt = now_ms - s->last_ms;
	/* tokens/ms = per_minute / 60000; in milli-tokens: dt * per_minute / 60. Cap dt so the product
	 * cannot overflow; after an hour every bucket is full anyway. */
	if (dt > 3600u * 1000u)
		dt = 3600u * 1000u;
	uint64_t add = dt * rl->per_minute / 60;
	s->tokens = s->tokens + add > rl->burst ? rl->burst : s->tokens + add;
	s->last_ms = now_ms;
}

static struct rl_slot *lookup(struct rmq_auth_ratelimit *rl, const uint8_t key[16], uint64_t now_ms)
{
	uint64_t h = XXH3_64bits_withSeed(key, 16, rl->seed);
	for (uint32_t i = 0; i < PROBE; i++) {
		struct rl_slot *s = &rl->slot[(h + i) & rl->mask];
		if (s->used && memcmp(s->key, key, 16) == 0) {
			refill(rl, s, now_ms);
			return s;
		}
	}
	return NULL;
}

int rmq_auth_ratelimit_allow(struct rmq_auth_ratelimit *rl, const struct sockaddr *sa, uint64_t now_ms)
{
	uint8_t key[16];
	if (!addr_key(sa, key))
		return 0;
	struct rl_slot *s = lookup(rl, key, now_ms);
	if (!s)
		return 0;
	if (s->tokens >= MILLI)
		return 0;
	rl->st.refused++;
	return -EAGAIN;
}

void rmq_auth_ratelimit_fail(struct rmq_auth_ratelimit *rl, const struct sockaddr *sa, uint64_t now_ms)
{
	uint8_t key[16];
	rl->st.failures++;
	if (!addr_key(sa, key))
		return;
	struct rl_slot *s = lookup(rl, key, now_ms);
	if (!s) {
		/* A free slot, or one whose bucket has refilled (it holds no information), else evict the
		 * entry with the most tokens left. */
		uint64_t h = XXH3_64bits_withSeed(key, 16, rl->seed);
		struct rl_slot *best = NULL;
		for (uint32_t i = 0; i < PROBE; i++) {
			struct rl_slot *c = &rl->slot[(h + i) & rl->mask];
			if (c->used)
				refill(rl, c, now_ms);
			if (!c->used || c->tokens >= rl->burst) {
				best = c;
				break;
			}
			if (!best || c->tokens > best->tokens)
				best = c;
		}
		if (best->used && best->tokens < rl->burst)
			rl->st.evictions++;
		s = best;
		memcpy(s->key, key, 16);
		s->used = true;
		s->tokens = rl->burst;
		s->last_ms = now_ms;
	}
	s->tokens = s->tokens >= MILLI ? s->tokens - MILLI : 0;
}

void rmq_auth_ratelimit_stats(const struct rmq_auth_ratelimit *rl, struct rmq_auth_ratelimit_stats *out)
{
	*out = rl->st;
}
