/* Security policy glue: loading the password and ACL files, and the CONNECT decision. Loading: any
 * thread; decisions: the reactor thread owning the connection and the rate limiter. */
#include "security/security.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ringmq/errbuf.h"

void rmq_security_cfg_init(struct rmq_security_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->allow_anonymous = -1;
	cfg->fail_burst = RMQ_SECURITY_RL_BURST;
	cfg->fail_per_minute = RMQ_SECURITY_RL_PER_MINUTE;
}

int rmq_security_ratelimit_new(const struct rmq_security_cfg *cfg, struct rmq_auth_ratelimit **out)
{
	*out = NULL;
	if (cfg->fail_burst == 0)
		return 0;
	*out = rmq_auth_ratelimit_new(RMQ_SECURITY_RL_SLOTS, cfg->fail_burst, cfg->fail_per_minute);
	return *out ? 0 : -ENOMEM;
}

/* Limits bound the token arithmetic (milli-tokens in 64 bits) far from overflow. */
#define RL_OPT_MAX 100000u

static int set_u32(uint32_t *dst, const char *key, const char *value, uint32_t lo, char *err, size_t errlen)
{
	char *end = NULL;
	unsigned long v = value && *value >= '0' && *value <= '9' ? strtoul(value, &end, 10) : 0;
	if (!end || *end || v < lo || v > RL_OPT_MAX) {
		rmq_errbuf_printf(err, errlen, "bad --%s '%s': want %u..%u", key, value ? value : "", lo, RL_OPT_MAX);
		return -EINVAL;
	}
	*dst = (uint32_t)v;
	return 0;
}

static int set_path(char *dst, const char *key, const char *value, char *err, size_t errlen)
{
	size_t n = value ? strlen(value) : 0;
	if (n == 0 || n >= RMQ_SECURITY_PATH_MAX) {
		rmq_errbuf_printf(err, errlen, "bad --%s: want a file path (1..%d bytes)", key, RMQ_SECURITY_PATH_MAX - 1);
		return -EINVAL;
	}
	memcpy(dst, value, n + 1);
	return 0;
}

int rmq_security_option(struct rmq_security_cfg *cfg, const char *key, const char *value, char *err, size_t errlen)
{
	if (!strcmp(key, "password-file"))
		return set_path(cfg->password_file, key, value, err, errlen);
	if (!strcmp(key, "acl-file"))
		return set_path(cfg->acl_file, key, value, err, errlen);
	if (!strcmp(key, "auth-fail-burst"))
		return set_u32(&cfg->fail_burst, key, value, 0, err, errlen);
	if (!strcmp(key, "auth-fail-per-minute"))
		return set_u32(&cfg->fail_per_minute, key, value, 1, err, errlen);
	if (strcmp(key, "allow-anonymous"))
		return -ENOENT;
	if (value && (!strcmp(value, "true") || !strcmp(value, "1") || !strcmp(value, "yes")))
		cfg->allow_anonymous = 1;
	else if (value && (!strcmp(value, "false") || !strcmp(value, "0") || !strcmp(value, "no")))
		cfg->allow_anonymous = 0;
	else {
		rmq_errbuf_printf(err, errlen, "bad --allow-anonymous '%s': want true or false", value ? value : "");
		return -EINVAL;
	}
	return 0;
}

void rmq_security_usage(FILE *out)
{
	fprintf(out,
		"  --password-file FILE mosquitto-format password file ($7$/$6$ hashes; manage with ringmq-passwd)\n"
		"  --acl-file FILE      mosquitto-format ACL file (user / topic / pattern with %%c %%u)\n"
		"  --allow-anonymous B  true/false: clients without username (default: false once a password\n"
		"                       file or client certificates are configured, true otherwise)\n"
		"  --auth-fail-burst N  failed logins per source address before its logins are refused\n"
		"                       (default 5; 0 = no limit, e.g. behind a load balancer)\n"
		"  --auth-fail-per-minute N  failed logins an address regains per minute (default 5)\n");
}

int rmq_security_load_cfg(struct rmq_security *s, const struct rmq_security_cfg *cfg, bool client_certs, char *err,
			  size_t errlen)
{
	return rmq_security_load(s, cfg->password_file[0] ? cfg->password_file : NULL,
				 cfg->acl_file[0] ? cfg->acl_file : NULL, cfg->allow_anonymous, client_certs, err, errlen);
}

int rmq_security_load(struct rmq_security *s, const char *password_file, const char *acl_file, int allow_anonymous,
		      bool client_certs, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	struct rmq_auth *auth = NULL;
	struct rmq_acl *acl = NULL;
	int rc = 0;
	if (password_file && (rc = rmq_auth_load(password_file, &auth, err, errlen)) < 0)
		return rc;
	if (acl_file && (rc = rmq_acl_load(acl_file, &acl, err, errlen)) < 0) {
		rmq_auth_free(auth);
		return rc;
	}
	s->auth = auth;
	s->acl = acl;
	s->allow_anonymous = allow_anonymous >= 0 ? allow_anonymous != 0 : !(password_file || client_certs);
	return 0;
}

void rmq_security_free(struct rmq_security *s)
{
	rmq_auth_free(s->auth);
	rmq_acl_free(s->acl);
	for (int i = 0; i < s->nretired; i++) {
		rmq_auth_free(s->retired[i].auth);
		rmq_acl_free(s->retired[i].acl);
	}
	memset(s, 0, sizeof(*s));
}

/* Frees retired databases whose grace period is over; returns how many slots are free. */
static int reap_retired(struct rmq_security *s, uint64_t now_ms)
{
	int keep = 0;
	for (int i = 0; i < s->nretired; i++) {
		if (now_ms - s->retired[i].at_ms >= RMQ_SECURITY_GRACE_MS) {
			rmq_auth_free(s->retired[i].auth);
			rmq_acl_free(s->retired[i].acl);
		} else {
			s->retired[keep++] = s->retired[i];
		}
	}
	s->nretired = keep;
	return RMQ_SECURITY_RETIRED_MAX - keep;
}

int rmq_security_reload(struct rmq_security *s, const struct rmq_security_cfg *cfg, uint64_t now_ms, char *err,
			size_t errlen)
{
	if (reap_retired(s, now_ms) == 0) {
		rmq_errbuf_printf(err, errlen, "reloads too frequent: %d within %d s", RMQ_SECURITY_RETIRED_MAX,
				  RMQ_SECURITY_GRACE_MS / 1000);
		return -EBUSY;
	}
	struct rmq_security fresh;
	int rc = rmq_security_load_cfg(&fresh, cfg, false, err, errlen);
	if (rc < 0)
		return rc;
	int r = s->nretired++;
	s->retired[r].auth = atomic_exchange(&s->auth, fresh.auth);
	s->retired[r].acl = atomic_exchange(&s->acl, fresh.acl);
	s->retired[r].at_ms = now_ms;
	return 0;
}

const uint8_t *rmq_security_username(const struct rmq_security_login *in, size_t *len)
{
	if (in->cert_name) {
		*len = strlen(in->cert_name);
		return (const uint8_t *)in->cert_name;
	}
	if (in->ck->has_username) {
		*len = in->ck->username.len;
		return in->ck->username.p ? in->ck->username.p : (const uint8_t *)"";
	}
	*len = 0;
	return NULL;
}

/* The will is a PUBLISH made at CONNECT time: refuse the CONNECT rather than drop the will silently
 * when its topic is not writable. A %c pattern sees the id as sent (an assigned id is not known yet). */
static bool will_allowed(const struct rmq_security *s, const struct rmq_security_login *in)
{
	const struct rmq_connect *ck = in->ck;
	if (!ck->will || !s->acl)
		return true;
	struct rmq_acl_who who = { .client_id = ck->client_id.p, .client_id_len = ck->client_id.len };
	who.username = rmq_security_username(in, &who.username_len);
	return rmq_acl_check(s->acl, &who, ck->will_topic.p, ck->will_topic.len, RMQ_ACL_WRITE) == 0;
}

static enum rmq_security_verdict authenticate(const struct rmq_security *s, struct rmq_auth_ratelimit *rl,
					      const struct rmq_security_login *in)
{
	const struct rmq_connect *ck = in->ck;
	if (in->cert_name)
		return RMQ_SEC_OK;
	if (!ck->has_username && !ck->has_password)
		return s->allow_anonymous ? RMQ_SEC_OK : RMQ_SEC_NOT_AUTHORIZED;
	if (!s->auth)
		return s->allow_anonymous ? RMQ_SEC_OK : RMQ_SEC_NOT_AUTHORIZED;
	if (rl && rmq_auth_ratelimit_allow(rl, in->peer, in->now_ms) < 0)
		return RMQ_SEC_RATE_LIMITED;
	/* A password without a username (MQTT 5 allows it) names no user: it fails like an unknown one. */
	if (rmq_auth_check(s->auth, ck->username.p, ck->has_username ? ck->username.len : 0, ck->password.p,
			   ck->has_password ? ck->password.len : 0) == 0 && ck->has_username)
		return RMQ_SEC_OK;
	if (rl)
		rmq_auth_ratelimit_fail(rl, in->peer, in->now_ms);
	return RMQ_SEC_BAD_LOGIN;
}

enum rmq_security_verdict rmq_security_connect(const struct rmq_security *s, struct rmq_auth_ratelimit *rl,
					       const struct rmq_security_login *in)
{
	enum rmq_security_verdict v = authenticate(s, rl, in);
	if (v == RMQ_SEC_OK && !will_allowed(s, in))
		v = RMQ_SEC_NOT_AUTHORIZED;
	return v;
}

uint8_t rmq_security_connack_code(enum rmq_security_verdict v, uint8_t version)
{
	bool v5 = version == RMQ_V5;
	switch (v) {
	case RMQ_SEC_OK:
		return 0;
	case RMQ_SEC_BAD_LOGIN:
		/* 3.x: 0x05 as mosquitto answers, so existing clients report it the way they always did */
		return v5 ? RMQ_RC_BAD_USER_PASS : RMQ_V3_NOT_AUTHORIZED;
	case RMQ_SEC_RATE_LIMITED:
		return v5 ? RMQ_RC_CONNECTION_RATE_EXCEEDED : RMQ_V3_NOT_AUTHORIZED;
	case RMQ_SEC_NOT_AUTHORIZED:
	default:
		return v5 ? RMQ_RC_NOT_AUTHORIZED : RMQ_V3_NOT_AUTHORIZED;
	}
}

uint8_t rmq_security_publish_denied_code(uint8_t version)
{
	return version == RMQ_V5 ? RMQ_RC_NOT_AUTHORIZED : 0;
}

uint8_t rmq_security_subscribe_denied_code(uint8_t version)
{
	return version == RMQ_V5 ? RMQ_RC_NOT_AUTHORIZED : RMQ_V3_SUBACK_FAILURE;
}
