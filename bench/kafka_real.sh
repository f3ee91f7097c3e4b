#!/usr/bin/env bash
# bench/kafka_real.sh: issue 14's figures: into real Apache Kafka (tools/kafka-local.sh, 1 broker then 3), the same
# car stream (a) by a bare librdkafka producer (kcat -P) and (b) through ringmq; msg/s and CPU-seconds per million.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/kafka_real.sh [--brokers "1 3"] [--cars N] [--size B] [--partitions P] [--messages-a N]
                           [--duration S] [--warmup S] [--inflight N] [--build DIR]

For each broker count: a fresh local Apache Kafka (tools/kafka-local.sh start --brokers K, topic 'telemetry' with
P partitions (default 8), replication factor min(3, K), min.insync.replicas 2 with 3 brokers), then
 (a) kcat -P: --messages-a records (default 300000) of B bytes (default 256), keys car0..car(N-1), idempotent,
     murmur2_random, acks=all; msg/s = N / wall time (start-up included: ~0.1 s), CPU = kcat's user+sys;
 (b) ringmq (--kafka-brokers, PUBACK after Kafka) fed by ringmq-bench pub --rate 0 --qos 1 from N cars (default
     100), --duration S (default 5) after --warmup S (default 1); msg/s = PUBACKed/s; CPU = ringmq's utime+stime
     over the run.
Also printed: the Kafka JVMs' CPU over each run, and the machine's load. CPU-seconds per million messages is the
honest figure on a small machine, where the JVMs take much of the CPU both producers compete for.
EOF
}

brokers_list="1 3" cars=100 size=256 parts=8 msgs_a=300000 duration=5 warmup=1 inflight=64 build=./build
while [ $# -gt 0 ]; do
	case "$1" in
	--brokers) brokers_list=$2; shift 2 ;;
	--cars) cars=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--partitions) parts=$2; shift 2 ;;
	--messages-a) msgs_a=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--warmup) warmup=$2; shift 2 ;;
	--inflight) inflight=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "kafka_real.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
	esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$build/ringmq-bench RINGMQ=$build/ringmq KLOCAL=$ROOT/tools/kafka-local.sh PY=/usr/bin/python3
for x in "$BENCH" "$RINGMQ" /usr/bin/kcat /usr/bin/jq /usr/bin/time; do
	[ -x "$x" ] || { echo "kafka_real.sh: $x missing (build, or Debian package)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/rmq-kreal.XXXXXX)
HZ=$(getconf CLK_TCK)
rpid=""
cleanup() {
	[ -n "$rpid" ] && kill "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null || true
	"$KLOCAL" stop --kill --dir "$work/kafka" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ticks() { [ -r "/proc/$1/stat" ] && sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}' || echo 0; }
jvm_ticks() { local n s=0; for n in $(cat "$work/kafka/nodes"); do s=$((s + $(ticks "$(cat "$work/kafka/node$n/pid")"))); done; echo "$s"; }
now() { date +%s.%N; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

awk -v n="$msgs_a" -v c="$cars" -v s="$size" 'BEGIN{p=""; while (length(p) < s) p = p "x"; p = substr(p, 1, s);
	for (i = 0; i < n; i++) printf "car%d\t%s\n", i % c, p}' >"$work/a.txt"

printf '%-8s %-34s %10s %16s %14s\n' brokers producer "msg/s" "CPU-s/M msgs" "JVMs CPU %"
for k in $brokers_list; do
	boot=$("$KLOCAL" start --dir "$work/kafka" --brokers "$k" --topic "telemetry:$parts" | sed -n 's/^BOOTSTRAP=//p')
	# (a) bare librdkafka
	j0=$(jvm_ticks); t0=$(now)
	/usr/bin/time -f '%U %S' -o "$work/a.time" /usr/bin/kcat -P -b "$boot" -t telemetry -K $'\t' \
		-X enable.idempotence=true -X partitioner=murmur2_random -X acks=all <"$work/a.txt" 2>>"$work/kcat.log"
	t1=$(now); j1=$(jvm_ticks)
	read -r u s <"$work/a.time"
	awk -v k="$k" -v n="$msgs_a" -v t0="$t0" -v t1="$t1" -v u="$u" -v s="$s" -v j0="$j0" -v j1="$j1" -v hz="$HZ" \
		'BEGIN{printf "%-8s %-34s %10.0f %16.2f %14.0f\n", k, "(a) kcat -P (bare librdkafka)", n/(t1-t0),
		(u+s)/n*1e6, 100*(j1-j0)/hz/(t1-t0)}'
	# (b) ringmq
	port=$(free_port)
	"$RINGMQ" --listen "127.0.0.1:$port" --kafka-brokers "$boot" \
		--route 'cars/+/telemetry -> telemetry key=${topic[1]}' >"$work/ringmq.log" 2>&1 &
	rpid=$!
	for _ in $(seq 300); do grep -q "listening on" "$work/ringmq.log" && break; sleep 0.1; done
	grep -q "listening on" "$work/ringmq.log" || { echo "kafka_real.sh: ringmq: $(tail -3 "$work/ringmq.log")" >&2; exit 1; }
	r0=$(ticks "$rpid"); j0=$(jvm_ticks); t0=$(now)
	"$BENCH" pub --port "$port" --clients "$cars" --topic 'cars/car%i/telemetry' --qos 1 --size "$size" \
		--rate 0 --inflight "$inflight" --duration "$duration" --warmup "$warmup" --broker-pid "$rpid" \
		--quiet --json "$work/pub.json" >"$work/pub.log" 2>&1 || true
	r1=$(ticks "$rpid"); j1=$(jvm_ticks); t1=$(now)
	kill "$rpid"; wait "$rpid" || true; rpid=""
	acked=$(jq .acked "$work/pub.json"); sent=$(jq .sent "$work/pub.json")
	awk -v k="$k" -v a="$acked" -v t0="$t0" -v t1="$t1" -v r0="$r0" -v r1="$r1" -v j0="$j0" -v j1="$j1" -v hz="$HZ" \
		'BEGIN{printf "%-8s %-34s %10.0f %16.2f %14.0f\n", k, "(b) ringmq, QoS 1, PUBACK after Kafka", a/(t1-t0),
		(r1-r0)/hz/a*1e6, 100*(j1-j0)/hz/(t1-t0)}'
	[ "$acked" = "$sent" ] || echo "  (b): sent $sent, PUBACKed $acked" >&2
	"$KLOCAL" stop --kill --dir "$work/kafka" >/dev/null
done
echo "load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs"
