/* Test helper for security tests with real clients over loopback: listener, bounded child processes, and a
 * minimal MQTT responder (CONNACK, PUBACK) recording what the client sent. Used by test_tls/ws/xport.c. */
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
#include <stdlib.h>
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
	uint8_t version;       /* from CONNECT: later packets are decoded (and CONNACK written) in it */
	char client_id[64], username[64], topic[64];
	uint8_t payload[512];  /* binary: compare with payload_len */
	size_t payload_len;
	int publishes;
};

/* Test PKI made with the openssl CLI: CA "ca" and a rogue CA, server (CN=localhost, SAN localhost and
 * 127.0.0.1), clients: CN=car-42; no CN with DNS+email SANs; email SAN only; "intruder" (CN=car-42 from the
 * rogue CA). EC keys keep generation fast. */
static const char *const stub_certs_script =
	"set -e; cd '%s'\n"
	"key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key 2>/dev/null; }\n"
	"ca() { key $1; openssl req -x509 -new -key $1.key -out $1.pem -days 2 -subj \"/CN=$1\" 2>/dev/null; }\n"
	"leaf() { key $1; openssl req -new -key $1.key -out $1.csr -subj \"$3\" 2>/dev/null;\n"
	"  printf '%%s\\n' \"$4\" > $1.ext;\n"
	"  openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out $1.pem -days 2 -extfile $1.ext 2>/dev/null; }\n"
	"ca ca; ca rogue\n"
	"leaf server ca /CN=localhost subjectAltName=DNS:localhost,IP:127.0.0.1\n"
	"leaf client ca /CN=car-42 subjectAltName=DNS:not-this.example\n"
	"leaf client_san ca /O=fleet subjectAltName=DNS:car-7.fleet,email:ops@fleet.example\n"
	"leaf client_email ca /O=fleet subjectAltName=email:car-9@fleet.example\n"
	"leaf intruder rogue /CN=car-42 subjectAltName=DNS:car-42\n";

/* Makes a temporary directory from `pattern` (into dir, 64 bytes) holding the test PKI. */
static inline void stub_certs_make(char *dir, const char *pattern)
{
	snprintf(dir, 64, "%s", pattern);
	cr_assert_not_null(mkdtemp(dir));
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), stub_certs_script, dir);
	FILE *sh = popen("/bin/sh", "w");
	cr_assert_not_null(sh);
	fputs(cmd, sh);
	cr_assert_eq(pclose(sh), 0, "certificate generation failed");
}

static inline void stub_rmdir(const char *dir)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

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

/* Starts argv with its output discarded (refused clients print errors the tests expect), unless
 * RMQ_TEST_VERBOSE is set in the environment. */
static inline pid_t stub_spawn(char *const argv[])
{
	pid_t pid;
	extern char **environ;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (!getenv("RMQ_TEST_VERBOSE")) {
		posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
		posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
	}
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
		struct rmq_decode_ctx ctx = { .version = st->version ? st->version : RMQ_V311, .role = RMQ_ROLE_SERVER };
		struct rmq_packet pk;
		cr_assert_eq(rmq_proto_decode(st->in, total, &ctx, &pk), RMQ_OK, "client sent a malformed packet");
		if (pk.type == RMQ_CONNECT) {
			st->connected = true;
			st->version = pk.u.connect.version;
			stub_copy(st->client_id, sizeof(st->client_id), pk.u.connect.client_id);
			stub_copy(st->username, sizeof(st->username), pk.u.connect.username);
			if (st->version == RMQ_V5) /* no properties */
				stub_reply(st, (const uint8_t *)"\x20\x03\x00\x00\x00", 5);
			else
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

/* Builds a masked client WebSocket frame (header + masked payload) into out; returns its length. */
static inline size_t stub_ws_client_frame(uint8_t *out, uint8_t b0, const void *payload, size_t len,
					  const uint8_t key[4])
{
	size_t h = 0;
	out[h++] = b0;
	if (len < 126) {
		out[h++] = (uint8_t)(0x80 | len);
	} else if (len <= 0xFFFF) {
		out[h++] = 0x80 | 126;
		out[h++] = (uint8_t)(len >> 8);
		out[h++] = (uint8_t)len;
	} else {
		out[h++] = 0x80 | 127;
		for (int i = 7; i >= 0; i--)
			out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
	}
	memcpy(out + h, key, 4);
	h += 4;
	for (size_t i = 0; i < len; i++)
		out[h + i] = ((const uint8_t *)payload)[i] ^ key[i & 3];
	return h + len;
}

/* paho publishes one QoS 1 message over WebSocket (path /mqtt, user "dash") and disconnects; exit 0 only
 * if it got CONNACK and PUBACK. argv: port, paho protocol constant name, then CA file, certificate and
 * key for WSS ("-" for none; a CA file turns TLS on). */
static const char stub_paho_ws_script[] =
	"import sys, paho.mqtt.client as mqtt\n"
	"port, proto, ca, cert, key = sys.argv[1:6]\n"
	"c = mqtt.Client(client_id='ws-car-1', transport='websockets', protocol=getattr(mqtt, proto))\n"
	"c.ws_set_options(path='/mqtt')\n"
	"if ca != '-':\n"
	"    c.tls_set(ca_certs=ca, certfile=None if cert == '-' else cert, keyfile=None if key == '-' else key)\n"
	"c.username_pw_set('dash', 'board')\n"
	"state = {'acked': False}\n"
	"def on_connect(c, u, f, rc, props=None):\n"
	"    if rc != 0: sys.exit(3)\n"
	"    c.publish('fleet/ws', b'\\x00\\x01binary' * 40, qos=1)\n"
	"def on_publish(c, u, mid):\n"
	"    state['acked'] = True\n"
	"    c.disconnect()\n"
	"c.on_connect = on_connect\n"
	"c.on_publish = on_publish\n"
	"c.connect('127.0.0.1', int(port), keepalive=30)\n"
	"c.loop_forever(timeout=1.0)\n"
	"sys.exit(0 if state['acked'] else 4)\n";

#endif
