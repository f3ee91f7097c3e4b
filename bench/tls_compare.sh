#!/usr/bin/env bash
# bench/tls_compare.sh: what TLS costs, ringmq and Debian's mosquitto side by side in one run. For each broker
# and transport (plain TCP, TLS 1.3 with an ECDSA P-256 certificate made here): a connection storm (CONNACK/s,
# a full handshake per connection, offered at 5,000/s; broker and loader CPU per connection) and QoS 0 and QoS 1 throughput (10 publishers -> 10 subscribers, 256 B,
# unlimited rate), each on a fresh broker, median of --repeat runs. Prints a Markdown table.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/tls_compare.sh [--build DIR] [--repeat N] [--conns N] [--duration S] [--brokers "mosquitto ringmq"]
                            [--keep DIR]
--build DIR     where ringmq and ringmq-bench are (default ./build, a Release build)
--repeat N      runs per figure, the median is printed (default 3)
--conns N       connections in the storm (default 500, offered at 5,000/s: faster overflows mosquitto's
                listen backlog of 100 and then measures SYN retransmission timers, not the broker; each
                TLS one costs the loader more CPU than the broker, on the same CPUs, so keep it small)
--duration S    measured seconds of each throughput run, after 1 s of warm-up (default 3)
--keep DIR      keep the JSON reports, bench output and broker logs in DIR
Brokers run with their defaults: ringmq --cores 1 --kafka off (the loader needs the other core), mosquitto
with a plain and a TLS listener, anonymous access, no persistence. Both serve the same certificate; the
loader verifies it (ringmq-bench --tls-cafile) and resumes no session.
EOF
}

build=./build repeat=3 conns=500 duration=3 brokers="mosquitto ringmq" keep=""
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--repeat) repeat=$2; shift 2 ;;
	--conns) conns=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--brokers) brokers=$2; shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "tls_compare.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
	esac
done

BENCH=$build/ringmq-bench RINGMQ=$build/ringmq PY=/usr/bin/python3
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
for x in "$BENCH" "$RINGMQ" "$MOSQUITTO"; do
	[ -x "$x" ] || { echo "tls_compare.sh: $x missing (build with cmake --build $build; mosquitto: Debian package)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/rmq-tls-compare.XXXXXX)
pid=""
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill "$pid"; wait "$pid" 2>/dev/null || true; fi
	if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One CA and a server certificate for localhost/127.0.0.1: ECDSA P-256, what a fleet's IoT PKI issues.
ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "$@" 2>/dev/null; }
ec -x509 -keyout "$work/ca.key" -out "$work/ca.crt" -days 2 -subj /CN=tls-compare-ca
ec -keyout "$work/server.key" -out "$work/server.csr" -subj /CN=localhost
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$work/san.ext"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
	-extfile "$work/san.ext" -out "$work/server.crt" 2>/dev/null
# mosquitto started as root drops to its own user before it reads them (a throw-away key, so world-readable).
chmod 755 "$work" && chmod 644 "$work"/server.*

port_free() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

up() { # port: wait (bounded) until the broker accepts on it
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || return 1
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

start() { # broker log -> pid, tcp_port, tls_port
	tcp_port=$(port_free) tls_port=$(port_free)
	if [ "$1" = mosquitto ]; then
		printf '%s\n' "per_listener_settings false" "allow_anonymous true" "persistence false" \
			"listener $tcp_port 127.0.0.1" "listener $tls_port 127.0.0.1" \
			"certfile $work/server.crt" "keyfile $work/server.key" >"$work/mosquitto.conf"
		"$MOSQUITTO" -c "$work/mosquitto.conf" >"$2" 2>&1 &
	else
		"$RINGMQ" --cores 1 --kafka off --listen "127.0.0.1:$tcp_port" --listen-tls "127.0.0.1:$tls_port" \
			--cert "$work/server.crt" --key "$work/server.key" >"$2" 2>&1 &
	fi
	pid=$!
	up "$tcp_port" && up "$tls_port" || { echo "tls_compare.sh: $1 did not start:" >&2; cat "$2" >&2; exit 1; }
}

stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; }

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }  # utime + stime of a process, in clock ticks

declare -A what=(
	[storm]="conn --count $conns --conn-rate 5000 --hold 1 --connect-timeout 30"
	[qos0]="pubsub --pubs 10 --subs 10 --topic bench/%i --filter bench/%i --size 256 --qos 0 --rate 0 --duration $duration --warmup 1"
	[qos1]="pubsub --pubs 10 --subs 10 --topic bench/%i --filter bench/%i --size 256 --qos 1 --rate 0 --duration $duration --warmup 1"
)

for b in $brokers; do
	for t in tcp tls; do
		for m in storm qos0 qos1; do
			for k in $(seq "$repeat"); do
				out="$work/$b-$t-$m-$k"
				start "$b" "$out.log"
				port=$tcp_port tls=()
				[ "$t" = tcp ] || { port=$tls_port; tls=(--tls-cafile "$work/ca.crt"); }
				# shellcheck disable=SC2206
				cmd=("$BENCH" ${what[$m]} --port "$port" "${tls[@]}" --broker-pid "$pid" --json "$out.json" --quiet)
				c0=$(ticks "$pid")
				/usr/bin/time -f "%U %S" -o "$out.loader" "${cmd[@]}" >"$out.txt" 2>&1 || echo "tls_compare.sh: $b $t $m run $k: $(grep '^result' "$out.txt" || tail -1 "$out.txt")" >&2
				echo "$c0 $(ticks "$pid") $(getconf CLK_TCK)" >"$out.broker"
				stop
				echo "\$ ${cmd[*]}" | sed -e "s#$work#WORK#g" -e "s/--port $port/--port PORT/" \
					-e "s/--broker-pid [0-9]*/--broker-pid PID/" >"$work/$m-$t.cmd"
			done
		done
	done
done

echo "load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs; median of $repeat runs each; commands:"
for m in storm qos0 qos1; do for t in tcp tls; do sed "s/^/  /" "$work/$m-$t.cmd"; done; done
$PY - "$work" "$repeat" $brokers <<'EOF'
import json, statistics, sys
work, n, brokers = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def runs(b, t, m):
    """Each run's JSON report plus the CPU seconds its broker and the loader used over the whole run."""
    out = []
    for k in range(1, n + 1):
        base = f"{work}/{b}-{t}-{m}-{k}"
        try:
            d = json.load(open(base + ".json"))
            c0, c1, hz = map(float, open(base + ".broker").read().split())
            d["broker_run_cpu_s"] = (c1 - c0) / hz
            d["loader_run_cpu_s"] = sum(map(float, open(base + ".loader").read().split()[-2:]))
            out.append(d)
        except (OSError, ValueError):
            pass
    return out

def med(b, t, m, f):
    vals = [v for v in (f(d) for d in runs(b, t, m)) if v is not None]
    return statistics.median(vals) if vals else None

rows = [("connection storm, CONNACK/s", "storm", lambda d: d["conn_rate"] if d["conn_ok"] == d["clients"] else None, "{:,.0f}"),
        ("storm CONNACK p99, ms", "storm", lambda d: d["connack_latency"]["p99_us"] / 1000, "{:,.1f}"),
        ("storm broker CPU per connection, ms", "storm", lambda d: d["broker_run_cpu_s"] * 1e3 / d["clients"], "{:.2f}"),
        ("storm loader CPU per connection, ms", "storm", lambda d: d["loader_run_cpu_s"] * 1e3 / d["clients"], "{:.2f}"),
        ("QoS 0 delivered msg/s", "qos0", lambda d: d["recv_rate"], "{:,.0f}"),
        ("QoS 0 loss %", "qos0", lambda d: d["loss_pct"], "{:.2f}"),
        ("QoS 0 broker CPU-s per M", "qos0", lambda d: d.get("broker_cpu_s_per_million"), "{:.2f}"),
        ("other processes' CPU %, QoS 0 run", "qos0", lambda d: d.get("other_cpu_pct"), "{:.0f}"),
        ("QoS 1 delivered msg/s", "qos1", lambda d: d["recv_rate"], "{:,.0f}"),
        ("QoS 1 broker CPU-s per M", "qos1", lambda d: d.get("broker_cpu_s_per_million"), "{:.2f}"),
        ("other processes' CPU %, QoS 1 run", "qos1", lambda d: d.get("other_cpu_pct"), "{:.0f}")]
head = "| |" + "".join(f" {b} TCP | {b} TLS | {b} TLS/TCP |" for b in brokers)
print(head)
print("|---|" + "---|---|---|" * len(brokers))
for label, m, f, fmt in rows:
    line = f"| {label} |"
    for b in brokers:
        tcp, tls = med(b, "tcp", m, f), med(b, "tls", m, f)
        ratio = f"{tls / tcp:.2f}x" if tcp and tls is not None and "%" not in label else "-"
        line += "".join(f" {'-' if v is None else fmt.format(v)} |" for v in (tcp, tls)) + f" {ratio} |"
    print(line)
EOF
