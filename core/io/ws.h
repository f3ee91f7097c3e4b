/* WebSocket (RFC 6455) server side for MQTT over WebSocket: Upgrade handshake and frame codec, pure functions
 * over the connection's buffers (no I/O, no allocation). Owning reactor thread; one rmq_ws_rx per connection. */
#ifndef RMQ_WS_H
#define RMQ_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An Upgrade request larger than this is refused: browsers send well under 2 KiB, and the bytes sit in the
 * connection's reassembly area until the blank line arrives. */
#define RMQ_WS_MAX_REQUEST 8192
#define RMQ_WS_MAX_HEADERS 64
/* Longest frame header a server writes: 2 + 8 bytes of length (servers never mask). */
#define RMQ_WS_MAX_HEADER 10
/* RFC 6455 5.5: control frames carry at most 125 bytes. */
#define RMQ_WS_MAX_CONTROL 125
/* 101 response with every header we send, and any error response. */
#define RMQ_WS_RESPONSE_MAX 256

enum rmq_ws_opcode {
	RMQ_WS_CONT = 0x0,
	RMQ_WS_TEXT = 0x1,
	RMQ_WS_BINARY = 0x2,
	RMQ_WS_CLOSE = 0x8,
	RMQ_WS_PING = 0x9,
	RMQ_WS_PONG = 0xA,
};

/* Close status codes (RFC 6455 7.4.1) the decoder asks the caller to send. */
enum rmq_ws_close {
	RMQ_WS_CLOSE_NORMAL = 1000,
	RMQ_WS_CLOSE_PROTOCOL = 1002,
	RMQ_WS_CLOSE_UNSUPPORTED = 1003, /* text frame: [MQTT-6.0.0-1] MQTT travels in binary frames only */
	RMQ_WS_CLOSE_NO_STATUS = 1005,   /* reported for a peer close without a code; never sent */
	RMQ_WS_CLOSE_INVALID = 1007,     /* close reason not UTF-8 */
	RMQ_WS_CLOSE_TOO_BIG = 1009,
};

/* ---- handshake --------------------------------------------------------------------------------- */

struct rmq_ws_upgrade {
	char accept[29];       /* Sec-WebSocket-Accept value, NUL-terminated */
	const uint8_t *path;   /* request target, pointing into the caller's buffer */
	size_t path_len;
};

/* Parses the client's opening handshake from buf[0..len). Requirements (RFC 6455 4.2.1, MQTT 6.0): `GET`
 * with HTTP/1.1, Host, `Upgrade: websocket`, `Connection` listing `Upgrade`, a Sec-WebSocket-Key of 16
 * base64-encoded bytes, `Sec-WebSocket-Version: 13`, and `mqtt` among the offered subprotocols. Header
 * names are case-insensitive, list headers may repeat, folded lines are refused. Returns the request's
 * length (bytes to consume; bytes after it are the first WebSocket frames) and fills *out, or:
 *   -EAGAIN          the blank line has not arrived yet (len < RMQ_WS_MAX_REQUEST): read more
 *   -EMSGSIZE        no complete request within RMQ_WS_MAX_REQUEST bytes, or too many headers
 *   -EPROTONOSUPPORT Sec-WebSocket-Version is not 13 (answer 426 with the version we speak)
 *   -ENOPROTOOPT     the client did not offer the `mqtt` subprotocol
 *   -EINVAL          anything else malformed or missing
 * and a one-line reason in err (may be NULL). For any error, send rmq_ws_build_error() and close. */
int rmq_ws_parse_upgrade(const uint8_t *buf, size_t len, struct rmq_ws_upgrade *out, char *err, size_t errlen);

/* Writes the 101 Switching Protocols response (selecting subprotocol `mqtt`) into out. Returns its length,
 * or -ENOSPC when cap < RMQ_WS_RESPONSE_MAX. */
int rmq_ws_build_accept(const struct rmq_ws_upgrade *u, char *out, size_t cap);

/* Writes the HTTP error response for an rmq_ws_parse_upgrade() error (400, 426 with
 * Sec-WebSocket-Version: 13, or 431), with Connection: close. Returns its length or -ENOSPC. */
int rmq_ws_build_error(int parse_err, char *out, size_t cap);

/* Sec-WebSocket-Accept for a key: base64(SHA-1(key || 258EAFA5-E914-47DA-95CA-C5AB0DC85B11)). Returns 0, or
 * -EIO if the hash fails. */
int rmq_ws_accept_key(const uint8_t *key, size_t key_len, char out[29]);

/* ---- frames from the client -------------------------------------------------------------------- */

/* Decoder state for one connection. Data frames are streamed: their payload is handed out in chunks as
 * bytes arrive, so a frame is never buffered whole. */
struct rmq_ws_rx {
	uint64_t max_frame;  /* larger data frames are refused with 1009 */
	bool binary_only;    /* refuse text frames with 1003 (MQTT) */
	bool in_message;     /* a fragmented data message is open: only CONT or control frames may follow */
	uint8_t msg_opcode;  /* TEXT or BINARY of the open message */
	bool last_frame;     /* the data frame being streamed has FIN set */
	bool closed;         /* a close frame arrived: nothing may follow */
	uint64_t remaining;  /* payload bytes of the current data frame not handed out yet */
	uint8_t mask[4];
	uint8_t mask_pos;
};

void rmq_ws_rx_init(struct rmq_ws_rx *rx, uint64_t max_frame, bool binary_only);

struct rmq_ws_frame {
	uint8_t opcode;          /* BINARY or TEXT for data (also for continuation frames), PING, PONG, CLOSE */
	bool message_end;        /* data: this chunk ends the message */
	const uint8_t *payload;  /* unmasked, points into the caller's buffer */
	size_t len;
	uint16_t close_code;     /* CLOSE: the peer's code (1005 if none); on error: the code to send */
};

/* Decodes the next item from buf[0..len), unmasking in place: a chunk of data (possibly empty, possibly
 * not the whole frame), or a whole control frame. Returns the bytes consumed (> 0), or
 *   -EAGAIN    need more bytes (nothing consumed; call again with the same bytes plus more)
 *   -EPROTO    protocol violation: unmasked frame, reserved bits, unknown opcode, fragmented or long
 *              control frame, continuation without a message, data inside an open message, non-minimal
 *              or 63-bit length, frame after close, bad close code (f->close_code = 1002)
 *   -EMSGSIZE  data frame longer than max_frame (1009)
 *   -ENOTSUP   text frame while binary_only (1003)
 *   -EILSEQ    close reason not UTF-8 (1007)
 * On error send rmq_ws_encode_close(f->close_code) and close the connection. */
int rmq_ws_decode(struct rmq_ws_rx *rx, uint8_t *buf, size_t len, struct rmq_ws_frame *f);

/* ---- frames to the client (unmasked, single frame, FIN set) ------------------------------------- */

/* Writes a frame header for `len` payload bytes; returns its length (2, 4 or 10). The reactor sends the
 * header and the payload with one writev/send, without copying the payload. */
size_t rmq_ws_header(uint8_t out[RMQ_WS_MAX_HEADER], uint8_t opcode, uint64_t len);

/* Header + payload into out. Returns the total length, -ENOSPC when cap is too small, -EINVAL for a control
 * frame over 125 bytes. */
int rmq_ws_encode(uint8_t *out, size_t cap, uint8_t opcode, const uint8_t *payload, size_t len);

/* Close frame with `code` and a reason (may be NULL; cut to fit 125 bytes). Returns length or -ENOSPC. */
int rmq_ws_encode_close(uint8_t *out, size_t cap, uint16_t code, const char *reason);

#endif
