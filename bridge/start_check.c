/* The start-up check of an external Kafka (kafka-brokers): the client can log in, and every fixed route topic
 * exists, before ringmq serves a car; a short-lived producer handle of its own, silent. Main thread only. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "ringmq/clock.h"
#include "bridge_internal.h"

#define CHECK_BROKER_MS 10000   /* the first broker answer: past this, start unchecked (Kafka may come later) */
#define CHECK_STEP_MS 250       /* one metadata request's bound, and the error-event poll between two */
#define CHECK_TOPIC_MS 10000    /* one topic's metadata answer */
#define WAIT_TOPIC_MS 1000      /* kafka-wait-topics: a missing topic is asked for again every second */
#define SCRAM_FIXED_VERSION 0x020601ff  /* librdkafka 2.6.1: SCRAM's client-final nonce accepted by Kafka 4.x */

struct check {
	int err;                 /* the first login or TLS error event: not a transient outage */
	char reason[400];
	char mechanism[32];
};

static void on_check_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	(void)rk;
	struct check *c = opaque;
	if (c->err || (err != RD_KAFKA_RESP_ERR__AUTHENTICATION && err != RD_KAFKA_RESP_ERR__SSL &&
		       err != RD_KAFKA_RESP_ERR__FATAL))
		return;
	c->err = err;
	snprintf(c->reason, sizeof(c->reason), "%s", reason);
}

static rd_kafka_t *check_handle(const struct rmq_bridge_cfg *cfg, const char *bootstraps, struct check *c,
				char *why, size_t len)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	int rc = rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, why, len) != RD_KAFKA_CONF_OK ||
		 rd_kafka_conf_set(conf, "client.id", "ringmq-start-check", why, len) != RD_KAFKA_CONF_OK;
	for (int k = 0; rc == 0 && k < cfg->nkv; k++)
		if (!rmq_bridge_consumer_only(cfg->kv[k].key))
			rc = rd_kafka_conf_set(conf, cfg->kv[k].key, cfg->kv[k].value, why, len) != RD_KAFKA_CONF_OK;
	char mech[sizeof(c->mechanism)] = "";
	size_t mlen = sizeof(mech);
	if (rc == 0 && rd_kafka_conf_get(conf, "sasl.mechanisms", mech, &mlen) == RD_KAFKA_CONF_OK)
		snprintf(c->mechanism, sizeof(c->mechanism), "%s", mech);
	if (rc) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, NULL); /* our one line says it; librdkafka's own would repeat it */
	rd_kafka_conf_set_error_cb(conf, on_check_error);
	rd_kafka_conf_set_opaque(conf, c);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, len);
	if (!rk)
		rd_kafka_conf_destroy(conf);
	return rk;
}

/* SIGINT or SIGTERM waiting (main blocks them for sigwait): stop waiting. */
static bool stop_asked(void)
{
	sigset_t p;
	return sigpending(&p) == 0 && (sigismember(&p, SIGINT) == 1 || sigismember(&p, SIGTERM) == 1);
}

/* 1: a broker answered; 0: none within CHECK_BROKER_MS; -EACCES: login or TLS refused (why filled). */
static int wait_broker(rd_kafka_t *rk, struct check *c, const char *bootstraps, char *why, size_t len)
{
	uint64_t deadline = rmq_clock_mono_ms() + CHECK_BROKER_MS;
	while (rmq_clock_mono_ms() < deadline && !stop_asked()) {
		const struct rd_kafka_metadata *md = NULL;
		rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, NULL, &md, CHECK_STEP_MS);
		if (md)
			rd_kafka_metadata_destroy(md);
		rd_kafka_poll(rk, e ? CHECK_STEP_MS : 0); /* serves on_check_error */
		if (c->err) {
			bool scram_bug = c->err == RD_KAFKA_RESP_ERR__AUTHENTICATION && !strncmp(c->mechanism, "SCRAM", 5) &&
					 rd_kafka_version() < SCRAM_FIXED_VERSION;
			snprintf(why, len, "cannot connect to Kafka at %s: %s%s%s", bootstraps, c->reason,
				 scram_bug ? "; librdkafka before 2.6.1 (this is " : "",
				 scram_bug ? rd_kafka_version_str() : "");
			if (scram_bug) {
				size_t n = strlen(why);
				snprintf(why + n, len - n, ") sends a SCRAM proof Kafka 4.x rejects: use PLAIN over SASL_SSL "
					 "or a newer librdkafka");
			}
			return -EACCES;
		}
		if (!e)
			return 1;
	}
	return 0;
}

/* The topic's metadata error: NO_ERROR when it exists (leaderless right after creation counts as existing). */
static rd_kafka_resp_err_t topic_state(rd_kafka_t *rk, const char *name)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, name, NULL);
	if (!rkt)
		return rd_kafka_last_error();
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, CHECK_TOPIC_MS);
	if (!e && md && md->topic_cnt > 0)
		e = md->topics[0].err;
	if (e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE)
		e = RD_KAFKA_RESP_ERR_NO_ERROR;
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	return e;
}

static int check_topic(rd_kafka_t *rk, const struct rmq_bridge_cfg *cfg, const char *name, char *why, size_t len)
{
	rd_kafka_resp_err_t e = topic_state(rk, name);
	if (!e)
		return 0;
	if (e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && e != RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
		/* A timeout or transport error says nothing about the topic: start, as with Kafka unreachable. */
		fprintf(stderr, "kafka: route topic %s not checked: %s\n", name, rd_kafka_err2str(e));
		return 0;
	}
	const char *what = e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
				   ? "does not exist and Kafka does not create it (auto.create.topics.enable=false)"
				   : "is not visible to this Kafka user (TOPIC_AUTHORIZATION_FAILED: no Describe ACL)";
	if (!cfg->wait_topics) {
		snprintf(why, len, "route topic %s %s: create it, grant access, or start with --kafka-wait-topics on",
			 name, what);
		return e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? -ENOENT : -EACCES;
	}
	fprintf(stderr, "kafka: route topic %s %s: waiting for it (--kafka-wait-topics on)\n", name, what);
	while ((e = topic_state(rk, name)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (stop_asked()) {
			snprintf(why, len, "stopped while waiting for route topic %s", name);
			return -EINTR;
		}
		rd_kafka_poll(rk, WAIT_TOPIC_MS);
	}
	fprintf(stderr, "kafka: route topic %s is there\n", name);
	return 0;
}

int rmq_bridge_start_check(const struct rmq_bridge_cfg *cfg, const char *bootstraps, const char *const *topics,
			   int ntopics, char *why, size_t len)
{
	struct check c = {0};
	rd_kafka_t *rk = check_handle(cfg, bootstraps, &c, why, len);
	if (!rk)
		return -EINVAL;
	int rc = wait_broker(rk, &c, bootstraps, why, len);
	if (rc == 0)
		fprintf(stderr, "kafka: no broker of %s answered within %d s: route topics not checked; messages wait "
			"for Kafka\n", bootstraps, CHECK_BROKER_MS / 1000);
	for (int i = 0; rc > 0 && i < ntopics; i++)
		if ((rc = check_topic(rk, cfg, topics[i], why, len)) == 0)
			rc = 1;
	rd_kafka_destroy(rk);
	return rc < 0 ? rc : 0;
}
