#!/usr/bin/env bash
# bench/kafka_spool.sh: the Kafka spool (--spool, issue 9) in three short runs against one ringmq-kafka-mock:
# QoS 1 into Kafka with the spool idle, QoS 1 with Kafka down (PUBACKs from the spool), and the replay rate.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/kafka_spool.sh [--clients N] [--size B] [--duration S] [--cores N] [--fsync batch|always|never]
                            [--build DIR] [--dir DIR]

 (0) ringmq without --spool, Kafka up: QoS 1 publishes/s (PUBACK after Kafka): the reference.
 (a) ringmq --spool, Kafka up: the same load; the spool stays idle (only the first messages after start, before
     Kafka is proven reachable, go through it).
 (b) ringmq --spool, every mock broker down: PUBACKs come from the spool once it has the messages on disk
     (--fsync, default batch), so this is the disk-bound rate a fleet keeps during an outage.
 (c) brokers up again: replayed records/s until the backlog of (b) is empty (read from /metrics).
Load: ringmq-bench pub --clients N (default 20) --qos 1 --rate 0 --size B (default 256) on cars/%i/telemetry,
route 'cars/+/telemetry -> telemetry' (8 partitions), --duration S (default 5) after a 1 s warm-up.
The spool lives in DIR (default a fresh mktemp -d under /var/tmp: a real disk, not tmpfs). Every process is
started here and stopped by its pid.
EOF
}

clients=20 size=256 duration=5 cores=2 fsync=batch build=./build dir=""
while [ $# -gt 0 ]; do
	case "$1" in
	--clients) clients=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--cores) cores=$2; shift 2 ;;
	--fsync) fsync=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "kafka_spool.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
	esac
done
BENCH=$build/ringmq-bench RINGMQ=$build/ringmq MOCK=$build/ringmq-kafka-mock
for x in "$BENCH" "$RINGMQ" "$MOCK"; do
	[ -x "$x" ] || { echo "kafka_spool.sh: $x missing (build it)" >&2; exit 2; }
done
dir=${dir:-$(mktemp -d /var/tmp/ringmq-spool-bench.XXXXXX)}
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	exec 3>&- 2>/dev/null || true
	rm -rf "$work" "$dir"
}
trap cleanup EXIT

mkfifo "$work/mock.in"
"$MOCK" --topic telemetry:8 <"$work/mock.in" >"$work/mock.out" 2>&1 &
pids+=($!)
exec 3>"$work/mock.in"
for _ in $(seq 50); do grep -q "mock cluster at" "$work/mock.out" && break; sleep 0.1; done
boot=$(sed -n 's/.*mock cluster at //p' "$work/mock.out")
mock() { echo "$1" >&3; sleep 0.1; }

# start_ringmq NAME ARGS...: sets port, metrics, rpid
start_ringmq() {
	local name=$1; shift
	"$RINGMQ" --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --cores "$cores" --kafka-brokers "$boot" \
		--route 'cars/+/telemetry -> telemetry' "$@" >"$work/$name.out" 2>"$work/$name.err" &
	rpid=$!
	pids+=($rpid)
	for _ in $(seq 100); do grep -q "metrics on" "$work/$name.out" && break; sleep 0.1; done
	port=$(sed -n 's/.*listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$work/$name.out")
	metrics=$(sed -n 's/.*metrics on \(http[^ ]*\).*/\1/p' "$work/$name.out")
}
metric() { curl -s "$metrics" | awk -v n="$1{" 'index($0, n) == 1 { s += $NF } END { printf "%d", s }'; }
metric_max() { curl -s "$metrics" | awk -v n="$1{" -v l="$2" 'index($0, n) == 1 && index($0, l) { if ($NF > m) m = $NF } END { printf "%d", m }'; }
load() {
	"$BENCH" pub --port "$port" --clients "$clients" --qos 1 --rate 0 --size "$size" --topic 'cars/%i/telemetry' \
		--duration "$duration" --warmup 1 --quiet --json "$work/$1.json" >"$work/$1.txt" 2>&1 || true
	jq -r 'if .measured_s > 0 then (.acked / .measured_s | floor) else 0 end' "$work/$1.json" 2>/dev/null || echo 0
}
stop_ringmq() { kill -TERM "$rpid"; wait "$rpid" || true; }

echo "clients $clients, QoS 1, $size B, $cores cores, --fsync $fsync, ${duration} s per run, spool in $dir"
start_ringmq ref
n=$(load ref)
echo "(0) no spool, Kafka up:                 $n msg/s acknowledged ($(metric ringmq_kafka_delivered_total) in Kafka)"
stop_ringmq

start_ringmq idle --data-dir "$dir" --spool --fsync "$fsync"
n=$(load idle)
echo "(a) --spool, Kafka up (spool idle):     $n msg/s acknowledged ($(metric ringmq_kafka_spool_spooled_total) spooled)"
stop_ringmq
rm -rf "${dir:?}"/*

start_ringmq down --data-dir "$dir" --spool --fsync "$fsync"
for b in 1 2 3; do mock "down $b"; done
n=$(load down)
sleep 0.3
backlog=$(metric ringmq_kafka_spool_backlog_records)
echo "(b) --spool, Kafka down (spool engaged): $n msg/s acknowledged, backlog $backlog records," \
	"$(metric ringmq_kafka_spool_backlog_bytes) B; write+fdatasync p99 <= $(metric_max ringmq_kafka_spool_commit_microseconds 0.99) us," \
	"max $(metric_max ringmq_kafka_spool_commit_microseconds '"1"') us"
t0=$(date +%s.%N)
for b in 1 2 3; do mock "up $b"; done
while [ "$(metric ringmq_kafka_spool_backlog_records)" != 0 ]; do sleep 0.1; done
t1=$(date +%s.%N)
echo "(c) replay after Kafka returns:          $backlog records in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s" \
	"= $(awk -v a="$t0" -v b="$t1" -v n="$backlog" 'BEGIN { printf "%.0f", n / (b - a) }') records/s" \
	"($(metric ringmq_kafka_spool_replayed_total) replayed, $(metric ringmq_kafka_delivered_total) in Kafka)"
stop_ringmq
