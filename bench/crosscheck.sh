#!/usr/bin/env bash
# bench/crosscheck.sh: checks ringmq-bench's numbers against independent observers. A Debian mosquitto is
# started on a free loopback port; mosquitto_sub listens on the same topics as the bench's subscriber and
# timestamps every message, and a second mosquitto_sub reads mosquitto's own $SYS publish counters (every
# second). Delivered rates and counts must agree within 15 % (issue 7).
# usage: bench/crosscheck.sh [RATE msg/s, default 15000] [DURATION s, default 5] [sys-only]
#   sys-only: skip the per-message mosquitto_sub (it cannot keep up past ~20k msg/s on this machine), so that
#   a saturating rate can be checked against the broker's counters alone.
set -euo pipefail

rate=${1:-15000}       # total offered msg/s
duration=${2:-5}
sys_only=${3:-}
build=${BUILD:-./build}
BENCH=$build/ringmq-bench
PY=/usr/bin/python3
[ -x "$BENCH" ] || { echo "crosscheck.sh: $BENCH not built" >&2; exit 2; }
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

work=$(mktemp -d /tmp/rmq-crosscheck.XXXXXX)
mpid="" spid="" yid=""
cleanup() {
	for p in $spid $yid $mpid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nsys_interval 1\n' "$port" >"$work/m.conf"
"$MOSQUITTO" -c "$work/m.conf" >/dev/null 2>&1 &
mpid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done

# %U: receive time, unix seconds with microseconds; one line per message.
touch "$work/sub.txt"
if [ -z "$sys_only" ]; then
	mosquitto_sub -p "$port" -t 'bench/+' -F '%U' >"$work/sub.txt" &
	spid=$!
fi
mosquitto_sub -p "$port" -t '$SYS/broker/publish/messages/sent' -F '%U %p' >"$work/sys.txt" &
yid=$!
sleep 1.2
cmd=("$BENCH" pubsub --port "$port" --pubs 20 --subs 1 --filter 'bench/+' --total-rate "$rate" --warmup 1
     --duration "$duration" --broker-pid "$mpid" --json "$work/r.json" --quiet)
echo "\$ ${cmd[*]}"
"${cmd[@]}"
sleep 1
for p in $spid $yid; do kill "$p"; wait "$p" 2>/dev/null || true; done
spid="" yid=""

$PY - "$work/r.json" "$work/sub.txt" "$duration" "$work/sys.txt" <<'EOF'
import json, sys
rep = json.load(open(sys.argv[1]))
ts = [float(l) for l in open(sys.argv[2]) if l.strip()]
dur = float(sys.argv[3])
sysc = [tuple(map(float, l.split())) for l in open(sys.argv[4]) if l.strip()]
ok = True
print("ringmq-bench: sent %d, its subscriber received %d (expected %d, lost %d), %.0f msg/s over the "
      "measured %.2f s; mosquitto CPU %.0f %% of one core" % (rep["sent"], rep["received"], rep["expected"],
      rep["lost"], rep["recv_rate"], rep["measured_s"], rep["broker_cpu_pct"]))
# $SYS: PUBLISH packets mosquitto sent, sampled once a second. Steady state: the samples after the
# warm-up, up to the end of publishing; the rate is the slope between the first and last of them.
if len(sysc) >= 4:
    busy = [(t, v) for t, v in sysc]
    rates = [(busy[i + 1][1] - busy[i][1]) / (busy[i + 1][0] - busy[i][0]) for i in range(len(busy) - 1)]
    # Publishing seconds are those within 10 % of the busiest one; the mean over them is the steady rate.
    peak = max(rates)
    steady = [r for r in rates if r >= 0.9 * peak]
    sys_rate = sum(steady) / len(steady)
    subs = 2 if ts else 1   # the bench's subscriber, plus mosquitto_sub when it ran
    d = abs(rep["recv_rate"] * subs - sys_rate) / sys_rate * 100
    print("mosquitto $SYS: %.0f PUBLISH/s sent to %d subscriber(s) in steady state (%d one-second samples); "
          "bench x %d = %.0f: difference %.2f %%" % (sys_rate, subs, len(steady), subs, rep["recv_rate"] * subs, d))
    ok = ok and d <= 15
if not ts:
    sys.exit(0 if ok else 1)
# Steady state as mosquitto_sub saw it: skip the first second (the bench's warm-up) and the tail.
t0 = ts[0] + 1.0
t1 = t0 + dur
window = [t for t in ts if t0 <= t < t1]
ind_rate = len(window) / dur
print("mosquitto_sub: received %d in total, %.0f msg/s over %.1f s of steady state" % (len(ts), ind_rate, dur))
d_rate = abs(rep["recv_rate"] - ind_rate) / ind_rate * 100
d_count = abs(rep["sent"] - len(ts)) / len(ts) * 100
print("difference: rate %.2f %%, count %.2f %% (limit 15 %%)" % (d_rate, d_count))
sys.exit(0 if ok and d_rate <= 15 and d_count <= 15 else 1)
EOF
