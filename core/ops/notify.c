/* sd_notify without libsystemd: one AF_UNIX datagram per notification to $NOTIFY_SOCKET. The protocol is four
 * environment variables and newline-separated KEY=VALUE text (systemd's sd_notify(3) documents it as stable), so a
 * 100-line client beats a new runtime dependency. Main thread only; reads the cores' snapshots (metrics.c). */
#include "ops/notify.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/reactor.h"

/* STATUS= shows in `systemctl status`; every 5 s is fresh enough to read and cheap for PID 1. */
#define STATUS_PERIOD_MS 5000
/* A core ticks every 100 ms (reactor.c); ping checks at a quarter of the watchdog interval give a slow
 * core several ticks between checks, and systemd several chances before it gives up on us. */
#define WATCHDOG_CHECKS 4
#define MIN_PERIOD_MS 250

int rmq_notify_open(struct rmq_notify *n, char *err, size_t errlen)
{
	memset(n, 0, sizeof(*n));
	n->fd = -1;
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return 0;
	size_t len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(n->addr.sun_path)) {
		snprintf(err, errlen, "NOTIFY_SOCKET '%s': want an absolute path or @abstract name", path);
		return -EINVAL;
	}
	memset(&n->addr, 0, sizeof(n->addr));
	n->addr.sun_family = AF_UNIX;
	memcpy(n->addr.sun_path, path, len);
	if (path[0] == '@')
		n->addr.sun_path[0] = 0;  /* abstract namespace */
	n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (n->fd < 0) {
		int e = errno;
		snprintf(err, errlen, "NOTIFY_SOCKET: socket: %s", strerror(e));
		return -e;
	}
	/* WATCHDOG_PID names the process systemd watches; a child that inherited the variables must not ping. */
	const char *wpid = getenv("WATCHDOG_PID"), *wus = getenv("WATCHDOG_USEC");
	if (wus && (!wpid || !*wpid || strtol(wpid, NULL, 10) == (long)getpid()))
		n->watchdog_us = strtoull(wus, NULL, 10);
	/* Children (none today) must not talk to systemd in our name. */
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return 0;
}

void rmq_notify_close(struct rmq_notify *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
}

int rmq_notify_send(struct rmq_notify *n, const char *msg)
{
	if (n->fd < 0)
		return 0;
	if (sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&n->addr, n->addr_len) < 0)
		return -errno;
	return 0;
}

int rmq_notify_period_ms(const struct rmq_notify *n)
{
	int p = STATUS_PERIOD_MS;
	if (n->watchdog_us) {
		uint64_t w = n->watchdog_us / 1000 / WATCHDOG_CHECKS;
		if (w < (uint64_t)p)
			p = w < MIN_PERIOD_MS ? MIN_PERIOD_MS : (int)w;
	}
	return p;
}

bool rmq_notify_all_progressed(const uint64_t *prev, const uint64_t *ticks, int ncores, int *stalled)
{
	for (int i = 0; i < ncores; i++)
		if (ticks[i] <= prev[i]) {
			*stalled = i;
			return false;
		}
	return true;
}

static uint64_t total(const struct broker *b, enum rmq_metric m)
{
	uint64_t sum = 0;
	for (int k = 0; k < b->ncores; k++)
		sum += atomic_load_explicit(&b->cores[k].snap.v[m], memory_order_relaxed);
	return sum;
}

static double per_second(uint64_t now, uint64_t before, double secs)
{
	return secs > 0 ? (double)(now - before) / secs : 0;
}

static void send_status(struct rmq_notify *n, const struct broker *b, uint64_t now_ms)
{
	uint64_t in = total(b, RMQ_M_msgs_in), out = total(b, RMQ_M_msgs_out), kafka = total(b, RMQ_M_K_DELIVERED);
	double secs = n->last_status_ms ? (double)(now_ms - n->last_status_ms) / 1000.0 : 0;
	double rin = per_second(in, n->msgs_prev, secs), rout = per_second(out, n->out_prev, secs);
	double rk = per_second(kafka, n->kafka_prev, secs);
	uint64_t down = total(b, RMQ_M_K_DOWN), backlog = total(b, RMQ_M_SP_BACKLOG_RECORDS);
	/* A core's bridge handle is set before the core reports ready, long before main's first tick. */
	const char *kstate = !b->cores[0].bc ? "off" : down ? "DOWN" : "up";
	char msg[256];
	snprintf(msg, sizeof(msg), "STATUS=%llu connections, %.0f msg/s in, %.0f msg/s out, Kafka %s (%.0f rec/s, "
		 "spool %llu)", (unsigned long long)total(b, RMQ_M_CONNS), rin, rout, kstate, rk,
		 (unsigned long long)backlog);
	rmq_notify_send(n, msg);
	n->msgs_prev = in;
	n->out_prev = out;
	n->kafka_prev = kafka;
	n->last_status_ms = now_ms;
}

static void watchdog(struct rmq_notify *n, const struct broker *b, uint64_t now_ms)
{
	uint64_t ticks[RMQ_MAX_CORES];
	for (int k = 0; k < b->ncores; k++)
		ticks[k] = atomic_load_explicit(&b->cores[k].snap.v[RMQ_M_LOOP_TICKS], memory_order_relaxed);
	int stalled;
	if (!rmq_notify_all_progressed(n->ticks_at_ping, ticks, b->ncores, &stalled)) {
		/* One line per stall, not per check: the pings stop and systemd's WatchdogSec= decides. */
		if (n->stalled_logged != stalled + 1 && now_ms - n->last_ping_ms >= n->watchdog_us / 2000) {
			fprintf(stderr, "ringmq: core %d made no progress for %llu ms: watchdog pings withheld\n", stalled,
				(unsigned long long)(now_ms - n->last_ping_ms));
			n->stalled_logged = stalled + 1;
		}
		return;
	}
	memcpy(n->ticks_at_ping, ticks, sizeof(ticks[0]) * (size_t)b->ncores);
	n->last_ping_ms = now_ms;
	n->stalled_logged = 0;
	rmq_notify_send(n, "WATCHDOG=1");
}

void rmq_notify_tick(struct rmq_notify *n, const struct broker *b, uint64_t now_ms)
{
	if (n->fd < 0)
		return;
	if (n->watchdog_us)
		watchdog(n, b, now_ms);
	if (!n->last_status_ms || now_ms - n->last_status_ms >= STATUS_PERIOD_MS)
		send_status(n, b, now_ms);
}
