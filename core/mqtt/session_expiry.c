/* v5 Will Delay Interval next to the Session Expiry Interval: offline sessions and their delayed wills on
 * the core's timer wheel (the session's expiry_timer, TK_SESSION). Reactor thread owning the session. */
#include <stdlib.h>

#include "index/msg.h"
#include "io/reactor.h"
#include "mqtt/mqtt.h"
#include "store/persist.h"

static void arm(struct core *c, struct session *s)
{
	uint64_t due = s->expire_at_ms;
	if (s->will_at_ms && (!due || s->will_at_ms < due))
		due = s->will_at_ms;
	if (due)
		rmq_wheel_add(&c->wheel, &s->expiry_timer, due);
	else
		rmq_wheel_del(&c->wheel, &s->expiry_timer);
}

static void publish_will(struct core *c, struct session *s)
{
	struct rmq_msg *w = s->will;
	s->will = NULL;
	s->will_at_ms = 0;
	if (!w)
		return;
	/* No origin session: the will outlives (or is about to outlive) the connection it came from. */
	rmq_publish_from_core(c, w, NULL);
	rmq_msg_unref(w);
}

/* The session's connection ended (s->conn already NULL). Takes `will` (the will to publish because the
 * connection ended abnormally, or NULL). [MQTT-3.1.3-9] the will waits for the earlier of its delay and
 * the end of the session; a session with expiry 0 ends now, so its will goes out now. */
void rmq_session_expiry_on_close(struct core *c, struct session *s, struct rmq_msg *will, uint32_t will_delay_s)
{
	VLOG(c, "ringmq: core %d: session '%.*s' offline (expiry %u s, will %s, delay %u s)\n", c->id,
	     (int)s->id_len, (const char *)s->client_id, s->expiry, will ? "yes" : "no", will_delay_s);
	if (will && (will_delay_s == 0 || s->clean)) {
		rmq_publish_from_core(c, will, s);
		rmq_msg_unref(will);
		will = NULL;
	}
	s->expire_at_ms = s->expiry == UINT32_MAX ? 0 : c->now_ms + (uint64_t)s->expiry * 1000u;
	if (c->persist && s->durable && !s->clean)
		rmq_persist_session_offline(c, s);  /* its expiry now counts, also across a restart */
	if (!will) {
		rmq_session_detached(c, s);  /* destroys a clean session, else arms the expiry */
		return;
	}
	if (s->will)
		rmq_msg_unref(s->will);
	s->will = will;
	s->will_at_ms = c->now_ms + (uint64_t)will_delay_s * 1000u;
	c->st.wills_delayed++;
	arm(c, s);
}

/* A connection took the session back in time: a delayed will is dropped, the expiry stops. */
void rmq_session_expiry_on_resume(struct core *c, struct session *s)
{
	if (s->will) {
		rmq_msg_unref(s->will);
		s->will = NULL;
	}
	s->will_at_ms = s->expire_at_ms = 0;
	rmq_wheel_del(&c->wheel, &s->expiry_timer);
}

void rmq_session_expiry_fire(struct core *c, struct session *s)
{
	if (s->conn)
		return;  /* resumed (the timer should have been disarmed) */
	if (s->will_at_ms && s->will_at_ms <= c->now_ms)
		publish_will(c, s);
	if (s->expire_at_ms && s->expire_at_ms <= c->now_ms) {
		c->st.sessions_expired++;
		VLOG(c, "ringmq: core %d: session '%.*s' expired\n", c->id, (int)s->id_len, (const char *)s->client_id);
		rmq_session_destroy(c, s);  /* publishes a will still pending: the session ends */
		return;
	}
	arm(c, s);
}

/* Called as the session is destroyed: a pending will goes out now (the session ended before its delay),
 * except while the broker shuts down. */
void rmq_session_expiry_free(struct core *c, struct session *s)
{
	rmq_wheel_del(&c->wheel, &s->expiry_timer);
	if (s->will && !c->stopping)
		publish_will(c, s);
	if (s->will)
		rmq_msg_unref(s->will);
	s->will = NULL;
}
