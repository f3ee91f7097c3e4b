/* MQTT Variable Byte Integer (remaining length, property lengths, subscription identifiers).
 * Pure functions, callable from any thread. */
#include "internal.h"

#define VARINT_MAX_BYTES 4

int rmq_proto_varint_len(uint32_t value)
{
	if (value < 128u)
		return 1;
	if (value < 16384u)
		return 2;
	if (value < 2097152u)
		return 3;
	return 4;
}

int rmq_proto_varint_encode(uint8_t *buf, uint32_t value)
{
	if (value > RMQ_MAX_REMAINING_LEN)
		return RMQ_E_VARINT;
	int n = 0;
	do {
		uint8_t b = value & 0x7f;
		value >>= 7;
		buf[n++] = value ? (uint8_t)(b | 0x80) : b;
	} while (value);
	return n;
}

int rmq_proto_varint_decode(const uint8_t *buf, size_t len, uint32_t *value)
{
	uint32_t v = 0;
	for (int i = 0; i < VARINT_MAX_BYTES; i++) {
		if ((size_t)i >= len)
			return RMQ_E_INCOMPLETE;
		uint8_t b = buf[i];
		v |= (uint32_t)(b & 0x7f) << (7 * i);
		if (!(b & 0x80)) {
			/* [MQTT-1.5.5-1] minimum number of bytes: a trailing 0x00 group only pads */
			if (i > 0 && b == 0)
				return RMQ_E_VARINT_NONMINIMAL;
			*value = v;
			return i + 1;
		}
	}
	return RMQ_E_VARINT; /* a fifth byte would be needed [MQTT-1.5.5] */
}
