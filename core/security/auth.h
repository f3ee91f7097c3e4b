/* Password authentication: mosquitto-format password database, the hash ringmq-passwd writes, failed-login
 * rate limiter. Load on any thread; a loaded db is read-only and shared; a rate limiter belongs to one reactor. */
#ifndef RMQ_AUTH_H
#define RMQ_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* mosquitto 2.x defaults: `$7$` = PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt, 64-byte hash. `$6$`
 * (mosquitto 1.x) = SHA512(password || salt) with the same salt and hash sizes. */
#define RMQ_AUTH_PBKDF2_ITERATIONS 101
#define RMQ_AUTH_SALT_LEN 12
#define RMQ_AUTH_HASH_LEN 64
/* An iteration count above this is refused at load: every check runs on a reactor thread, and one
 * PBKDF2 call of 1e6 iterations would stall it for about a second. */
#define RMQ_AUTH_MAX_ITERATIONS 1000000
/* mosquitto limits usernames and password fields to 65535 bytes; so do we (MQTT string length). */
#define RMQ_AUTH_MAX_FIELD 65535
/* Room for "$7$<iter>$<salt b64>$<hash b64>" plus NUL. */
#define RMQ_AUTH_ENCODED_MAX 128

struct rmq_auth;

/* Loads the password file at `path`: lines `user:$7$ITER$SALT$HASH` or `user:$6$SALT$HASH`, blank lines
 * and lines starting with '#' ignored, blanks around user and hash trimmed (as mosquitto does). Any other
 * line (no ':', unknown hash type, bad base64, wrong salt/hash size, duplicate user, iteration count out
 * of range) fails the whole load, so a typo never silently locks a user out or leaves an old entry live.
 * Returns 0 and *out (free with rmq_auth_free), or -errno (-ENOENT/-EACCES from open, -EINVAL for a bad
 * line, -ENOMEM) with a one-line reason naming the line number in err. Called at start-up and on SIGHUP:
 * build the new database, then swap it in; the old one stays valid until freed. */
int rmq_auth_load(const char *path, struct rmq_auth **out, char *err, size_t errlen);

/* Checks a CONNECT's username and password (binary, not NUL-terminated). Returns 0 when the user exists
 * and the password matches, else -EACCES. An unknown user still costs one PBKDF2 run (with the file's
 * highest iteration count) and a constant-time compare, so "no such user" never answers faster than
 * "wrong password" (a `$6$` user, a single SHA-512, is the one exception and is faster to check). Cost: about 50 µs for 101
 * iterations; callable from a reactor thread. A NULL user or pass is treated as empty. */
int rmq_auth_check(const struct rmq_auth *db, const uint8_t *user, size_t ulen, const uint8_t *pass,
		   size_t plen);

/* Number of users loaded. */
size_t rmq_auth_count(const struct rmq_auth *db);

void rmq_auth_free(struct rmq_auth *db);

/* Encodes a new `$7$101$SALT$HASH` entry (fresh random salt) for `pass` into out (NUL-terminated; cap >=
 * RMQ_AUTH_ENCODED_MAX). Returns 0, -ENOSPC when cap is too small, -EIO when the RNG or hash fails. Used
 * by ringmq-passwd; any thread. */
int rmq_auth_encode(const uint8_t *pass, size_t plen, char *out, size_t cap);

/* Verifies `pass` against one encoded entry ("$7$..." or "$6$..."). Returns 0 match, -EACCES mismatch,
 * -EINVAL when `encoded` is not a valid entry. Pure; any thread. */
int rmq_auth_verify_encoded(const char *encoded, const uint8_t *pass, size_t plen);

/* ---- failed-login rate limiter ----------------------------------------------------------------
 * A token bucket per source address in a small fixed-size table (no allocation after creation). Each
 * failed login takes one token; when an address has none left, its next CONNECTs are refused before the
 * password is even hashed, until tokens refill at `per_minute`. IPv6 addresses are keyed by their /64,
 * since one host usually owns a whole /64 and could otherwise rotate through it. The table is keyed with
 * a random seed, so an attacker cannot aim collisions at a victim's slot; when the probe window is full
 * the entry with the most tokens (the least suspicious) is evicted. One table per reactor, owned by that
 * reactor thread; the caller passes a monotonic clock in milliseconds so the limiter stays pure. */
struct rmq_auth_ratelimit;

struct rmq_auth_ratelimit_stats {
	uint64_t refused;   /* rmq_auth_ratelimit_allow() said no */
	uint64_t failures;  /* rmq_auth_ratelimit_fail() calls */
	uint64_t evictions; /* a tracked address was dropped to make room */
};

/* slots is rounded up to a power of two (min 16, max 1<<20); burst >= 1 failures allowed back to back;
 * per_minute >= 1 tokens regained per minute. Returns NULL on bad arguments or no memory. */
struct rmq_auth_ratelimit *rmq_auth_ratelimit_new(uint32_t slots, uint32_t burst, uint32_t per_minute);
void rmq_auth_ratelimit_free(struct rmq_auth_ratelimit *rl);

/* Before checking a password from `sa` (AF_INET or AF_INET6; others are always allowed): returns 0 if the
 * address may try, -EAGAIN if it has used up its failures (answer CONNACK 0x86/0x05 and close without
 * hashing). Does not take a token. */
int rmq_auth_ratelimit_allow(struct rmq_auth_ratelimit *rl, const struct sockaddr *sa, uint64_t now_ms);

/* After a failed login from `sa`: takes one token. */
void rmq_auth_ratelimit_fail(struct rmq_auth_ratelimit *rl, const struct sockaddr *sa, uint64_t now_ms);

void rmq_auth_ratelimit_stats(const struct rmq_auth_ratelimit *rl, struct rmq_auth_ratelimit_stats *out);

#endif
