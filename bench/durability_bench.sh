#!/usr/bin/env bash
# bench/durability_bench.sh: QoS 1 throughput of ringmq without --data-dir vs --data-dir with --fsync batch / always
# (every publish stored for an offline persistent session, so each PUBACK waits for the log), and start-up recovery
# time of a generated state log. Brokers are started here on free loopback ports and stopped by pid.
set -euo pipefail

usage() {
	cat <<'USAGE'
usage: bench/durability_bench.sh [--build DIR] [--duration S] [--pubs N] [--rate R] [--repeat N] [--recovery-mb N]
                                 [--modes "none batch always"] [--no-recovery] [--keep DIR]
--build DIR        where ringmq, ringmq-bench and ringmq-persist-gen are (default ./build; use a Release build)
--duration S       measured seconds per run (default 3; 1 s warm-up before)
--pubs N           QoS 1 publishers, 256 B, window 64 each (default 100)
--rate R           offered msg/s over all publishers (default 0: unlimited, i.e. the highest acknowledged rate)
--repeat N         runs per mode, alternating modes; the median is reported (default 3)
--recovery-mb N    size of the generated log whose recovery is timed (default 1024; 0 = skip)
Each throughput run: ringmq --cores 1 --kafka off; a persistent session (mosquitto_sub -c, then offline) holds
'bench/#', so every publish is queued for it: stored, and with --data-dir logged, its PUBACK held until durable.
USAGE
}

build=./build duration=3 pubs=100 rate=0 repeat=3 mb=1024 modes="none batch always" keep=""
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--pubs) pubs=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--repeat) repeat=$2; shift 2 ;;
	--recovery-mb) mb=$2; shift 2 ;;
	--no-recovery) mb=0; shift ;;
	--modes) modes=$2; shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "durability_bench.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
	esac
done
RINGMQ=$build/ringmq BENCH=$build/ringmq-bench GEN=$build/ringmq-persist-gen PY=/usr/bin/python3
for b in "$RINGMQ" "$BENCH" "$GEN"; do
	[ -x "$b" ] || { echo "durability_bench.sh: $b not built (cmake --build $build)" >&2; exit 2; }
done
work=$(mktemp -d /tmp/rmq-durability.XXXXXX)
broker_pid=""
cleanup() {
	[ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null || true
	[ -n "$keep" ] && { mkdir -p "$keep"; cp "$work"/*.json "$work"/*.log "$keep"/ 2>/dev/null || true; }
	rm -rf "$work"
}
trap cleanup EXIT

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_broker() {  # $1 log, rest: extra flags; sets port and broker_pid, waits for the listening line
	local log=$1; shift
	port=$(free_port)
	"$RINGMQ" --listen "127.0.0.1:$port" --cores 1 --kafka off "$@" >"$log" 2>&1 &
	broker_pid=$!
	for _ in $(seq 1 6000); do
		grep -q "listening on" "$log" && return 0
		kill -0 "$broker_pid" 2>/dev/null || { echo "ringmq exited:" >&2; cat "$log" >&2; exit 1; }
		sleep 0.01
	done
	echo "ringmq did not start in 60 s" >&2; cat "$log" >&2; exit 1
}

stop_broker() {
	kill "$broker_pid"; wait "$broker_pid" || true; broker_pid=""
}

run_mode() {  # $1 mode, $2 run index: prints acknowledged msg/s
	local mode=$1 i=$2 flags=(--max-queued 10000000)
	[ "$mode" != none ] && flags+=(--data-dir "$work/data-$mode-$i" --fsync "$mode")
	start_broker "$work/broker-$mode-$i.log" "${flags[@]}"
	mosquitto_sub -p "$port" -i durable-sink -c -q 1 -t 'bench/#' -E
	"$BENCH" pub --port "$port" --clients "$pubs" --qos 1 --size 256 --total-rate "$rate" --inflight 64 --duration "$duration" \
		--warmup 1 --json "$work/$mode-$i.json" >"$work/bench-$mode-$i.log" 2>&1 || true
	stop_broker
	rm -rf "$work/data-$mode-$i"
	$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); print(int(d.get("send_rate", 0)), int(d["ack_latency"]["p99_us"] / 1000 + 0.5), int(d.get("other_cpu_pct", 0)))' \
		"$work/$mode-$i.json"
}

echo "QoS 1 publish throughput ($pubs publishers, 256 B, window 64, offered $( [ "$rate" = 0 ] && echo unlimited || echo "$rate msg/s"), ${duration} s, median of $repeat; load $(cut -d' ' -f1-3 /proc/loadavg))"
declare -A results
for i in $(seq 1 "$repeat"); do
	for mode in $modes; do
		read -r got p99 other < <(run_mode "$mode" "$i")
		results[$mode]+="$got "
		echo "  run $i  $mode: $got msg/s acknowledged, ack p99 $p99 ms (other processes: $other % of a core)"
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(echo "${results[none]:-0}" | median)
printf '%-8s %12s %8s\n' mode "msg/s" "vs none"
for mode in $modes; do
	m=$(echo "${results[$mode]}" | median)
	printf '%-8s %12s %8s\n' "$mode" "$m" "$($PY -c "print(f'{$m / $base * 100:.0f} %' if $base else '-')")"
done

if [ "$mb" -gt 0 ]; then
	echo "Recovery of a ${mb} MiB state log (10,000 sessions with a subscription and a queued message, 10,000 retained; page cache warm):"
	"$GEN" --mb "$mb" "$work/recovery"
	start_broker "$work/recovery.log" --data-dir "$work/recovery"
	grep "state recovered" "$work/recovery.log"
	stop_broker
	rm -rf "$work/recovery"
fi
