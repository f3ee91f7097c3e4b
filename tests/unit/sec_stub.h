/* Test helper for security tests with real clients over loopback: listener, bounded child processes, and a
 * minimal MQTT responder (CONNACK, PUBACK) recording what the client sent. Included by test_tls.c, test_ws.c. */
#ifndef RMQ_TEST_SEC_STUB_H
#define RMQ_TEST_SEC_STUB_H

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ringmq/proto.h"

/* Every wait in these tests is bounded by this. */
#define STUB_TIMEOUT_MS 15000

struct stub {
	uint8_t in[1 << 16];   /* MQTT bytes from the client not parsed yet */
	size_t inlen;
	uint8_t out[4096];     /* MQTT bytes for the client */
	size_t outlen;
	bool connected, disconnected;
	char client_id[64], username[64], topic[64];
	uint8_t payload[512];  /* binary: compare with payload_len */
	size_t payload_len;
	int publishes;
};

static inline int stub_listen(uint16_t *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(fd, 4), 0);
	socklen_t al = sizeof(a);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &al), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* Waits for fd to become readable; false on timeout. */
static inline bool stub_wait(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1;
}

static inline int stub_accept(int lfd)
{
	cr_assert(stub_wait(lfd, STUB_TIMEOUT_MS), "the client never connected");
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(fd, 0);
	return fd;
}

static inline void stub_send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return; /* the client went away: the test's assertions say whether that was expected */
		p += w;
		n -= (size_t)w;
	}
}

/* Starts argv with its output discarded: refused clients print errors the tests expect. */
static inline pid_t stub_spawn(char *const argv[])
{
	pid_t pid;
	extern char **environ;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(rc, 0, "cannot run %s", argv[0]);
	return pid;
}

/* Exit status of the child, killing it (by its pid) if it outlives the deadline. */
static inline int stub_reap(pid_t pid)
{
	int status = 0;
	for (int waited = 0; waited < STUB_TIMEOUT_MS; waited += 10) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	cr_assert_fail("client %d did not exit in time", (int)pid);
	return -1;
}

static inline void stub_copy(char *dst, size_t cap, struct rmq_str s)
{
	snprintf(dst, cap, "%.*s", (int)s.len, (const char *)s.p);
}

static inline void stub_reply(struct stub *st, const uint8_t *p, size_t n)
{
	cr_assert_leq(st->outlen + n, sizeof(st->out));
	memcpy(st->out + st->outlen, p, n);
	st->outlen += n;
}

/* Takes MQTT bytes from the client, answers CONNECT and QoS 1 PUBLISH, records what it saw. */
static inline void stub_mqtt(struct stub *st, const uint8_t *p, size_t n)
{
	cr_assert_leq(st->inlen + n, sizeof(st->in));
	memcpy(st->in + st->inlen, p, n);
	st->inlen += n;
	size_t total;
	while (st->inlen && rmq_proto_frame(st->in, st->inlen, 1 << 16, &total) == RMQ_OK) {
		struct rmq_decode_ctx ctx = { .version = RMQ_V311, .role = RMQ_ROLE_SERVER };
		struct rmq_packet pk;
		cr_assert_eq(rmq_proto_decode(st->in, total, &ctx, &pk), RMQ_OK, "client sent a malformed packet");
		if (pk.type == RMQ_CONNECT) {
			st->connected = true;
			stub_copy(st->client_id, sizeof(st->client_id), pk.u.connect.client_id);
			stub_copy(st->username, sizeof(st->username), pk.u.connect.username);
			stub_reply(st, (const uint8_t *)"\x20\x02\x00\x00", 4);
		} else if (pk.type == RMQ_PUBLISH) {
			st->publishes++;
			stub_copy(st->topic, sizeof(st->topic), pk.u.publish.topic);
			st->payload_len = pk.u.publish.payload.len < sizeof(st->payload) ? pk.u.publish.payload.len
										     : sizeof(st->payload);
			memcpy(st->payload, pk.u.publish.payload.p, st->payload_len);
			if (pk.u.publish.qos == 1) {
				uint8_t ack[4] = { 0x40, 2, (uint8_t)(pk.u.publish.packet_id >> 8),
						   (uint8_t)pk.u.publish.packet_id };
				stub_reply(st, ack, 4);
			}
		} else if (pk.type == RMQ_DISCONNECT) {
			st->disconnected = true;
		} else if (pk.type == RMQ_PINGREQ) {
			stub_reply(st, (const uint8_t *)"\xd0\x00", 2);
		}
		memmove(st->in, st->in + total, st->inlen - total);
		st->inlen -= total;
	}
}

#endif
