/* PROXY protocol v1 (text) and v2 (binary) header parser: bytes in, client address out, no I/O, no allocation.
 * Pure functions; any thread (conn.c calls it on the reactor that accepted the connection). */
#ifndef RMQ_CORE_PROXY_PROTO_H
#define RMQ_CORE_PROXY_PROTO_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* v1: "PROXY TCP6 <40> <40> <5> <5>\r\n" is the longest legal line (spec section 2.1). */
#define RMQ_PROXY_V1_MAX 107
/* v2: signature (12), version/command, family/transport, length (2). */
#define RMQ_PROXY_V2_FIXED 16
/* Bound on a whole v2 header (fixed part + addresses + TLVs). The spec lets a sender announce up to 64 KiB;
 * HAProxy's TLVs (unique-id, authority, SSL details) stay far below 1 KiB, and everything up to the end of
 * the header has to be held in the connection's reassembly area before any of it can be judged, so a bound
 * keeps a hostile or broken sender from parking 64 KiB per connection. */
#define RMQ_PROXY_MAX_LEN 2048

/* Room for either address family, with its port (network order, as the socket API keeps it). */
union rmq_proxy_sa {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

struct rmq_proxy_hdr {
	uint8_t version;          /* 1 or 2 */
	/* false for v1 UNKNOWN, v2 LOCAL (health checks), v2 AF_UNSPEC and AF_UNIX: the spec says to use the
	 * connection's own endpoints then. */
	bool has_addr;
	union rmq_proxy_sa src, dst;   /* AF_INET or AF_INET6 when has_addr */
	uint16_t tlv_len;         /* v2: bytes of TLVs after the addresses (validated, then skipped) */
};

/* Errors (negative). Each names the rule it enforces; rmq_proxy_strerror() gives a one-line reason. */
enum rmq_proxy_err {
	RMQ_PROXY_E_SIGNATURE = -1,  /* neither "PROXY " (v1) nor the 12-byte v2 signature */
	RMQ_PROXY_E_V1_TOO_LONG = -2,  /* no CRLF within 107 bytes */
	RMQ_PROXY_E_V1_SYNTAX = -3,  /* protocol word, single spaces, CRLF, field count */
	RMQ_PROXY_E_V1_ADDR = -4,    /* address not valid for TCP4/TCP6 */
	RMQ_PROXY_E_V1_PORT = -5,    /* port not a decimal 0..65535 */
	RMQ_PROXY_E_V2_VERSION = -6, /* version nibble is not 2 */
	RMQ_PROXY_E_V2_COMMAND = -7, /* command is neither LOCAL (0) nor PROXY (1) */
	RMQ_PROXY_E_V2_FAMILY = -8,  /* unknown family/transport byte, or a datagram transport on our stream */
	RMQ_PROXY_E_V2_SHORT = -9,   /* address block shorter than its family needs */
	RMQ_PROXY_E_V2_TOO_LONG = -10, /* announced length beyond RMQ_PROXY_MAX_LEN */
	RMQ_PROXY_E_V2_TLV = -11,    /* a TLV runs past the end of the header */
};

/* Parses the header at the start of p[0..n). Returns its length in bytes (> 0; the caller's next bytes start
 * there), 0 when p is a valid beginning but more bytes are needed (n < RMQ_PROXY_MAX_LEN always then), or an
 * enum rmq_proxy_err. A prefix that can no longer become a header is refused at once, so a client speaking
 * MQTT, HTTP or TLS straight to the listener is turned away on its first byte. *out is filled on success. */
int rmq_proxy_parse(const uint8_t *p, size_t n, struct rmq_proxy_hdr *out);

const char *rmq_proxy_strerror(int rc);

/* "1.2.3.4:5" or "[2001:db8::1]:5" into buf (NUL-terminated, cut to cap); returns the length written. */
size_t rmq_proxy_addr_str(const union rmq_proxy_sa *a, char *buf, size_t cap);

#endif
