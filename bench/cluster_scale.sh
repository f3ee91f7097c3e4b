#!/usr/bin/env bash
# bench/cluster_scale.sh: issue 10's scale-out figures: MQTT -> Kafka throughput of 1, 2 and 3 ringmq nodes behind
# HAProxy (and 1 node without it, the baseline), each run by tools/cluster-demo.sh --unlimited; medians of --repeat.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/cluster_scale.sh [--repeat N] [--clients N] [--size B] [--qos Q] [--inflight N] [--cores C]
                              [--duration S] [--warmup S] [--configs "direct1 ha1 ha2 ha3"] [--fleet "CARS HZ"]
                              [--build DIR] [--keep DIR]

Each config is a fresh tools/cluster-demo.sh run (fresh Kafka mock, nodes, HAProxy; all stopped by pid):
  direct1  one node, no HAProxy, no PROXY header: the baseline
  haN      N nodes (1-3) behind HAProxy (tools/haproxy.cfg, send-proxy-v2)
load: ringmq-bench pub --clients N (default 100) --rate 0 --qos Q (default 1: PUBACK after Kafka's delivery report)
--size B (default 256) --inflight N (default 64) on cars/car%i/telemetry, --warmup 1 --duration 5 by default.
--fleet "CARS HZ": instead a paced fleet (ringmq-bench fleet --cars CARS --hz HZ --backends 0 --qos Q): every
message is its own TCP segment, as from real cars, so the CPU per message is the per-packet cost (unlimited
publishers batch many messages per segment and show the best case).
Rounds run the configs in turn (direct1 ha1 ha2 ha3, direct1 ha1 ...), so a noisy minute hits every config;
the table gives the median of --repeat rounds (default 3) and every round's rate.
Columns: msg/s sent in the measured interval (a round counts only if every message was PUBACKed), ack p99, CPU-s per million messages of all nodes together, of
HAProxy and of the Kafka mock (whole run, connect included), and the CPU other processes used meanwhile.
RINGMQ_EXTRA_ARGS passes extra flags to every node (see tools/cluster-demo.sh).
EOF
}

repeat=3 clients=100 size=256 qos=1 inflight=64 cores=1 duration=5 warmup=1 configs="direct1 ha1 ha2 ha3"
fleet="" build=./build keep=""
while [ $# -gt 0 ]; do
	case "$1" in
	--repeat) repeat=$2; shift 2 ;;
	--clients) clients=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--qos) qos=$2; shift 2 ;;
	--inflight) inflight=$2; shift 2 ;;
	--cores) cores=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--warmup) warmup=$2; shift 2 ;;
	--configs) configs=$2; shift 2 ;;
	--fleet) fleet=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "cluster_scale.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
	esac
done
DEMO=$(cd "$(dirname "$0")/.." && pwd)/tools/cluster-demo.sh
work=$(mktemp -d /tmp/rmq-scale.XXXXXX)
trap 'rm -rf "$work"' EXIT

run() { # CONFIG ROUND
	local c=$1 r=$2 args=(--no-verify --size "$size" --qos "$qos" --inflight "$inflight"
		--cores "$cores" --duration "$duration" --warmup "$warmup" --build "$build" --summary "$work/$c.$r")
	if [ -n "$fleet" ]; then
		args+=(--cars "${fleet% *}" --hz "${fleet#* }" --backends 0)
	else
		args+=(--unlimited --cars "$clients")
	fi
	case "$c" in
	direct1) args+=(--nodes 1 --direct) ;;
	ha[123]) args+=(--nodes "${c#ha}") ;;
	*) echo "cluster_scale.sh: unknown config $c" >&2; exit 2 ;;
	esac
	[ -n "$keep" ] && args+=(--keep "$keep/$c.$r")
	"$DEMO" "${args[@]}" >"$work/$c.$r.out" 2>&1 || echo "result=failed" >>"$work/$c.$r"
	[ -n "$keep" ] && cp "$work/$c.$r.out" "$keep/" 2>/dev/null || true
	echo "round $r $c: $(grep -o 'send_rate=[0-9]*' "$work/$c.$r" 2>/dev/null || echo failed)" \
		"$(grep -o 'result=[a-z-]*' "$work/$c.$r" 2>/dev/null | tail -1) load $(cut -d' ' -f1 /proc/loadavg)" >&2
}
for ((r = 1; r <= repeat; r++)); do
	for c in $configs; do run "$c" "$r"; done
done

val() { grep -o "$2=[^ ]*" "$1" 2>/dev/null | head -1 | cut -d= -f2; }
any_short=""
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
load="pub --clients $clients --rate 0"
[ -n "$fleet" ] && load="fleet --cars ${fleet% *} --hz ${fleet#* } --backends 0"
echo "cluster_scale: $repeat round(s), $load --qos $qos --size $size --inflight $inflight," \
	"--cores $cores per node, ${warmup}+${duration} s, $(date -u +%FT%TZ), $(nproc) CPUs"
printf '| %-9s | %10s | %12s | %10s | %10s | %10s | %9s | %s\n' config "msg/s" "ack p99 ms" "nodes CPU-s/M" \
	"HAProxy CPU-s/M" "mock CPU-s/M" "other CPU" "per round msg/s"
for c in $configs; do
	rates="" p99s="" cn="" ch="" cm="" oth="" short=""
	for ((r = 1; r <= repeat; r++)); do
		f=$work/$c.$r
		# a run counts when the loader says ok and every message sent was PUBACKed (after Kafka had it)
		res=$(val "$f" result)
		[ "${res%-rate-not-reached}" = ok ] && [ "$(val "$f" sent)" = "$(val "$f" acked)" ] || { rates+=" failed"; continue; }
		# fleet: the paced rate was not reached (the machine's CPUs were the limit): the figure is a ceiling
		[ "$res" = ok ] || short=" (*)" any_short=1
		rates+=" $(val "$f" send_rate)"; p99s+=" $(val "$f" ack_p99_ms)"; cn+=" $(val "$f" cpu_per_m_nodes)"
		ch+=" $(val "$f" cpu_per_m_haproxy)"; cm+=" $(val "$f" cpu_per_m_mock)"; oth+=" $(val "$f" other_cpu_pct)"
	done
	printf '| %-9s | %10s | %12s | %10s | %10s | %10s | %8s%% |%s\n' "$c" "$(echo "${rates// failed/}" | median)" \
		"$(echo "$p99s" | median)" "$(echo "$cn" | median)" "$([ "$c" = direct1 ] && echo - || echo "$ch" | median)" \
		"$(echo "$cm" | median)" "$(echo "$oth" | median)" "$rates$short"
done
[ -n "$any_short" ] && echo "(*) in some rounds the loader did not reach the offered rate: the machine's CPUs were the limit"
exit 0
