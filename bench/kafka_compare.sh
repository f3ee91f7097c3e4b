#!/usr/bin/env bash
# bench/kafka_compare.sh: issue 5's MQTT->Kafka benchmark in one run: the same car stream into a fresh
# ringmq-kafka-mock (a) by a bare librdkafka producer, (b) through ringmq, (c) through mosquitto + a bridge process.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/kafka_compare.sh [--cars N] [--size B] [--partitions P] [--steps-b "R1 R2 .."] [--steps-c "R1 .."]
                              [--duration S] [--warmup S] [--repeat N] [--messages-a N] [--inflight N]
                              [--no-unlimited] [--build DIR] [--keep DIR]

Same stream each way: N cars (default 100) publishing QoS 1, B bytes (default 256), to cars/{car}/telemetry,
Kafka topic 'telemetry' with P partitions (default 8), key = the car, on a fresh ringmq-kafka-mock per run.
 (a) ceiling: kcat -P (a bare librdkafka producer, same producer settings: idempotent, murmur2_random,
     librdkafka's default linger) writing --messages-a records (default 300000) of the same size and keys;
     rate = (N - 1) / (time for N - time for 1 record), so start-up and metadata are not counted.
     Also ringmq-bridge-bench (bare vs rmq_bridge_publish, its own in-process mock) as a cross-check.
 (b) ringmq --kafka-brokers MOCK --route 'cars/+/telemetry -> telemetry key=${topic[1]}' (PUBACK after Kafka)
 (c) mosquitto (Debian, defaults) + bench/mqtt_kafka_bridge.py (paho subscriber -> confluent_kafka producer)
Each (b)/(c) step: ringmq-bench fleet --cars N --hz R/N --qos 1 --backends 0, and ringmq-bench kafka-verify on
the topic. A step passes when every message was acknowledged, >= 95 % of the offered rate was sent and
kafka-verify saw every sent message exactly once in per-car order within 6 s of the end. Steps stop at the
first failure. Then one unlimited run each (ringmq-bench pub --rate 0). --inflight N: QoS 1 window per car
(default 64), steps and unlimited runs alike.
--steps-b default "50000 100000 125000 150000 175000 200000 250000", --steps-c "2000 4000 6000 8000 10000 15000"
--duration 3, --warmup 1 per step; --repeat 1; CPU is utime+stime from /proc over the fleet run, % of one core.
Every process is started here and stopped by its pid.
EOF
}

cars=100 size=256 parts=8 steps_b="50000 100000 125000 150000 175000 200000 250000" steps_c="2000 4000 6000 8000 10000 15000"
duration=3 warmup=1 repeat=1 msgs_a=300000 inflight=64 unlimited=1 build=./build keep=""
while [ $# -gt 0 ]; do
	case "$1" in
	--cars) cars=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--partitions) parts=$2; shift 2 ;;
	--steps-b) steps_b=$2; shift 2 ;;
	--steps-c) steps_c=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--warmup) warmup=$2; shift 2 ;;
	--repeat) repeat=$2; shift 2 ;;
	--messages-a) msgs_a=$2; shift 2 ;;
	--inflight) inflight=$2; shift 2 ;;
	--no-unlimited) unlimited=0; shift ;;
	--build) build=$2; shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "kafka_compare.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
	esac
done

BENCH=$build/ringmq-bench RINGMQ=$build/ringmq MOCK=$build/ringmq-kafka-mock BB=$build/ringmq-bridge-bench
PY=/usr/bin/python3 BRIDGE=$(dirname "$0")/mqtt_kafka_bridge.py
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
for x in "$BENCH" "$RINGMQ" "$MOCK" "$MOSQUITTO" /usr/bin/kcat /usr/bin/jq; do
	[ -x "$x" ] || { echo "kafka_compare.sh: $x missing (build, or Debian package)" >&2; exit 2; }
done
$PY -c 'import paho.mqtt.client, confluent_kafka' || { echo "kafka_compare.sh: needs python3-paho-mqtt and" \
	"python3-confluent-kafka" >&2; exit 2; }

work=$(mktemp -d /tmp/rmq-kcompare.XXXXXX)
pids=()   # everything started here, stopped by pid on exit
HZ=$(getconf CLK_TCK)

stop_pid() { # PID: SIGTERM, up to 5 s, then SIGKILL
	local p=$1 i
	kill -0 "$p" 2>/dev/null || return 0
	kill "$p" 2>/dev/null || true
	for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}
stop_all() { local p; for p in "${pids[@]}"; do stop_pid "$p"; done; }
cleanup() {
	stop_all
	exec 7>&- 2>/dev/null || true
	if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { [ -r "/proc/$1/stat" ] && sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}' || echo 0; }
now() { date +%s.%N; }
cpu_pct() { awk -v a="$1" -v b="$2" -v t0="$3" -v t1="$4" -v hz="$HZ" 'BEGIN{printf "%.0f", 100*(b-a)/hz/(t1-t0)}'; }
wait_port() { # PORT PID: until something listens (5 s)
	local i
	for i in $(seq 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# A fresh mock cluster (3 brokers) with the topic; its stdin is a fifo held open on fd 7 so it keeps running.
mock_pid="" boot=""
start_mock() {
	rm -f "$work/mockin"; mkfifo "$work/mockin"; exec 7<>"$work/mockin"
	"$MOCK" --topic "telemetry:$parts" <&7 >"$work/mock.log" 2>&1 &
	mock_pid=$!; pids+=("$mock_pid")
	local i
	for i in $(seq 50); do
		boot=$(grep -o '127\.0\.0\.1:[0-9]*\(,127\.0\.0\.1:[0-9]*\)*' "$work/mock.log" | head -1 || true)
		[ -n "$boot" ] && return 0
		sleep 0.1
	done
	echo "kafka_compare.sh: mock cluster did not start: $(cat "$work/mock.log")" >&2; exit 1
}
stop_mock() { stop_pid "$mock_pid"; exec 7>&-; }

# ---- (a) bare librdkafka producer: kcat -P, same records ------------------------------------------------------
gen_input() { # N FILE: "car-K<TAB>payload" lines, cars round-robin
	awk -v n="$1" -v c="$cars" -v s="$size" 'BEGIN{p=""; while (length(p) < s) p = p "x"; p = substr(p, 1, s);
		for (i = 0; i < n; i++) printf "car%d\t%s\n", i % c, p}' >"$2"
}
kcat_run() { # FILE -> seconds
	local t0 t1
	t0=$(now)
	/usr/bin/kcat -P -b "$boot" -t telemetry -K $'\t' -X enable.idempotence=true -X partitioner=murmur2_random \
		-H mqtt.qos=1 -H mqtt.topic=cars/car/telemetry <"$1" 2>>"$work/kcat.log"
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}'
}
run_a() { # REP -> "rate mock_cpu t1 tN" (runs in a subshell: stops what it started if interrupted)
	trap stop_all EXIT
	start_mock
	local t1 tn m0 m1 s0 s1 rate
	t1=$(kcat_run "$work/a1.txt")
	m0=$(ticks "$mock_pid"); s0=$(now)
	tn=$(kcat_run "$work/an.txt")
	m1=$(ticks "$mock_pid"); s1=$(now)
	stop_mock
	rate=$(awk -v n="$msgs_a" -v a="$t1" -v b="$tn" 'BEGIN{printf "%.0f", (n-1)/(b-a)}')
	echo "$rate $(cpu_pct "$m0" "$m1" "$s0" "$s1") $t1 $tn"
}

# ---- (b) / (c) one step ------------------------------------------------------------------------------------
# step WHO RATE TAG: fresh mock + broker (+ bridge); fleet at RATE (0: unlimited pub) with kafka-verify.
# Prints: pass sent_rate kafka_p50_ms kafka_p99_ms puback_p99_ms broker_cpu bridge_cpu mock_cpu loader_cpu other
step() {
	local who=$1 rate=$2 port bpid="" brpid="" vpid out=$work/$3
	trap stop_all EXIT # a subshell: stops what it started if interrupted
	start_mock
	port=$(free_port)
	if [ "$who" = b ]; then
		# --cores 1 as the figures were taken (the default, every CPU, would share them with the loader).
		"$RINGMQ" --listen "127.0.0.1:$port" --cores 1 --kafka-brokers "$boot" \
			--route 'cars/+/telemetry -> telemetry key=${topic[1]}' >"$out.broker.log" 2>&1 &
		bpid=$!; pids+=("$bpid")
	else
		printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" >"$out.mosq.conf"
		"$MOSQUITTO" -c "$out.mosq.conf" >"$out.broker.log" 2>&1 &
		bpid=$!; pids+=("$bpid")
	fi
	wait_port "$port" "$bpid" || { echo "kafka_compare.sh: broker did not listen: $(tail -3 "$out.broker.log")" >&2; exit 1; }
	if [ "$who" = c ]; then
		$PY "$BRIDGE" --port "$port" --filter 'cars/+/telemetry' --kafka-brokers "$boot" \
			--kafka-topic telemetry >"$out.bridge.log" 2>&1 &
		brpid=$!; pids+=("$brpid")
		local i
		for i in $(seq 50); do grep -q subscribed "$out.bridge.log" && break; sleep 0.1; done
		grep -q subscribed "$out.bridge.log" || { echo "kafka_compare.sh: bridge: $(cat "$out.bridge.log")" >&2; exit 1; }
	fi
	"$BENCH" kafka-verify --kafka-brokers "$boot" --kafka-topic telemetry \
		--duration "$(awk -v w="$warmup" -v d="$duration" 'BEGIN{print w + d + 7}')" --quiet \
		--json "$out.kv.json" >"$out.kv.log" 2>&1 &
	vpid=$!; pids+=("$vpid")
	sleep 1 # verifier assigned to the partitions' ends before the first publish
	local b0 r0 m0 t0 b1 r1 m1 t1 rc=0
	b0=$(ticks "$bpid"); r0=$( [ -n "$brpid" ] && ticks "$brpid" || echo 0); m0=$(ticks "$mock_pid"); t0=$(now)
	if [ "$rate" = 0 ]; then
		"$BENCH" pub --port "$port" --clients "$cars" --topic 'cars/car%i/telemetry' --qos 1 --size "$size" \
			--rate 0 --inflight "$inflight" --duration "$duration" --warmup "$warmup" --broker-pid "$bpid" \
			--quiet --json "$out.pub.json" >"$out.pub.log" 2>&1 || rc=$?
	else
		"$BENCH" fleet --port "$port" --cars "$cars" --hz "$(awk -v r="$rate" -v c="$cars" 'BEGIN{print r/c}')" \
			--backends 0 --qos 1 --size "$size" --inflight "$inflight" --duration "$duration" --warmup "$warmup" --broker-pid "$bpid" \
			--quiet --json "$out.pub.json" >"$out.pub.log" 2>&1 || rc=$?
	fi
	b1=$(ticks "$bpid"); r1=$( [ -n "$brpid" ] && ticks "$brpid" || echo 0); m1=$(ticks "$mock_pid"); t1=$(now)
	wait "$vpid" || true
	[ -n "$brpid" ] && stop_pid "$brpid"
	stop_pid "$bpid"; stop_mock
	[ -s "$out.pub.json" ] && [ -s "$out.kv.json" ] || { echo "0 0 0 0 0 0 0 0 0 0"; return; }
	local sent srate orate acked kuniq kdup kooo kgaps pass=1
	sent=$(jq .sent "$out.pub.json"); srate=$(jq .send_rate "$out.pub.json"); orate=$(jq .offered_rate "$out.pub.json")
	acked=$(jq .acked "$out.pub.json")
	kuniq=$(jq .unique "$out.kv.json"); kdup=$(jq .duplicated "$out.kv.json"); kooo=$(jq .out_of_order "$out.kv.json")
	kgaps=$(jq .sequence_gaps "$out.kv.json")
	[ "$rc" = 0 ] && [ "$acked" = "$sent" ] && [ "$kuniq" = "$sent" ] && [ "$kdup" = 0 ] && [ "$kooo" = 0 ] &&
		[ "$kgaps" = 0 ] || pass=0
	local why=""
	[ "$pass" = 0 ] && why="LOSS/ORDER"
	if [ "$rate" != 0 ] && awk -v s="$srate" -v o="$orate" 'BEGIN{exit !(s < 0.95 * o)}'; then
		pass=0; why="$why rate-not-reached(${srate%.*}/s)"
	fi
	echo "$who $rate: sent $sent acked $acked kafka unique $kuniq dup $kdup ooo $kooo gaps $kgaps rc $rc $why" \
		"$(grep -h '^bridge:' "$out.bridge.log" 2>/dev/null | tail -1)" >>"$work/steps.log"
	printf '%s %.0f %.2f %.2f %.2f %s %s %s %.0f %.0f\n' "$pass" "$srate" \
		"$(jq '.latency.p50_us/1000' "$out.kv.json")" "$(jq '.latency.p99_us/1000' "$out.kv.json")" \
		"$(jq '.ack_latency.p99_us/1000' "$out.pub.json")" "$(cpu_pct "$b0" "$b1" "$t0" "$t1")" \
		"$( [ -n "$brpid" ] && cpu_pct "$r0" "$r1" "$t0" "$t1" || echo -)" "$(cpu_pct "$m0" "$m1" "$t0" "$t1")" \
		"$(jq '.loader_cpu_s' "$out.pub.json" | awk -v w="$warmup" -v d="$duration" '{print 100*$1/(w+d)}')" \
		"$(jq .other_cpu_pct "$out.pub.json")"
}

# search WHO "STEPS" REP: highest passing step -> "rate line-of-that-step"
search() {
	local who=$1 best="0 - - - - - - - - -" r line
	for r in $2; do
		line=$(step "$who" "$r" "$who-r$3-$r")
		echo "  ($who) step $r msg/s: pass=${line%% *} [sent/s p50 p99 puback-p99 broker% bridge% mock% loader% other%] ${line#* }" >&2
		[ "${line%% *}" = 1 ] || break
		best="$r ${line#* }"
	done
	echo "$best"
}

gen_input 1 "$work/a1.txt"; gen_input "$msgs_a" "$work/an.txt"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
echo "kafka_compare: $cars cars, QoS 1, $size B, topic telemetry:$parts on ringmq-kafka-mock (3 brokers)," \
	"${duration}s steps after ${warmup}s warm-up, $repeat repetition(s); load average $load0" >&2
declare -a RA RB RC UB UC
for rep in $(seq "$repeat"); do
	echo "repetition $rep (load $(cut -d' ' -f1 /proc/loadavg))" >&2
	RA[$rep]=$(run_a "$rep"); echo "  (a) kcat: ${RA[$rep]%% *} msg/s [rate mock% t(1) t(N)] ${RA[$rep]}" >&2
	RB[$rep]=$(search b "$steps_b" "$rep")
	RC[$rep]=$(search c "$steps_c" "$rep")
	if [ "$unlimited" = 1 ]; then
		UB[$rep]=$(step b 0 "b-r$rep-unl"); echo "  (b) unlimited: ${UB[$rep]}" >&2
		UC[$rep]=$(step c 0 "c-r$rep-unl"); echo "  (c) unlimited: ${UC[$rep]}" >&2
	fi
done
bb=""
if [ -x "$BB" ]; then
	bb=$("$BB" --messages 200000 --size "$size" --cars "$cars" --partitions "$parts" --runs 3 2>/dev/null |
		grep -v '^kafka:' || true)
fi
load1=$(cut -d' ' -f1-3 /proc/loadavg)

med() { sort -n | awk '{v[NR]=$1} END{print (NR ? v[int((NR+1)/2)] : 0)}'; }
col() { # ARRAYNAME FIELD -> median over repetitions
	local -n arr=$1; local i
	for i in "${!arr[@]}"; do echo "${arr[$i]}" | awk -v f="$2" '{print $f}'; done | med
}
a=$(col RA 1); amock=$(col RA 2)
b=$(col RB 1); c=$(col RC 1)
ratio() { awk -v x="$1" -v y="$2" 'BEGIN{if (y > 0) printf "%.2f", x/y; else print "-"}'; }
echo
echo "MQTT->Kafka, $cars cars, QoS 1, $size B, median of $repeat (load average $load0 -> $load1)"
printf '%-44s %10s %9s %9s %9s %8s %8s %7s\n' "" "msg/s" "kafka p50" "kafka p99" "PUBACK" "broker" "bridge" "mock"
printf '%-44s %10s %9s %9s %9s %8s %8s %7s\n' "" "" "ms" "ms" "p99 ms" "CPU %" "CPU %" "CPU %"
printf '%-44s %10s %9s %9s %9s %8s %8s %7s\n' "(a) bare librdkafka (kcat -P), unlimited" "$a" - - - - - "$amock"
row() { # LABEL ARRAYNAME
	printf '%-44s %10s %9s %9s %9s %8s %8s %7s\n' "$1" "$(col "$2" 1)" "$(col "$2" 3)" "$(col "$2" 4)" \
		"$(col "$2" 5)" "$(col "$2" 6)" "$(col "$2" 7)" "$(col "$2" 8)"
}
row "(b) ringmq, highest no-loss step" RB
row "(c) mosquitto + bridge.py, highest no-loss" RC
if [ "$unlimited" = 1 ]; then
	urow() { # LABEL ARRAYNAME: sent/s over the run; pass = exactly once in Kafka
		local ok; ok=$(col "$2" 1)
		printf '%-44s %10s %9s %9s %9s %8s %8s %7s  %s\n' "$1" "$(col "$2" 2)" "$(col "$2" 3)" "$(col "$2" 4)" \
			"$(col "$2" 5)" "$(col "$2" 6)" "$(col "$2" 7)" "$(col "$2" 8)" \
			"$( [ "$ok" = 1 ] && echo "exactly once" || echo "NOT exactly once in Kafka")"
	}
	urow "(b) ringmq, unlimited, inflight $inflight" UB
	urow "(c) mosquitto + bridge.py, unlimited" UC
fi
echo
echo "highest no-loss step: (b)/(a) = $(ratio "$b" "$a") (target >= 0.80)    (b)/(c) = $(ratio "$b" "$c") (target >= 3)"
[ "$unlimited" = 1 ] && echo "unlimited (b) vs unlimited (a): (b)/(a) = $(ratio "$(col UB 2)" "$a")"
[ -n "$bb" ] && { echo; echo "ringmq-bridge-bench (in-process mock, same size/keys):"; echo "$bb"; }
echo; echo "per-run figures:"; cat "$work/steps.log"
