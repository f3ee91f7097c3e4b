/* WebSocket (RFC 6455) server side: Upgrade handshake parsing, 101/error responses, streaming frame decoder
 * and frame encoder. Pure functions; called by the reactor thread owning the connection. */
#include "io/ws.h"
#include "ringmq/errbuf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---- handshake --------------------------------------------------------------------------------- */

struct span {
	const char *p;
	size_t n;
};

static bool ows(char c)
{
	return c == ' ' || c == '\t';
}

static struct span trim(struct span s)
{
	while (s.n && ows(s.p[0])) {
		s.p++;
		s.n--;
	}
	while (s.n && ows(s.p[s.n - 1]))
		s.n--;
	return s;
}

static bool span_ieq(struct span s, const char *lit)
{
	return s.n == strlen(lit) && strncasecmp(s.p, lit, s.n) == 0;
}

/* Does the comma-separated header value contain `token`? */
static bool list_has(struct span v, const char *token, bool nocase)
{
	while (v.n) {
		const char *comma = memchr(v.p, ',', v.n);
		struct span item = { v.p, comma ? (size_t)(comma - v.p) : v.n };
		item = trim(item);
		if (item.n == strlen(token) &&
		    (nocase ? strncasecmp(item.p, token, item.n) == 0 : memcmp(item.p, token, item.n) == 0))
			return true;
		if (!comma)
			break;
		v.n -= (size_t)(comma - v.p) + 1;
		v.p = comma + 1;
	}
	return false;
}

/* RFC 7230 tchar: header names are tokens (no blanks, no separators). */
static bool tchar(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool b64char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* RFC 6455 4.1: the key is 16 random bytes, base64-encoded: 22 characters and "==". */
static bool key_valid(struct span k)
{
	if (k.n != 24 || k.p[22] != '=' || k.p[23] != '=')
		return false;
	for (size_t i = 0; i < 22; i++)
		if (!b64char(k.p[i]))
			return false;
	return true;
}

struct hs {
	bool host, upgrade, connection, version13, version_seen, mqtt;
	struct span key;
	int nkey;
};

static void header(struct hs *h, struct span name, struct span v)
{
	if (span_ieq(name, "host"))
		h->host = true;
	else if (span_ieq(name, "upgrade"))
		h->upgrade |= list_has(v, "websocket", true);
	else if (span_ieq(name, "connection"))
		h->connection |= list_has(v, "upgrade", true);
	else if (span_ieq(name, "sec-websocket-key")) {
		h->key = v;
		h->nkey++;
	} else if (span_ieq(name, "sec-websocket-version")) {
		h->version_seen = true;
		h->version13 = v.n == 2 && memcmp(v.p, "13", 2) == 0;
	} else if (span_ieq(name, "sec-websocket-protocol"))
		h->mqtt |= list_has(v, "mqtt", false);
}

static int request_line(struct span l, struct rmq_ws_upgrade *out, char *err, size_t errlen)
{
	const char *sp1 = memchr(l.p, ' ', l.n);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', l.n - (size_t)(sp1 + 1 - l.p)) : NULL;
	if (!sp1 || !sp2 || sp2 == sp1 + 1) {
		rmq_errbuf_printf(err, errlen, "request line is not 'METHOD TARGET VERSION'");
		return -EINVAL;
	}
	struct span method = { l.p, (size_t)(sp1 - l.p) }, version = { sp2 + 1, l.n - (size_t)(sp2 + 1 - l.p) };
	if (method.n != 3 || memcmp(method.p, "GET", 3) != 0) {
		rmq_errbuf_printf(err, errlen, "method must be GET");
		return -EINVAL;
	}
	if (version.n != 8 || memcmp(version.p, "HTTP/1.1", 8) != 0) {
		rmq_errbuf_printf(err, errlen, "version must be HTTP/1.1");
		return -EINVAL;
	}
	for (const char *c = sp1 + 1; c < sp2; c++) {
		if ((unsigned char)*c <= ' ' || *c == 0x7f) {
			rmq_errbuf_printf(err, errlen, "control character in request target");
			return -EINVAL;
		}
	}
	out->path = (const uint8_t *)sp1 + 1;
	out->path_len = (size_t)(sp2 - sp1 - 1);
	return 0;
}

static int header_line(struct hs *h, struct span l, char *err, size_t errlen)
{
	if (l.n && ows(l.p[0])) {
		rmq_errbuf_printf(err, errlen, "folded header line");
		return -EINVAL;
	}
	const char *colon = memchr(l.p, ':', l.n);
	struct span name = { l.p, colon ? (size_t)(colon - l.p) : 0 };
	bool ok = colon && name.n > 0;
	for (size_t i = 0; ok && i < name.n; i++)
		ok = tchar((unsigned char)name.p[i]);
	if (!ok) {
		rmq_errbuf_printf(err, errlen, "malformed header line");
		return -EINVAL;
	}
	struct span v = trim((struct span){ colon + 1, l.n - name.n - 1 });
	for (size_t i = 0; i < v.n; i++) {
		unsigned char c = (unsigned char)v.p[i];
		if ((c < ' ' && c != '\t') || c == 0x7f) {
			rmq_errbuf_printf(err, errlen, "control character in header value");
			return -EINVAL;
		}
	}
	header(h, name, v);
	return 0;
}

static int check_headers(const struct hs *h, char *err, size_t errlen)
{
	if (!h->host || !h->upgrade || !h->connection || h->nkey == 0) {
		rmq_errbuf_printf(err, errlen, "missing %s", !h->host ? "Host" : !h->upgrade ? "Upgrade: websocket" :
				    !h->connection ? "Connection: Upgrade" : "Sec-WebSocket-Key");
		return -EINVAL;
	}
	if (h->nkey > 1 || !key_valid(h->key)) {
		rmq_errbuf_printf(err, errlen, "Sec-WebSocket-Key must be one base64 value of 16 bytes");
		return -EINVAL;
	}
	if (!h->version13) {
		rmq_errbuf_printf(err, errlen, "Sec-WebSocket-Version must be 13");
		return -EPROTONOSUPPORT;
	}
	if (!h->mqtt) {
		rmq_errbuf_printf(err, errlen, "client did not offer the 'mqtt' subprotocol");
		return -ENOPROTOOPT;
	}
	return 0;
}

int rmq_ws_parse_upgrade(const uint8_t *buf, size_t len, struct rmq_ws_upgrade *out, char *err, size_t errlen)
{
	size_t scan = len < RMQ_WS_MAX_REQUEST ? len : RMQ_WS_MAX_REQUEST;
	const char *s = (const char *)buf;
	const char *end = scan >= 4 ? memmem(s, scan, "\r\n\r\n", 4) : NULL;
	if (!end) {
		if (len >= RMQ_WS_MAX_REQUEST) {
			rmq_errbuf_printf(err, errlen, "no complete request within %d bytes", RMQ_WS_MAX_REQUEST);
			return -EMSGSIZE;
		}
		return -EAGAIN;
	}
	size_t total = (size_t)(end - s) + 4;
	if (memchr(s, '\0', total)) {
		rmq_errbuf_printf(err, errlen, "NUL byte in request");
		return -EINVAL;
	}
	memset(out, 0, sizeof(*out));
	struct hs h = { 0 };
	const char *p = s, *stop = end + 2; /* each line ends with CRLF, including the last header */
	int nlines = 0, rc = 0;
	while (p < stop && rc == 0) {
		const char *crlf = memmem(p, (size_t)(stop - p), "\r\n", 2);
		struct span l = { p, (size_t)(crlf - p) };
		if (memchr(l.p, '\r', l.n) || memchr(l.p, '\n', l.n)) {
			rmq_errbuf_printf(err, errlen, "bare CR or LF in request");
			return -EINVAL;
		}
		if (nlines == 0)
			rc = request_line(l, out, err, errlen);
		else if (nlines > RMQ_WS_MAX_HEADERS) {
			rmq_errbuf_printf(err, errlen, "more than %d headers", RMQ_WS_MAX_HEADERS);
			rc = -EMSGSIZE;
		} else
			rc = header_line(&h, l, err, errlen);
		nlines++;
		p = crlf + 2;
	}
	if (rc == 0)
		rc = check_headers(&h, err, errlen);
	if (rc == 0)
		rc = rmq_ws_accept_key((const uint8_t *)h.key.p, h.key.n, out->accept);
	return rc < 0 ? rc : (int)total;
}

int rmq_ws_accept_key(const uint8_t *key, size_t key_len, char out[29])
{
	uint8_t md[20];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 && EVP_DigestUpdate(ctx, key, key_len) == 1 &&
		 EVP_DigestUpdate(ctx, ws_guid, sizeof(ws_guid) - 1) == 1 && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 &&
		 mdlen == sizeof(md);
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -EIO;
	EVP_EncodeBlock((unsigned char *)out, md, sizeof(md));
	return 0;
}

int rmq_ws_build_accept(const struct rmq_ws_upgrade *u, char *out, size_t cap)
{
	if (cap < RMQ_WS_RESPONSE_MAX)
		return -ENOSPC;
	return snprintf(out, cap,
			"HTTP/1.1 101 Switching Protocols\r\n"
			"Upgrade: websocket\r\n"
			"Connection: Upgrade\r\n"
			"Sec-WebSocket-Accept: %s\r\n"
			"Sec-WebSocket-Protocol: mqtt\r\n\r\n",
			u->accept);
}

int rmq_ws_build_error(int parse_err, char *out, size_t cap)
{
	const char *status = parse_err == -EPROTONOSUPPORT ? "426 Upgrade Required\r\nSec-WebSocket-Version: 13"
			     : parse_err == -EMSGSIZE      ? "431 Request Header Fields Too Large"
							   : "400 Bad Request";
	int n = snprintf(out, cap, "HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", status);
	return n > 0 && (size_t)n < cap ? n : -ENOSPC;
}

/* ---- decoding ---------------------------------------------------------------------------------- */

void rmq_ws_rx_init(struct rmq_ws_rx *rx, uint64_t max_frame, bool binary_only)
{
	memset(rx, 0, sizeof(*rx));
	rx->max_frame = max_frame;
	rx->binary_only = binary_only;
}

/* Eight bytes at a time: the 4-byte mask repeats every 8 bytes, so one 64-bit word of it (rotated to the
 * current position) serves the whole run; bytewise for the tail. */
static void unmask(struct rmq_ws_rx *rx, uint8_t *p, size_t n)
{
	size_t i = 0;
	if (n >= 16) {
		uint8_t m8[8];
		for (int k = 0; k < 8; k++)
			m8[k] = rx->mask[(rx->mask_pos + k) & 3];
		uint64_t m, v;
		memcpy(&m, m8, 8);
		for (; i + 8 <= n; i += 8) {
			memcpy(&v, p + i, 8);
			v ^= m;
			memcpy(p + i, &v, 8);
		}
	}
	for (; i < n; i++)
		p[i] ^= rx->mask[(rx->mask_pos + i) & 3];
	rx->mask_pos = (uint8_t)((rx->mask_pos + n) & 3);
}

static int fail(struct rmq_ws_frame *f, int rc, uint16_t code)
{
	f->close_code = code;
	return rc;
}

/* Strict UTF-8 (no overlongs, no surrogates, <= U+10FFFF), for close reasons. */
static bool utf8_ok(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t k = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 9;
		if (k == 9 || i + k >= n)
			return false;
		uint32_t cp = k == 0 ? c : c & (0x3F >> k);
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		static const uint32_t min[] = { 0, 0x80, 0x800, 0x10000 };
		if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += k + 1;
	}
	return true;
}

static bool close_code_ok(uint16_t c)
{
	return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

static int control(struct rmq_ws_rx *rx, uint8_t op, uint8_t *payload, size_t n, struct rmq_ws_frame *f)
{
	unmask(rx, payload, n);
	f->opcode = op;
	f->payload = payload;
	f->len = n;
	if (op != RMQ_WS_CLOSE)
		return 0;
	rx->closed = true;
	f->close_code = RMQ_WS_CLOSE_NO_STATUS;
	if (n == 0)
		return 0;
	uint16_t code = (uint16_t)(payload[0] << 8 | payload[1]);
	if (n == 1 || !close_code_ok(code))
		return fail(f, -EPROTO, RMQ_WS_CLOSE_PROTOCOL);
	if (!utf8_ok(payload + 2, n - 2))
		return fail(f, -EILSEQ, RMQ_WS_CLOSE_INVALID);
	f->close_code = code;
	f->payload = payload + 2;
	f->len = n - 2;
	return 0;
}

/* Hands out the next chunk of the current data frame's payload. */
static int data_chunk(struct rmq_ws_rx *rx, uint8_t *p, size_t avail, struct rmq_ws_frame *f)
{
	size_t n = avail < rx->remaining ? avail : (size_t)rx->remaining;
	unmask(rx, p, n);
	rx->remaining -= n;
	f->opcode = rx->msg_opcode;
	f->payload = p;
	f->len = n;
	f->message_end = rx->remaining == 0 && rx->last_frame;
	return (int)n;
}

/* Frame header: opcode and flags validated as soon as the first two bytes are in, so garbage is refused
 * without waiting for more. Returns the header length, or -EAGAIN / an error. */
static int frame_header(struct rmq_ws_rx *rx, const uint8_t *b, size_t len, uint64_t *plen, struct rmq_ws_frame *f)
{
	if (rx->closed)
		return fail(f, -EPROTO, RMQ_WS_CLOSE_PROTOCOL);
	if (len < 2)
		return -EAGAIN;
	uint8_t op = b[0] & 0x0F, l7 = b[1] & 0x7F;
	bool fin = b[0] & 0x80, ctl = op & 0x8;
	bool known = op == RMQ_WS_CONT || op == RMQ_WS_TEXT || op == RMQ_WS_BINARY || op == RMQ_WS_CLOSE ||
		     op == RMQ_WS_PING || op == RMQ_WS_PONG;
	if ((b[0] & 0x70) || !known || !(b[1] & 0x80) || (ctl && (!fin || l7 > RMQ_WS_MAX_CONTROL)))
		return fail(f, -EPROTO, RMQ_WS_CLOSE_PROTOCOL);
	if (!ctl && (op == RMQ_WS_CONT) != rx->in_message) /* CONT needs an open message; TEXT/BINARY must not */
		return fail(f, -EPROTO, RMQ_WS_CLOSE_PROTOCOL);
	if (op == RMQ_WS_TEXT && rx->binary_only)
		return fail(f, -ENOTSUP, RMQ_WS_CLOSE_UNSUPPORTED);
	size_t ext = l7 == 126 ? 2 : l7 == 127 ? 8 : 0;
	if (len < 2 + ext + 4)
		return -EAGAIN;
	uint64_t n = l7;
	if (ext) {
		n = 0;
		for (size_t i = 0; i < ext; i++)
			n = n << 8 | b[2 + i];
		/* RFC 6455 5.2: the minimal length encoding must be used, and the top bit of 64 is 0 */
		if ((ext == 2 && n < 126) || (ext == 8 && (n <= 0xFFFF || n >> 63)))
			return fail(f, -EPROTO, RMQ_WS_CLOSE_PROTOCOL);
	}
	if (!ctl && n > rx->max_frame)
		return fail(f, -EMSGSIZE, RMQ_WS_CLOSE_TOO_BIG);
	memcpy(rx->mask, b + 2 + ext, 4);
	rx->mask_pos = 0;
	*plen = n;
	return (int)(2 + ext + 4);
}

int rmq_ws_decode(struct rmq_ws_rx *rx, uint8_t *buf, size_t len, struct rmq_ws_frame *f)
{
	memset(f, 0, sizeof(*f));
	if (len > INT32_MAX)
		len = INT32_MAX; /* the return value is an int: hand out at most 2 GiB per call */
	if (rx->remaining > 0)
		return len ? data_chunk(rx, buf, len, f) : -EAGAIN;
	uint64_t plen;
	int hdr = frame_header(rx, buf, len, &plen, f);
	if (hdr < 0)
		return hdr;
	uint8_t op = buf[0] & 0x0F;
	bool fin = buf[0] & 0x80;
	if (op & 0x8) {
		if (len < (size_t)hdr + plen)
			return -EAGAIN;
		int rc = control(rx, op, buf + hdr, (size_t)plen, f);
		return rc < 0 ? rc : hdr + (int)plen;
	}
	if (op != RMQ_WS_CONT)
		rx->msg_opcode = op;
	rx->in_message = !fin;
	rx->last_frame = fin;
	rx->remaining = plen;
	if (plen == 0) {
		f->opcode = rx->msg_opcode;
		f->payload = buf + hdr;
		f->message_end = fin;
		return hdr;
	}
	return hdr + data_chunk(rx, buf + hdr, len - (size_t)hdr, f);
}

/* ---- encoding ---------------------------------------------------------------------------------- */

size_t rmq_ws_header(uint8_t out[RMQ_WS_MAX_HEADER], uint8_t opcode, uint64_t len)
{
	out[0] = (uint8_t)(0x80 | (opcode & 0x0F));
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xFFFF) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
	return 10;
}

int rmq_ws_encode(uint8_t *out, size_t cap, uint8_t opcode, const uint8_t *payload, size_t len)
{
	if ((opcode & 0x8) && len > RMQ_WS_MAX_CONTROL)
		return -EINVAL;
	uint8_t h[RMQ_WS_MAX_HEADER];
	size_t hn = rmq_ws_header(h, opcode, len);
	if (len > INT32_MAX - hn || cap < hn + len)
		return -ENOSPC;
	memcpy(out, h, hn);
	if (len)
		memcpy(out + hn, payload, len);
	return (int)(hn + len);
}

int rmq_ws_encode_close(uint8_t *out, size_t cap, uint16_t code, const char *reason)
{
	uint8_t p[RMQ_WS_MAX_CONTROL];
	size_t rn = reason ? strlen(reason) : 0;
	if (rn > sizeof(p) - 2)
		rn = sizeof(p) - 2;
	p[0] = (uint8_t)(code >> 8);
	p[1] = (uint8_t)code;
	memcpy(p + 2, reason ? reason : "", rn);
	return rmq_ws_encode(out, cap, RMQ_WS_CLOSE, p, 2 + rn);
}
