#!/usr/bin/python3
# bench/mqtt_kafka_bridge.py: the "custom development" MQTT->Kafka bridge of issue 5's option (c), glued the way
# people do it today: a paho-mqtt subscriber whose on_message produces to Kafka with confluent_kafka. Run by
# bench/kafka_compare.sh (one process, paho's network loop thread calls on_message; nothing else calls in).
#
#   mqtt_kafka_bridge.py --port 1883 --filter 'cars/+/telemetry' --kafka-brokers H:P,.. --kafka-topic telemetry
#
# Key = topic level --key-level (the car), value = the raw payload, headers as ringmq sets them, and the same
# producer settings as ringmq (idempotent, murmur2_random, librdkafka's default linger). The MQTT side is QoS 1
# with a clean session: paho acknowledges a PUBLISH as soon as on_message returns, i.e. before Kafka has it --
# which is the point of the comparison. SIGTERM/SIGINT: disconnect, flush Kafka (bounded), print counts, exit.
import argparse
import signal
import sys
import time

import paho.mqtt.client as mqtt
from confluent_kafka import Producer


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--filter", default="cars/+/telemetry")
    ap.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    ap.add_argument("--key-level", type=int, default=1, help="topic level used as the Kafka key (0-based)")
    ap.add_argument("--kafka-brokers", required=True)
    ap.add_argument("--kafka-topic", default="telemetry")
    ap.add_argument("--flush-timeout", type=float, default=10.0)
    ap.add_argument("-X", action="append", default=[], metavar="KEY=VALUE", help="librdkafka property")
    a = ap.parse_args()

    conf = {"bootstrap.servers": a.kafka_brokers, "enable.idempotence": True,
            "partitioner": "murmur2_random", "client.id": "mqtt-kafka-bridge"}
    for kv in a.X:
        k, _, v = kv.partition("=")
        conf[k] = v
    stats = {"in": 0, "produced": 0, "delivered": 0, "failed": 0, "queue_full": 0}

    def on_delivery(err, _msg):
        if err is None:
            stats["delivered"] += 1
        else:
            stats["failed"] += 1

    producer = Producer(conf, on_delivery=on_delivery)
    # Metadata before the first message (ringmq's producer is up before it listens, too), so that start-up is
    # not measured as latency.
    producer.list_topics(a.kafka_topic, timeout=10)
    qos_hdr = str(a.qos).encode()

    def on_message(_client, _ud, msg):
        stats["in"] += 1
        levels = msg.topic.split("/")
        key = levels[a.key_level] if a.key_level < len(levels) else msg.topic
        headers = [("mqtt.topic", msg.topic.encode()), ("mqtt.qos", qos_hdr)]
        while True:
            try:
                producer.produce(a.kafka_topic, value=msg.payload, key=key, headers=headers)
                break
            except BufferError:
                # librdkafka's queue is full: serve delivery reports and retry (blocks the MQTT loop)
                stats["queue_full"] += 1
                producer.poll(0.005)
        stats["produced"] += 1
        producer.poll(0)

    connected = {"rc": None}

    def on_connect(client, _ud, _flags, rc):
        connected["rc"] = rc
        if rc == 0:
            client.subscribe(a.filter, qos=a.qos)

    def on_subscribe(_client, _ud, _mid, granted):
        print(f"bridge: subscribed to {a.filter} (granted {list(granted)}), producing to {a.kafka_topic}",
              flush=True)

    client = mqtt.Client(client_id="mqtt-kafka-bridge", clean_session=True)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.max_inflight_messages_set(1000)
    client.connect(a.host, a.port, keepalive=60)

    stop = {"now": False}

    def on_signal(_sig, _frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    client.loop_start()
    while not stop["now"]:
        time.sleep(0.1)
        if connected["rc"] not in (None, 0):
            print(f"bridge: CONNACK refused ({connected['rc']})", file=sys.stderr)
            return 1
    client.disconnect()
    client.loop_stop()
    left = producer.flush(a.flush_timeout)
    print(f"bridge: mqtt in {stats['in']} produced {stats['produced']} delivered {stats['delivered']} "
          f"failed {stats['failed']} queue-full waits {stats['queue_full']} unflushed {left}", flush=True)
    return 0 if left == 0 and stats["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
