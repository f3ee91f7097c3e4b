/* TLS certificate reload (SIGHUP): main builds a new server context from --cert/--key/--cafile and hands every
 * reactor its own reference; a reactor adopts it at its next TLS accept. Main thread, except rmq_core_tls_ctx
 * (the reactor thread of its core). */
#include <errno.h>
#include <stdio.h>

#include "io/reactor.h"
#include "io/xport.h"

/* Lifetime without locks: each core owns exactly one reference, to the context it gives new connections
 * (c->tls, touched by that core only). Main passes a new reference through the core's tls_next slot with an
 * atomic exchange; the core takes it with another exchange and drops its old one. A context main replaces
 * before a core took it is dropped by main: the core never saw it. Established connections are untouched:
 * OpenSSL's SSL objects hold their own reference on their SSL_CTX, so they finish with the old certificate. */

void rmq_core_tls_init(struct broker *b)
{
	for (int k = 0; k < b->ncores; k++) {
		b->cores[k].tls = rmq_tls_ctx_ref(b->tls);
		atomic_init(&b->cores[k].tls_next, NULL);
	}
}

struct rmq_tls_ctx *rmq_core_tls_ctx(struct core *c)
{
	/* A relaxed load first: the exchange (a write to a shared line) only when main posted something. */
	if (atomic_load_explicit(&c->tls_next, memory_order_relaxed)) {
		struct rmq_tls_ctx *n = atomic_exchange_explicit(&c->tls_next, NULL, memory_order_acquire);
		if (n) {
			rmq_tls_ctx_free(c->tls);
			c->tls = n;
		}
	}
	return c->tls;
}

int rmq_tls_reload(struct broker *b, char *err, size_t errlen)
{
	if (!b->tls)
		return 0;  /* no TLS listener: nothing to reload */
	const struct rmq_config *cfg = &b->cfg;
	struct rmq_tls_ctx *fresh = rmq_tls_ctx_new(cfg->tls_cert, cfg->tls_key,
						    cfg->tls_cafile[0] ? cfg->tls_cafile : NULL,
						    cfg->require_certificate, err, errlen);
	if (!fresh)
		return -EINVAL;  /* the cores keep the context they have */
	for (int k = 0; k < b->ncores; k++) {
		struct rmq_tls_ctx *stale = atomic_exchange_explicit(&b->cores[k].tls_next, rmq_tls_ctx_ref(fresh),
								     memory_order_acq_rel);
		rmq_tls_ctx_free(stale);
	}
	rmq_tls_ctx_free(b->tls);
	b->tls = fresh;
	return 0;
}

void rmq_core_tls_free(struct broker *b)
{
	for (int k = 0; b->cores && k < b->ncores; k++) {
		rmq_tls_ctx_free(b->cores[k].tls);
		rmq_tls_ctx_free(atomic_exchange(&b->cores[k].tls_next, NULL));
		b->cores[k].tls = NULL;
	}
}
