/* The reactor loop: ring and buffer-ring setup, CQE dispatch table, cross-core queue drain, doorbells,
 * ticks, and teardown. rmq_core_run is the body of one core's thread; everything else runs on it. */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ringmq/clock.h"
#include "io/reactor.h"
#include "io/xport.h"
#include "ringmq/bridge.h"
#include "io/uring_compat.h"

#define BUF_GROUP 0
/* One tick drives keep-alive and retries; 100 ms keeps timeouts within 10 % at 1 s keep-alives while
 * waking an idle core only ten times a second. */
#define TICK_MS 100
/* Entries drained from one inbound queue per pass, so one busy sender cannot monopolise a core. */
#define XQ_BATCH 256
/* Fan-out entries parked per destination when its queue is full; control entries are never dropped. */
#define OUTBOX_DATA_MAX 65536
/* At stop, how long a core waits for the others to stop reading their clients (a core that failed to start
 * never arrives), and how many inbound batches it then takes at most. */
#define QUIESCE_WAIT_MS 1000
#define QUIESCE_ROUNDS 64
/* A batched wait ends early once this many completions are in: past it, waiting longer adds latency
 * and saves next to nothing per completion. */
#define BATCH_WAIT_NR 32
/* The kernel ends a min_wait with nothing done at once unless an overall bound is set; the tick comes
 * sooner than this, so an idle core still sleeps from tick to tick. */
#define IDLE_WAIT_S 1
/* Receive buffers are taken in ring order, so any core that has seen more receives than it has buffers has
 * touched all of them (16 MiB by default), however few connections it holds. Once per period, a core that
 * used few of them hands their pages back; the next receive into one faults in a fresh page. Under load
 * (more receives than that) the pages stay: there they are all in use and refaulting would cost CPU. */
#define BUF_TRIM_MS 1000
#define BUF_TRIM_DIVISOR 4


struct io_uring_sqe *rmq_core_sqe(struct core *c)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
	while (!sqe) {
		/* SQ full: push what we have to the kernel; it never blocks. */
		io_uring_submit(&c->ring);
		sqe = io_uring_get_sqe(&c->ring);
	}
	return sqe;
}

/* ---- cross-core sending --------------------------------------------------------------------- */

static void ring_doorbell(struct core *c, int to)
{
	struct core *dst = &c->b->cores[to];
	if (c->b->use_msg_ring) {
		struct io_uring_sqe *sqe = rmq_core_sqe(c);
		io_uring_prep_msg_ring(sqe, dst->ring.ring_fd, 0, ud_pack(OP_DOORBELL, 0, (uint32_t)c->id), 0);
		/* Our own completion of the MSG_RING is uninteresting unless it fails. */
		sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
		io_uring_sqe_set_data64(sqe, ud_pack(OP_NONE, 0, 0));
	} else {
		uint64_t one = 1;
		if (write(dst->efd, &one, sizeof(one)) < 0)
			c->st.xq_full++;
	}
}

static bool is_data_kind(uint32_t kind) { return kind == XK_PUBLISH || kind == XK_RETAIN; }

static void drop_entry(struct core *c, struct rmq_xq_entry *e)
{
	c->st.xq_drop++;
	c->proto->xfree(c, e, true);
}

void rmq_core_xpush(struct core *c, int to, uint32_t kind, uint32_t arg, void *ptr)
{
	struct outbox *ob = &c->outboxes[to];
	struct rmq_xq_entry e = {kind, arg, ptr};
	if (ob->n == 0 && rmq_xq_push(&c->b->xq[c->id * c->b->ncores + to], &e, 1) == 1) {
		if (rmq_xq_wake_needed(&c->b->cores[to].wake))
			ring_doorbell(c, to);
		return;
	}
	/* Queue full: park it. Fan-out beyond the bound is dropped (counted); control traffic is not,
	 * so a publish flood cannot lose a handoff or a route update. */
	if (is_data_kind(kind) && ob->data_n >= OUTBOX_DATA_MAX) {
		drop_entry(c, &e);
		return;
	}
	if (ob->n == ob->cap) {
		uint32_t cap = ob->cap ? ob->cap * 2 : 256;
		struct rmq_xq_entry *ne = realloc(ob->e, cap * sizeof(*ne));
		if (!ne) {
			if (is_data_kind(kind))
				drop_entry(c, &e);
			else
				abort();  /* cannot lose control traffic; out of memory is fatal here */
			return;
		}
		ob->e = ne;
		ob->cap = cap;
	}
	ob->e[ob->n++] = e;
	if (is_data_kind(kind))
		ob->data_n++;
	c->st.xq_full++;
	c->outbox_pending = true;
}

static void flush_outboxes(struct core *c)
{
	if (!c->outbox_pending)
		return;
	c->outbox_pending = false;
	for (int to = 0; to < c->b->ncores; to++) {
		struct outbox *ob = &c->outboxes[to];
		if (!ob->n)
			continue;
		uint32_t k = rmq_xq_push(&c->b->xq[c->id * c->b->ncores + to], ob->e, ob->n);
		for (uint32_t i = 0; i < k; i++)
			if (is_data_kind(ob->e[i].kind))
				ob->data_n--;
		memmove(ob->e, ob->e + k, (ob->n - k) * sizeof(*ob->e));
		ob->n -= k;
		if (ob->n)
			c->outbox_pending = true;
		if (k && rmq_xq_wake_needed(&c->b->cores[to].wake))
			ring_doorbell(c, to);
	}
}

/* ---- cross-core receiving ------------------------------------------------------------------- */

static bool drain_inbound(struct core *c)
{
	struct rmq_xq_entry ents[XQ_BATCH];
	bool any = false;
	for (int from = 0; from < c->b->ncores; from++) {
		if (from == c->id)
			continue;
		struct rmq_xq *q = &c->b->xq[from * c->b->ncores + c->id];
		uint32_t n = rmq_xq_pop(q, ents, XQ_BATCH);
		for (uint32_t i = 0; i < n; i++)
			c->proto->xentry(c, &ents[i]);
		any |= n > 0;
	}
	return any;
}

static bool inbound_empty(struct core *c)
{
	for (int from = 0; from < c->b->ncores; from++)
		if (from != c->id && !rmq_xq_empty(&c->b->xq[from * c->b->ncores + c->id]))
			return false;
	return true;
}

/* ---- arming --------------------------------------------------------------------------------- */

static void arm_accept(struct core *c, int i)
{
	struct io_uring_sqe *sqe = rmq_core_sqe(c);
	io_uring_prep_multishot_accept(sqe, c->listen_fds[i], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_ACCEPT, 0, (uint32_t)i));
}

static void arm_eventfd(struct core *c)
{
	struct io_uring_sqe *sqe = rmq_core_sqe(c);
	io_uring_prep_read(sqe, c->efd, &c->efd_val, sizeof(c->efd_val), 0);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_EVENTFD, 0, 0));
}

static void arm_tick(struct core *c)
{
	struct io_uring_sqe *sqe = rmq_core_sqe(c);
	c->tick_ts.tv_sec = 0;
	c->tick_ts.tv_nsec = TICK_MS * 1000000L;
	io_uring_prep_timeout(sqe, &c->tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_TICK, 0, 0));
}

static void arm_bridge(struct core *c)
{
	int fd = c->bc ? rmq_bridge_core_fd(c->bc) : -1;
	if (fd < 0)
		return;
	struct io_uring_sqe *sqe = rmq_core_sqe(c);
	io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, ud_pack(OP_BRIDGE, 0, 0));
}

/* ---- CQE handlers (the dispatch table) ------------------------------------------------------ */

static void on_none(struct core *c, struct io_uring_cqe *cqe)
{
	(void)c;
	(void)cqe;
}

static void on_wal(struct core *c, struct io_uring_cqe *cqe)
{
	c->io_hooks->log_done(c, cqe);
}

static void on_spool(struct core *c, struct io_uring_cqe *cqe)
{
	c->io_hooks->spool_done(c, cqe);
}

static void on_accept(struct core *c, struct io_uring_cqe *cqe)
{
	int i = (int)UD_SLOT(cqe->user_data);
	if (!(cqe->flags & IORING_CQE_F_MORE) && !c->stopping)
		arm_accept(c, i);
	if (cqe->res < 0) {
		if (cqe->res != -ECANCELED)
			VLOG(c, "ringmq: core %d: accept: %s\n", c->id, strerror(-cqe->res));
		return;
	}
	int fd = cqe->res;
	uint32_t n = atomic_fetch_add_explicit(&c->b->nconns, 1, memory_order_relaxed);
	if (n >= c->b->cfg.max_connections || c->stopping) {
		/* Refused cleanly: the client sees a closed connection before any CONNACK, and retries
		 * elsewhere (a load balancer in front spreads it to another node). */
		atomic_fetch_sub_explicit(&c->b->nconns, 1, memory_order_relaxed);
		c->st.refused_max_conn++;
		close(fd);
		return;
	}
	struct conn *cn = rmq_conn_new(c, fd);
	if (!cn) {
		atomic_fetch_sub_explicit(&c->b->nconns, 1, memory_order_relaxed);
		close(fd);
		return;
	}
	c->st.accepted++;
	cn->proxy_wait = c->b->cfg.proxy_protocol;  /* conn.c proxy_input: the header comes before all else */
	uint8_t kind = c->b->cfg.listen[i].kind;
	if (kind) {
		cn->xp = rmq_xport_new(kind & RMQ_LISTEN_TLS ? rmq_core_tls_ctx(c) : NULL, kind & RMQ_LISTEN_WS,
				       c->b->cfg.max_packet_size);
		if (!cn->xp) {
			rmq_conn_close(c, cn, false);
			return;
		}
	}
	rmq_conn_arm_recv(c, cn);
}

static void on_recv(struct core *c, struct io_uring_cqe *cqe)
{
	if (cqe->flags & IORING_CQE_F_BUFFER)
		c->bufs_used++;
	struct conn *cn = rmq_conn_lookup(c, UD_SLOT(cqe->user_data), UD_GEN(cqe->user_data));
	if (!cn) {
		/* A stale completion still owns a buffer: give it back. */
		if (cqe->flags & IORING_CQE_F_BUFFER) {
			uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
			io_uring_buf_ring_add(c->br, c->bufs + (size_t)bid * c->buf_size, c->buf_size, bid,
					      io_uring_buf_ring_mask(c->nbufs), c->buf_returns++);
		}
		return;
	}
	rmq_conn_on_recv(c, cn, cqe);
}

static void on_send(struct core *c, struct io_uring_cqe *cqe)
{
	struct conn *cn = rmq_conn_lookup(c, UD_SLOT(cqe->user_data), UD_GEN(cqe->user_data));
	if (cn)
		rmq_conn_on_send(c, cn, cqe->res);
}

static void on_doorbell(struct core *c, struct io_uring_cqe *cqe)
{
	(void)cqe;
	drain_inbound(c);
}

static void on_eventfd(struct core *c, struct io_uring_cqe *cqe)
{
	(void)cqe;
	if (atomic_load(&c->stop)) {
		c->stopping = true;
		return;
	}
	drain_inbound(c);
	arm_eventfd(c);
}

static size_t bufs_bytes(const struct core *c) { return (size_t)c->nbufs * c->buf_size; }

/* The tick decides; end_of_iteration trims (trim_bufs) once no completion is left to handle. */
static void trim_bufs_due(struct core *c)
{
	if (c->now_ms < c->bufs_trim_ms)
		return;
	c->bufs_trim_ms = c->now_ms + BUF_TRIM_MS;
	if ((c->b->ring_flags & IORING_SETUP_DEFER_TASKRUN) && c->bufs_used < c->nbufs / BUF_TRIM_DIVISOR)
		c->bufs_trim = true;
	c->bufs_used = 0;
}

/* With DEFER_TASKRUN the kernel fills provided buffers only inside this thread's io_uring_enter, and posts a
 * completion for each buffer it fills. With no completion waiting (none in the ring, none in the kernel's
 * overflow list), every buffer filled was handled and given back: none holds data. */
static void trim_bufs(struct core *c)
{
	if (!c->bufs_trim || io_uring_cq_ready(&c->ring) || io_uring_cq_has_overflow(&c->ring))
		return;
	c->bufs_trim = false;
	if (madvise(c->bufs, bufs_bytes(c), MADV_DONTNEED))
		VLOG(c, "ringmq: core %d: madvise receive buffers: %s\n", c->id, strerror(errno));
}

static void on_timer(void *ud, struct rmq_timer *t);

static void on_tick(struct core *c, struct io_uring_cqe *cqe)
{
	(void)cqe;
	trim_bufs_due(c);
	rmq_wheel_advance(&c->wheel, c->now_ms, on_timer, c);
	c->io_hooks->tick(c);
	c->proto->poll(c);  /* Kafka -> MQTT: start delay and periodic commits */
	c->io_hooks->tick_end(c);
	if (!c->stopping)
		arm_tick(c);
}

static void on_bridge(struct core *c, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE) && !c->stopping)
		arm_bridge(c);
	if (c->bc)
		rmq_bridge_core_poll(c->bc, c->proto->bridge_done, c);
	c->proto->poll(c);
}

typedef void (*cqe_fn)(struct core *c, struct io_uring_cqe *cqe);
static const cqe_fn dispatch[OP__COUNT] = {
	[OP_NONE] = on_none,       [OP_ACCEPT] = on_accept,   [OP_RECV] = on_recv,
	[OP_SEND] = on_send,       [OP_DOORBELL] = on_doorbell, [OP_EVENTFD] = on_eventfd,
	[OP_TICK] = on_tick,       [OP_BRIDGE] = on_bridge,
	[OP_WAL] = on_wal,         [OP_SPOOL] = on_spool,
};

void rmq_core_log_foreign(void *ud, struct io_uring_cqe *cqe)
{
	/* Only the other disk log's completions: the drains ran without sends and receives before both logs
	 * shared the ring, and shutdown does not need them. */
	enum op op = UD_OP(cqe->user_data);
	if (op == OP_WAL || op == OP_SPOOL)
		dispatch[op]((struct core *)ud, cqe);
}

/* Keep-alive or connect timeout: the timer is embedded in its connection. */
static void on_timer(void *ud, struct rmq_timer *t)
{
	struct core *c = ud;
	if (t->kind == TK_SESSION) {
		c->proto->session_timer(c, t);
		return;
	}
	struct conn *cn = (struct conn *)((char *)t - offsetof(struct conn, timer));
	/* Traffic arrived since the timer was set: the protocol pushes it out (to the keep-alive deadline or that
	 * of a packet still arriving) instead of re-arming per packet, or closes a connection that trickles. */
	if (cn->state == CS_ACTIVE && c->proto->conn_timer(c, cn))
		return;
	if (cn->state == CS_CLOSING) {
		rmq_conn_force_close(c, cn);
		return;
	}
	c->st.keepalive_timeout++;
	VLOG(c, "ringmq: core %d: keep-alive/connect timeout, closing\n", c->id);
	if (cn->state == CS_ACTIVE && cn->version == RMQ_V5)
		rmq_conn_disconnect(c, cn, RMQ_RC_KEEPALIVE_TIMEOUT);
	else
		rmq_conn_close(c, cn, true);
}

/* ---- set-up and teardown -------------------------------------------------------------------- */

static int core_setup(struct core *c)
{
	struct broker *b = c->b;
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	/* Multishot accept/recv post many CQEs per SQE: size the CQ well above the SQ. */
	p.flags = b->ring_flags | IORING_SETUP_CQSIZE;
	p.cq_entries = b->cfg.ring_entries * 8;
	int rc = io_uring_queue_init_params(b->cfg.ring_entries, &c->ring, &p);
	if (rc < 0) {
		fprintf(stderr, "ringmq: core %d: io_uring setup: %s\n", c->id, strerror(-rc));
		return rc;
	}
	c->ring_ok = true;
	c->nbufs = b->cfg.bufs_per_core;
	c->buf_size = b->cfg.buf_size;
	/* Mapped, not allocated: trim_bufs hands its pages back to the kernel. */
	c->bufs = mmap(NULL, bufs_bytes(c), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->bufs == MAP_FAILED) {
		c->bufs = NULL;
		return -ENOMEM;
	}
	c->br = rmq_uring_setup_buf_ring(&c->ring, c->nbufs, BUF_GROUP, &rc);
	if (!c->br) {
		fprintf(stderr, "ringmq: core %d: provided buffer ring: %s\n", c->id, strerror(-rc));
		return rc;
	}
	int mask = io_uring_buf_ring_mask(c->nbufs);
	for (uint32_t i = 0; i < c->nbufs; i++)
		io_uring_buf_ring_add(c->br, c->bufs + (size_t)i * c->buf_size, c->buf_size, (uint16_t)i, mask,
				      (int)i);
	io_uring_buf_ring_advance(c->br, (int)c->nbufs);

	c->outboxes = calloc((size_t)b->ncores, sizeof(*c->outboxes));
	if (!c->outboxes)
		return -ENOMEM;
	c->now_ms = rmq_clock_coarse_ms();
	rmq_wheel_init(&c->wheel, c->now_ms, TICK_MS);
	c->bc = b->bridge ? rmq_bridge_core_get(b->bridge, c->id) : NULL;
	c->listen_fds = b->listen_fds + c->id * b->nlisten_fds;
	if ((rc = c->proto->start(c)))
		return rc;
	atomic_fetch_add(&b->ready, 1);
	while (!atomic_load(&b->go))
		usleep(1000);  /* start-up only: main calls listen() once every core is set up */
	if (atomic_load(&b->failed))
		return -EIO;
	/* Every core queued its replayed routes before `go`: take them before the first accept. */
	if (b->cfg.data_dir[0])
		drain_inbound(c);
	for (int i = 0; i < b->nlisten_fds; i++)
		arm_accept(c, i);
	arm_eventfd(c);
	arm_tick(c);
	arm_bridge(c);
	return 0;
}

static void core_teardown(struct core *c)
{
	/* Sessions freed below did not hand their queued Kafka records to a car: commit none of them. */
	if (c->bc)
		rmq_bridge_core_freeze(c->bc);
	c->proto->stop(c);
	/* Connections first (they point at sessions), then sessions, then the indexes. */
	for (struct conn *cn = c->dirty; cn; cn = cn->next_dirty)
		cn->dirty = false;
	c->dirty = NULL;
	for (struct conn *cn = c->paused; cn; cn = cn->next_paused)
		cn->in_paused = false;
	c->paused = NULL;
	for (uint32_t i = 0; i < c->nslots; i++) {
		struct conn *cn = c->slots[i];
		if (!cn)
			continue;
		if (cn->fd >= 0)
			close(cn->fd);
		cn->fd = -1;
		rmq_conn_release(c, cn);
	}
	rmq_conn_reap(c);  /* c->proto->reap detaches each one from its session */
	c->io_hooks->spool_close(c, false);  /* no-op after a clean stop (already drained) */
	c->io_hooks->log_close(c);  /* normally done by the drain already; here after a failed set-up */
	if (c->ring_ok)
		io_uring_queue_exit(&c->ring);  /* cancels whatever was in flight before buffers go */
	c->ring_ok = false;
	c->proto->teardown(c);  /* sessions, subscriptions, routes, retained messages */
	for (int i = 0; c->outboxes && i < c->b->ncores; i++) {
		for (uint32_t k = 0; k < c->outboxes[i].n; k++)
			c->proto->xfree(c, &c->outboxes[i].e[k], false);  /* receivers have stopped */
		free(c->outboxes[i].e);
	}
	free(c->outboxes);
	if (c->bufs)
		munmap(c->bufs, bufs_bytes(c));
	free(c->slots);
	free(c->gens);
	free(c->holds);
	free(c->free_slots);
	if (c->b->cfg.verbose && (c->st.login_refused || c->st.acl_denied_pub || c->st.acl_denied_sub))
		fprintf(stderr, "ringmq: core %d: logins refused %llu, ACL denied publishes %llu subscriptions %llu\n",
			c->id, (unsigned long long)c->st.login_refused, (unsigned long long)c->st.acl_denied_pub,
			(unsigned long long)c->st.acl_denied_sub);
	if (c->st.cq_overflow || c->b->cfg.verbose)
		fprintf(stderr,
			"ringmq: core %d: accepted %llu refused %llu msgs in %llu out %llu enobufs %llu "
			"cq_overflow %llu xq_full %llu xq_drop %llu slow %llu qdrop %llu handoffs %llu\n",
			c->id, (unsigned long long)c->st.accepted, (unsigned long long)c->st.refused_max_conn,
			(unsigned long long)c->st.msgs_in, (unsigned long long)c->st.msgs_out,
			(unsigned long long)c->st.enobufs, (unsigned long long)c->st.cq_overflow,
			(unsigned long long)c->st.xq_full, (unsigned long long)c->st.xq_drop,
			(unsigned long long)c->st.slow_consumer, (unsigned long long)c->st.queue_overflow,
			(unsigned long long)c->st.handoffs_out);
}

static void pin(struct core *c)
{
	const struct rmq_config *cfg = &c->b->cfg;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int cpu = cfg->ncpus ? cfg->cpus[c->id % cfg->ncpus] : (int)(c->id % (ncpu > 0 ? ncpu : 1));
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		VLOG(c, "ringmq: core %d: cannot pin to CPU %d: %s\n", c->id, cpu, strerror(errno));
}

/* ---- the loop ------------------------------------------------------------------------------- */

/* Nothing to do but wait: with --batch-wait-us, gather completions for up to that long (or BATCH_WAIT_NR of
 * them), then return at the first one, so at moderate rates a core wakes once per batch, not per message.
 * An idle core still sleeps until its tick. A batch can hold far more than BATCH_WAIT_NR completions: with
 * DEFER_TASKRUN the kernel counts that many task-work runs, and one run of a busy connection's multishot
 * receive posts many (conn.c rbuf_limit allows for it). */
static int wait_for_work(struct core *c)
{
	static const struct __kernel_timespec idle = {.tv_sec = IDLE_WAIT_S};
	if (!c->b->min_wait)
		return io_uring_submit_and_wait(&c->ring, 1);
	return rmq_uring_submit_wait_min(&c->ring, BATCH_WAIT_NR, c->b->cfg.batch_wait_us, &idle);
}

static void process_cqes(struct core *c)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&c->ring, head, cqe) {
		enum op op = UD_OP(cqe->user_data);
		if (op < OP__COUNT)
			dispatch[op](c, cqe);
		n++;
	}
	io_uring_cq_advance(&c->ring, n);
}

static void end_of_iteration(struct core *c)
{
	/* Paused on Kafka backpressure: resume when the producer (with --spool: the spool) has room. */
	bool writable = !c->bc || (c->kspool ? c->io_hooks->spool_writable(c) : rmq_bridge_core_writable(c->bc));
	/* Detach the list first: resuming replays the connection's buffered packets, which may pause it
	 * again and re-link it at the head; walking the live list would then resume it forever (a
	 * livelock that starved the ring and SIGTERM while Kafka was down). Re-paused ones wait for the
	 * next iteration. */
	struct conn *list = c->paused;
	c->paused = NULL;
	while (list) {
		struct conn *cn = list;
		list = cn->next_paused;
		cn->next_paused = NULL;
		cn->in_paused = false;
		if (cn->released || !(cn->pause & PAUSE_BRIDGE))
			continue;
		if (!writable) {
			cn->in_paused = true;
			cn->next_paused = c->paused;
			c->paused = cn;
			continue;
		}
		rmq_conn_resume(c, cn, PAUSE_BRIDGE);
		if (c->bc && !(c->kspool ? c->io_hooks->spool_writable(c) : rmq_bridge_core_writable(c->bc)))
			writable = false;
	}
	/* After everything that may have spooled this iteration: the log's writes must be queued before we sleep. */
	c->io_hooks->spool_pump(c);
	if (c->buf_returns) {
		io_uring_buf_ring_advance(c->br, c->buf_returns);
		c->buf_returns = 0;
	}
	rmq_conn_flush_all(c);
	flush_outboxes(c);
	rmq_conn_reap(c);
	if (c->persist)
		c->io_hooks->log_prep(c);
	trim_bufs(c);  /* last: what comes before may submit, and a submit may fill a buffer */
}

/* Stopping: a publish another core already acknowledged may still sit in its outbox or our inbound queue.
 * Hand ours over, wait (bounded) until every core has stopped reading its clients and done the same, then
 * take what they queued, so that it reaches our subscribers ahead of their DISCONNECT. */
static void quiesce(struct core *c)
{
	flush_outboxes(c);
	atomic_fetch_add(&c->b->quiesced, 1);
	for (int i = 0; i < QUIESCE_WAIT_MS && atomic_load(&c->b->quiesced) < c->b->ncores; i++)
		usleep(1000);
	for (int i = 0; i < QUIESCE_ROUNDS && drain_inbound(c); i++)
		;
}

int rmq_core_run(struct core *c)
{
	assert(c->proto);
	pin(c);
	int rc = core_setup(c);
	if (rc) {
		core_teardown(c);
		return rc;
	}
	while (!c->stopping) {
		bool wait = true;
		rmq_xq_wake_arm(&c->wake);
		if (!inbound_empty(c) || c->outbox_pending)
			wait = false;
		if (wait) {
			rc = wait_for_work(c);
		} else {
			/* Work is waiting (inbound entries, or parked outbound ones to retry): submit and reap
			 * what completed without sleeping, in one call. GETEVENTS also runs DEFER_TASKRUN work. */
			rc = rmq_uring_submit_wait_min(&c->ring, 0, 0, NULL);
		}
		rmq_xq_wake_disarm(&c->wake);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
			fprintf(stderr, "ringmq: core %d: io_uring_enter: %s\n", c->id, strerror(-rc));
			break;
		}
		c->now_ms = rmq_clock_coarse_ms();
		process_cqes(c);
		drain_inbound(c);
		end_of_iteration(c);
		if (atomic_load_explicit(&c->stop, memory_order_relaxed))
			c->stopping = true;
	}
	quiesce(c);
	c->io_hooks->spool_close(c, true);  /* before the drain below, which reaps (and would lose) the spool's completions */
	c->proto->drain(c);
	if (c->ring.cq.koverflow)
		c->st.cq_overflow = *c->ring.cq.koverflow;
	core_teardown(c);
	return 0;
}
