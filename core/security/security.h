/* Security policy glue: its options, loading the password and ACL files, and the CONNECT decision. Load on any
 * thread (read-only afterwards, shared); decisions on the reactor thread owning the connection and its limiter. */
#ifndef RMQ_SECURITY_H
#define RMQ_SECURITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "security/acl.h"
#include "security/auth.h"
#include "ringmq/config.h"
#include "ringmq/proto.h"

/* Failed-login limiter defaults: 5 failures back to back per address, then one more try every 12 s. Behind
 * a load balancer every client shares its address: raise the burst, or turn the limiter off (burst 0). */
#define RMQ_SECURITY_RL_SLOTS 4096
#define RMQ_SECURITY_RL_BURST 5
#define RMQ_SECURITY_RL_PER_MINUTE 5

/* The options the security module owns (struct rmq_security_cfg, ringmq/config.h): */
void rmq_security_cfg_init(struct rmq_security_cfg *cfg);
/* Applies `key value` if the key is ours: password-file, acl-file, allow-anonymous (true/false),
 * auth-fail-burst (0..100000, 0 = no limiter), auth-fail-per-minute (1..100000). Returns
 * 0, -EINVAL with a one-line reason in err (bad or missing value), or -ENOENT when the key is not ours. */
int rmq_security_option(struct rmq_security_cfg *cfg, const char *key, const char *value, char *err, size_t errlen);
void rmq_security_usage(FILE *out);
/* A failed-login limiter for one reactor as configured: 0 and *out (NULL when disabled), or -ENOMEM. */
int rmq_security_ratelimit_new(const struct rmq_security_cfg *cfg, struct rmq_auth_ratelimit **out);

/* A reload retires the old databases; they are freed once they have been out of use this long (a reactor
 * holds a pointer only for the duration of one check, at most about a second for 1e6 PBKDF2 iterations). */
#define RMQ_SECURITY_GRACE_MS 60000
#define RMQ_SECURITY_RETIRED_MAX 8

/* auth and acl are atomic so that rmq_security_reload() can swap them under running reactors: read them
 * afresh for every check (plain reads of the fields are atomic loads), never cache them across checks. */
struct rmq_security {
	struct rmq_auth *_Atomic auth; /* NULL: no password file */
	struct rmq_acl *_Atomic acl;   /* NULL: no ACL file, every topic allowed */
	bool allow_anonymous;
	/* main thread only: replaced databases waiting for their grace period */
	struct {
		struct rmq_auth *auth;
		struct rmq_acl *acl;
		uint64_t at_ms;
	} retired[RMQ_SECURITY_RETIRED_MAX];
	int nretired;
};

/* allow_anonymous: 1 or 0 as configured, -1 for the default: off once a password file is given or client
 * certificates are required (client_certs), on otherwise. Either path may be NULL. Returns 0, or -errno
 * with "file:line: reason" in err (nothing is kept). On SIGHUP, load into a new struct and swap it in. */
int rmq_security_load(struct rmq_security *s, const char *password_file, const char *acl_file, int allow_anonymous,
		      bool client_certs, char *err, size_t errlen);
/* Same, from the parsed options. */
int rmq_security_load_cfg(struct rmq_security *s, const struct rmq_security_cfg *cfg, bool client_certs, char *err,
			  size_t errlen);
/* Frees the databases, retired ones included (after the reactors have stopped). */
void rmq_security_free(struct rmq_security *s);

/* SIGHUP: re-reads the password and ACL files named in cfg (the same ones as at start-up) and swaps them
 * in while connections go on; a check already running finishes with the old database. Established
 * connections are not re-authenticated (as in mosquitto) and subscriptions granted in full are not
 * re-checked; partly readable ones are, on every delivery, against the new rules. On any error nothing changes: returns -errno with
 * "file:line: reason" in err, or -EBUSY when reloads come faster than RMQ_SECURITY_RETIRED_MAX per grace
 * period. Main thread only; now_ms monotonic. */
int rmq_security_reload(struct rmq_security *s, const struct rmq_security_cfg *cfg, uint64_t now_ms, char *err,
			size_t errlen);

enum rmq_security_verdict {
	RMQ_SEC_OK = 0,
	RMQ_SEC_BAD_LOGIN,      /* unknown user or wrong password: CONNACK 0x86 / 0x05 */
	RMQ_SEC_NOT_AUTHORIZED, /* anonymous not allowed, or will topic not writable: 0x87 / 0x05 */
	RMQ_SEC_RATE_LIMITED,   /* too many failures from this address: 0x9F / 0x05, password not even hashed */
};

struct rmq_security_login {
	const struct rmq_connect *ck;
	const struct sockaddr *peer; /* for the rate limiter; NULL: not limited (e.g. a unix socket) */
	const char *cert_name;       /* verified client-certificate identity (rmq_tls_peer_name), or NULL */
	uint64_t now_ms;             /* monotonic */
};

/* Decides a CONNECT. The identity used for ACLs afterwards is rmq_security_username(). A verified
 * certificate name stands in for username and password (mosquitto's use_identity_as_username). Without a
 * password file, a username cannot be verified, so it is accepted only when anonymous access is (and then
 * the ACL rules of that name apply to whoever claims it, as in mosquitto: pair an ACL file with a password
 * file or client certificates). Costs
 * one PBKDF2 run (~50 µs) when a password is checked. rl may be NULL (no rate limiting). */
enum rmq_security_verdict rmq_security_connect(const struct rmq_security *s, struct rmq_auth_ratelimit *rl,
					       const struct rmq_security_login *in);

/* The username ACLs see for this login: the certificate name, else the CONNECT's username; *len 0 and
 * NULL for an anonymous client. */
const uint8_t *rmq_security_username(const struct rmq_security_login *in, size_t *len);

/* The CONNACK reason code for a refusal, in the client's protocol version (MQTT 5: 0x86/0x87/0x9F; 3.1 and
 * 3.1.1: always 0x05, as mosquitto). RMQ_SEC_OK gives 0. */
uint8_t rmq_security_connack_code(enum rmq_security_verdict v, uint8_t version);

/* The PUBACK/PUBREC or SUBACK code for an ACL denial: 0x87 in MQTT 5; for 3.1.1 SUBACK 0x80, and for a 3.x
 * PUBLISH 0 (it is acknowledged as usual and dropped, so the client does not resend it forever). */
uint8_t rmq_security_publish_denied_code(uint8_t version);
uint8_t rmq_security_subscribe_denied_code(uint8_t version);

#endif
