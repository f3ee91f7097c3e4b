/* Start-up probe: tries every kernel feature and limit the reactors depend on and reports the first
 * missing one in one line. Called from main before any reactor starts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/reactor.h"
#include "io/uring_compat.h"

/* Descriptors besides client sockets: listeners, eventfds, rings, Kafka's sockets, stdio. */
#define FD_RESERVE 256

/* The fallback ladder: each step drops the newest flag. DEFER_TASKRUN (6.1) runs completions only when
 * the reactor asks for them, SINGLE_ISSUER (6.0) drops submission locking; COOP_TASKRUN (5.19) avoids
 * IPIs on older kernels. */
static const unsigned ladder[] = {
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL,
	IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL,
	IORING_SETUP_COOP_TASKRUN,
	0,
};

static int ring_init(struct io_uring *r, unsigned flags)
{
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = flags;
	return io_uring_queue_init_params(8, r, &p);
}

static int setup_ring(struct broker *b, struct io_uring *r, char *err, size_t errlen)
{
	int rc = -EINVAL;
	for (size_t i = 0; i < sizeof(ladder) / sizeof(ladder[0]); i++) {
		rc = ring_init(r, ladder[i]);
		if (rc == 0) {
			b->ring_flags = ladder[i];
			return 0;
		}
		if (rc != -EINVAL)
			break;
	}
	if (rc == -EPERM || rc == -ENOSYS)
		snprintf(err, errlen, "io_uring is disabled or unavailable (%s): check sysctl kernel.io_uring_disabled "
			 "and the container's seccomp profile", strerror(-rc));
	else if (rc == -ENOMEM)
		snprintf(err, errlen, "io_uring: cannot allocate ring memory: raise the memlock limit (ulimit -l)");
	else
		snprintf(err, errlen, "io_uring setup failed: %s", strerror(-rc));
	return -1;
}

static int check_ops(struct io_uring *r, char *err, size_t errlen)
{
	static const struct { int op; const char *name; } need[] = {
		{IORING_OP_ACCEPT, "accept"}, {IORING_OP_RECV, "recv"}, {IORING_OP_SEND, "send"},
		{IORING_OP_ASYNC_CANCEL, "async cancel"}, {IORING_OP_TIMEOUT, "timeout"},
		{IORING_OP_READ, "read"}, {IORING_OP_POLL_ADD, "poll"},
	};
	struct io_uring_probe *p = io_uring_get_probe_ring(r);
	if (!p) {
		snprintf(err, errlen, "io_uring: cannot probe opcodes (kernel too old: need 6.1+)");
		return -1;
	}
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++)
		if (!io_uring_opcode_supported(p, need[i].op)) {
			snprintf(err, errlen, "io_uring: %s not supported by this kernel (need 6.1+)", need[i].name);
			io_uring_free_probe(p);
			return -1;
		}
	io_uring_free_probe(p);
	return 0;
}

/* Multishot recv with a provided-buffer ring cannot be seen in the opcode probe: try it on a
 * socketpair and look for IORING_CQE_F_MORE. */
static int check_multishot(struct io_uring *r, char *err, size_t errlen)
{
	int rc, sv[2];
	static char bufs[8][64];
	struct io_uring_buf_ring *br = rmq_uring_setup_buf_ring(r, 8, 7, &rc);
	if (!br) {
		snprintf(err, errlen, "io_uring: provided buffer rings not supported (%s; need kernel 5.19+)",
			 strerror(-rc));
		return -1;
	}
	for (int i = 0; i < 8; i++)
		io_uring_buf_ring_add(br, bufs[i], sizeof(bufs[i]), (unsigned short)i, io_uring_buf_ring_mask(8), i);
	io_uring_buf_ring_advance(br, 8);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv)) {
		snprintf(err, errlen, "socketpair: %s", strerror(errno));
		rmq_uring_free_buf_ring(r, br, 8, 7);
		return -1;
	}
	int ok = -1;
	if (write(sv[1], "x", 1) == 1) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(r);
		io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = 7;
		io_uring_sqe_set_data64(sqe, 1);
		struct io_uring_cqe *cqe;
		if (io_uring_submit_and_wait(r, 1) >= 0 && io_uring_peek_cqe(r, &cqe) == 0) {
			if (cqe->res == 1 && (cqe->flags & IORING_CQE_F_MORE))
				ok = 0;
			io_uring_cqe_seen(r, cqe);
		}
	}
	close(sv[0]);
	close(sv[1]);
	/* Reap the recv's final completion (EOF or cancel) before the ring goes away. */
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = {0, 100000000};
	while (io_uring_wait_cqe_timeout(r, &cqe, &ts) == 0)
		io_uring_cqe_seen(r, cqe);
	rmq_uring_free_buf_ring(r, br, 8, 7);
	if (ok)
		snprintf(err, errlen, "io_uring: multishot recv not supported by this kernel (need 6.0+)");
	return ok;
}

/* MSG_RING doorbells between two rings of the same kind; eventfd otherwise. */
static bool check_msg_ring(struct broker *b, struct io_uring *r)
{
	struct io_uring r2;
	if (ring_init(&r2, b->ring_flags))
		return false;
	bool ok = false;
	struct io_uring_sqe *sqe = io_uring_get_sqe(r);
	io_uring_prep_msg_ring(sqe, r2.ring_fd, 0, 0xd00b, 0);
	io_uring_sqe_set_data64(sqe, 2);
	struct io_uring_cqe *cqe;
	if (io_uring_submit_and_wait(r, 1) >= 0 && io_uring_peek_cqe(r, &cqe) == 0) {
		ok = cqe->res == 0;
		io_uring_cqe_seen(r, cqe);
	}
	struct __kernel_timespec ts = {0, 200000000};
	if (ok) {
		ok = io_uring_wait_cqe_timeout(&r2, &cqe, &ts) == 0 && cqe->user_data == 0xd00b;
		if (ok)
			io_uring_cqe_seen(&r2, cqe);
	}
	io_uring_queue_exit(&r2);
	return ok;
}

static int check_nofile(struct broker *b, char *err, size_t errlen)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 0;
	rlim_t need = (rlim_t)b->cfg.max_connections + FD_RESERVE;
	if (rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur >= need)
		return 0;
	if (b->cfg.max_connections_set || rl.rlim_cur <= FD_RESERVE * 2) {
		snprintf(err, errlen, "open files limit %llu is too low for --max-connections %u: raise ulimit -n "
			 "to at least %llu", (unsigned long long)rl.rlim_cur, b->cfg.max_connections,
			 (unsigned long long)need);
		return -1;
	}
	/* The default was never promised: fit it to the limit we have. */
	b->cfg.max_connections = (uint32_t)(rl.rlim_cur - FD_RESERVE);
	if (b->cfg.verbose)
		fprintf(stderr, "ringmq: open files limit %llu: --max-connections lowered to %u\n",
			(unsigned long long)rl.rlim_cur, b->cfg.max_connections);
	return 0;
}

int rmq_probe(struct broker *b, char *err, size_t errlen)
{
	struct io_uring r;
	if (setup_ring(b, &r, err, errlen))
		return -1;
	int rc = check_ops(&r, err, errlen);
	if (!rc)
		rc = check_multishot(&r, err, errlen);
	if (!rc) {
		/* RINGMQ_DOORBELL=eventfd forces the fallback, so that tests cover it on kernels with MSG_RING. */
		const char *db = getenv("RINGMQ_DOORBELL");
		b->use_msg_ring = !(db && !strcmp(db, "eventfd")) && check_msg_ring(b, &r);
		if (!b->use_msg_ring && b->cfg.verbose)
			fprintf(stderr, "ringmq: MSG_RING unavailable: eventfd doorbells\n");
	}
	if (!rc && b->cfg.batch_wait_us) {
		b->min_wait = rmq_uring_probe_min_wait(&r) == 0;
		if (!b->min_wait)
			fprintf(stderr, "ringmq: --batch-wait-us %u: this kernel has no io_uring min_wait (6.12+): "
				"each core wakes per completion\n", b->cfg.batch_wait_us);
	}
	io_uring_queue_exit(&r);
	if (!rc)
		rc = check_nofile(b, err, errlen);
	return rc;
}
