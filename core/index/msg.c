/* Reference-counted messages: built once per publish, freed by whichever core drops the last ref.
 * rmq_msg_new on the publishing core; rmq_msg_ref/unref from any core. */
#include "index/msg.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

static struct rmq_str *str_fields(struct rmq_publish *p, int i)
{
	struct rmq_props *r = &p->props;
	struct rmq_str *all[] = {&p->topic, &p->payload, &r->content_type, &r->response_topic,
				 &r->correlation_data, &r->user};
	return i < (int)(sizeof(all) / sizeof(all[0])) ? all[i] : NULL;
}

struct rmq_msg *rmq_msg_new(const struct rmq_publish *pub)
{
	struct rmq_publish p = *pub;
	/* Per-hop or client-to-server-only properties never travel with the message. */
	p.props.present &= ~(RMQ_PBIT(RMQ_PROP_TOPIC_ALIAS) | RMQ_PBIT(RMQ_PROP_SUB_ID));
	p.props.sub_id_count = 0;
	p.props.topic_alias = 0;
	size_t total = 0;
	struct rmq_str *s;
	for (int i = 0; (s = str_fields(&p, i)); i++)
		total += s->len;
	struct rmq_msg *m = malloc(sizeof(*m) + total);
	if (!m)
		return NULL;
	atomic_init(&m->refs, 1);
	m->origin_core = 0;
	m->stamp = 0;
	m->origin_session = NULL;
	m->from_cluster = false;
	m->expire_at_ms = 0;
	m->picks = NULL;
	m->npicks = 0;
	m->share_only = false;
	m->durable_ck = 0;
	m->on_free = NULL;
	m->on_free_ud = NULL;
	size_t off = 0;
	for (int i = 0; (s = str_fields(&p, i)); i++) {
		if (s->len)
			memcpy(m->data + off, s->p, s->len);
		s->p = m->data + off;
		off += s->len;
	}
	m->pub = p;
	/* Fields that are not carried forward must not point into the publisher's buffer. */
	struct rmq_props *r = &m->pub.props;
	r->assigned_client_id = r->auth_method = r->auth_data = r->response_info = (struct rmq_str){0};
	r->server_reference = r->reason_string = (struct rmq_str){0};
	return m;
}

void rmq_msg_unref(struct rmq_msg *m)
{
	uint32_t before = atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel);
	assert(before > 0);  /* one unref per reference: a second one would free it twice */
	if (before == 1) {
		if (m->on_free)
			m->on_free(m->on_free_ud);
		free(m->picks);
		free(m);
	}
}
