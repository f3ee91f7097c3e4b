/* Kafka's definitive refusals (topic missing, not authorized, message too large): their class, MQTT 5 reason code,
 * and a log line printed once per (cause, topic) for the whole process. Any thread (the set is lock-free). */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <xxhash.h>

#include "bridge_internal.h"

enum rmq_kfault rmq_bridge_kfault_of(rd_kafka_resp_err_t e)
{
	switch (e) {
	case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
	case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
		return RMQ_KFAULT_UNKNOWN_TOPIC;
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
		return RMQ_KFAULT_DENIED;
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
		return RMQ_KFAULT_TOO_LARGE;
	default:
		return RMQ_KFAULT_NONE;
	}
}

/* A nonzero key per (cause, topic): 0 marks a free slot. */
static uint64_t fault_key(enum rmq_kfault f, const char *topic)
{
	uint64_t h = XXH3_64bits_withSeed(topic, strlen(topic), (uint64_t)f);
	return h ? h : 1;
}

bool rmq_bridge_kfault_first(struct rmq_kfault_log *l, enum rmq_kfault f, const char *topic)
{
	uint64_t k = fault_key(f, topic);
	for (unsigned i = 0; i < RMQ_KFAULT_LOG_SLOTS; i++) {
		_Atomic uint64_t *slot = &l->seen[(k + i) % RMQ_KFAULT_LOG_SLOTS];
		uint64_t cur = atomic_load_explicit(slot, memory_order_relaxed);
		if (cur == k)
			return false;
		if (cur == 0) {
			uint64_t zero = 0;
			if (atomic_compare_exchange_strong(slot, &zero, k))
				return true;
			if (zero == k)
				return false; /* another thread logged this very one meanwhile */
		}
	}
	/* Full (RMQ_KFAULT_LOG_SLOTS causes seen): one more line, then silence; the counters still count. */
	return !atomic_exchange(&l->full, true);
}

const char *rmq_bridge_kfault_name(enum rmq_kfault f)
{
	switch (f) {
	case RMQ_KFAULT_UNKNOWN_TOPIC: return "unknown_topic";
	case RMQ_KFAULT_DENIED: return "not_authorized";
	case RMQ_KFAULT_TOO_LARGE: return "too_large";
	default: return "other";
	}
}
