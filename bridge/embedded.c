/* The embedded Kafka: librdkafka's in-process mock cluster, for a ringmq without --kafka-brokers and for
 * tools/ringmq-kafka-mock. Called from main (start/stop) only; the cluster runs on its own librdkafka thread. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "bridge_internal.h"

int rmq_bridge_mock_start(struct rmq_bridge_mock *m, int brokers, char *err, size_t errlen)
{
	char why[256];
	memset(m, 0, sizeof(*m));
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	/* The host handle never connects anywhere: it only owns the cluster's thread. Its log level keeps
	 * the "no bootstrap.servers" notice out of the operator's terminal. */
	if (rd_kafka_conf_set(conf, "log_level", "3", why, sizeof(why)) != RD_KAFKA_CONF_OK ||
	    rd_kafka_conf_set(conf, "client.id", "ringmq-embedded-kafka", why, sizeof(why)) != RD_KAFKA_CONF_OK) {
		rd_kafka_conf_destroy(conf);
		snprintf(err, errlen, "embedded kafka: %s", why);
		return -EINVAL;
	}
	m->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
	if (!m->host) {
		rd_kafka_conf_destroy(conf); /* rd_kafka_new takes conf only on success */
		snprintf(err, errlen, "embedded kafka: %s", why);
		return -ENOMEM;
	}
	m->mc = rd_kafka_mock_cluster_new(m->host, brokers);
	if (!m->mc) {
		snprintf(err, errlen, "embedded kafka: cannot start a mock cluster of %d brokers", brokers);
		rd_kafka_destroy(m->host);
		m->host = NULL;
		return -EIO;
	}
	m->bootstraps = rd_kafka_mock_cluster_bootstraps(m->mc);
	m->brokers = brokers;
	return 0;
}

int rmq_bridge_mock_topic(struct rmq_bridge_mock *m, const char *topic, int partitions)
{
	/* Replication factor = broker count (max 3), as a production cluster would have. */
	int rf = m->brokers < 3 ? m->brokers : 3;
	rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(m->mc, topic, partitions, rf);
	return e == RD_KAFKA_RESP_ERR_NO_ERROR || e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS ? 0 : -EINVAL;
}

void rmq_bridge_mock_stop(struct rmq_bridge_mock *m)
{
	if (m->mc)
		rd_kafka_mock_cluster_destroy(m->mc);
	if (m->host)
		rd_kafka_destroy(m->host);
	memset(m, 0, sizeof(*m));
}
