/* Unit tests for core/io/ws.c: the RFC 6455 handshake (section 1.3 example key), header rules, and the frame
 * codec with the section 5.7 examples, fragmentation, control frames, streaming and malformed frames. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sec_stub.h"
#include "io/ws.h"

/* RFC 6455 1.3 */
Test(ws, accept_key_rfc_example)
{
	char acc[29];
	cr_assert_eq(rmq_ws_accept_key((const uint8_t *)"dGhlIHNhbXBsZSBub25jZQ==", 24, acc), 0);
	cr_assert_str_eq(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#define REQ_HEAD "GET /mqtt HTTP/1.1\r\nHost: server.example.com\r\n"
#define REQ_WS "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define REQ_OK REQ_HEAD REQ_WS "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n"

static int parse(const char *req, struct rmq_ws_upgrade *u, char *err)
{
	return rmq_ws_parse_upgrade((const uint8_t *)req, strlen(req), u, err, 128);
}

Test(ws, upgrade_accepted_and_101_built)
{
	struct rmq_ws_upgrade u;
	char err[128] = "", resp[RMQ_WS_RESPONSE_MAX];
	/* bytes after the request (the first frame) must not be consumed */
	const char *req = REQ_OK "\x82\x80xxxx";
	cr_assert_eq(parse(req, &u, err), (int)strlen(REQ_OK), "%s", err);
	cr_assert_str_eq(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	cr_assert_eq(u.path_len, 5);
	cr_assert_eq(memcmp(u.path, "/mqtt", 5), 0);
	int n = rmq_ws_build_accept(&u, resp, sizeof(resp));
	cr_assert_gt(n, 0);
	cr_assert_eq((size_t)n, strlen(resp));
	cr_assert(strstr(resp, "HTTP/1.1 101 Switching Protocols\r\n") == resp);
	cr_assert(strstr(resp, "\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
	cr_assert(strstr(resp, "\r\nSec-WebSocket-Protocol: mqtt\r\n"));
	cr_assert(strstr(resp, "\r\nUpgrade: websocket\r\n"));
	cr_assert_eq(strcmp(resp + n - 4, "\r\n\r\n"), 0);
	cr_assert_eq(rmq_ws_build_accept(&u, resp, 100), -ENOSPC);
}

Test(ws, upgrade_header_names_case_insensitive_and_lists)
{
	struct rmq_ws_upgrade u;
	char err[128] = "";
	const char *req = "GET / HTTP/1.1\r\nhOsT: h\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
			  "sec-websocket-key:dGhlIHNhbXBsZSBub25jZQ==  \r\nSEC-WEBSOCKET-VERSION: 13\r\n"
			  "Sec-WebSocket-Protocol: chat\r\nsec-websocket-protocol: superchat , mqtt\r\n"
			  "User-Agent: test\r\n\r\n";
	cr_assert_gt(parse(req, &u, err), 0, "%s", err);
	cr_assert_str_eq(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

Test(ws, upgrade_incomplete_then_too_big)
{
	struct rmq_ws_upgrade u;
	char err[128];
	size_t full = strlen(REQ_OK);
	for (size_t i = 0; i < full; i++)
		cr_assert_eq(rmq_ws_parse_upgrade((const uint8_t *)REQ_OK, i, &u, err, sizeof(err)), -EAGAIN, "at %zu", i);
	static uint8_t big[RMQ_WS_MAX_REQUEST + 100];
	memset(big, 'a', sizeof(big));
	memcpy(big, REQ_HEAD, strlen(REQ_HEAD));
	cr_assert_eq(rmq_ws_parse_upgrade(big, RMQ_WS_MAX_REQUEST - 1, &u, err, sizeof(err)), -EAGAIN);
	cr_assert_eq(rmq_ws_parse_upgrade(big, RMQ_WS_MAX_REQUEST, &u, err, sizeof(err)), -EMSGSIZE);
	cr_assert_eq(rmq_ws_parse_upgrade(big, sizeof(big), &u, err, sizeof(err)), -EMSGSIZE);
	/* the terminator just past the bound does not count */
	memcpy(big + RMQ_WS_MAX_REQUEST - 2, "\r\n\r\n", 4);
	cr_assert_eq(rmq_ws_parse_upgrade(big, sizeof(big), &u, err, sizeof(err)), -EMSGSIZE);
	char resp[RMQ_WS_RESPONSE_MAX];
	cr_assert_gt(rmq_ws_build_error(-EMSGSIZE, resp, sizeof(resp)), 0);
	cr_assert(strstr(resp, "HTTP/1.1 431 ") == resp);
}

Test(ws, upgrade_too_many_headers)
{
	char req[4096] = REQ_HEAD;
	for (int i = 0; i < RMQ_WS_MAX_HEADERS; i++)
		strcat(req, "X-A: b\r\n");
	strcat(req, REQ_WS "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n");
	struct rmq_ws_upgrade u;
	char err[128] = "";
	cr_assert_eq(parse(req, &u, err), -EMSGSIZE);
	cr_assert(strstr(err, "headers"), "%s", err);
}

Test(ws, upgrade_refusals)
{
	struct { const char *req; int rc; const char *why; } cases[] = {
		{ "POST /mqtt HTTP/1.1\r\nHost: h\r\n" REQ_WS "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "GET" },
		{ "GET /mqtt HTTP/1.0\r\nHost: h\r\n" REQ_WS "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "HTTP/1.1" },
		{ "GET  HTTP/1.1\r\nHost: h\r\n" REQ_WS "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "request line" },
		{ "GET /mqtt HTTP/1.1\r\n" REQ_WS "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "Host" },
		{ REQ_HEAD "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "Upgrade" },
		{ REQ_HEAD "Upgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "Upgrade" },
		{ REQ_HEAD "Upgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "Connection" },
		{ REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "Key" },
		{ REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "16 bytes" },
		{ REQ_HEAD "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q==\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "16 bytes" },
		{ REQ_HEAD REQ_WS "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "one base64" },
		{ REQ_HEAD REQ_WS "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 8\r\n\r\n", -EPROTONOSUPPORT, "13" },
		{ REQ_HEAD REQ_WS "Sec-WebSocket-Protocol: mqtt\r\n\r\n", -EPROTONOSUPPORT, "13" },
		{ REQ_HEAD REQ_WS "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n", -ENOPROTOOPT, "mqtt" },
		{ REQ_HEAD REQ_WS "Sec-WebSocket-Protocol: mqttv5\r\nSec-WebSocket-Version: 13\r\n\r\n", -ENOPROTOOPT, "mqtt" },
		{ REQ_HEAD REQ_WS "Sec-WebSocket-Version: 13\r\n\r\n", -ENOPROTOOPT, "mqtt" },
		{ REQ_HEAD REQ_WS "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n X-Folded: yes\r\n\r\n", -EINVAL, "folded" },
		{ REQ_HEAD REQ_WS "Bad Name: x\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "malformed header" },
		{ REQ_HEAD REQ_WS "NoColon\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "malformed header" },
		{ REQ_HEAD REQ_WS "X: a\nb\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "bare" },
		{ REQ_HEAD REQ_WS "X: a\x01\r\nSec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Version: 13\r\n\r\n", -EINVAL, "control" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct rmq_ws_upgrade u;
		char err[128] = "";
		int rc = parse(cases[i].req, &u, err);
		cr_assert_eq(rc, cases[i].rc, "case %zu: rc %d want %d (%s)", i, rc, cases[i].rc, err);
		cr_assert(strstr(err, cases[i].why), "case %zu: reason '%s' lacks '%s'", i, err, cases[i].why);
		char resp[RMQ_WS_RESPONSE_MAX];
		cr_assert_gt(rmq_ws_build_error(rc, resp, sizeof(resp)), 0);
		cr_assert(strstr(resp, rc == -EPROTONOSUPPORT ? "HTTP/1.1 426 " : "HTTP/1.1 400 ") == resp, "%s", resp);
		cr_assert(strstr(resp, "Connection: close\r\n"));
		if (rc == -EPROTONOSUPPORT)
			cr_assert(strstr(resp, "\r\nSec-WebSocket-Version: 13\r\n"));
	}
	struct rmq_ws_upgrade u;
	char nul[] = REQ_OK;
	nul[3] = '\0';
	cr_assert_eq(rmq_ws_parse_upgrade((const uint8_t *)nul, sizeof(nul) - 1, &u, NULL, 0), -EINVAL);
}

/* ---- frames ---- */

#define client_frame stub_ws_client_frame

static const uint8_t key[4] = { 0x37, 0xfa, 0x21, 0x3d };

Test(ws, rfc_masked_hello)
{
	/* RFC 6455 5.7: a single-frame masked text message "Hello" */
	uint8_t f1[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	struct rmq_ws_rx rx;
	struct rmq_ws_frame f;
	rmq_ws_rx_init(&rx, 1 << 20, false);
	cr_assert_eq(rmq_ws_decode(&rx, f1, sizeof(f1), &f), (int)sizeof(f1));
	cr_assert_eq(f.opcode, RMQ_WS_TEXT);
	cr_assert(f.message_end);
	cr_assert_eq(f.len, 5);
	cr_assert_eq(memcmp(f.payload, "Hello", 5), 0);
	/* the masked pong of the same example */
	uint8_t f2[] = { 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	cr_assert_eq(rmq_ws_decode(&rx, f2, sizeof(f2), &f), (int)sizeof(f2));
	cr_assert_eq(f.opcode, RMQ_WS_PONG);
	cr_assert_eq(memcmp(f.payload, "Hello", 5), 0);
	/* for MQTT the same text frame is refused with 1003 */
	uint8_t f3[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
	rmq_ws_rx_init(&rx, 1 << 20, true);
	cr_assert_eq(rmq_ws_decode(&rx, f3, sizeof(f3), &f), -ENOTSUP);
	cr_assert_eq(f.close_code, 1003);
}

Test(ws, rfc_server_frames_encoded)
{
	uint8_t out[70000];
	/* RFC 6455 5.7: unmasked "Hello", unmasked ping, 256-byte and 64 KiB binary headers */
	uint8_t hello[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
	cr_assert_eq(rmq_ws_encode(out, sizeof(out), RMQ_WS_TEXT, (const uint8_t *)"Hello", 5), 7);
	cr_assert_eq(memcmp(out, hello, 7), 0);
	uint8_t ping[] = { 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
	cr_assert_eq(rmq_ws_encode(out, sizeof(out), RMQ_WS_PING, (const uint8_t *)"Hello", 5), 7);
	cr_assert_eq(memcmp(out, ping, 7), 0);
	static uint8_t payload[65536];
	uint8_t h256[] = { 0x82, 0x7E, 0x01, 0x00 };
	cr_assert_eq(rmq_ws_encode(out, sizeof(out), RMQ_WS_BINARY, payload, 256), 4 + 256);
	cr_assert_eq(memcmp(out, h256, 4), 0);
	uint8_t h64k[] = { 0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00 };
	cr_assert_eq(rmq_ws_encode(out, sizeof(out), RMQ_WS_BINARY, payload, 65536), 10 + 65536);
	cr_assert_eq(memcmp(out, h64k, 10), 0);
	uint8_t h[RMQ_WS_MAX_HEADER];
	cr_assert_eq(rmq_ws_header(h, RMQ_WS_BINARY, 125), 2);
	cr_assert_eq(rmq_ws_header(h, RMQ_WS_BINARY, 126), 4);
	cr_assert_eq(rmq_ws_header(h, RMQ_WS_BINARY, 65535), 4);
	cr_assert_eq(rmq_ws_header(h, RMQ_WS_BINARY, 65536), 10);
	cr_assert_eq(rmq_ws_encode(out, 6, RMQ_WS_BINARY, payload, 5), -ENOSPC);
	cr_assert_eq(rmq_ws_encode(out, sizeof(out), RMQ_WS_PONG, payload, 126), -EINVAL);
	uint8_t close[] = { 0x88, 0x06, 0x03, 0xe8, 'b', 'y', 'e', '!' };
	cr_assert_eq(rmq_ws_encode_close(out, sizeof(out), 1000, "bye!"), 8);
	cr_assert_eq(memcmp(out, close, 8), 0);
	char longreason[300];
	memset(longreason, 'r', sizeof(longreason) - 1);
	longreason[sizeof(longreason) - 1] = '\0';
	cr_assert_eq(rmq_ws_encode_close(out, sizeof(out), 1000, longreason), 2 + 125);
}

/* Decodes everything in buf, collecting data bytes; returns the final rc (0 when all consumed). */
static int drain(struct rmq_ws_rx *rx, uint8_t *buf, size_t len, uint8_t *data, size_t *dlen, int *ctl_ops,
		 int *nctl)
{
	while (len) {
		struct rmq_ws_frame f;
		int n = rmq_ws_decode(rx, buf, len, &f);
		if (n < 0)
			return n;
		cr_assert_leq((size_t)n, len);
		if (f.opcode == RMQ_WS_BINARY || f.opcode == RMQ_WS_TEXT) {
			memcpy(data + *dlen, f.payload, f.len);
			*dlen += f.len;
		} else {
			ctl_ops[(*nctl)++] = f.opcode;
		}
		buf += n;
		len -= n;
	}
	return 0;
}

Test(ws, fragmented_with_interleaved_ping_streamed_bytewise)
{
	uint8_t wire[512];
	size_t w = 0;
	w += client_frame(wire + w, 0x02, "MQ", 2, key);        /* BINARY, not FIN */
	w += client_frame(wire + w, 0x89, "p", 1, key);         /* PING in between */
	w += client_frame(wire + w, 0x00, "", 0, key);          /* empty CONT */
	w += client_frame(wire + w, 0x80, "TT-data", 7, key);   /* CONT, FIN */
	w += client_frame(wire + w, 0x82, "next", 4, key);      /* a new message may start */
	/* whole buffer at once */
	uint8_t copy[512], data[64];
	memcpy(copy, wire, w);
	struct rmq_ws_rx rx;
	rmq_ws_rx_init(&rx, 1024, true);
	size_t dlen = 0;
	int ops[8], nops = 0;
	cr_assert_eq(drain(&rx, copy, w, data, &dlen, ops, &nops), 0);
	cr_assert_eq(dlen, 13);
	cr_assert_eq(memcmp(data, "MQTT-datanext", 13), 0);
	cr_assert_eq(nops, 1);
	cr_assert_eq(ops[0], RMQ_WS_PING);
	/* one byte more at a time, keeping unconsumed bytes, as the reactor would */
	memcpy(copy, wire, w);
	rmq_ws_rx_init(&rx, 1024, true);
	dlen = 0;
	size_t have = 0, off = 0;
	bool saw_end = false;
	for (size_t avail = 1; avail <= w; avail++) {
		have = avail - off;
		for (;;) {
			struct rmq_ws_frame f;
			int n = rmq_ws_decode(&rx, copy + off, have, &f);
			if (n == -EAGAIN)
				break;
			cr_assert_gt(n, 0, "rc %d at %zu", n, avail);
			if (f.opcode == RMQ_WS_BINARY) {
				memcpy(data + dlen, f.payload, f.len);
				dlen += f.len;
				saw_end |= f.message_end && dlen == 9;
			}
			off += (size_t)n;
			have -= (size_t)n;
			if (!have)
				break;
		}
	}
	cr_assert_eq(off, w);
	cr_assert_eq(dlen, 13);
	cr_assert_eq(memcmp(data, "MQTT-datanext", 13), 0);
	cr_assert(saw_end, "message_end must be reported at the end of the fragmented message");
}

Test(ws, long_lengths_16_and_64_bit)
{
	static uint8_t payload[70000], wire[70100];
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7);
	size_t sizes[] = { 125, 126, 65535, 65536, 70000 };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(*sizes); s++) {
		size_t w = client_frame(wire, 0x82, payload, sizes[s], key);
		struct rmq_ws_rx rx;
		rmq_ws_rx_init(&rx, 1 << 20, true);
		struct rmq_ws_frame f;
		cr_assert_eq(rmq_ws_decode(&rx, wire, w, &f), (int)w, "size %zu", sizes[s]);
		cr_assert_eq(f.len, sizes[s]);
		cr_assert(f.message_end);
		cr_assert_eq(memcmp(f.payload, payload, sizes[s]), 0);
		/* header only, then the payload in two pieces */
		w = client_frame(wire, 0x82, payload, sizes[s], key);
		size_t hdr = w - sizes[s];
		rmq_ws_rx_init(&rx, 1 << 20, true);
		cr_assert_eq(rmq_ws_decode(&rx, wire, hdr - 1, &f), -EAGAIN);
		cr_assert_eq(rmq_ws_decode(&rx, wire, hdr, &f), (int)hdr);
		cr_assert_eq(f.len, 0);
		cr_assert_not(f.message_end);
		/* odd chunk sizes move the mask phase: 3, then 17 (word path at phase 3), then the rest */
		cr_assert_eq(rmq_ws_decode(&rx, wire + hdr, 3, &f), 3);
		cr_assert_not(f.message_end);
		cr_assert_eq(rmq_ws_decode(&rx, wire + hdr + 3, 17, &f), 17);
		cr_assert_eq(rmq_ws_decode(&rx, wire + hdr + 20, sizes[s] - 20, &f), (int)sizes[s] - 20);
		cr_assert(f.message_end);
		cr_assert_eq(memcmp(wire + hdr, payload, sizes[s]), 0, "unmasking across chunks");
	}
}

static int decode_one(uint8_t *b, size_t n, bool binary_only, uint16_t *code)
{
	struct rmq_ws_rx rx;
	struct rmq_ws_frame f;
	rmq_ws_rx_init(&rx, 1000, binary_only);
	int rc = rmq_ws_decode(&rx, b, n, &f);
	*code = f.close_code;
	return rc;
}

Test(ws, malformed_frames)
{
	/* early: refused from the first two bytes, without waiting for the rest */
	struct { uint8_t b[16]; size_t n; int rc; uint16_t code; bool early; const char *what; } cases[] = {
		{ { 0x82, 0x01, 'x' }, 3, -EPROTO, 1002, true, "unmasked client frame" },
		{ { 0xC2, 0x80, 1, 2, 3, 4 }, 6, -EPROTO, 1002, true, "RSV1 without extension" },
		{ { 0x92, 0x80, 1, 2, 3, 4 }, 6, -EPROTO, 1002, true, "RSV2" },
		{ { 0x83, 0x80, 1, 2, 3, 4 }, 6, -EPROTO, 1002, true, "reserved data opcode 3" },
		{ { 0x8B, 0x80, 1, 2, 3, 4 }, 6, -EPROTO, 1002, true, "reserved control opcode B" },
		{ { 0x09, 0x80, 1, 2, 3, 4 }, 6, -EPROTO, 1002, true, "fragmented ping" },
		{ { 0x89, 0xFE, 0, 126, 1, 2, 3, 4 }, 8, -EPROTO, 1002, true, "ping longer than 125" },
		{ { 0x80, 0x80, 1, 2, 3, 4 }, 6, -EPROTO, 1002, true, "continuation without message" },
		{ { 0x81, 0x80, 1, 2, 3, 4 }, 6, -ENOTSUP, 1003, true, "text frame for MQTT" },
		{ { 0x82, 0xFE, 0, 5, 1, 2, 3, 4 }, 8, -EPROTO, 1002, false, "non-minimal 16-bit length" },
		{ { 0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4 }, 14, -EPROTO, 1002, false, "non-minimal 64-bit" },
		{ { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4 }, 14, -EPROTO, 1002, false, "64-bit length with MSB" },
		{ { 0x82, 0xFE, 0x03, 0xE9, 1, 2, 3, 4 }, 8, -EMSGSIZE, 1009, false, "1001 bytes over max_frame 1000" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		uint16_t code = 0;
		int rc = decode_one(cases[i].b, cases[i].n, true, &code);
		cr_assert_eq(rc, cases[i].rc, "%s: rc %d", cases[i].what, rc);
		cr_assert_eq(code, cases[i].code, "%s: code %u", cases[i].what, code);
		rc = decode_one(cases[i].b, 2, true, &code);
		cr_assert_eq(rc, cases[i].early ? cases[i].rc : -EAGAIN, "%s (2 bytes): rc %d", cases[i].what, rc);
	}
}

Test(ws, data_frame_inside_open_message_and_after_close)
{
	uint8_t wire[64];
	struct rmq_ws_rx rx;
	struct rmq_ws_frame f;
	rmq_ws_rx_init(&rx, 1000, true);
	size_t w = client_frame(wire, 0x02, "a", 1, key);
	cr_assert_eq(rmq_ws_decode(&rx, wire, w, &f), (int)w);
	w = client_frame(wire, 0x82, "b", 1, key);
	cr_assert_eq(rmq_ws_decode(&rx, wire, w, &f), -EPROTO, "new message while one is open");
	rmq_ws_rx_init(&rx, 1000, true);
	w = client_frame(wire, 0x88, "\x03\xe8", 2, key);
	cr_assert_eq(rmq_ws_decode(&rx, wire, w, &f), (int)w);
	cr_assert_eq(f.opcode, RMQ_WS_CLOSE);
	cr_assert_eq(f.close_code, 1000);
	w = client_frame(wire, 0x82, "b", 1, key);
	cr_assert_eq(rmq_ws_decode(&rx, wire, w, &f), -EPROTO, "frame after close");
}

Test(ws, close_frames)
{
	struct { const char *p; size_t n; int rc; uint16_t code; } cases[] = {
		{ "", 0, 0, 1005 },
		{ "\x03\xe8", 2, 0, 1000 },
		{ "\x0f\xa0ok", 4, 0, 4000 },
		{ "\x03\xe9\xc3\xa9t\xc3\xa9", 7, 0, 1001 },  /* UTF-8 reason "été" */
		{ "\x03", 1, -EPROTO, 1002 },                 /* one byte: no room for a code */
		{ "\x03\xed", 2, -EPROTO, 1002 },             /* 1005 must never be sent */
		{ "\x03\xee", 2, -EPROTO, 1002 },             /* 1006 neither */
		{ "\x03\xe7", 2, -EPROTO, 1002 },             /* 999 */
		{ "\x13\x88", 2, -EPROTO, 1002 },             /* 5000 */
		{ "\x03\xe8\xc0\xaf", 4, -EILSEQ, 1007 },     /* overlong '/' */
		{ "\x03\xe8\xed\xa0\x80", 5, -EILSEQ, 1007 }, /* surrogate */
		{ "\x03\xe8\xe2\x82", 4, -EILSEQ, 1007 },     /* truncated sequence */
		{ "\x03\xe8\xff", 3, -EILSEQ, 1007 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		uint8_t wire[64];
		size_t w = client_frame(wire, 0x88, cases[i].p, cases[i].n, key);
		struct rmq_ws_rx rx;
		struct rmq_ws_frame f;
		rmq_ws_rx_init(&rx, 1000, true);
		int rc = rmq_ws_decode(&rx, wire, w, &f);
		cr_assert_eq(rc, cases[i].rc == 0 ? (int)w : cases[i].rc, "case %zu: rc %d", i, rc);
		cr_assert_eq(f.close_code, cases[i].code, "case %zu: code %u", i, f.close_code);
	}
}

Test(ws, random_garbage_never_crashes)
{
	/* Deterministic xorshift so that a failure reproduces. */
	uint64_t s = 0x9E3779B97F4A7C15ull;
	uint8_t buf[256];
	for (int round = 0; round < 20000; round++) {
		size_t n = 1 + (s % sizeof(buf));
		for (size_t i = 0; i < n; i++) {
			s ^= s << 13;
			s ^= s >> 7;
			s ^= s << 17;
			buf[i] = (uint8_t)s;
		}
		if (round & 1)
			buf[1] |= 0x80; /* masked, so the decoder gets past the first check */
		struct rmq_ws_rx rx;
		rmq_ws_rx_init(&rx, 100, round & 2);
		size_t off = 0;
		while (off < n) {
			struct rmq_ws_frame f;
			int rc = rmq_ws_decode(&rx, buf + off, n - off, &f);
			if (rc < 0) {
				cr_assert(rc == -EAGAIN || f.close_code >= 1000, "rc %d without a close code", rc);
				break;
			}
			cr_assert_gt(rc, 0);
			cr_assert_leq((size_t)rc, n - off);
			cr_assert_leq(f.len, n - off);
			off += (size_t)rc;
		}
		struct rmq_ws_upgrade u;
		int hr = rmq_ws_parse_upgrade(buf, n, &u, NULL, 0);
		cr_assert(hr == -EAGAIN || hr == -EINVAL, "garbage handshake gave %d", hr);
	}
}

/* ---- a real client: paho-mqtt's WebSocket transport over loopback ---- */

/* Serves one WebSocket client with the MQTT stub: Upgrade, then binary frames both ways. Returns the
 * handshake result (> 0 request length) or the first decoder error. */
static int serve_ws(int lfd, struct stub *st, char *path, size_t pathcap, int *pings)
{
	int fd = stub_accept(lfd);
	static uint8_t in[1 << 16];
	size_t inlen = 0;
	int hs = -EAGAIN, err = 0;
	struct rmq_ws_rx rx;
	rmq_ws_rx_init(&rx, 1 << 16, true);
	while (!st->disconnected && !err && stub_wait(fd, STUB_TIMEOUT_MS)) {
		ssize_t n = recv(fd, in + inlen, sizeof(in) - inlen, 0);
		if (n <= 0)
			break;
		inlen += (size_t)n;
		size_t off = 0;
		if (hs == -EAGAIN) {
			char resp[RMQ_WS_RESPONSE_MAX];
			struct rmq_ws_upgrade u;
			hs = rmq_ws_parse_upgrade(in, inlen, &u, NULL, 0);
			if (hs == -EAGAIN)
				continue;
			if (hs > 0) /* u.path points into `in`, which is about to be reused */
				snprintf(path, pathcap, "%.*s", (int)u.path_len, (const char *)u.path);
			int rn = hs > 0 ? rmq_ws_build_accept(&u, resp, sizeof(resp)) : rmq_ws_build_error(hs, resp, sizeof(resp));
			stub_send_all(fd, (const uint8_t *)resp, (size_t)rn);
			if (hs < 0)
				break;
			off = (size_t)hs;
		}
		while (off < inlen) {
			struct rmq_ws_frame f;
			int rc = rmq_ws_decode(&rx, in + off, inlen - off, &f);
			if (rc == -EAGAIN)
				break;
			if (rc < 0) {
				err = rc;
				break;
			}
			off += (size_t)rc;
			if (f.opcode == RMQ_WS_BINARY)
				stub_mqtt(st, f.payload, f.len);
			else if (f.opcode == RMQ_WS_PING)
				(*pings)++;
		}
		memmove(in, in + off, inlen - off);
		inlen -= off;
		if (st->outlen) {
			static uint8_t frame[4096 + RMQ_WS_MAX_HEADER];
			int fl = rmq_ws_encode(frame, sizeof(frame), RMQ_WS_BINARY, st->out, st->outlen);
			cr_assert_gt(fl, 0);
			stub_send_all(fd, frame, (size_t)fl);
			st->outlen = 0;
		}
	}
	close(fd);
	return err ? err : hs;
}

Test(ws, paho_websocket_client_publishes)
{
	uint16_t port;
	int lfd = stub_listen(&port);
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	char *argv[] = { "/usr/bin/python3", "-c", (char *)stub_paho_ws_script, portstr, "MQTTv311", "-", "-", "-", NULL };
	static struct stub st;
	memset(&st, 0, sizeof(st));
	char path[64] = "";
	int pings = 0;
	pid_t pid = stub_spawn(argv);
	int hs = serve_ws(lfd, &st, path, sizeof(path), &pings);
	int client_rc = stub_reap(pid);
	close(lfd);
	cr_assert_gt(hs, 0, "handshake or frame error %d", hs);
	cr_assert_str_eq(path, "/mqtt");
	cr_assert_eq(client_rc, 0, "paho exited %d", client_rc);
	cr_assert(st.connected && st.disconnected);
	cr_assert_str_eq(st.client_id, "ws-car-1");
	cr_assert_str_eq(st.username, "dash");
	cr_assert_eq(st.publishes, 1);
	cr_assert_str_eq(st.topic, "fleet/ws");
	cr_assert_eq(st.payload_len, 8 * 40);
	for (int i = 0; i < 40; i++)
		cr_assert_eq(memcmp(st.payload + 8 * i, "\x00\x01" "binary", 8), 0);
}
