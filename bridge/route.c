/* Route syntax and matching: parses `FILTER -> TOPIC [key=..] [value=..] [headers=..]` and its templates, and
 * matches MQTT topics against route filters. Parsing: main thread at start-up; matching: any thread (pure).
 *
 * Route syntax (whitespace separates the fields, so a filter or template cannot contain spaces):
 *   FILTER -> TOPIC [key=TEMPLATE|none] [value=raw|json] [headers=on|off]
 * FILTER is an MQTT topic filter ('+' one level, '#' the rest). TOPIC and TEMPLATE are literal text mixed with
 *   ${topic[N]}   level N of the MQTT topic, 0-based ('cars/VIN42/telemetry': ${topic[1]} = VIN42; a level past
 *                 the end renders empty)
 *   ${topic}      the whole MQTT topic         ${client_id}  the publisher's client id
 *   ${username}   the publisher's user name (empty when none)
 * key defaults to ${client_id}, so every message of one car lands in one partition; key=none sends a null key.
 * value=raw (default) is the payload as is; value=json is the envelope described in bridge.h.
 * Example: 'cars/+/telemetry -> vehicle-${topic[1]} key=${topic[1]} value=json'. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bridge_internal.h"

static bool topic_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
	       c == '_' || c == '-';
}

bool rmq_bridge_kafka_topic_valid(const char *s, size_t n)
{
	if (n == 0 || n > RMQ_BRIDGE_KAFKA_TOPIC_MAX)
		return false;
	if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!topic_char_ok(s[i]))
			return false;
	return true;
}

/* Parses the variable name inside ${...} at p (len n) into part. */
static int parse_var(struct rmq_bridge_tpart *part, const char *p, size_t n)
{
	if (n == 5 && memcmp(p, "topic", 5) == 0)
		part->kind = TP_TOPIC;
	else if (n == 9 && memcmp(p, "client_id", 9) == 0)
		part->kind = TP_CLIENT_ID;
	else if (n == 8 && memcmp(p, "username", 8) == 0)
		part->kind = TP_USERNAME;
	else if (n >= 8 && memcmp(p, "topic[", 6) == 0 && p[n - 1] == ']') {
		unsigned level = 0;
		if (n - 7 < 1 || n - 7 > 2)
			return -EINVAL;
		for (size_t i = 6; i < n - 1; i++) {
			if (p[i] < '0' || p[i] > '9')
				return -EINVAL;
			level = level * 10 + (unsigned)(p[i] - '0');
		}
		if (level > RMQ_BRIDGE_MAX_LEVEL)
			return -EINVAL;
		part->kind = TP_LEVEL;
		part->level = (uint8_t)level;
	} else
		return -EINVAL;
	return 0;
}

static int add_part(struct rmq_bridge_tmpl *t, struct rmq_bridge_tpart part, char *err, size_t errlen)
{
	if (t->nparts == RMQ_BRIDGE_MAX_TMPL_PARTS)
		return rmq_bridge_fail(err, errlen, "template '%s': more than %d parts", t->src, RMQ_BRIDGE_MAX_TMPL_PARTS);
	t->parts[t->nparts++] = part;
	return 0;
}

static int parse_parts(struct rmq_bridge_tmpl *t, bool for_topic, char *err, size_t errlen)
{
	const char *s = t->src;
	while (*s) {
		const char *var = strstr(s, "${");
		size_t litlen = var ? (size_t)(var - s) : strlen(s);
		for (size_t i = 0; for_topic && i < litlen; i++)
			if (!topic_char_ok(s[i]))
				return rmq_bridge_fail(err, errlen, "topic '%s': '%c' is not allowed in a Kafka topic name "
					    "(only A-Z a-z 0-9 . _ -)", t->src, s[i]);
		if (litlen && add_part(t, (struct rmq_bridge_tpart){.kind = TP_LIT, .len = (uint16_t)litlen,
								  .lit = s}, err, errlen))
			return -EINVAL;
		if (!var)
			break;
		const char *end = strchr(var, '}');
		struct rmq_bridge_tpart part = {0};
		if (!end || parse_var(&part, var + 2, (size_t)(end - var - 2)))
			return rmq_bridge_fail(err, errlen, "template '%s': unknown variable at '%s' (use ${topic[N]}, "
				    "${topic}, ${client_id} or ${username})", t->src, var);
		if (add_part(t, part, err, errlen))
			return -EINVAL;
		s = end + 1;
	}
	return 0;
}

int rmq_bridge_tmpl_parse(struct rmq_bridge_tmpl *t, const char *src, bool for_topic, char *err, size_t errlen)
{
	memset(t, 0, sizeof(*t));
	if (strlen(src) > 1024)
		return rmq_bridge_fail(err, errlen, "template too long");
	t->src = strdup(src);
	if (!t->src)
		return -ENOMEM;
	int rc = parse_parts(t, for_topic, err, errlen);
	if (rc == 0 && t->nparts == 0)
		rc = rmq_bridge_fail(err, errlen, "empty template");
	if (rc)
		rmq_bridge_tmpl_free(t);
	return rc;
}

void rmq_bridge_tmpl_free(struct rmq_bridge_tmpl *t)
{
	free(t->src);
	memset(t, 0, sizeof(*t));
}

/* Filter check as in [MQTT-4.7.1]: '#' last and alone in its level, '+' alone in its level. */
static bool filter_valid(const char *f)
{
	size_t n = strlen(f);
	if (n == 0 || n > 65535)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool starts = i == 0 || f[i - 1] == '/';
		bool ends = i + 1 == n || f[i + 1] == '/';
		if (f[i] == '+' && !(starts && ends))
			return false;
		if (f[i] == '#' && !(starts && i + 1 == n))
			return false;
	}
	return true;
}

static int route_option(struct rmq_bridge_route *r, const char *opt, char *err, size_t errlen)
{
	if (strncmp(opt, "key=", 4) == 0) {
		rmq_bridge_tmpl_free(&r->key);
		r->key_none = strcmp(opt + 4, "none") == 0;
		return r->key_none ? 0 : rmq_bridge_tmpl_parse(&r->key, opt + 4, false, err, errlen);
	}
	if (strcmp(opt, "value=raw") == 0 || strcmp(opt, "value=json") == 0) {
		r->json = opt[6] == 'j';
		return 0;
	}
	if (strcmp(opt, "headers=on") == 0 || strcmp(opt, "headers=off") == 0) {
		r->headers = opt[9] == 'n';
		return 0;
	}
	return rmq_bridge_fail(err, errlen, "route: unknown option '%s' (key=TEMPLATE|none, value=raw|json, headers=on|off)",
		    opt);
}

/* Splits value into whitespace-separated words in buf (modified in place). */
static int split_words(char *buf, char **w, int max)
{
	int n = 0;
	for (char *save = NULL, *tok = strtok_r(buf, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
		if (n == max)
			return -1;
		w[n++] = tok;
	}
	return n;
}

int rmq_bridge_route_parse(struct rmq_bridge_route *r, const char *value, char *err, size_t errlen)
{
	enum { MAX_WORDS = 8 };
	memset(r, 0, sizeof(*r));
	r->headers = true;
	char *buf = strdup(value);
	if (!buf)
		return -ENOMEM;
	char *w[MAX_WORDS];
	int n = split_words(buf, w, MAX_WORDS), rc = 0;
	if (n < 3 || strcmp(w[1], "->") != 0) {
		rc = rmq_bridge_fail(err, errlen, "route '%s': expected 'FILTER -> TOPIC [key=..] [value=..] [headers=..]'",
			  value);
		goto out;
	}
	if (!filter_valid(w[0])) {
		rc = rmq_bridge_fail(err, errlen, "route '%s': invalid MQTT topic filter '%s'", value, w[0]);
		goto out;
	}
	if (!(r->filter = strdup(w[0])) || !(r->spec = strdup(value))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = rmq_bridge_tmpl_parse(&r->topic, w[2], true, err, errlen)))
		goto out;
	r->topic_fixed = r->topic.nparts == 1 && r->topic.parts[0].kind == TP_LIT;
	if (r->topic_fixed && !rmq_bridge_kafka_topic_valid(r->topic.src, strlen(r->topic.src))) {
		rc = rmq_bridge_fail(err, errlen, "route '%s': '%s' is not a valid Kafka topic name", value, r->topic.src);
		goto out;
	}
	for (int i = 3; i < n && rc == 0; i++)
		rc = route_option(r, w[i], err, errlen);
	if (rc == 0 && !r->key_none && !r->key.src)
		rc = rmq_bridge_tmpl_parse(&r->key, "${client_id}", false, err, errlen);
out:
	if (n < 0)
		rc = rmq_bridge_fail(err, errlen, "route '%s': too many words", value);
	free(buf);
	if (rc)
		rmq_bridge_route_free(r);
	return rc;
}

void rmq_bridge_route_free(struct rmq_bridge_route *r)
{
	free(r->filter);
	free(r->spec);
	rmq_bridge_tmpl_free(&r->topic);
	rmq_bridge_tmpl_free(&r->key);
	memset(r, 0, sizeof(*r));
}

bool rmq_bridge_filter_match(const char *f, const uint8_t *t, size_t len)
{
	size_t i = 0;
	if (len && t[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return false; /* [MQTT-4.7.2-1] wildcards at the first level never match $-topics */
	for (;;) {
		if (f[0] == '#')
			return true; /* also matches the parent level: 'a/#' matches 'a' */
		if (f[0] == '+') {
			while (i < len && t[i] != '/')
				i++;
			f++;
		} else {
			while (*f && *f != '/' && i < len && t[i] != '/') {
				if ((uint8_t)*f != t[i])
					return false;
				f++, i++;
			}
			if (*f && *f != '/')
				return false;
			if (i < len && t[i] != '/')
				return false;
		}
		/* both at a level end */
		if (!*f)
			return i == len;
		if (i == len)
			return f[1] == '#' && f[2] == 0; /* 'a/#' matches 'a' */
		f++, i++;
	}
}
