#!/usr/bin/env bash
# bench/compare.sh: runs one ringmq-bench scenario against ringmq, Debian's mosquitto and any other broker
# given with --broker, in the same run (each started here on a free loopback port, stopped by pid), and prints
# them side by side; --quick runs every scenario briefly and prints ratios to mosquitto (a pre-merge guard);
# --table runs issue 17's whole table (median of 3 per figure) and prints it as markdown for the README.
set -euo pipefail

usage() {
	cat <<'EOF'
usage: bench/compare.sh [--scenario NAME] [--rate R] [--steps "R1 R2 ..."] [--cores N] [--duration S]
                        [--warmup S] [--build DIR] [--brokers "mosquitto ringmq"] [--broker NAME=CMD]
                        [--keep DIR] [--quick] [--table [--table-steps-fanin "R1 .."] [--table-steps-pairs "R1 .."]
                        [--table-steps-qos1 "R1 .."]] [-- BENCH FLAGS]

scenarios (issue 3):
  fan-in        100 publishers -> 1 subscriber on bench/+, QoS 0, 64 B      (default --rate 150000 msg/s)
  pairs         50 -> 50 (bench/%i -> bench/%i), QoS 0, 64 B                 (default --rate 100000)
  qos1-fan-in   50 -> 1, QoS 1, 256 B                                        (default --rate 30000)
  latency       20 pairs x 1,000 msg/s: compare p50/p99                     (--rate is per pair)
  conn          connection storm: 5,000 connections, CONNACK rate and latency (--rate: connections/s)
  fleet         1,000 cars at 10 Hz, QoS 1, 256 B, 1 back-end on cars/+/telemetry
  idle          15,000 connections at 10,000/s held 3 s (needs ulimit -n 20000): writes NAME.json.rss0 beside
                the report, the broker's VmRSS in kB before the storm, for the RSS per idle connection
--rate R        offered rate (total msg/s); --steps "R1 R2 ..." raises it step by step and reports the
                highest step each broker sustains with under 0.5 % loss and 95 % of the offered rate
--cores N       ringmq --cores (default 1: the loader needs the other core)
--build DIR     where ringmq and ringmq-bench are (default ./build)
--brokers LIST  which brokers to run (default "mosquitto ringmq" plus every --broker; ringmq is skipped if
                not built)
--broker NAME=CMD  one more broker column: CMD is run through bash with {port} replaced by a free loopback
                port, e.g. --broker 'flashmq=flashmq --config-file /tmp/fm-{port}.conf'; repeatable
--quick         the regression guard (under 2 minutes): fan-in, pairs, QoS 1 fan-in, latency and a
                connection storm, one short run each (--duration 2, 0.5 s warm-up, 2,000 connections),
                printed as ratios to mosquitto; run it before merging a change to the hot path
--table         issue 17's whole table as one markdown table, paste-ready for README.md (one sub-run of this
                script per figure, a fresh broker per run, --repeat 3 unless given): the highest sustained QoS 0
                fan-in and pairs and QoS 1 fan-in (--steps), CPU-s per million at fan-in 150k/s, pairs 100k/s and
                QoS 1 fan-in 30k/s, latency, a 5,000-connection storm at unlimited rate, RSS per idle connection
                (the idle scenario) and the most CPU other processes took; --cores, --ringmq-args, --broker,
                --brokers, --build, --mosquitto-conf and --repeat go to every sub-run, --duration, --warmup and
                -- BENCH FLAGS to the pub/sub ones. About 15 minutes for mosquitto and ringmq with the default
                steps and --repeat 3 (a run that sustains its rate takes 6.3 s, one that fails 11 s), 25 with
                one more broker; --keep DIR keeps every sub-run's reports
--table-steps-fanin "R1 .."  --table's QoS 0 fan-in steps (default 100000 200000 400000 700000 1000000
                1400000 2000000); --table-steps-pairs: the same for pairs (same default);
                --table-steps-qos1: QoS 1 fan-in (default 50000 75000 100000 150000 200000 300000 400000)
--repeat N      run each measurement N times and keep the median run (delivered rate; p99 for latency,
                CONNACK rate for conn, broker RSS for idle): on a shared
                machine one run can be skewed by other processes
--keep DIR      keep the JSON reports and broker logs in DIR
--svg FILE      also draw the comparison as one SVG chart (a bar per broker for each figure with a better side)
--ringmq-args "ARGS"   extra ringmq flags (e.g. its Kafka route options)
--mosquitto-conf FILE  extra mosquitto.conf lines (e.g. max_queued_messages 100000)
Both brokers run with their defaults (what an operator gets out of the box); mosquitto's listener is
127.0.0.1, anonymous access, no persistence. Each scenario gives mosquitto its best setting for what it
measures: the latency scenario adds set_tcp_nodelay true (ringmq always sets TCP_NODELAY; without it Nagle
adds milliseconds to mosquitto's deliveries), the throughput scenarios keep Nagle, which measured ~1.4-1.5x
more fan-in throughput for mosquitto on this machine than with TCP_NODELAY.
EOF
}

scenario=fan-in rate="" steps="" cores=1 duration=5 warmup=1 build=./build brokers="mosquitto ringmq" keep=""
mconf="" rargs="" repeat="" quick=0 table=0 svg=""
tsteps_fanin="100000 200000 400000 700000 1000000 1400000 2000000" tsteps_pairs=$tsteps_fanin
tsteps_qos1="50000 75000 100000 150000 200000 300000 400000"
extra=() custom=() pass=() tpass=() argv=("$@")
while [ $# -gt 0 ]; do
	case "$1" in
	--scenario) scenario=$2; shift 2 ;;
	--broker) case "$2" in *=*) ;; *) echo "compare.sh: --broker wants NAME=CMD" >&2; exit 2 ;; esac
		custom+=("$2"); pass+=("$1" "$2"); shift 2 ;;
	--quick) quick=1; shift ;;
	--table) table=1; shift ;;
	--table-steps-fanin) tsteps_fanin=$2; shift 2 ;;
	--table-steps-pairs) tsteps_pairs=$2; shift 2 ;;
	--table-steps-qos1) tsteps_qos1=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--steps) steps=$2; shift 2 ;;
	--cores) cores=$2; pass+=("$1" "$2"); shift 2 ;;
	--duration) duration=$2; tpass+=("$1" "$2"); shift 2 ;;
	--warmup) warmup=$2; tpass+=("$1" "$2"); shift 2 ;;
	--build) build=$2; pass+=("$1" "$2"); shift 2 ;;
	--brokers) brokers=$2; pass+=("$1" "$2"); shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	--mosquitto-conf) mconf=$2; pass+=("$1" "$2"); shift 2 ;;
	--ringmq-args) rargs=$2; pass+=("$1" "$2"); shift 2 ;;
	--repeat) repeat=$2; shift 2 ;;
	--svg) svg=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) echo "compare.sh: unknown flag '$1' (see --help)" >&2; exit 2 ;;
	esac
done

[ "$table" = 1 ] && repeat=${repeat:-3} || repeat=${repeat:-1}
BENCH=$build/ringmq-bench
RINGMQ=$build/ringmq
PY=/usr/bin/python3

custom_cmd() { # name -> the --broker command for it (empty: none)
	local c
	for c in "${custom[@]}"; do [ "${c%%=*}" = "$1" ] && { echo "${c#*=}"; return; }; done
}
for c in "${custom[@]}"; do
	case " $brokers " in *" ${c%%=*} "*) ;; *) brokers="$brokers ${c%%=*}" ;; esac
done

if [ "$quick" = 1 ]; then
	# Each scenario runs as its own compare.sh (fresh brokers); the summary reads their kept reports.
	qdir=$(mktemp -d /tmp/rmq-quick.XXXXXX)
	trap 'rm -rf "$qdir"' EXIT
	qload0=$(cut -d' ' -f1-3 /proc/loadavg)
	for s in fan-in pairs qos1-fan-in latency conn; do
		q=(--scenario "$s" --keep "$qdir/$s" "${pass[@]}")
		if [ "$s" = conn ]; then q+=(-- --count 2000); else q+=(--duration 2 --warmup 0.5 -- "${extra[@]}"); fi
		"$0" "${q[@]}" >"$qdir/$s.out" 2>&1 || echo "compare.sh --quick: $s: $(tail -1 "$qdir/$s.out")" >&2
	done
	echo "compare.sh --quick: load average before: $qload0, after: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
	# shellcheck disable=SC2086  # $brokers: one argument per name
	$PY - "$qdir" $brokers <<'EOF'
import json, os, sys
qdir, names = sys.argv[1], sys.argv[2:]
def rep(s, n):
    try:
        return json.load(open(os.path.join(qdir, s, n + ".json")))
    except Exception:
        return None
rows = [("fan-in 150k/s: delivered msg/s", "fan-in", lambda d: d["recv_rate"]),
        ("fan-in 150k/s: CPU-s per M", "fan-in", lambda d: d.get("broker_cpu_s_per_million")),
        ("pairs 100k/s: delivered msg/s", "pairs", lambda d: d["recv_rate"]),
        ("pairs 100k/s: CPU-s per M", "pairs", lambda d: d.get("broker_cpu_s_per_million")),
        ("QoS 1 fan-in 30k/s: delivered", "qos1-fan-in", lambda d: d["recv_rate"]),
        ("QoS 1 fan-in 30k/s: CPU-s/M", "qos1-fan-in", lambda d: d.get("broker_cpu_s_per_million")),
        ("latency 20x1k/s: p50 us", "latency", lambda d: d["latency"]["p50_us"]),
        ("latency 20x1k/s: p99 us", "latency", lambda d: d["latency"]["p99_us"]),
        ("conn storm: CONNACK/s", "conn", lambda d: d["conn_rate"])]
scens = ("fan-in", "pairs", "qos1-fan-in", "latency", "conn")
base = "mosquitto" if "mosquitto" in names else names[0]
others = [n for n in names if n != base]
fmt = lambda v: "-" if v is None else "%.2f" % v if v < 100 else "%.0f" % v
rw = max([18] + [len(n) + len(base) + 3 for n in others])
print("%-32s" % "" + "".join("%14s" % n for n in names) + "".join("%*s" % (rw, n + "/" + base) for n in others))
for label, s, f in rows:
    vals = {n: (f(rep(s, n)) if rep(s, n) else None) for n in names}
    line = "%-32s" % label + "".join("%14s" % fmt(v) for v in vals.values())
    for n in others:
        a, b = vals[n], vals[base]
        line += "%*s" % (rw, "-" if a is None or not b else "%.2fx" % (a / b))
    print(line)
other = [d.get("other_cpu_pct") for s in scens for n in names for d in [rep(s, n)] if d and d.get("other_cpu_pct")]
print("%-32s%14s" % ("other processes CPU % (max)", fmt(max(other)) if other else "-"))
for s in scens:
    for n in names:
        d = rep(s, n)
        if d is None or d["exit_code"] != 0:
            print("%s %s: %s" % (s, n, d["result"] if d else "no report"))
EOF
	exit 0
fi
if [ "$table" = 1 ]; then
	# Each figure runs as its own compare.sh (fresh brokers, its own --keep directory); the summary reads their
	# kept reports. The pub/sub figures get --duration, --warmup and the BENCH FLAGS; the storms their own.
	tdir=${keep:-$(mktemp -d /tmp/rmq-table.XXXXXX)}
	mkdir -p "$tdir"
	[ -n "$keep" ] || trap 'rm -rf "$tdir"' EXIT
	rm -f "$tdir/failed" "$tdir/idle.skip"  # a --keep DIR from an earlier table
	printf '%s\0' "$0" "${argv[@]}" >"$tdir/argv"  # the summary quotes it for the header line
	tt0=$(date -u '+%Y-%m-%d %H:%M') tload0=$(cut -d' ' -f1-3 /proc/loadavg)
	tr=(--repeat "$repeat" "${pass[@]}")
	pub=("${tpass[@]}" -- "${extra[@]}")
	sub() { # name, compare.sh flags
		local n=$1
		shift
		echo "compare.sh --table: $n ($(date -u +%H:%M:%S))" >&2
		rm -rf "${tdir:?}/$n"  # an earlier table's steps would read as this one's
		"$0" --keep "$tdir/$n" "$@" >"$tdir/$n.out" 2>&1 || echo "$n: $(tail -1 "$tdir/$n.out")" >>"$tdir/failed"
	}
	sub fanin-top --scenario fan-in --steps "$tsteps_fanin" "${tr[@]}" "${pub[@]}"
	sub pairs-top --scenario pairs --steps "$tsteps_pairs" "${tr[@]}" "${pub[@]}"
	sub qos1-top --scenario qos1-fan-in --steps "$tsteps_qos1" "${tr[@]}" "${pub[@]}"
	sub fanin-150k --scenario fan-in --rate 150000 "${tr[@]}" "${pub[@]}"
	sub pairs-100k --scenario pairs --rate 100000 "${tr[@]}" "${pub[@]}"
	sub qos1-30k --scenario qos1-fan-in --rate 30000 "${tr[@]}" "${pub[@]}"
	sub latency --scenario latency "${tr[@]}" "${pub[@]}"
	sub conn --scenario conn --rate 0 "${tr[@]}"
	if (ulimit -n 20000) 2>/dev/null; then
		sub idle --scenario idle "${tr[@]}"
	else
		echo "needs ulimit -n 20000, the hard limit here is $(ulimit -Hn)" >"$tdir/idle.skip"
	fi
	echo "compare.sh --table: done ($(date -u +%H:%M:%S))" >&2
	# shellcheck disable=SC2086  # $brokers: one argument per name
	$PY - "$tdir" "$tt0 - $(date -u +%H:%M) UTC" "$tload0" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(nproc)" \
		"$repeat" $brokers <<'EOF'
import glob, json, os, re, shlex, sys
tdir, span, load0, load1, ncpu, repeat, names = sys.argv[1:7] + [sys.argv[7:]]
cmd = shlex.join(open(os.path.join(tdir, "argv")).read().split("\0")[:-1])
def rep(s, n):
    try:
        return json.load(open(os.path.join(tdir, s, n + ".json")))
    except Exception:
        return None
def best(s, n): # the highest sustained step; 0 if none was, None if the sub-run did not get that far
    try:
        return int(open(os.path.join(tdir, s, n + ".best")).read().strip() or 0)
    except Exception:
        return None
def si(v):
    return ("%gM" % round(v / 1e6, 2) if v >= 1e6 else "%gk" % round(v / 1e3, 1) if v >= 1e3 else "%g" % round(v))
def num(v):
    return "%.2f" % v if v < 10 else "%.1f" % v if v < 100 else "%.0f" % v
def top(s):
    def cell(n):
        b, d = best(s, n), rep(s, n)
        if b is None or d is None:
            return None, "-"
        tried = [int(m.group(1)) for f in os.listdir(os.path.join(tdir, s))
                 for m in [re.fullmatch(re.escape(n) + r"-(\d+)\.json", f)] if m]
        fails = max(tried) if tried and max(tried) > b else None  # None: the broker sustained the top step
        if not b:
            return None, "below %s" % si(fails) if fails else "-"
        return b, "%s, %s µs, %.2f %% (%s)" % (si(b), num(d.get("broker_cpu_s_per_million") or 0), d["loss_pct"] or 0,
                                              "fails at %s" % si(fails) if fails else "the top step")
    return cell
def fixed(s):
    def cell(n):
        d = rep(s, n)
        if d is None or d.get("broker_cpu_s_per_million") is None:
            return None, "-"
        v = d["broker_cpu_s_per_million"]
        return v, "%s (%s/s, %.2f %%)" % (num(v), si(d["recv_rate"]), d["loss_pct"] or 0)
    return cell
def latency(n):
    d = rep("latency", n)
    return (None, "-") if d is None else ((d["latency"]["p50_us"], d["latency"]["p99_us"]),
                                          "%.0f / %.0f" % (d["latency"]["p50_us"], d["latency"]["p99_us"]))
def conn(n):
    d = rep("conn", n)
    if d is None:
        return None, "-"
    rss = d.get("broker_rss_kb")
    return d["conn_rate"], "%s/s, %s" % (si(d["conn_rate"]), "-" if rss is None else "%.1f MB" % (rss / 1024))
skip = os.path.join(tdir, "idle.skip")
def idle(n):
    if os.path.exists(skip):
        return None, "skipped: " + open(skip).read().strip()
    d = rep("idle", n)
    try:
        rss0 = int(open(os.path.join(tdir, "idle", n + ".json.rss0")).read())
    except Exception:
        rss0 = None
    if d is None or rss0 is None or d.get("broker_rss_kb") is None or not d["conn_held"]:
        return None, "-"
    # The peak (during the storm: buffers not yet trimmed) is shown beside the held figure.
    v = (d["broker_rss_kb"] - rss0) * 1024 / d["conn_held"]
    peak = (d.get("broker_rss_max_kb", d["broker_rss_kb"]) - rss0) * 1024 / d["conn_held"]
    return v, "{:,.0f} B held, {:,.0f} B at peak ({:,} up)".format(v, peak, d["conn_held"])
def other(n):
    # Every run of the table: the steps and the repeats too, not only the medians kept as NAME.json.
    pat = re.compile(re.escape(n) + r"(-\d+)?\.json(\.\d+)?")
    seen = []
    for f in glob.glob(os.path.join(tdir, "*", "*")):
        if pat.fullmatch(os.path.basename(f)):
            try:
                v = json.load(open(f)).get("other_cpu_pct")
            except Exception:
                continue
            if v is not None:
                seen.append(v)
    return (max(seen), "%.0f" % max(seen)) if seen else (None, "-")
rows = [("highest sustained QoS 0 fan-in, 100 → 1, 64 B: msg/s, broker µs per msg, loss", top("fanin-top")),
        ("highest sustained QoS 0 pairs, 50 → 50, 64 B: msg/s, broker µs per msg, loss", top("pairs-top")),
        ("highest sustained QoS 1 fan-in, 50 → 1, 256 B: msg/s, broker µs per msg, loss", top("qos1-top")),
        ("broker CPU-s per million delivered, QoS 0 fan-in at 150k/s (delivered, loss)", fixed("fanin-150k")),
        ("broker CPU-s per million delivered, QoS 0 pairs at 100k/s (delivered, loss)", fixed("pairs-100k")),
        ("broker CPU-s per million delivered, QoS 1 fan-in at 30k/s (delivered, loss)", fixed("qos1-30k")),
        ("latency, 20 pairs × 1,000 msg/s: p50 / p99 µs", latency),
        ("connection storm, 5,000 connects, unlimited rate: CONNACK/s, broker RSS", conn),
        ("broker RSS per idle connection, 15,000 MQTT 3.1.1 connections at 10k/s held 3 s", idle),
        ("other processes' CPU %%, the most in any run (load average %s → %s)" % (load0.split()[0], load1.split()[0]),
         other)]
base = "mosquitto" if "mosquitto" in names else names[0]
others = [n for n in names if n != base]
print("Measured %s on %s CPUs, load average %s before, %s after, %s, a fresh broker per run: `%s`"
      % (span, ncpu, load0, load1, "one run each" if repeat == "1" else "median of %s runs" % repeat, cmd))
print()
print("| figure | " + " | ".join(names) + "".join(" | %s / %s" % (n, base) for n in others) + " |")
print("|---" * (1 + len(names) + len(others)) + "|")
def ratio(a, b):
    if isinstance(a, tuple):
        return " / ".join(ratio(x, y) for x, y in zip(a, b)) if b else "-"
    return "%.2fx" % (a / b) if a is not None and b else "-"
for label, f in rows:
    cells = {n: f(n) for n in names}
    line = "| %s | " % label + " | ".join(c[1] for c in cells.values())
    if f is not other:
        line += "".join(" | " + ratio(cells[n][0], cells[base][0]) for n in others)
    else:
        line += " | -" * len(others)
    print(line + " |")
print()
print("Ratios are each broker's figure over %s's: above 1 is better for rates, below 1 for CPU, latency and RSS."
      % base)
def why(s, n): # a run without a report: the bench's own complaint (a limit, a refused connection)
    for f in [os.path.join(tdir, s, n + ".json.err")] + sorted(glob.glob(os.path.join(tdir, s, n + "-*.json.err"))):
        try:
            lines = [l for l in open(f).read().splitlines() if l.strip()]
        except Exception:
            continue
        if lines:
            return " (" + lines[-1] + ")"
    return ""
try:
    failed = open(os.path.join(tdir, "failed")).read().splitlines()
except Exception:
    failed = []
for s in ("fanin-top", "pairs-top", "qos1-top", "fanin-150k", "pairs-100k", "qos1-30k", "latency", "conn", "idle"):
    if s == "idle" and os.path.exists(skip):
        continue
    for n in names:
        d = rep(s, n)
        if d is not None and s.endswith("-top") and best(s, n) == 0:
            failed.append("%s %s: no step sustained: %s" % (s, n, d["result"]))
        elif d is None or d["exit_code"] != 0:
            failed.append("%s %s: %s" % (s, n, d["result"] if d else "no report" + why(s, n)))
for line in failed:
    print(line)
EOF
	exit 0
fi
[ -x "$BENCH" ] || { echo "compare.sh: $BENCH not built (cmake --build $build)" >&2; exit 2; }
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || {
	echo "compare.sh: mosquitto not installed (Debian package mosquitto)" >&2; exit 2; }
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

case "$scenario" in
fan-in) args=(pubsub --scenario fan-in); rate=${rate:-150000} ;;
pairs) args=(pubsub --scenario pairs); rate=${rate:-100000} ;;
qos1-fan-in) args=(pubsub --scenario qos1-fan-in); rate=${rate:-30000} ;;
latency) args=(pubsub --pubs 20 --subs 20 --filter 'bench/%i'); rate=$(( 20 * ${rate:-1000} )) ;;
conn) args=(conn --count 5000 --hold 2); rate=${rate:-5000} ;;
idle) args=(conn --count 15000 --hold 3); rate=${rate:-10000}
	# The broker inherits this limit: 15,000 sockets need it raised from the usual 1,024.
	ulimit -n 20000 2>/dev/null || { echo "compare.sh: idle needs ulimit -n 20000 (hard limit: $(ulimit -Hn))" >&2
		exit 2; } ;;
fleet) args=(fleet --cars 1000 --hz 10 --qos 1 --size 256 --backends 1); rate="" ;;
*) echo "compare.sh: unknown scenario '$scenario'" >&2; usage >&2; exit 2 ;;
esac

work=$(mktemp -d /tmp/rmq-compare.XXXXXX)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
broker_pid=""
cleanup() {
	if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
		kill "$broker_pid" 2>/dev/null || true
		wait "$broker_pid" 2>/dev/null || true
	fi
	if [ -n "$keep" ]; then mkdir -p "$keep" && cp -r "$work"/. "$keep"/; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	$PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port pid
	for _ in $(seq 100); do
		kill -0 "$2" 2>/dev/null || return 1
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

start_broker() { # name log -> sets broker_pid, port
	port=$(free_port)
	local log=$2
	case "$1" in
	mosquitto)
		cat >"$work/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
EOF
		[ "$scenario" != latency ] || echo "set_tcp_nodelay true" >>"$work/mosquitto.conf"
		[ -z "$mconf" ] || cat "$mconf" >>"$work/mosquitto.conf"
		"$MOSQUITTO" -c "$work/mosquitto.conf" >"$log" 2>&1 &
		;;
	ringmq)
		# shellcheck disable=SC2086
		"$RINGMQ" --listen "127.0.0.1:$port" --cores "$cores" $rargs >"$log" 2>&1 &
		;;
	*)
		local cmd
		cmd=$(custom_cmd "$1")
		[ -n "$cmd" ] || { echo "compare.sh: unknown broker '$1' (give it with --broker $1=CMD)" >&2; exit 2; }
		bash -c "exec ${cmd//\{port\}/$port}" >"$log" 2>&1 &
		;;
	esac
	broker_pid=$!
	wait_port "$port" "$broker_pid" || { echo "compare.sh: $1 did not start (see its log)" >&2;
		cat "$log" >&2; exit 1; }
}

stop_broker() {
	kill "$broker_pid" 2>/dev/null || true
	wait "$broker_pid" 2>/dev/null || true
	broker_pid=""
}

rate_flags() { # total rate -> bench flags
	local r=$1
	[ -z "$r" ] && return
	case "$scenario" in conn|idle) echo "--conn-rate $r" ;; *) echo "--total-rate $r" ;; esac
}

# One bench run against a fresh broker (a broker still digesting the previous overload would skew it).
run_one() { # broker rate json -> exit status of the bench
	local b=$1 r=$2 json=$3
	start_broker "$b" "$json.log"  # one log per run: a broker's exit counters explain that run
	# The report has the RSS with the connections held; the growth per connection needs the RSS before them.
	[ "$scenario" != idle ] || awk '/^VmRSS:/ { print $2 }' "/proc/$broker_pid/status" >"$json.rss0"
	local cmd=("$BENCH" "${args[@]}" --port "$port" --broker-pid "$broker_pid" --json "$json" --quiet)
	case "$scenario" in conn|idle) ;; *) cmd+=(--duration "$duration" --warmup "$warmup") ;; esac
	# shellcheck disable=SC2207
	cmd+=($(rate_flags "$r") "${extra[@]}")
	echo "\$ ${cmd[*]}" | sed -e "s/--port $port/--port PORT/" -e "s/--broker-pid $broker_pid/--broker-pid PID/" \
		-e "s#--json $json#--json FILE#" >"$json.cmd"
	local rc=0
	"${cmd[@]}" >"$json.txt" 2>"$json.err" || rc=$?
	stop_broker
	return $rc
}

# run_one N times; the median run (by delivered rate; CONNACK rate for conn, p99 for latency, broker RSS for
# idle) becomes OUT.
run_rep() { # broker rate out
	local b=$1 r=$2 out=$3 k
	[ "$repeat" -gt 1 ] 2>/dev/null || { run_one "$b" "$r" "$out"; return; }
	for k in $(seq "$repeat"); do run_one "$b" "$r" "$out.$k" || true; done
	local best
	best=$($PY - "$out" "$repeat" "$scenario" <<'EOF'
import json, sys
out, n = sys.argv[1], int(sys.argv[2])
runs = []
for k in range(1, n + 1):
    try:
        d = json.load(open("%s.%d" % (out, k)))
    except Exception:
        continue
    # A fixed low rate is delivered in full by both: there the latency is what varies.
    key = (d.get("broker_rss_kb", 0) if sys.argv[3] == "idle" else
           d["conn_rate"] if d["mode"] == "conn" else
           d["latency"]["p99_us"] if sys.argv[3] == "latency" else d["recv_rate"])
    runs.append((key, k))
runs.sort()
print(runs[len(runs) // 2][1] if runs else 1)
EOF
)
	for f in "" .cmd .txt .err .log .rss0; do cp "$out.$best$f" "$out$f" 2>/dev/null || true; done
	# The median hides outliers; a failed run must not be hidden with them.
	for k in $(seq "$repeat"); do
		$PY -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(d["exit_code"])' "$out.$k" 2>/dev/null ||
			echo "compare.sh: $b run $k of $repeat at ${r:-unlimited}: $(grep '^result' "$out.$k.txt" | sed 's/^result *//')" >&2
	done
	$PY -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["exit_code"])' "$out"
}

ran=()
for b in $brokers; do
	if [ "$b" = ringmq ] && [ ! -x "$RINGMQ" ]; then
		echo "compare.sh: $RINGMQ not built yet: comparing mosquitto only" >&2
		continue
	fi
	if [ -n "$steps" ]; then
		best=""
		for r in $steps; do
			j="$work/$b-$r.json"
			run_rep "$b" "$r" "$j" || true
			ok=$($PY - "$j" <<'EOF'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    print(0); sys.exit()
loss = d.get("loss_pct") or 0
# Sustained: under 0.5 % loss, the loader sent 95 % of the offered rate, and deliveries kept pace with
# what was due (a broker that only buffers is not sustaining the rate).
good = (d["exit_code"] == 0 and loss < 0.5 and d["send_rate"] >= 0.95 * d["offered_rate"]
        and d["recv_rate"] >= 0.95 * d["expected_rate"])
print(1 if good else 0)
EOF
)
			echo "compare.sh: $b at $r msg/s offered: $([ "$ok" = 1 ] && echo sustained || echo NOT sustained)" >&2
			[ "$ok" = 1 ] || break
			best=$r
		done
		if [ -n "$best" ]; then cp "$work/$b-$best.json" "$work/$b.json"; cp "$work/$b-$best.json.cmd" "$work/$b.json.cmd";
		else cp "$work/$b-$r.json" "$work/$b.json" 2>/dev/null || true; cp "$work/$b-$r.json.cmd" "$work/$b.json.cmd"; fi
		echo "$best" >"$work/$b.best"  # the highest sustained step, empty if none (the --table summary reads it)
	else
		run_rep "$b" "$rate" "$work/$b.json" || echo "compare.sh: $b: ringmq-bench exited non-zero: $(tail -1 "$work/$b.json.txt")" >&2
	fi
	[ -f "$work/$b.json" ] && ran+=("$b")
done

[ ${#ran[@]} -gt 0 ] || { echo "compare.sh: no broker produced a report" >&2; exit 1; }

echo "scenario: $scenario$([ -n "$steps" ] && echo " (highest sustained step of: $steps)"); load average" \
	"before: $load0, after: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
for b in "${ran[@]}"; do echo "$b: $(cat "$work/$b.json.cmd")"; done
SVG_OUT="$svg" SCENARIO="$scenario" $PY - "$work" "${ran[@]}" <<'EOF'
import json, os, sys
work, names = sys.argv[1], sys.argv[2:]
reps = {n: json.load(open("%s/%s.json" % (work, n))) for n in names}
conn = next(iter(reps.values()))["mode"] == "conn"
def cpu_per_m(d): return d.get("broker_cpu_s_per_million")
rows = [("connections up", lambda d: d["conn_ok"], "{:.0f}", None),
        ("CONNACK/s", lambda d: d["conn_rate"], "{:.0f}", "high"),
        ("CONNACK p50 us", lambda d: d["connack_latency"]["p50_us"], "{:.0f}", "low"),
        ("CONNACK p99 us", lambda d: d["connack_latency"]["p99_us"], "{:.0f}", "low"),
        ("broker RSS kB", lambda d: d.get("broker_rss_kb"), "{:.0f}", "low")] if conn else [
        ("offered msg/s", lambda d: d["offered_rate"] or None, "{:.0f}", None),
        ("delivered msg/s", lambda d: d["recv_rate"], "{:.0f}", "high"),
        ("loss %", lambda d: d["loss_pct"], "{:.3f}", None),
        ("delivered / due", lambda d: d["recv_rate"] / d["expected_rate"] if d.get("expected_rate") else None,
         "{:.3f}", None),
        ("broker CPU %", lambda d: d.get("broker_cpu_pct"), "{:.0f}", None),
        ("CPU-s per M delivered", cpu_per_m, "{:.2f}", "low"),
        ("latency p50 us", lambda d: d["latency"]["p50_us"], "{:.0f}", "low"),
        ("latency p99 us", lambda d: d["latency"]["p99_us"], "{:.0f}", "low"),
        ("broker RSS kB", lambda d: d.get("broker_rss_kb"), "{:.0f}", "low"),
        ("other processes CPU %", lambda d: d.get("other_cpu_pct"), "{:.0f}", None)]
w = 24
others = [n for n in names if n != "mosquitto"] if "mosquitto" in reps else []
rw = max([22] + [len(n) + 16 for n in others])
hdr = "%-*s" % (w, "") + "".join("%16s" % n for n in names) + "".join("%*s" % (rw, n + " / mosquitto")
                                                                    for n in others)
print(hdr)
for label, f, fmt, better in rows:
    vals = {n: f(d) for n, d in reps.items()}
    line = "%-*s" % (w, label) + "".join("%16s" % ("-" if v is None else fmt.format(v)) for v in vals.values())
    for n in others if better else []:
        a, b = vals[n], vals["mosquitto"]
        ratio = a / b if a is not None and b else None
        line += "%*s" % (rw, "-" if ratio is None else ("%.2fx" % ratio if ratio >= 0.1 else "%.4fx" % ratio))
    print(line)
for n, d in reps.items():
    if d["exit_code"] != 0 or d["result"] != "ok":
        print("%s: %s" % (n, d["result"]))
if os.environ.get("SVG_OUT"):
    # One bar per broker for each figure that has a better side, scaled to that figure's largest value.
    charted = [(label, {n: f(d) for n, d in reps.items()}, fmt, better) for label, f, fmt, better in rows if better]
    colors, bar, gap = ["#1f6feb", "#d1242f", "#17803d", "#8250df"], 18, 14
    h = 50 + len(charted) * (len(names) * bar + gap) + 20
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="760" height="%d" font-family="sans-serif" '
           'font-size="12"><rect width="100%%" height="100%%" fill="white"/>' % h,
           '<text x="10" y="22" font-size="15" font-weight="bold">%s: %s</text>'
           % (os.environ["SCENARIO"], " vs ".join(names))]
    y = 44
    for label, vals, fmt, better in charted:
        top = max([v for v in vals.values() if v] or [1])
        out.append('<text x="10" y="%d" fill="#444">%s (%s is better)</text>' % (y + 12, label, better))
        for i, n in enumerate(names):
            v = vals[n]
            wpx = 0 if not v else max(1, 330 * v / top)
            out.append('<rect x="250" y="%d" width="%.1f" height="%d" fill="%s"/><text x="%.1f" y="%d">%s %s</text>'
                       % (y, wpx, bar - 4, colors[i % 4], 256 + wpx, y + bar - 7, n,
                          "-" if v is None else fmt.format(v)))
            y += bar
        y += gap
    out.append("</svg>")
    open(os.environ["SVG_OUT"], "w").write("\n".join(out) + "\n")
EOF
