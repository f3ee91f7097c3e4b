/* PROXY protocol v1/v2 header parser (haproxy.org/download/2.6/doc/proxy-protocol.txt): pure, bounded,
 * refuses a bad prefix as early as it can. Any thread. */
#include "io/proxy_proto.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
static const char v1_prefix[] = "PROXY ";
#define V1_PREFIX_LEN (sizeof(v1_prefix) - 1)

/* v2 address block sizes (section 2.2): two addresses then two ports; AF_UNIX carries two 108-byte paths. */
#define V2_INET_LEN 12
#define V2_INET6_LEN 36
#define V2_UNIX_LEN 216
/* v2 family/transport byte: high nibble family, low nibble transport (1 = STREAM). */
#define V2_UNSPEC 0x00
#define V2_TCP4 0x11
#define V2_TCP6 0x21
#define V2_UNIX_STREAM 0x31
#define V2_CMD_LOCAL 0x0
#define V2_CMD_PROXY 0x1
#define V2_TLV_HDR 3

/* ---- v1 ------------------------------------------------------------------------------------- */

/* Splits line[0..len) at single spaces into at most max fields. A leading, trailing or doubled space is a
 * syntax error (the spec allows exactly one space between fields). Returns the field count or -1. */
static int split(const char *line, size_t len, const char **f, size_t *flen, int max)
{
	int nf = 0;
	size_t s = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != ' ')
			continue;
		if (i == s || nf == max)
			return -1;
		f[nf] = line + s;
		flen[nf++] = i - s;
		s = i + 1;
	}
	return nf;
}

static int v1_addr(const char *f, size_t len, int family, union rmq_proxy_sa *out)
{
	char buf[INET6_ADDRSTRLEN];
	if (len >= sizeof(buf))
		return RMQ_PROXY_E_V1_ADDR;
	memcpy(buf, f, len);
	buf[len] = '\0';
	memset(out, 0, sizeof(*out));
	out->sa.sa_family = (sa_family_t)family;
	void *dst = family == AF_INET ? (void *)&out->in.sin_addr : (void *)&out->in6.sin6_addr;
	return inet_pton(family, buf, dst) == 1 ? 0 : RMQ_PROXY_E_V1_ADDR;
}

/* Decimal 0..65535: 1 to 5 digits, nothing else (no sign, no space). */
static int v1_port(const char *f, size_t len, union rmq_proxy_sa *out)
{
	if (len < 1 || len > 5)
		return RMQ_PROXY_E_V1_PORT;
	uint32_t v = 0;
	for (size_t i = 0; i < len; i++) {
		if (f[i] < '0' || f[i] > '9')
			return RMQ_PROXY_E_V1_PORT;
		v = v * 10 + (uint32_t)(f[i] - '0');
	}
	if (v > 65535)
		return RMQ_PROXY_E_V1_PORT;
	if (out->sa.sa_family == AF_INET)
		out->in.sin_port = htons((uint16_t)v);
	else
		out->in6.sin6_port = htons((uint16_t)v);
	return 0;
}

/* The line between "PROXY " and CRLF. */
static int v1_fields(const char *line, size_t len, struct rmq_proxy_hdr *out)
{
	/* "UNKNOWN" may be followed by anything (the receiver must ignore it) */
	if (len >= 7 && !memcmp(line, "UNKNOWN", 7) && (len == 7 || line[7] == ' ')) {
		out->has_addr = false;
		return 0;
	}
	for (size_t i = 0; i < len; i++)
		if (line[i] < 0x20 || line[i] > 0x7e)
			return RMQ_PROXY_E_V1_SYNTAX;
	const char *f[5];
	size_t fl[5];
	if (split(line, len, f, fl, 5) != 5 || fl[0] != 4)
		return RMQ_PROXY_E_V1_SYNTAX;
	int family;
	if (!memcmp(f[0], "TCP4", 4))
		family = AF_INET;
	else if (!memcmp(f[0], "TCP6", 4))
		family = AF_INET6;
	else
		return RMQ_PROXY_E_V1_SYNTAX;
	int rc;
	if ((rc = v1_addr(f[1], fl[1], family, &out->src)) || (rc = v1_addr(f[2], fl[2], family, &out->dst)) ||
	    (rc = v1_port(f[3], fl[3], &out->src)) || (rc = v1_port(f[4], fl[4], &out->dst)))
		return rc;
	out->has_addr = true;
	return 0;
}

static int parse_v1(const uint8_t *p, size_t n, struct rmq_proxy_hdr *out)
{
	size_t cmp = n < V1_PREFIX_LEN ? n : V1_PREFIX_LEN;
	if (memcmp(p, v1_prefix, cmp))
		return RMQ_PROXY_E_SIGNATURE;
	size_t scan = n < RMQ_PROXY_V1_MAX ? n : RMQ_PROXY_V1_MAX;
	for (size_t i = 0; i < scan; i++) {
		if (p[i] == '\n')
			return RMQ_PROXY_E_V1_SYNTAX;  /* LF without its CR */
		if (p[i] != '\r')
			continue;
		if (i + 2 > RMQ_PROXY_V1_MAX)
			return RMQ_PROXY_E_V1_TOO_LONG;  /* the CRLF counts in the 107 */
		if (i + 1 == n)
			return 0;                      /* CR is the last byte so far: the LF may follow */
		if (p[i + 1] != '\n')
			return RMQ_PROXY_E_V1_SYNTAX;
		if (i < V1_PREFIX_LEN)
			return RMQ_PROXY_E_V1_SYNTAX;  /* "PROXY\r\n" and the like */
		out->version = 1;
		int rc = v1_fields((const char *)p + V1_PREFIX_LEN, i - V1_PREFIX_LEN, out);
		return rc ? rc : (int)(i + 2);
	}
	return n >= RMQ_PROXY_V1_MAX ? RMQ_PROXY_E_V1_TOO_LONG : 0;
}

/* ---- v2 ------------------------------------------------------------------------------------- */

static size_t v2_addr_len(uint8_t fam)
{
	switch (fam) {
	case V2_TCP4:
		return V2_INET_LEN;
	case V2_TCP6:
		return V2_INET6_LEN;
	case V2_UNIX_STREAM:
		return V2_UNIX_LEN;
	default:
		return 0;
	}
}

/* Checks what has arrived of bytes 12..15 (version/command, family, length) so that a bad header fails on
 * the byte that makes it bad. Returns 0 when nothing is wrong so far. */
static int v2_check_fixed(const uint8_t *p, size_t n)
{
	if (n <= 12)
		return 0;
	if (p[12] >> 4 != 2)
		return RMQ_PROXY_E_V2_VERSION;
	uint8_t cmd = p[12] & 0x0f;
	if (cmd != V2_CMD_LOCAL && cmd != V2_CMD_PROXY)
		return RMQ_PROXY_E_V2_COMMAND;
	/* LOCAL: the receiver must ignore the protocol block, family included (section 2.2) */
	bool proxy = cmd == V2_CMD_PROXY;
	if (n <= 13 || !proxy)
		return 0;
	uint8_t fam = p[13];
	if (fam != V2_UNSPEC && fam != V2_TCP4 && fam != V2_TCP6 && fam != V2_UNIX_STREAM)
		return RMQ_PROXY_E_V2_FAMILY;  /* includes UDP and unix datagram: not what a TCP listener carries */
	if (n < RMQ_PROXY_V2_FIXED)
		return 0;
	size_t len = (size_t)p[14] << 8 | p[15];
	if (len < v2_addr_len(fam))
		return RMQ_PROXY_E_V2_SHORT;
	return 0;
}

static void v2_inet(const uint8_t *a, struct rmq_proxy_hdr *out)
{
	memset(&out->src, 0, sizeof(out->src));
	memset(&out->dst, 0, sizeof(out->dst));
	out->src.in.sin_family = out->dst.in.sin_family = AF_INET;
	memcpy(&out->src.in.sin_addr, a, 4);
	memcpy(&out->dst.in.sin_addr, a + 4, 4);
	memcpy(&out->src.in.sin_port, a + 8, 2);   /* both in network order already */
	memcpy(&out->dst.in.sin_port, a + 10, 2);
}

static void v2_inet6(const uint8_t *a, struct rmq_proxy_hdr *out)
{
	memset(&out->src, 0, sizeof(out->src));
	memset(&out->dst, 0, sizeof(out->dst));
	out->src.in6.sin6_family = out->dst.in6.sin6_family = AF_INET6;
	memcpy(&out->src.in6.sin6_addr, a, 16);
	memcpy(&out->dst.in6.sin6_addr, a + 16, 16);
	memcpy(&out->src.in6.sin6_port, a + 32, 2);
	memcpy(&out->dst.in6.sin6_port, a + 34, 2);
}

/* TLVs (type, 16-bit length, value) fill the rest of the header exactly; none is interpreted (the CRC32C,
 * ALPN, authority and SSL ones carry nothing the broker uses), but a malformed list means a broken sender. */
static int v2_tlvs(const uint8_t *t, size_t len)
{
	size_t off = 0;
	while (off < len) {
		if (len - off < V2_TLV_HDR)
			return RMQ_PROXY_E_V2_TLV;
		size_t vlen = (size_t)t[off + 1] << 8 | t[off + 2];
		if (vlen > len - off - V2_TLV_HDR)
			return RMQ_PROXY_E_V2_TLV;
		off += V2_TLV_HDR + vlen;
	}
	return 0;
}

static int parse_v2(const uint8_t *p, size_t n, struct rmq_proxy_hdr *out)
{
	size_t cmp = n < sizeof(v2_sig) ? n : sizeof(v2_sig);
	if (memcmp(p, v2_sig, cmp))
		return RMQ_PROXY_E_SIGNATURE;
	int rc = v2_check_fixed(p, n);
	if (rc)
		return rc;
	if (n < RMQ_PROXY_V2_FIXED)
		return 0;
	size_t len = (size_t)p[14] << 8 | p[15];
	size_t total = RMQ_PROXY_V2_FIXED + len;
	if (total > RMQ_PROXY_MAX_LEN)
		return RMQ_PROXY_E_V2_TOO_LONG;
	if (n < total)
		return 0;
	out->version = 2;
	out->has_addr = false;
	out->tlv_len = 0;
	if ((p[12] & 0x0f) == V2_CMD_LOCAL || p[13] == V2_UNSPEC)
		return (int)total;  /* the whole block is skipped unread (section 2.2) */
	const uint8_t *a = p + RMQ_PROXY_V2_FIXED;
	size_t alen = v2_addr_len(p[13]);
	if ((rc = v2_tlvs(a + alen, len - alen)))
		return rc;
	out->tlv_len = (uint16_t)(len - alen);
	if (p[13] == V2_TCP4)
		v2_inet(a, out);
	else if (p[13] == V2_TCP6)
		v2_inet6(a, out);
	out->has_addr = p[13] != V2_UNIX_STREAM;  /* a unix-socket client has no address to limit or log */
	return (int)total;
}

/* ---- public --------------------------------------------------------------------------------- */

int rmq_proxy_parse(const uint8_t *p, size_t n, struct rmq_proxy_hdr *out)
{
	if (n == 0)
		return 0;
	if (p[0] == v1_prefix[0])
		return parse_v1(p, n, out);
	if (p[0] == v2_sig[0])
		return parse_v2(p, n, out);
	return RMQ_PROXY_E_SIGNATURE;
}

const char *rmq_proxy_strerror(int rc)
{
	switch (rc) {
	case RMQ_PROXY_E_SIGNATURE:
		return "no PROXY protocol signature";
	case RMQ_PROXY_E_V1_TOO_LONG:
		return "PROXY v1 line longer than 107 bytes";
	case RMQ_PROXY_E_V1_SYNTAX:
		return "PROXY v1 syntax error";
	case RMQ_PROXY_E_V1_ADDR:
		return "PROXY v1 bad address";
	case RMQ_PROXY_E_V1_PORT:
		return "PROXY v1 bad port";
	case RMQ_PROXY_E_V2_VERSION:
		return "PROXY v2 bad version";
	case RMQ_PROXY_E_V2_COMMAND:
		return "PROXY v2 bad command";
	case RMQ_PROXY_E_V2_FAMILY:
		return "PROXY v2 unsupported family/transport";
	case RMQ_PROXY_E_V2_SHORT:
		return "PROXY v2 address block too short";
	case RMQ_PROXY_E_V2_TOO_LONG:
		return "PROXY v2 header too long";
	case RMQ_PROXY_E_V2_TLV:
		return "PROXY v2 malformed TLV";
	default:
		return rc >= 0 ? "ok" : "unknown PROXY protocol error";
	}
}

size_t rmq_proxy_addr_str(const union rmq_proxy_sa *a, char *buf, size_t cap)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int n;
	if (a->sa.sa_family == AF_INET) {
		inet_ntop(AF_INET, &a->in.sin_addr, ip, sizeof(ip));
		n = snprintf(buf, cap, "%s:%u", ip, ntohs(a->in.sin_port));
	} else if (a->sa.sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &a->in6.sin6_addr, ip, sizeof(ip));
		n = snprintf(buf, cap, "[%s]:%u", ip, ntohs(a->in6.sin6_port));
	} else {
		n = snprintf(buf, cap, "?");
	}
	if (n < 0 || !cap)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}
