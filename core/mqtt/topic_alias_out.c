/* v5 topic aliases from the broker to a client: the per-connection topic -> alias table of the PUBLISHes
 * ringmq sends a client that announced Topic Alias Maximum > 0 (never above it, [MQTT-3.3.2-13]; never
 * carried to another connection, [MQTT-3.3.2-10]). Reactor thread owning the connection.
 *
 * Policy: first come, first served. The first RMQ_OUT_ALIAS_CAP (or the client's maximum, if lower)
 * distinct topics sent on the connection get aliases 1, 2, ... for the connection's life; later topics go
 * out with their name, without an alias. Measured with `ringmq-bench fleet --mqtt 5 --cmd-rate R
 * --topic-alias-max N` (bench/README.md): a car receives its commands on a handful of topics (cars/VIN/cmd, a
 * broadcast or two), fewer than any useful maximum, so an LRU would assign the very same aliases and save the
 * very same bytes (97.0 -> 76.2 bytes per command at 1,000 cars), while paying a recency update on every send
 * and, once a car's topics outnumber its aliases, re-sending topic names to remap (an LRU thrashes exactly
 * where aliases help least). First-come costs nothing on a hit beyond the lookup. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt.h"

struct out_alias {
	uint8_t *topic;
	uint16_t len;
};

struct topic_aliases_out {
	uint16_t cap, n;             /* alias i+1 is e[i] */
	struct out_alias e[];
};

int rmq_topic_alias_out_init(struct conn *cn, uint16_t client_max)
{
	uint16_t cap = client_max < RMQ_OUT_ALIAS_CAP ? client_max : RMQ_OUT_ALIAS_CAP;
	if (!cap)
		return 0;
	struct topic_aliases_out *t = calloc(1, sizeof(*t) + cap * sizeof(t->e[0]));
	if (!t)
		return -ENOMEM;  /* the connection works without aliases */
	t->cap = cap;
	mqtt_conn(cn)->oaliases = t;
	return 0;
}

uint16_t rmq_topic_alias_out_find(const struct conn *cn, const struct rmq_str *topic, bool *is_new)
{
	const struct topic_aliases_out *t = mqtt_conn(cn)->oaliases;
	for (uint16_t i = 0; i < t->n; i++)
		if (t->e[i].len == topic->len && !memcmp(t->e[i].topic, topic->p, topic->len)) {
			*is_new = false;
			return (uint16_t)(i + 1);
		}
	*is_new = true;
	return t->n < t->cap ? (uint16_t)(t->n + 1) : 0;
}

void rmq_topic_alias_out_commit(struct conn *cn, const struct rmq_str *topic)
{
	struct topic_aliases_out *t = mqtt_conn(cn)->oaliases;
	if (t->n == t->cap || !(t->e[t->n].topic = malloc(topic->len ? topic->len : 1)))
		return;  /* no memory: the next send of this topic simply offers the alias again */
	memcpy(t->e[t->n].topic, topic->p, topic->len);
	t->e[t->n].len = (uint16_t)topic->len;
	t->n++;
}

void rmq_topic_alias_out_free(struct conn *cn)
{
	struct topic_aliases_out *t = mqtt_conn(cn)->oaliases;
	if (!t)
		return;
	for (uint16_t i = 0; i < t->n; i++)
		free(t->e[i].topic);
	free(t);
	mqtt_conn(cn)->oaliases = NULL;
}
