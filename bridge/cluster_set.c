/* Cross-node delivery, pure parts: the reference-counted topic-filter set that answers "does some node want this
 * topic?", the route-summary record key (NODE NUL FILTER), and the cluster record value (an MQTT 5 PUBLISH packet).
 * No I/O, no locks: each set is owned by one thread (callers say which). Callable from any thread.
 *
 * Why a hash of exact filters plus a list of wildcard filters rather than a trie: a fleet's per-car filters
 * (cars/VIN/cmd) are exact, so the set is mostly exact names and a publish costs one hash lookup; the few
 * wildcard filters (dashboards, back ends) are matched one by one. A trie would win only with many wildcards. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "bridge_internal.h"

struct rmq_cfset_ent {
	struct rmq_cfset_ent *next;
	uint64_t hash;
	uint32_t refs, len;
	char f[];                    /* NUL-terminated (rmq_bridge_filter_match wants a C string) */
};

static bool has_wildcard(const uint8_t *f, size_t len)
{
	return memchr(f, '+', len) || memchr(f, '#', len);
}

static struct rmq_cfset_ent **slot_of(const struct rmq_cfset *s, const uint8_t *f, size_t len, uint64_t h)
{
	if (has_wildcard(f, len)) {
		for (uint32_t i = 0; i < s->nwild; i++)
			if (s->wild[i]->len == len && memcmp(s->wild[i]->f, f, len) == 0)
				return &s->wild[i];
		return NULL;
	}
	if (!s->nb)
		return NULL;
	struct rmq_cfset_ent **pp = &s->b[h & (s->nb - 1)];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->len == len && memcmp((*pp)->f, f, len) == 0)
			return pp;
	return NULL;
}

static int grow(struct rmq_cfset *s)
{
	uint32_t nb = s->nb ? s->nb * 2 : 64;
	struct rmq_cfset_ent **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (uint32_t i = 0; i < s->nb; i++)
		for (struct rmq_cfset_ent *e = s->b[i], *next; e; e = next) {
			next = e->next;
			e->next = b[e->hash & (nb - 1)];
			b[e->hash & (nb - 1)] = e;
		}
	free(s->b);
	s->b = b;
	s->nb = nb;
	return 0;
}

static int insert(struct rmq_cfset *s, struct rmq_cfset_ent *e, bool wild)
{
	if (wild) {
		if (s->nwild == s->capwild) {
			uint32_t cap = s->capwild ? s->capwild * 2 : 8;
			struct rmq_cfset_ent **w = realloc(s->wild, cap * sizeof(*w));
			if (!w)
				return -ENOMEM;
			s->wild = w;
			s->capwild = cap;
		}
		s->wild[s->nwild++] = e;
		return 0;
	}
	if (s->n >= s->nb && grow(s))
		return -ENOMEM;
	e->next = s->b[e->hash & (s->nb - 1)];
	s->b[e->hash & (s->nb - 1)] = e;
	s->n++;
	return 0;
}

int rmq_cfset_add(struct rmq_cfset *s, const uint8_t *f, size_t len)
{
	uint64_t h = XXH3_64bits(f, len);
	struct rmq_cfset_ent **pp = slot_of(s, f, len, h);
	if (pp)
		return (int)++(*pp)->refs;
	struct rmq_cfset_ent *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	*e = (struct rmq_cfset_ent){.hash = h, .refs = 1, .len = (uint32_t)len};
	memcpy(e->f, f, len);
	e->f[len] = 0;
	if (insert(s, e, has_wildcard(f, len))) {
		free(e);
		return -ENOMEM;
	}
	return 1;
}

int rmq_cfset_del(struct rmq_cfset *s, const uint8_t *f, size_t len)
{
	uint64_t h = XXH3_64bits(f, len);
	struct rmq_cfset_ent **pp = slot_of(s, f, len, h);
	if (!pp)
		return -ENOENT;
	struct rmq_cfset_ent *e = *pp;
	if (--e->refs)
		return (int)e->refs;
	if (has_wildcard(f, len)) {
		*pp = s->wild[--s->nwild]; /* order of the wildcard list does not matter */
	} else {
		*pp = e->next;
		s->n--;
	}
	free(e);
	return 0;
}

uint32_t rmq_cfset_refs(const struct rmq_cfset *s, const uint8_t *f, size_t len)
{
	struct rmq_cfset_ent **pp = slot_of(s, f, len, XXH3_64bits(f, len));
	return pp ? (*pp)->refs : 0;
}

bool rmq_cfset_match(const struct rmq_cfset *s, const uint8_t *topic, size_t len)
{
	if (s->n && slot_of(s, topic, len, XXH3_64bits(topic, len)))
		return true; /* a topic name has no wildcard, so this looked in the exact hash */
	for (uint32_t i = 0; i < s->nwild; i++)
		if (rmq_bridge_filter_match(s->wild[i]->f, topic, len))
			return true;
	return false;
}

size_t rmq_cfset_count(const struct rmq_cfset *s)
{
	return s->n + s->nwild;
}

void rmq_cfset_each(const struct rmq_cfset *s, void (*fn)(void *ud, const uint8_t *f, size_t len), void *ud)
{
	for (uint32_t i = 0; i < s->nb; i++)
		for (struct rmq_cfset_ent *e = s->b[i]; e; e = e->next)
			fn(ud, (const uint8_t *)e->f, e->len);
	for (uint32_t i = 0; i < s->nwild; i++)
		fn(ud, (const uint8_t *)s->wild[i]->f, s->wild[i]->len);
}

void rmq_cfset_free(struct rmq_cfset *s)
{
	for (uint32_t i = 0; i < s->nb; i++)
		for (struct rmq_cfset_ent *e = s->b[i], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	for (uint32_t i = 0; i < s->nwild; i++)
		free(s->wild[i]);
	free(s->b);
	free(s->wild);
	memset(s, 0, sizeof(*s));
}

/* ---- route-summary keys ---------------------------------------------------------------------------- */

/* NUL separates the two: a node id is a C string, and [MQTT-1.5.4-2] forbids U+0000 in a filter. */
int rmq_cluster_key(struct rmq_bbuf *out, const char *node, const uint8_t *f, size_t len)
{
	out->len = 0;
	return rmq_bridge_buf_put(out, node, strlen(node) + 1) || rmq_bridge_buf_put(out, f, len) ? -ENOMEM : 0;
}

int rmq_cluster_key_split(const void *key, size_t keylen, struct rmq_str *node, struct rmq_str *filter)
{
	const uint8_t *k = key, *nul = key ? memchr(key, 0, keylen) : NULL;
	if (!nul || nul == k || (size_t)(nul - k) + 1 >= keylen)
		return -EINVAL; /* no separator, empty node id or empty filter: not one of ours */
	*node = (struct rmq_str){k, (uint32_t)(nul - k)};
	*filter = (struct rmq_str){nul + 1, (uint32_t)(keylen - (size_t)(nul - k) - 1)};
	if (memchr(filter->p, 0, filter->len) || rmq_proto_topic_filter_check(filter->p, filter->len) != RMQ_OK)
		return -EINVAL;
	return 0;
}

/* "$share/GROUP/FILTER" -> FILTER: what matters across nodes is which topics the group wants (each node hands a
 * message to one member of its own part of the group). Anything else is returned as it is. */
struct rmq_str rmq_cluster_inner_filter(const uint8_t *f, size_t len)
{
	if (len > 7 && memcmp(f, "$share/", 7) == 0) {
		const uint8_t *slash = memchr(f + 7, '/', len - 7);
		if (slash)
			return (struct rmq_str){slash + 1, (uint32_t)(len - (size_t)(slash + 1 - f))};
	}
	return (struct rmq_str){f, (uint32_t)len};
}

/* ---- cluster record value ---------------------------------------------------------------------------- */

/* The whole message as an MQTT 5 PUBLISH packet: topic, QoS, retain, payload and every property (content type,
 * response topic, correlation data, expiry, payload format, user properties) travel with no format of our own.
 * The topic alias and subscription ids are per hop and dropped; a packet id is needed by the codec for QoS > 0. */
int rmq_cluster_encode(struct rmq_bbuf *out, const struct rmq_publish *p)
{
	struct rmq_packet pk = {.type = RMQ_PUBLISH};
	pk.u.publish = *p;
	pk.u.publish.dup = false;
	pk.u.publish.packet_id = p->qos ? 1 : 0;
	pk.u.publish.props.present &= ~(RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS) | RMQ_PBIT(RMQ_PROP_SUB_ID));
	pk.u.publish.props.topic_alias = 0;
	pk.u.publish.props.sub_id_count = 0;
	ssize_t n = rmq_proto_encoded_len(RMQ_V5, &pk);
	if (n < 0)
		return -EINVAL;
	out->len = 0;
	if (out->cap < (size_t)n) {
		char *np = realloc(out->p, (size_t)n);
		if (!np)
			return -ENOMEM;
		out->p = np;
		out->cap = (size_t)n;
	}
	if (rmq_proto_encode((uint8_t *)out->p, out->cap, RMQ_V5, &pk) != n)
		return -EINVAL;
	out->len = (size_t)n;
	return 0;
}

/* [MQTT-3.3.2-6] the receiver passes on what is left of the Message Expiry Interval: the time the record spent
 * between nodes (its Kafka timestamp is the publisher's receive time) is taken off. */
int rmq_cluster_expiry_left(struct rmq_props *props, int64_t sent_ms, int64_t now_ms)
{
	if (!(props->present & RMQ_PBIT(RMQ_PROP_MESSAGE_EXPIRY)) || sent_ms < 0 || now_ms <= sent_ms)
		return 0;
	int64_t gone = (now_ms - sent_ms) / 1000;
	if (gone >= props->message_expiry)
		return -ETIME;
	props->message_expiry -= (uint32_t)gone;
	return 0;
}

int rmq_cluster_decode(const void *v, size_t n, struct rmq_publish *out)
{
	size_t total;
	struct rmq_packet pk;
	struct rmq_decode_ctx ctx = {.version = RMQ_V5, .role = RMQ_ROLE_SERVER};
	if (!v || rmq_proto_frame(v, n, 0, &total) != RMQ_OK || total != n || rmq_proto_decode(v, n, &ctx, &pk) != RMQ_OK ||
	    pk.type != RMQ_PUBLISH || !pk.u.publish.topic.len)
		return -EINVAL;
	*out = pk.u.publish;
	out->packet_id = 0;
	return 0;
}
