/* Rendering a message for Kafka: templates (topic, key), the JSON envelope (hand-written escaping: it is small,
 * and no Debian JSON library writes into our reused buffers), base64, UTF-8 checks. Pure; any thread. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge_internal.h"

int rmq_bridge_buf_put(struct rmq_bbuf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np)
			return -ENOMEM;
		b->p = np;
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

void rmq_bridge_buf_free(struct rmq_bbuf *b)
{
	free(b->p);
	*b = (struct rmq_bbuf){0};
}

static int put_str(struct rmq_bbuf *b, const char *s)
{
	return rmq_bridge_buf_put(b, s, strlen(s));
}

/* Level `n` (0-based) of topic t, or an empty view past the last level. */
static struct rmq_str topic_level(struct rmq_str t, unsigned n)
{
	uint32_t start = 0;
	for (unsigned level = 0; level < n; level++) {
		const uint8_t *slash = t.len > start ? memchr(t.p + start, '/', t.len - start) : NULL;
		if (!slash)
			return (struct rmq_str){t.p, 0};
		start = (uint32_t)(slash - t.p) + 1;
	}
	const uint8_t *slash = t.len > start ? memchr(t.p + start, '/', t.len - start) : NULL;
	uint32_t end = slash ? (uint32_t)(slash - t.p) : t.len;
	return (struct rmq_str){t.p + start, end - start};
}

int rmq_bridge_render(const struct rmq_bridge_tmpl *t, const struct rmq_bridge_msg *m, struct rmq_bbuf *out)
{
	for (int i = 0; i < t->nparts; i++) {
		const struct rmq_bridge_tpart *p = &t->parts[i];
		struct rmq_str s = {0};
		switch (p->kind) {
		case TP_LIT: s = (struct rmq_str){(const uint8_t *)p->lit, p->len}; break;
		case TP_LEVEL: s = topic_level(m->pub->topic, p->level); break;
		case TP_TOPIC: s = m->pub->topic; break;
		case TP_CLIENT_ID: s = m->client_id; break;
		case TP_USERNAME: s = m->username; break;
		}
		if (rmq_bridge_buf_put(out, s.p, s.len))
			return -ENOMEM;
	}
	return 0;
}

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 if ill-formed (overlong, surrogate, > U+10FFFF). */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
	uint8_t c = s[0];
	if (c < 0x80)
		return 1;
	size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
	if (len == 0 || c > 0xF4 || len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
	    (c == 0xF4 && s[1] > 0x8F))
		return 0;
	return len;
}

bool rmq_bridge_utf8_valid(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq(s + i, n - i);
		if (!l)
			return false;
		i += l;
	}
	return true;
}

int rmq_bridge_json_str(struct rmq_bbuf *b, const uint8_t *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	int rc = rmq_bridge_buf_put(b, "\"", 1);
	size_t run = 0; /* start of the pending run of bytes copied as they are */
	for (size_t i = 0; i < n && rc == 0;) {
		uint8_t c = s[i];
		size_t l = utf8_seq(s + i, n - i);
		if (l && c >= 0x20 && c != '"' && c != '\\') {
			i += l;
			continue;
		}
		rc = rmq_bridge_buf_put(b, s + run, i - run);
		char esc[7] = {'\\', 0};
		size_t elen = 2;
		if (!l) {
			memcpy(esc, "\\ufffd", 6);
			elen = 6;
		} else if (c == '"' || c == '\\')
			esc[1] = (char)c;
		else if (c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f')
			esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : c == '\b' ? 'b' : 'f';
		else {
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			elen = 6;
		}
		if (rc == 0)
			rc = rmq_bridge_buf_put(b, esc, elen);
		i += 1;
		run = i;
	}
	if (rc == 0)
		rc = rmq_bridge_buf_put(b, s + run, n - run);
	return rc ? rc : rmq_bridge_buf_put(b, "\"", 1);
}

int rmq_bridge_base64(struct rmq_bbuf *b, const uint8_t *s, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0) |
			     (i + 2 < n ? s[i + 2] : 0);
		char q[4] = {tab[v >> 18], tab[(v >> 12) & 63], i + 1 < n ? tab[(v >> 6) & 63] : '=',
			     i + 2 < n ? tab[v & 63] : '='};
		if (rmq_bridge_buf_put(b, q, 4))
			return -ENOMEM;
	}
	return 0;
}

static int put_field(struct rmq_bbuf *b, const char *name, struct rmq_str s)
{
	int rc = put_str(b, name);
	return rc ? rc : rmq_bridge_json_str(b, s.p, s.len);
}

static int put_user_props(struct rmq_bbuf *b, const struct rmq_props *props)
{
	int rc = put_str(b, ",\"user_properties\":[");
	uint32_t pos = 0;
	struct rmq_str k, v;
	for (bool first = true; rc == 0 && rmq_props_user_next(props, &pos, &k, &v); first = false) {
		rc = put_field(b, first ? "[" : ",[", k);
		if (rc == 0)
			rc = put_field(b, ",", v);
		if (rc == 0)
			rc = put_str(b, "]");
	}
	return rc ? rc : put_str(b, "]");
}

int rmq_bridge_render_json(const struct rmq_bridge_msg *m, int64_t ts_ms, struct rmq_bbuf *out)
{
	const struct rmq_publish *pub = m->pub;
	char num[96];
	int rc = put_field(out, "{\"topic\":", pub->topic);
	if (rc == 0)
		rc = put_field(out, ",\"client_id\":", m->client_id);
	if (rc == 0)
		rc = m->username.p ? put_field(out, ",\"username\":", m->username) : put_str(out, ",\"username\":null");
	snprintf(num, sizeof(num), ",\"qos\":%u,\"retain\":%s,\"timestamp\":%" PRId64, pub->qos,
		 pub->retain ? "true" : "false", ts_ms);
	if (rc == 0)
		rc = put_str(out, num);
	if (rc == 0 && (pub->props.present & RMQ_PBIT(RMQ_PROP_CONTENT_TYPE)))
		rc = put_field(out, ",\"content_type\":", pub->props.content_type);
	if (rc == 0)
		rc = put_user_props(out, &pub->props);
	bool utf8 = rmq_bridge_utf8_valid(pub->payload.p, pub->payload.len);
	if (rc == 0)
		rc = put_str(out, utf8 ? ",\"payload_encoding\":\"utf8\",\"payload\":"
				       : ",\"payload_encoding\":\"base64\",\"payload\":\"");
	if (rc == 0)
		rc = utf8 ? rmq_bridge_json_str(out, pub->payload.p, pub->payload.len)
			  : rmq_bridge_base64(out, pub->payload.p, pub->payload.len);
	if (rc == 0)
		rc = put_str(out, utf8 ? "}" : "\"}");
	return rc;
}
