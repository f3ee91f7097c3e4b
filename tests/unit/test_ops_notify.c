/* Unit tests for core/ops/notify.c: the watchdog pings only while every core's loop ticks, a stalled core stops
 * them (and they resume when it does), STATUS= carries the totals; a real datagram socket plays systemd. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "io/reactor.h"
#include "ops/notify.h"

struct manager {
	int fd;
	char path[108];
};

static void manager_open(struct manager *m)
{
	snprintf(m->path, sizeof(m->path), "/tmp/rmq-notify-test-%d", (int)getpid());
	unlink(m->path);
	m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(m->fd, 0);
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", m->path);
	cr_assert_eq(bind(m->fd, (struct sockaddr *)&a, sizeof(a)), 0);
}

/* Every datagram waiting, joined by '|' ("" when none: the tick sent nothing). */
static void drain(struct manager *m, char *out, size_t len)
{
	out[0] = 0;
	char buf[512];
	ssize_t n;
	while ((n = recv(m->fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
		buf[n] = 0;
		strncat(out, buf, len - strlen(out) - 2);
		strcat(out, "|");
	}
}

static void set_ticks(struct broker *b, uint64_t t0, uint64_t t1)
{
	atomic_store(&b->cores[0].snap.v[RMQ_M_LOOP_TICKS], t0);
	atomic_store(&b->cores[1].snap.v[RMQ_M_LOOP_TICKS], t1);
}

Test(ops_notify, a_stalled_core_withholds_the_watchdog)
{
	struct manager m;
	manager_open(&m);
	setenv("NOTIFY_SOCKET", m.path, 1);
	setenv("WATCHDOG_USEC", "2000000", 1);
	unsetenv("WATCHDOG_PID");
	struct rmq_notify n;
	char err[256], got[2048];
	cr_assert_eq(rmq_notify_open(&n, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(n.watchdog_us, 2000000u);
	cr_assert_eq(rmq_notify_period_ms(&n), 500, "a quarter of the watchdog interval");
	cr_assert_null(getenv("NOTIFY_SOCKET"), "children must not inherit the socket");

	static struct broker b;
	b.ncores = 2;
	b.cores = calloc(2, sizeof(*b.cores));
	atomic_store(&b.cores[0].snap.v[RMQ_M_CONNS], 3);
	atomic_store(&b.cores[1].snap.v[RMQ_M_CONNS], 4);
	set_ticks(&b, 5, 5);
	rmq_notify_tick(&n, &b, 1000);
	drain(&m, got, sizeof(got));
	cr_assert(strstr(got, "WATCHDOG=1|"), "%s", got);
	cr_assert(strstr(got, "STATUS=7 connections, 0 msg/s in"), "%s", got);
	cr_assert(strstr(got, "Kafka off"), "%s", got);

	set_ticks(&b, 9, 5);  /* core 1's loop did not come round */
	rmq_notify_tick(&n, &b, 1500);
	rmq_notify_tick(&n, &b, 2500);
	drain(&m, got, sizeof(got));
	cr_assert_str_eq(got, "", "a stalled core must stop the pings: %s", got);

	set_ticks(&b, 10, 6);  /* both ran again */
	rmq_notify_tick(&n, &b, 3000);
	drain(&m, got, sizeof(got));
	cr_assert_str_eq(got, "WATCHDOG=1|");

	atomic_store(&b.cores[0].snap.v[RMQ_M_msgs_in], 5000);
	set_ticks(&b, 11, 7);
	rmq_notify_tick(&n, &b, 6000);  /* 5 s after the first STATUS=: 5000 messages in 5 s */
	drain(&m, got, sizeof(got));
	cr_assert(strstr(got, "STATUS=7 connections, 1000 msg/s in"), "%s", got);

	rmq_notify_close(&n);
	free(b.cores);
	close(m.fd);
	unlink(m.path);
}

Test(ops_notify, absent_socket_is_a_no_op_and_a_bad_one_an_error)
{
	struct rmq_notify n;
	char err[256] = "";
	unsetenv("NOTIFY_SOCKET");
	cr_assert_eq(rmq_notify_open(&n, err, sizeof(err)), 0);
	cr_assert_eq(n.fd, -1);
	cr_assert_eq(rmq_notify_send(&n, "READY=1"), 0);
	setenv("NOTIFY_SOCKET", "not/absolute", 1);
	cr_assert_lt(rmq_notify_open(&n, err, sizeof(err)), 0);
	cr_assert(strstr(err, "NOTIFY_SOCKET"), "%s", err);
	unsetenv("NOTIFY_SOCKET");
}
