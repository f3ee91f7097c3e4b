/* SIGTERM drain of one core: stop accepting, tell every MQTT 5 client the server is shutting down (DISCONNECT
 * 0x8B) and give those packets a bounded time to leave, then write out the state log. Reactor thread, after its loop. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "ringmq/clock.h"
#include "io/reactor.h"
#include "store/persist.h"

/* Long enough for a DISCONNECT to reach a client on a healthy link, short enough that a stuck client does not
 * hold up the Kafka flush that follows (systemd's stop timeout covers the whole shutdown). */
#define DRAIN_MS 500
#define DRAIN_WAIT_NS (50 * 1000000L)
/* Sent as the Reason String when the client's Maximum Packet Size allows. Besides telling an operator's
 * client log why, it keeps the packet longer than 2 bytes of body: paho-mqtt 1.6 ignores the reason code of
 * a DISCONNECT whose remaining length is under 3 and reports a lost connection instead. */
static const char shutdown_text[] = "server shutting down";


static bool output_pending(struct core *c)
{
	for (uint32_t i = 0; i < c->nslots; i++) {
		struct conn *cn = c->slots[i];
		if (cn && !cn->released && !cn->shut && (cn->send_inflight || cn->out.len))
			return true;
	}
	return false;
}

/* Only sends complete here: input is no longer read (a PUBLISH taken now could be acknowledged and then lost
 * with the core), and the other completions are released by the teardown that follows. */
static void reap_sends(struct core *c)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&c->ring, head, cqe) {
		if (UD_OP(cqe->user_data) == OP_SEND) {
			struct conn *cn = rmq_conn_lookup(c, UD_SLOT(cqe->user_data), UD_GEN(cqe->user_data));
			if (cn)
				rmq_conn_on_send(c, cn, cqe->res);
		} else if (UD_OP(cqe->user_data) == OP_WAL) {
			rmq_persist_complete(c, cqe);  /* the state log's writes must not be lost here */
		}
		n++;
	}
	io_uring_cq_advance(&c->ring, n);
}

static void tell_clients(struct core *c);

void rmq_core_drain(struct core *c)
{
	tell_clients(c);
	/* After the last client input was handled: everything logged reaches the disk before exit. */
	rmq_persist_close(c);
}

static void tell_clients(struct core *c)
{
	/* New connections get a reset from the kernel instead of waiting in the backlog until exit. */
	for (int i = 0; i < c->b->nlisten_fds; i++)
		shutdown(c->listen_fds[i], SHUT_RD);
	struct rmq_packet p;
	memset(&p, 0, sizeof(p));
	p.type = RMQ_DISCONNECT;
	p.u.disconnect.reason = RMQ_RC_SERVER_SHUTTING_DOWN;
	p.u.disconnect.props.present = RMQ_PBIT(RMQ_PROP_REASON_STRING);
	p.u.disconnect.props.reason_string = (struct rmq_str){(const uint8_t *)shutdown_text, sizeof(shutdown_text) - 1};
	int told = 0;
	for (uint32_t i = 0; i < c->nslots; i++) {
		struct conn *cn = c->slots[i];
		if (!cn || cn->released || cn->state != CS_ACTIVE || cn->version != RMQ_V5)
			continue;
		/* a client with a small Maximum Packet Size gets it without the reason string (rmq_conn_write_packet) */
		if (rmq_conn_write_packet(c, cn, &p) == 0)
			told++;
	}
	if (!told)
		return;
	rmq_conn_flush_all(c);
	uint64_t deadline = rmq_clock_mono_ms() + DRAIN_MS;
	while (output_pending(c) && rmq_clock_mono_ms() < deadline) {
		struct __kernel_timespec ts = {0, DRAIN_WAIT_NS};
		struct io_uring_cqe *cqe;
		int rc = io_uring_submit_and_wait_timeout(&c->ring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR)
			break;
		reap_sends(c);
		rmq_conn_flush_all(c);
	}
	VLOG(c, "ringmq: core %d: told %d MQTT 5 clients the server is shutting down\n", c->id, told);
}
