/* v5 topic aliases from clients: the per-connection alias -> topic table ([MQTT-3.3.2.3.4]).
 * Reactor thread owning the connection. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt/mqtt.h"

/* Allocated on the first alias a connection uses; aliases live as long as the network connection. */
struct topic_aliases {
	uint8_t *topic[RMQ_TOPIC_ALIAS_MAX + 1];
	uint16_t len[RMQ_TOPIC_ALIAS_MAX + 1];
};

/* Returns 0 (p->topic now set) or a reason code for a DISCONNECT: 0x94 for an alias outside
 * 1..RMQ_TOPIC_ALIAS_MAX, 0x82 for an empty topic without a known alias. */
int rmq_topic_alias_apply(struct conn *cn, struct rmq_publish *p)
{
	if (!(p->props.present & RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS))) {
		/* [MQTT-3.3.2-1] a topic name is required without an alias. */
		return p->topic.len ? 0 : RMQ_RC_PROTOCOL_ERROR;
	}
	uint16_t a = p->props.topic_alias;
	/* [MQTT-3.3.2-8] [MQTT-3.3.2-9] 0 and values above our Topic Alias Maximum are invalid. */
	if (a == 0 || a > RMQ_TOPIC_ALIAS_MAX)
		return RMQ_RC_TOPIC_ALIAS_INVALID;
	p->props.present &= ~RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS);
	p->props.topic_alias = 0;
	struct topic_aliases *t = mqtt_conn(cn)->aliases;
	if (p->topic.len == 0) {
		if (!t || !t->topic[a])
			return RMQ_RC_PROTOCOL_ERROR;  /* an alias never set on this connection */
		p->topic = (struct rmq_str){t->topic[a], t->len[a]};
		return 0;
	}
	if (!t && !(t = mqtt_conn(cn)->aliases = calloc(1, sizeof(*t))))
		return RMQ_RC_UNSPECIFIED;
	uint8_t *copy = malloc(p->topic.len);
	if (!copy)
		return RMQ_RC_UNSPECIFIED;
	memcpy(copy, p->topic.p, p->topic.len);
	free(t->topic[a]);
	t->topic[a] = copy;
	t->len[a] = (uint16_t)p->topic.len;
	return 0;
}

void rmq_topic_alias_free(struct conn *cn)
{
	struct topic_aliases *t = mqtt_conn(cn)->aliases;
	if (!t)
		return;
	for (int i = 0; i <= RMQ_TOPIC_ALIAS_MAX; i++)
		free(t->topic[i]);
	free(t);
	mqtt_conn(cn)->aliases = NULL;
}
