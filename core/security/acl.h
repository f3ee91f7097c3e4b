/* Topic access control: mosquitto acl_file rules, checked on PUBLISH (write), delivery (read) and SUBSCRIBE.
 * Load on any thread; a loaded rule set is read-only and shared by every reactor (swap the pointer on SIGHUP). */
#ifndef RMQ_ACL_H
#define RMQ_ACL_H

#include <stddef.h>
#include <stdint.h>

#define RMQ_ACL_READ 1  /* receive messages published on the topic */
#define RMQ_ACL_WRITE 2 /* publish on the topic */

/* rmq_acl_check_subscribe(): some but not all topics the filter matches are readable; the caller accepts
 * the subscription and must check every message it delivers with rmq_acl_check(..., RMQ_ACL_READ), as
 * mosquitto does (or refuse the subscription, if it prefers strictness over per-message checks). */
#define RMQ_ACL_FILTERED 1

struct rmq_acl;

/* Who is asking. Strings are bytes + length, not NUL-terminated. username == NULL means the client sent
 * no username (it is anonymous: only the rules before the first `user` line apply to it, plus patterns);
 * an empty username is a username. client_id may be empty. */
struct rmq_acl_who {
	const uint8_t *client_id;
	size_t client_id_len;
	const uint8_t *username;
	size_t username_len;
};

/* Loads a mosquitto acl_file:
 *   # comment                    (a line whose first non-blank character is '#')
 *   user NAME                    following `topic` lines apply to NAME (the rest of the line, trimmed)
 *   topic [read|write|readwrite|deny] FILTER    (no access word: readwrite)
 *   pattern [read|write|readwrite|deny] FILTER  for every client, with %c = client id, %u = username
 * `topic` lines before the first `user` line apply to clients without a username. Rules for one user may
 * be split over several `user NAME` sections. Returns 0 and *out (free with rmq_acl_free), -errno from
 * open, -EINVAL for a bad line (err names file:line and what is wrong; nothing is loaded), -ENOMEM. */
int rmq_acl_load(const char *path, struct rmq_acl **out, char *err, size_t errlen);
/* Same from memory (config embedding, tests); `name` labels error messages. */
int rmq_acl_parse(const char *text, size_t len, const char *name, struct rmq_acl **out, char *err, size_t errlen);

/* May `who` do `access` (RMQ_ACL_READ or RMQ_ACL_WRITE) on the topic name `topic`? Returns 0 allow,
 * -EACCES deny. Semantics follow mosquitto 2.0's default ACL check, in this order:
 *   1. the client's own `topic` rules (its user section, or the anonymous section), `deny` rules first:
 *      a matching deny denies; a matching rule that grants `access` allows; others are passed over;
 *   2. if any pattern exists and the username or client id contains '+' or '#', deny (such an id could
 *      otherwise widen its own pattern);
 *   3. `pattern` rules after substitution, deny first, the same way (a %u rule is skipped for a client
 *      without username);
 *   4. nothing matched: deny. A user with no rules at all is denied everything.
 * A filter starting with a wildcard never matches a topic starting with '$'. acl == NULL (no ACL file
 * configured) allows everything. Pure; any thread; allocates only when a substituted pattern exceeds
 * 512 bytes (and denies if that allocation fails). */
int rmq_acl_check(const struct rmq_acl *acl, const struct rmq_acl_who *who, const uint8_t *topic, size_t len,
		  int access);

/* May `who` subscribe to `filter` (already validated as a topic filter)? "$share/GROUP/" is stripped
 * first. Returns 0 when every topic the filter can match is readable (no per-message check needed),
 * RMQ_ACL_FILTERED when only some are (see above), -EACCES when none is. Same rule order as
 * rmq_acl_check(), applied to the set of topics the filter matches. acl == NULL allows. */
int rmq_acl_check_subscribe(const struct rmq_acl *acl, const struct rmq_acl_who *who, const uint8_t *filter,
			    size_t len);

/* Counters for logs and /metrics: users with a section, `topic` rules, `pattern` rules. */
void rmq_acl_counts(const struct rmq_acl *acl, size_t *users, size_t *topics, size_t *patterns);

void rmq_acl_free(struct rmq_acl *acl);

#endif
