/* Kafka -> MQTT route syntax: parses `KAFKA_TOPIC -> MQTT_TOPIC [qos=0|1|2] [retain=on|off]` and renders the MQTT
 * topic template of a record (${key}, ${header.NAME}, ${topic}). Parsing: main thread at start-up; rendering: pure.
 *
 * Why substituted values may not hold '/', '+' or '#': the key of a command record is written by a back-end
 * service, and 'cars/${key}/cmd' must reach exactly one car's topic. A key 'X/cmd/../..' or '+' would otherwise
 * aim at other topics (or be an illegal topic name), so such records are skipped and counted instead. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge_internal.h"

#define HEADER_PREFIX "header."

/* [MQTT-4.7.1-1] wildcards are not allowed in a topic name; [MQTT-1.5.4-2] nor is U+0000. */
static bool mqtt_text_ok(const uint8_t *s, size_t n, bool allow_slash)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '+' || s[i] == '#' || s[i] == 0 || (!allow_slash && s[i] == '/'))
			return false;
	return rmq_bridge_utf8_valid(s, n);
}

static int add_cpart(struct rmq_bridge_consume *r, struct rmq_bridge_cpart p, char *err, size_t errlen)
{
	if (r->nparts == RMQ_BRIDGE_MAX_TMPL_PARTS)
		return rmq_bridge_fail(err, errlen, "consume: MQTT topic '%s': more than %d parts", r->mqtt_src,
				       RMQ_BRIDGE_MAX_TMPL_PARTS);
	r->parts[r->nparts++] = p;
	return 0;
}

/* The variable inside ${...}: p[0..n). */
static int parse_cvar(struct rmq_bridge_cpart *part, const char *p, size_t n)
{
	size_t hl = strlen(HEADER_PREFIX);
	if (n == 3 && memcmp(p, "key", 3) == 0)
		part->kind = TC_KEY;
	else if (n == 5 && memcmp(p, "topic", 5) == 0)
		part->kind = TC_KTOPIC;
	else if (n > hl && memcmp(p, HEADER_PREFIX, hl) == 0 && n - hl <= UINT16_MAX) {
		part->kind = TC_HEADER;
		part->s = p + hl;
		part->len = (uint16_t)(n - hl);
	} else
		return -EINVAL;
	return 0;
}

static int parse_ctmpl(struct rmq_bridge_consume *r, char *err, size_t errlen)
{
	const char *s = r->mqtt_src;
	while (*s) {
		const char *var = strstr(s, "${");
		size_t litlen = var ? (size_t)(var - s) : strlen(s);
		if (!mqtt_text_ok((const uint8_t *)s, litlen, true))
			return rmq_bridge_fail(err, errlen, "consume: MQTT topic '%s': '+', '#' and NUL are not allowed in "
					       "a topic name", r->mqtt_src);
		if (litlen && add_cpart(r, (struct rmq_bridge_cpart){.kind = TC_LIT, .len = (uint16_t)litlen, .s = s},
					err, errlen))
			return -EINVAL;
		if (!var)
			break;
		const char *end = strchr(var, '}');
		struct rmq_bridge_cpart part = {0};
		if (!end || parse_cvar(&part, var + 2, (size_t)(end - var - 2)))
			return rmq_bridge_fail(err, errlen, "consume: MQTT topic '%s': unknown variable at '%s' (use ${key}, "
					       "${header.NAME} or ${topic})", r->mqtt_src, var);
		if (add_cpart(r, part, err, errlen))
			return -EINVAL;
		s = end + 1;
	}
	return r->nparts ? 0 : rmq_bridge_fail(err, errlen, "consume: empty MQTT topic");
}

static int consume_option(struct rmq_bridge_consume *r, const char *opt, char *err, size_t errlen)
{
	if (strncmp(opt, "qos=", 4) == 0 && opt[4] >= '0' && opt[4] <= '2' && opt[5] == 0) {
		r->qos = (uint8_t)(opt[4] - '0');
		return 0;
	}
	if (strcmp(opt, "retain=on") == 0 || strcmp(opt, "retain=off") == 0) {
		r->retain = opt[8] == 'n';
		return 0;
	}
	return rmq_bridge_fail(err, errlen, "consume '%s': unknown option '%s' (qos=0|1|2, retain=on|off)", r->spec, opt);
}

int rmq_bridge_consume_parse(struct rmq_bridge_consume *r, const char *value, char *err, size_t errlen)
{
	enum { MAX_WORDS = 6 };
	memset(r, 0, sizeof(*r));
	r->qos = 1;
	if (!value)
		return rmq_bridge_fail(err, errlen, "consume: missing value");
	char *buf = strdup(value), *w[MAX_WORDS], *save = NULL;
	if (!buf || !(r->spec = strdup(value))) {
		free(buf);
		return -ENOMEM;
	}
	int n = 0, rc = 0;
	for (char *tok = strtok_r(buf, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save))
		if (n++ < MAX_WORDS)
			w[n - 1] = tok;
	if (n > MAX_WORDS)
		rc = rmq_bridge_fail(err, errlen, "consume '%s': too many words", value);
	else if (n < 3 || strcmp(w[1], "->") != 0)
		rc = rmq_bridge_fail(err, errlen, "consume '%s': expected 'KAFKA_TOPIC -> MQTT_TOPIC [qos=0|1|2] "
				     "[retain=on|off]'", value);
	else if (!rmq_bridge_kafka_topic_valid(w[0], strlen(w[0])))
		rc = rmq_bridge_fail(err, errlen, "consume '%s': '%s' is not a valid Kafka topic name (1..249 of "
				     "A-Z a-z 0-9 . _ -)", value, w[0]);
	else if (strlen(w[2]) > RMQ_BRIDGE_MQTT_TOPIC_MAX)
		rc = rmq_bridge_fail(err, errlen, "consume: MQTT topic too long");
	else if (!(r->ktopic = strdup(w[0])) || !(r->mqtt_src = strdup(w[2])))
		rc = -ENOMEM;
	else
		rc = parse_ctmpl(r, err, errlen);
	for (int i = 3; rc == 0 && i < n; i++)
		rc = consume_option(r, w[i], err, errlen);
	free(buf);
	if (rc)
		rmq_bridge_consume_free(r);
	return rc;
}

void rmq_bridge_consume_free(struct rmq_bridge_consume *r)
{
	free(r->spec);
	free(r->ktopic);
	free(r->mqtt_src);
	memset(r, 0, sizeof(*r));
}

int rmq_bridge_consume_render(const struct rmq_bridge_consume *r, const struct rmq_bridge_krec *k,
			      struct rmq_bbuf *out)
{
	size_t start = out->len;
	for (int i = 0; i < r->nparts; i++) {
		const struct rmq_bridge_cpart *p = &r->parts[i];
		const void *v = NULL;
		size_t n = 0;
		switch (p->kind) {
		case TC_LIT: v = p->s; n = p->len; break;
		case TC_KTOPIC: v = k->ktopic; n = strlen(k->ktopic); break;
		case TC_KEY: v = k->key; n = k->key ? k->keylen : 0; break;
		case TC_HEADER:
			if (!k->header || k->header(k->ud, p->s, p->len, &v, &n))
				v = NULL;
			break;
		}
		if (p->kind != TC_LIT) {
			if (!v || n == 0)
				return -ENOENT;
			if (!mqtt_text_ok(v, n, false))
				return -EINVAL;
		}
		if (rmq_bridge_buf_put(out, v, n))
			return -ENOMEM;
	}
	if (out->len - start > RMQ_BRIDGE_MQTT_TOPIC_MAX)
		return -EINVAL;
	return 0;
}
