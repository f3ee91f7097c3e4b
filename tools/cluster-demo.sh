#!/usr/bin/env bash
# tools/cluster-demo.sh: HAProxy (the shipped tools/haproxy.cfg) in front of N ringmq nodes (--proxy-protocol), all
# producing to one ringmq-kafka-mock, loaded with a car fleet through HAProxy; prints per-node figures. Loopback only.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: tools/cluster-demo.sh [--nodes N] [--cores C] [--cars N] [--hz R] [--qos Q] [--size B] [--backends B]
                             [--unlimited] [--inflight N] [--direct] [--duration S] [--warmup S] [--partitions P]
                             [--no-verify] [--build DIR] [--summary FILE] [--keep DIR]

Starts, all on 127.0.0.1 and each stopped by its pid on exit:
  one ringmq-kafka-mock (3 brokers, topic 'telemetry' with P partitions, default 8),
  N ringmq nodes (default 3; --cores C each, default 1) with --proxy-protocol, --metrics and
    --kafka-brokers MOCK --route 'cars/+/telemetry -> telemetry key=${topic[1]}',
  HAProxy running tools/haproxy.cfg (only the bind, stats and server addresses rewritten; N server lines),
  ringmq-bench kafka-verify on 'telemetry' (unless --no-verify): every record exactly once, in per-car order,
then the load through HAProxy:
  default     ringmq-bench fleet --cars N (default 1000) --hz R (default 10) --qos Q (default 1) --backends B
              (default 0: without --cluster-topic a back-end subscriber sees only its own node's cars)
  --unlimited ringmq-bench pub --clients N --rate 0 --qos Q --inflight N (default 64) on cars/car%i/telemetry:
              as fast as the cluster acknowledges (the benchmark mode of bench/cluster_scale.sh)
  --direct    no HAProxy: the load goes straight to node 1 (started without --proxy-protocol; --nodes 1 only),
              the baseline that shows what HAProxy costs
and prints per node (connections mid-run, messages in, CPU), HAProxy's and the mock's CPU, throughput, latency.
--duration S (default 5) measured after --warmup S (default 1). --summary FILE: key=value lines for scripts.
Environment: RINGMQ_EXTRA_ARGS is appended to every node's command line (e.g. "--cluster-topic ringmq.cluster
-v"), HAPROXY (default /usr/sbin/haproxy). --keep DIR keeps every config, log and JSON report.
EOF
}

nodes=3 cores=1 cars=1000 hz=10 qos=1 size=64 backends=0 unlimited=0 inflight=64 direct=0 duration=5 warmup=1
parts=8 verify=1 build=./build summary="" keep=""
while [ $# -gt 0 ]; do
	case "$1" in
	--nodes) nodes=$2; shift 2 ;;
	--cores) cores=$2; shift 2 ;;
	--cars) cars=$2; shift 2 ;;
	--hz) hz=$2; shift 2 ;;
	--qos) qos=$2; shift 2 ;;
	--size) size=$2; shift 2 ;;
	--backends) backends=$2; shift 2 ;;
	--unlimited) unlimited=1; shift ;;
	--inflight) inflight=$2; shift 2 ;;
	--direct) direct=1; shift ;;
	--duration) duration=$2; shift 2 ;;
	--warmup) warmup=$2; shift 2 ;;
	--partitions) parts=$2; shift 2 ;;
	--no-verify) verify=0; shift ;;
	--build) build=$2; shift 2 ;;
	--summary) summary=$2; shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "cluster-demo.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
	esac
done
case "$nodes" in 1|2|3) ;; *) echo "cluster-demo.sh: --nodes is 1, 2 or 3 (the shipped config has three servers)" >&2; exit 2 ;; esac
[ "$direct" = 1 ] && [ "$nodes" != 1 ] && { echo "cluster-demo.sh: --direct needs --nodes 1" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
CFG=$HERE/haproxy.cfg
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
RINGMQ=$build/ringmq BENCH=$build/ringmq-bench MOCK=$build/ringmq-kafka-mock PY=/usr/bin/python3
for x in "$RINGMQ" "$BENCH" "$MOCK" "$PY"; do
	[ -x "$x" ] || { echo "cluster-demo.sh: $x missing (cmake --build $build)" >&2; exit 2; }
done
[ "$direct" = 1 ] || [ -x "$HAPROXY" ] || { echo "cluster-demo.sh: $HAPROXY missing (apt-get install haproxy)" >&2; exit 2; }
read -r -a extra <<<"${RINGMQ_EXTRA_ARGS:-}"

work=$(mktemp -d /tmp/rmq-cluster.XXXXXX)
pids=()   # everything started here, stopped by pid on exit
HZ=$(getconf CLK_TCK)

stop_pid() { # PID: SIGTERM, up to 10 s, then SIGKILL
	local p=$1 i
	kill -0 "$p" 2>/dev/null || return 0
	kill "$p" 2>/dev/null || true
	for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}
cleanup() {
	local i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do stop_pid "${pids[$i]}"; done   # HAProxy first, the mock last
	exec 7>&- 2>/dev/null || true
	if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { [ -r "/proc/$1/stat" ] && sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}' || echo 0; }
now() { date +%s.%N; }
busy() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }   # machine-wide CPU ticks in use
metric() { # PORT NAME: sum of a ringmq /metrics family over its cores
	$PY - "$1" "$2" <<'EOF'
import sys, urllib.request
try:   # a node that is starting or stopping counts as 0
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=3).read().decode()
    print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(sys.argv[2] + "{"))))
except Exception:
    print(0)
EOF
}
servers_up() { # STATS_PORT: servers HAProxy's MQTT health check reports UP
	$PY - "$1" <<'EOF'
import sys, urllib.request
try:   # HAProxy still starting: none UP yet
    rows = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/stats;csv", timeout=2).read().decode().splitlines()
    st = rows[0].lstrip("# ").split(",").index("status")
    print(sum(1 for r in rows[1:] if r.startswith("ringmq,node") and r.split(",")[st] == "UP"))
except Exception:
    print(0)
EOF
}
wait_listen() { # PORT PID WHAT
	local i
	for i in $(seq 100); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.1
	done
	echo "cluster-demo.sh: $3 did not listen on $1; its log:" >&2; tail -5 "$work/$3.log" >&2; exit 1
}

# ---- Kafka: one mock cluster; its stdin is a fifo held open on fd 7 so it keeps running --------------------------
mkfifo "$work/mockin"; exec 7<>"$work/mockin"
"$MOCK" --topic "telemetry:$parts" <&7 >"$work/mock.log" 2>&1 &
mock_pid=$!; pids+=("$mock_pid")
boot=""
for i in $(seq 50); do
	boot=$(grep -o '127\.0\.0\.1:[0-9]*\(,127\.0\.0\.1:[0-9]*\)*' "$work/mock.log" | head -1 || true)
	[ -n "$boot" ] && break
	sleep 0.1
done
[ -n "$boot" ] || { echo "cluster-demo.sh: mock cluster did not start: $(cat "$work/mock.log")" >&2; exit 1; }

# ---- ringmq nodes --------------------------------------------------------------------------------------------
node_port=() node_metrics=() node_pid=()
for ((n = 1; n <= nodes; n++)); do
	port=$(free_port) mport=$(free_port)
	pp=(--proxy-protocol)
	[ "$direct" = 1 ] && pp=()
	"$RINGMQ" --listen "127.0.0.1:$port" "${pp[@]}" --cores "$cores" --metrics "127.0.0.1:$mport" \
		--kafka-brokers "$boot" --route 'cars/+/telemetry -> telemetry key=${topic[1]}' "${extra[@]}" \
		>"$work/node$n.log" 2>&1 &
	node_pid+=($!); pids+=($!); node_port+=("$port"); node_metrics+=("$mport")
done
for ((n = 1; n <= nodes; n++)); do wait_listen "${node_port[$((n - 1))]}" "${node_pid[$((n - 1))]}" "node$n"; done

# ---- HAProxy: the shipped config, addresses rewritten ---------------------------------------------------------
front=${node_port[0]} hpid=""
if [ "$direct" = 0 ]; then
	front=$(free_port) stats=$(free_port)
	servers=""
	for ((n = 1; n <= nodes; n++)); do servers+="    server node$n 127.0.0.1:${node_port[$((n - 1))]}\n"; done
	awk -v front="$front" -v stats="$stats" -v servers="$servers" '
		/^    bind :1883$/ { print "    bind 127.0.0.1:" front; next }
		/^    bind 127\.0\.0\.1:8404$/ { print "    bind 127.0.0.1:" stats; next }
		/^    server node[0-9]+ / { if (!done) { printf "%s", servers; done = 1 } next }
		{ print }' "$CFG" >"$work/haproxy.cfg"
	grep -q "bind 127.0.0.1:$front\$" "$work/haproxy.cfg" && grep -q "bind 127.0.0.1:$stats\$" "$work/haproxy.cfg" ||
		{ echo "cluster-demo.sh: $CFG no longer has the 'bind :1883' / stats lines this script rewrites" >&2; exit 1; }
	"$HAPROXY" -c -q -f "$work/haproxy.cfg" || { echo "cluster-demo.sh: haproxy -c rejects $work/haproxy.cfg" >&2; exit 1; }
	"$HAPROXY" -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
	hpid=$!; pids+=("$hpid")
	wait_listen "$front" "$hpid" haproxy
	for i in $(seq 100); do [ "$(servers_up "$stats")" = "$nodes" ] && break; sleep 0.1; done
	[ "$(servers_up "$stats")" = "$nodes" ] || { echo "cluster-demo.sh: HAProxy sees $(servers_up "$stats") of $nodes nodes UP" >&2; exit 1; }
fi

# ---- load ------------------------------------------------------------------------------------------------------
vpid=""
if [ "$verify" = 1 ]; then
	"$BENCH" kafka-verify --kafka-brokers "$boot" --kafka-topic telemetry --quiet --json "$work/verify.json" \
		--duration "$(awk -v w="$warmup" -v d="$duration" 'BEGIN{print w + d + 8}')" >"$work/verify.log" 2>&1 &
	vpid=$!; pids+=("$vpid")
	sleep 1 # the verifier is at the partitions' ends before the first publish
fi
in0=() t0n=()
for ((n = 0; n < nodes; n++)); do in0+=("$(metric "${node_metrics[$n]}" ringmq_messages_in_total)"); t0n+=("$(ticks "${node_pid[$n]}")"); done
h0=$( [ -n "$hpid" ] && ticks "$hpid" || echo 0); m0=$(ticks "$mock_pid"); b0=$(busy); s0=$(now)
# connections per node: the sample (every 0.5 s while the load runs) with the most connections in all
( best=-1
  while [ ! -e "$work/sampler.stop" ]; do
	line="" sum=0
	for ((n = 0; n < nodes; n++)); do v=$(metric "${node_metrics[$n]}" ringmq_connections); line+="$v "; sum=$((sum + v)); done
	[ "$sum" -gt "$best" ] && { best=$sum; echo "$line" | tr ' ' '\n' | grep -v '^$' >"$work/conns"; }
	sleep 0.5
  done ) &
spid=$!; pids+=("$spid")
common=(--port "$front" --qos "$qos" --size "$size" --inflight "$inflight" --duration "$duration" --warmup "$warmup"
	--connect-timeout 30 --quiet --json "$work/load.json")
rc=0
if [ "$unlimited" = 1 ]; then
	what="pub: $cars clients, unlimited, QoS $qos, $size B, inflight $inflight"
	"$BENCH" pub --clients "$cars" --rate 0 --topic 'cars/car%i/telemetry' "${common[@]}" >"$work/load.log" 2>&1 || rc=$?
else
	what="fleet: $cars cars at $hz Hz, QoS $qos, $size B, $backends back-ends"
	"$BENCH" fleet --cars "$cars" --hz "$hz" --backends "$backends" "${common[@]}" >"$work/load.log" 2>&1 || rc=$?
fi
s1=$(now); b1=$(busy); h1=$( [ -n "$hpid" ] && ticks "$hpid" || echo 0); m1=$(ticks "$mock_pid")
in1=() t1n=()
for ((n = 0; n < nodes; n++)); do in1+=("$(metric "${node_metrics[$n]}" ringmq_messages_in_total)"); t1n+=("$(ticks "${node_pid[$n]}")"); done
touch "$work/sampler.stop"   # ends after its current sample (killing it would break its pipes)
wait "$spid" 2>/dev/null || true
[ -n "$vpid" ] && { wait "$vpid" 2>/dev/null || true; }
[ -s "$work/load.json" ] || { echo "cluster-demo.sh: the load run failed (exit $rc):" >&2; tail -20 "$work/load.log" >&2; exit 1; }

# ---- report ------------------------------------------------------------------------------------------------------
j() { $PY -c 'import json,sys; d=json.load(open(sys.argv[1])); v=eval(sys.argv[2],{},{"d":d}); print(v if v is not None else "-")' "$@"; }
L=$work/load.json
wall=$(awk -v a="$s0" -v b="$s1" 'BEGIN{printf "%.2f", b-a}')
sent=$(j "$L" 'd["sent"]') acked=$(j "$L" 'd["acked"]')
cpu() { awk -v a="$1" -v b="$2" -v hz="$HZ" -v w="$wall" 'BEGIN{printf "%.2f %.0f", (b-a)/hz, 100*(b-a)/hz/w}'; }
echo "cluster-demo: $nodes node(s) x $cores core(s)$([ "$direct" = 1 ] && echo ", direct (no HAProxy)" || echo " behind HAProxy $("$HAPROXY" -v | head -1 | awk '{print $3}')")," \
	"Kafka mock $boot, extra node args: '${RINGMQ_EXTRA_ARGS:-}'"
echo "load: $what, ${warmup}s warm-up + ${duration}s measured (result $(j "$L" 'd["result"]'), exit $rc)"
printf '%-8s %12s %14s %10s %8s\n' node connections "messages in" "CPU-s" "CPU %"
mapfile -t conns <"$work/conns" 2>/dev/null || true
node_cpu_total=0
for ((n = 0; n < nodes; n++)); do
	read -r cs cp <<<"$(cpu "${t0n[$n]}" "${t1n[$n]}")"
	node_cpu_total=$(awk -v a="$node_cpu_total" -v b="$cs" 'BEGIN{print a+b}')
	printf '%-8s %12s %14s %10s %8s\n' "node$((n + 1))" "${conns[$n]:-?}" "$((in1[n] - in0[n]))" "$cs" "$cp"
done
read -r hs hp <<<"$(cpu "$h0" "$h1")"
read -r ms mp <<<"$(cpu "$m0" "$m1")"
[ -n "$hpid" ] && printf '%-8s %12s %14s %10s %8s\n' haproxy - - "$hs" "$hp"
printf '%-8s %12s %14s %10s %8s\n' kafka - - "$ms" "$mp"
# what the rest of the machine used meanwhile (other people's builds and tests on a shared machine)
other=$(awk -v b="$((b1 - b0))" -v hz="$HZ" -v w="$wall" -v n="$node_cpu_total" -v h="$hs" -v m="$ms" \
	-v l="$(j "$L" 'd["loader_cpu_s"]')" 'BEGIN{o = b / hz - n - h - m - l; if (o < 0) o = 0; printf "%.0f", 100 * o / w}')
per_m() { awk -v c="$1" -v n="$sent" 'BEGIN{if (n > 0) printf "%.2f", c * 1e6 / n; else print "-"}'; }
echo "throughput: sent $(j "$L" 'round(d["send_rate"])') msg/s in the measured interval (offered" \
	"$(j "$L" 'round(d["offered_rate"]) if d["offered_rate"] else "unlimited"')), $sent sent, $acked acknowledged," \
	"loss $(j "$L" 'd["lost"]') (telemetry to back-ends)"
echo "ack latency (publish -> PUBACK$([ "$qos" -gt 0 ] && echo ", after Kafka's delivery report")): p50" \
	"$(j "$L" 'round(d["ack_latency"]["p50_us"]/1000,2) if d.get("ack_latency") else None') ms, p99" \
	"$(j "$L" 'round(d["ack_latency"]["p99_us"]/1000,2) if d.get("ack_latency") else None') ms; CONNACK p99" \
	"$(j "$L" 'round(d["connack_latency"]["p99_us"]/1000,2) if d.get("connack_latency") else None') ms"
echo "CPU-s per million messages over the whole run ($wall s): nodes $(per_m "$node_cpu_total"), haproxy" \
	"$(per_m "$hs"), kafka mock $(per_m "$ms"), loader $(per_m "$(j "$L" 'd["loader_cpu_s"]')");" \
	"processes not started here used $other % of a core meanwhile"
kv="-"
if [ -s "$work/verify.json" ]; then
	kv=$(j "$work/verify.json" '"%d unique, %d duplicated, %d out of order, %d gaps; publish->Kafka p99 %.1f ms" % (d["unique"], d["duplicated"], d["out_of_order"], d["sequence_gaps"], d["latency"]["p99_us"]/1000) if d.get("latency") else "%d unique, %d duplicated, %d out of order, %d gaps" % (d["unique"], d["duplicated"], d["out_of_order"], d["sequence_gaps"])')
	echo "kafka-verify: $kv (sent $sent)"
fi
if [ -n "$summary" ]; then
	{
		echo "nodes=$nodes cores=$cores direct=$direct unlimited=$unlimited qos=$qos cars=$cars"
		echo "send_rate=$(j "$L" 'round(d["send_rate"])') sent=$sent acked=$acked" \
			"result=$(j "$L" 'd["result"].split(",")[0].split()[0] + ("-rate-not-reached" if "not reached" in d["result"] else "")')"
		echo "ack_p50_ms=$(j "$L" 'round(d["ack_latency"]["p50_us"]/1000,2)') ack_p99_ms=$(j "$L" 'round(d["ack_latency"]["p99_us"]/1000,2)')"
		echo "node_cpu_s=$node_cpu_total haproxy_cpu_s=$hs mock_cpu_s=$ms wall_s=$wall loader_cpu_s=$(j "$L" 'd["loader_cpu_s"]')"
		echo "cpu_per_m_nodes=$(per_m "$node_cpu_total") cpu_per_m_haproxy=$(per_m "$hs") cpu_per_m_mock=$(per_m "$ms")"
		echo "other_cpu_pct=$other conns=$(tr '\n' ',' <"$work/conns" 2>/dev/null)"
		echo "verify=\"$kv\""
	} >"$summary"
fi
exit "$rc"
