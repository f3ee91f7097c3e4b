#!/usr/bin/python3
"""Kafka -> MQTT benchmark (ringmq --consume): a librdkafka producer (confluent-kafka) writes stamped command
records keyed by car to ringmq-kafka-mock at a fixed rate; ringmq consumes them and publishes each on
cars/{key}/cmd; `ringmq-bench sub` holds one connection per car (cars/%i/cmd) and measures what arrives: messages/s,
produce-to-delivery latency (the stamp is taken just before rd_kafka_produce, CLOCK_MONOTONIC), gaps, duplicates.

    bench/kafka_consume_bench.py --build build --cars 1000 --rate 20000 --duration 5 [--cores 2] [--qos 1]

Every process it starts is stopped by pid. Same host only (monotonic stamps)."""
import argparse
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Producer

MAGIC = 0x424D5152  # ringmq-bench stamp: magic, run id, send ns, publisher id, sequence (little-endian)


class Proc:
    def __init__(self, argv):
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines, self.err = queue.Queue(), []
        threading.Thread(target=lambda: [self.lines.put(ln) for ln in self.p.stdout], daemon=True).start()
        threading.Thread(target=lambda: [self.err.append(ln) for ln in self.p.stderr], daemon=True).start()

    def wait_line(self, needle, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            try:
                ln = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.p.poll() is not None:
                    break
                continue
            if needle in ln:
                return ln.strip()
        sys.exit(f"no line with {needle!r}: {''.join(self.err)[-1500:]}")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_assigned(r, consumers, timeout=40):
    end = time.time() + timeout
    while time.time() < end:
        last = {}
        for ln in list(r.err):
            if "kafka: consumer" in ln and ("assigned" in ln or "revoked" in ln):
                last[int(ln.split("consumer ", 1)[1].split(":", 1)[0])] = "assigned" in ln
        if len(last) == consumers and all(last.values()):
            return
        time.sleep(0.2)
    sys.exit("consumers not assigned: " + "".join(r.err)[-1500:])


def produce(boot, cars, rate, seconds, size):
    p = Producer({"bootstrap.servers": boot, "linger.ms": 1, "queue.buffering.max.messages": 1000000})
    seq = [0] * cars
    pad = b"x" * max(0, size - 24)
    sent, start = 0, time.monotonic()
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        due = int((now - start) * rate)
        while sent < due:
            car = sent % cars
            stamp = struct.pack("<IIQII", MAGIC, 0, time.monotonic_ns(), car, seq[car])
            seq[car] += 1
            p.produce("commands", key=str(car), value=stamp + pad)
            sent += 1
        p.poll(0)
        time.sleep(0.0005)
    p.flush(30)
    return sent, time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--cars", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=10000, help="records/s produced in all")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--qos", type=int, default=1, choices=(0, 1, 2))
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    started = []
    try:
        k = Proc([f"{b}/ringmq-kafka-mock", "--topic", f"commands:{a.partitions}"])
        started.append(k)
        boot = k.wait_line("mock cluster at").split(" at ", 1)[1]
        port = free_port()
        r = Proc([f"{b}/ringmq", "--listen", f"127.0.0.1:{port}", "--cores", str(a.cores), "--kafka-brokers", boot,
                  "--route", "nothing/# -> unused", "--consume", f"commands -> cars/${{key}}/cmd qos={a.qos}",
                  "--consume-delay-ms", "0", "--max-connections", str(a.cars + 100)])
        started.append(r)
        r.wait_line("listening on")
        wait_assigned(r, a.cores)
        report = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
        s = Proc([f"{b}/ringmq-bench", "sub", "--port", str(port), "--clients", str(a.cars), "--filter",
                  "cars/%i/cmd", "--qos", str(a.qos), "--warmup", "1", "--duration", str(a.duration + 2),
                  "--json", report])
        started.append(s)
        time.sleep(2 + a.cars / 2000)  # connect + subscribe every car, then the warm-up
        sent, secs = produce(boot, a.cars, a.rate, a.duration + 2, a.size)
        s.p.wait(a.duration + 60)
        rep = json.load(open(report))
        os.unlink(report)
        print(f"produced {sent} records in {secs:.2f} s ({sent / secs:.0f}/s) to {a.cars} cars, "
              f"{a.cores} cores, QoS {a.qos}, {a.partitions} partitions")
        keys = ("received", "rate", "msgs_per_s", "latency_us", "latency", "sequence_gaps", "duplicates",
                "out_of_order")
        print(json.dumps({k: v for k, v in rep.items() if any(x in k for x in keys)}, indent=1))
    finally:
        for p in reversed(started):
            p.stop()


if __name__ == "__main__":
    main()
