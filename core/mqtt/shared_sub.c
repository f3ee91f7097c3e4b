/* v5 shared subscriptions "$share/{group}/{filter}": local members per group, the replicated map of which
 * cores hold members, and the choice of one member per message. Reactor thread of the core given.
 *
 * Choice: round robin at two levels. The publishing core picks one core among those holding members of
 * the group (its own rotating counter per group), records the pick in the message, and that core picks
 * one of its local members (rotating, online members first). Every message matching a group reaches
 * exactly one member; no core ever waits on another to decide. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "index/msg.h"
#include "index/trie.h"
#include "io/reactor.h"
#include "mqtt/mqtt.h"

struct sh_member {
	struct session *s;
	uint8_t options;
	uint32_t sub_id;
};

struct sh_group {            /* this core's members of one group */
	uint64_t key;            /* XXH3 of the full "$share/g/f" filter: names the group in picks */
	struct sh_member *m;
	uint32_t n, cap, rr;
};

struct sh_route {            /* replicated: cores holding members of one group */
	uint64_t key;
	uint64_t cores[4];
	uint32_t rr;
	uint8_t *inner;
	uint16_t inner_len;
};

struct rmq_shared {
	struct rmq_strmap groups, routes;  /* full filter -> sh_group / sh_route */
	struct rmq_trie *local, *rtrie;    /* inner filter -> sh_group / sh_route */
};

int rmq_shared_parse(const uint8_t *f, size_t len, struct rmq_str *group, struct rmq_str *inner)
{
	/* [MQTT-4.8.2-1] [MQTT-4.8.2-2] "$share/" + non-empty ShareName without / + # + "/" + a filter. */
	if (len < 7 || memcmp(f, "$share/", 7))
		return -EINVAL;
	size_t i = 7;
	while (i < len && f[i] != '/') {
		if (f[i] == '+' || f[i] == '#')
			return -EINVAL;
		i++;
	}
	if (i == 7 || i + 1 >= len)
		return -EINVAL;
	*group = (struct rmq_str){f + 7, (uint32_t)(i - 7)};
	*inner = (struct rmq_str){f + i + 1, (uint32_t)(len - i - 1)};
	return 0;
}

static struct rmq_shared *state(struct core *c)
{
	if (!c->mq->shared) {
		struct rmq_shared *sh = calloc(1, sizeof(*sh));
		if (!sh)
			return NULL;
		sh->local = rmq_trie_new();
		sh->rtrie = rmq_trie_new();
		if (!sh->local || !sh->rtrie) {
			if (sh->local)
				rmq_trie_free(sh->local);
			if (sh->rtrie)
				rmq_trie_free(sh->rtrie);
			free(sh);
			return NULL;
		}
		rmq_strmap_init(&sh->groups);
		rmq_strmap_init(&sh->routes);
		c->mq->shared = sh;
	}
	return c->mq->shared;
}

/* Sets or clears `core`'s bit in the group's route; the route goes when no core holds members. */
int rmq_shared_route(struct core *c, const uint8_t *f, uint16_t len, int core, bool add)
{
	struct rmq_shared *sh = state(c);
	struct rmq_str g = { 0 }, inner = { 0 };  /* -O2 cannot see rmq_shared_parse() fills them */
	if (!sh || rmq_shared_parse(f, len, &g, &inner))
		return -EINVAL;
	struct sh_route *r = rmq_strmap_get(&sh->routes, f, len);
	if (!r) {
		if (!add)
			return 0;
		r = calloc(1, sizeof(*r));
		if (!r || !(r->inner = malloc(inner.len)) || rmq_strmap_put(&sh->routes, f, len, r)) {
			if (r)
				free(r->inner);
			free(r);
			return -ENOMEM;
		}
		memcpy(r->inner, inner.p, inner.len);
		r->inner_len = (uint16_t)inner.len;
		r->key = XXH3_64bits(f, len);
		if (rmq_trie_add(sh->rtrie, r->inner, r->inner_len, r, 0, 0) < 0) {
			rmq_strmap_del(&sh->routes, f, len);
			free(r->inner);
			free(r);
			return -ENOMEM;
		}
	}
	if (add)
		r->cores[core / 64] |= 1ull << (core % 64);
	else
		r->cores[core / 64] &= ~(1ull << (core % 64));
	if (!(r->cores[0] | r->cores[1] | r->cores[2] | r->cores[3])) {
		rmq_trie_remove(sh->rtrie, r->inner, r->inner_len, r);
		rmq_strmap_del(&sh->routes, f, len);
		free(r->inner);
		free(r);
	}
	return 0;
}

/* Adds (or updates) session s as a member. Returns 1 when it is this core's first member of the group
 * (the caller then replicates the route), 0 otherwise, or a negative errno. */
int rmq_shared_subscribe(struct core *c, struct session *s, const uint8_t *f, uint16_t len, uint8_t options,
			 uint32_t sub_id)
{
	struct rmq_shared *sh = state(c);
	struct rmq_str g = { 0 }, inner = { 0 };  /* -O2 cannot see rmq_shared_parse() fills them */
	if (!sh)
		return -ENOMEM;
	if (rmq_shared_parse(f, len, &g, &inner))
		return -EINVAL;
	struct sh_group *grp = rmq_strmap_get(&sh->groups, f, len);
	bool first = !grp;
	if (!grp) {
		grp = calloc(1, sizeof(*grp));
		if (!grp || rmq_strmap_put(&sh->groups, f, len, grp)) {
			free(grp);
			return -ENOMEM;
		}
		grp->key = XXH3_64bits(f, len);
		int rc = rmq_trie_add(sh->local, inner.p, inner.len, grp, 0, 0);
		if (rc < 0) {
			rmq_strmap_del(&sh->groups, f, len);
			free(grp);
			return rc;
		}
	}
	for (uint32_t i = 0; i < grp->n; i++)
		if (grp->m[i].s == s) {
			grp->m[i].options = options;
			grp->m[i].sub_id = sub_id;
			return 0;
		}
	if (grp->n == grp->cap) {
		uint32_t cap = grp->cap ? grp->cap * 2 : 4;
		struct sh_member *m = realloc(grp->m, cap * sizeof(*m));
		if (!m)
			return -ENOMEM;  /* an empty new group stays: harmless, removed with its last member */
		grp->m = m;
		grp->cap = cap;
	}
	grp->m[grp->n++] = (struct sh_member){s, options, sub_id};
	if (first)
		rmq_shared_route(c, f, len, c->id, true);
	return first ? 1 : 0;
}

static void handover(struct core *c, struct sh_group *grp, struct sh_route *r, uint64_t key, struct rmq_msg *m);

/* Removes s from the group. Returns 1 when the group has no member left on this core (the caller
 * replicates the route removal), 0 otherwise, -ENOENT when s was no member. The leaving member's
 * messages of this group that it has not started to receive, and its unacknowledged QoS 1 ones, go to
 * another member ([MQTT-4.8.2-5] forbids that for a QoS 2 message already being sent: it stays). */
int rmq_shared_unsubscribe(struct core *c, struct session *s, const uint8_t *f, uint16_t len)
{
	struct rmq_shared *sh = c->mq->shared;
	struct sh_group *grp = sh ? rmq_strmap_get(&sh->groups, f, len) : NULL;
	if (!grp)
		return -ENOENT;
	uint32_t i = 0;
	while (i < grp->n && grp->m[i].s != s)
		i++;
	if (i == grp->n)
		return -ENOENT;
	memmove(&grp->m[i], &grp->m[i + 1], (grp->n - i - 1) * sizeof(*grp->m));
	grp->n--;
	struct rmq_msg **msgs = NULL;
	uint32_t nm = c->stopping ? 0 : rmq_session_take_shared(c, s, grp->key, &msgs);
	struct sh_route *r = rmq_strmap_get(&sh->routes, f, len);
	for (uint32_t k = 0; k < nm; k++)
		handover(c, grp, r, grp->key, msgs[k]);
	free(msgs);
	if (nm && s->conn)
		rmq_session_pump(c, s);  /* an online member unsubscribed: its window has room again */
	if (grp->n)
		return 0;
	struct rmq_str g = { 0 }, inner = { 0 };  /* -O2 cannot see rmq_shared_parse() fills them */
	rmq_shared_parse(f, len, &g, &inner);
	rmq_trie_remove(sh->local, inner.p, inner.len, grp);
	rmq_strmap_del(&sh->groups, f, len);
	free(grp->m);
	free(grp);
	rmq_shared_route(c, f, len, c->id, false);
	return 1;
}

/* ---- publish ------------------------------------------------------------------------------- */

struct pick_ctx {
	struct core *c;
	struct share_pick *p;
	uint32_t n, cap;
};

static void pick_one(void *ud, void *sub, uint8_t options, uint32_t sub_id)
{
	struct pick_ctx *k = ud;
	struct sh_route *r = sub;
	(void)options;
	(void)sub_id;
	int nc = k->c->b->ncores;
	for (int step = 0; step < nc; step++) {
		int core = (int)((r->rr + (uint32_t)step) % (uint32_t)nc);
		if (!(r->cores[core / 64] & (1ull << (core % 64))))
			continue;
		r->rr = (uint32_t)core + 1;
		if (k->n == k->cap) {
			uint32_t cap = k->cap ? k->cap * 2 : 4;
			struct share_pick *p = realloc(k->p, cap * sizeof(*p));
			if (!p)
				return;
			k->p = p;
			k->cap = cap;
		}
		k->p[k->n++] = (struct share_pick){r->key, (uint16_t)core};
		return;
	}
}

/* Publishing core: one core per matching group, recorded in the message (made here if needed). */
void rmq_shared_pick(struct core *c, struct pubctx *x)
{
	struct rmq_shared *sh = c->mq->shared;
	if (!sh || !sh->routes.n)
		return;
	struct pick_ctx k = {c, NULL, 0, 0};
	rmq_trie_match(sh->rtrie, x->pub->topic.p, x->pub->topic.len, pick_one, &k);
	if (!k.n) {
		free(k.p);
		return;
	}
	struct rmq_msg *m = rmq_publish_ctx_msg(x);
	if (!m || m->picks) {
		x->matched = true;
		free(k.p);  /* no memory, or already picked (a message is published once) */
		return;
	}
	m->picks = k.p;
	m->npicks = (uint16_t)k.n;
	x->matched = true;
}

void rmq_shared_add_cores(struct core *c, const struct rmq_msg *m, uint64_t *coremask)
{
	(void)c;
	for (uint16_t i = 0; m && i < m->npicks; i++)
		coremask[m->picks[i].core / 64] |= 1ull << (m->picks[i].core % 64);
}

struct local_ctx {
	struct core *c;
	struct pubctx *x;
};

static bool online(const struct session *s)
{
	return s->conn && s->conn->state == CS_ACTIVE;
}

/* Gives x to one member of grp (which has members): online members first, in turn; with none online the
 * next member's session queues it. */
static void to_member(struct core *c, struct sh_group *grp, struct pubctx *x)
{
	uint32_t pick = grp->rr % grp->n;
	for (uint32_t step = 0; step < grp->n; step++) {
		uint32_t i = (grp->rr + step) % grp->n;
		if (online(grp->m[i].s)) {
			pick = i;
			break;
		}
	}
	grp->rr = pick + 1;
	struct sh_member *mb = &grp->m[pick];
	const struct rmq_publish *p = x->pub;
	uint8_t qos = p->qos < RMQ_SUBOPT_QOS(mb->options) ? p->qos : RMQ_SUBOPT_QOS(mb->options);
	bool retain = (mb->options & RMQ_SUBOPT_RAP) && p->retain;
	x->share_key = grp->key;
	rmq_session_deliver(c, mb->s, x, qos, retain, &mb->sub_id, mb->sub_id ? 1 : 0);
	x->share_key = 0;
}

static void deliver_group(void *ud, void *sub, uint8_t options, uint32_t sub_id)
{
	struct local_ctx *l = ud;
	struct sh_group *grp = sub;
	const struct rmq_msg *m = l->x->m;
	(void)options;
	(void)sub_id;
	bool picked = false;
	for (uint16_t i = 0; i < m->npicks && !picked; i++)
		picked = m->picks[i].key == grp->key && m->picks[i].core == l->c->id;
	if (!picked || !grp->n)
		return;
	to_member(l->c, grp, l->x);
}

/* On every core the message reaches: deliver to one local member of each group picked for this core. */
void rmq_shared_deliver(struct core *c, struct pubctx *x)
{
	struct rmq_shared *sh = c->mq->shared;
	if (!sh || !x->m || !x->m->npicks)
		return;
	struct local_ctx l = {c, x};
	rmq_trie_match(sh->local, x->pub->topic.p, x->pub->topic.len, deliver_group, &l);
}

static void free_group(void *ud, void *val)
{
	(void)ud;
	struct sh_group *g = val;
	free(g->m);
	free(g);
}

static void free_route(void *ud, void *val)
{
	(void)ud;
	struct sh_route *r = val;
	free(r->inner);
	free(r);
}

void rmq_shared_free(struct core *c)
{
	struct rmq_shared *sh = c->mq ? c->mq->shared : NULL;
	if (!sh)
		return;
	rmq_strmap_each(&sh->groups, free_group, NULL);
	rmq_strmap_each(&sh->routes, free_route, NULL);
	rmq_strmap_destroy(&sh->groups);
	rmq_strmap_destroy(&sh->routes);
	rmq_trie_free(sh->local);
	rmq_trie_free(sh->rtrie);
	free(sh);
	c->mq->shared = NULL;
}

/* ---- a leaving member's messages ------------------------------------------------------------ */

/* Consumes the ref on m: to a remaining local member, else to a core that still has members (a copy
 * that only that core's member of this group receives), else counted as lost. */
static void handover(struct core *c, struct sh_group *grp, struct sh_route *r, uint64_t key, struct rmq_msg *m)
{
	if (m->expire_at_ms && m->expire_at_ms <= c->now_ms) {
		c->st.expired++;
		rmq_msg_unref(m);
		return;
	}
	if (grp->n) {
		struct pubctx x = {c, &m->pub, m, true, NULL, 0, false};
		to_member(c, grp, &x);
		c->st.shared_handed_over++;
		rmq_msg_unref(m);
		return;
	}
	int nc = c->b->ncores, to = -1;
	for (int step = 0; r && step < nc && to < 0; step++) {
		int k = (int)((r->rr + (uint32_t)step) % (uint32_t)nc);
		if (k != c->id && (r->cores[k / 64] & (1ull << (k % 64))))
			to = k;
	}
	struct rmq_msg *cp = to >= 0 ? rmq_msg_new(&m->pub) : NULL;
	struct share_pick *pk = cp ? malloc(sizeof(*pk)) : NULL;
	if (!pk) {
		if (cp)
			rmq_msg_unref(cp);
		c->st.shared_lost++;  /* no member left anywhere: nobody to give it to */
		VLOG(c, "ringmq: core %d: shared message lost: no member left\n", c->id);
		rmq_msg_unref(m);
		return;
	}
	r->rr = (uint32_t)to + 1;
	*pk = (struct share_pick){key, (uint16_t)to};
	cp->picks = pk;
	cp->npicks = 1;
	cp->share_only = true;
	cp->expire_at_ms = m->expire_at_ms;
	cp->origin_core = (uint16_t)c->id;
	c->st.shared_handed_over++;
	rmq_core_xpush(c, to, XK_PUBLISH, 0, cp);
	rmq_msg_unref(m);
}
