#!/usr/bin/env bash
# tools/load-runs.sh: the suite's trust check (issue 15): N consecutive `make test` runs, each from a fresh clone of
# this repository's HEAD (builds included, dependencies already installed), with a CPU hog on one core for the whole
# run; prints each run's result, wall time and tier times, and stops only the processes it started.
set -uo pipefail

usage() {
	cat <<'EOF'
usage: tools/load-runs.sh [--runs N] [--dir DIR] [--no-hog] [--target T]
  --runs N     consecutive runs (default 5); each clones HEAD into DIR/runK
  --dir DIR    where the clones and logs go (default /tmp/ringmq-load-runs)
  --no-hog     no CPU hog (a quiet baseline)
  --target T   the make target (default test)
The hog is `stress-ng --cpu 1` (one busy worker: one of this machine's two cores); a run passes when make exits 0.
EOF
}

runs=5 dir=/tmp/ringmq-load-runs hog=1 target=test
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=$2; shift 2 ;;
	--dir) dir=$2; shift 2 ;;
	--no-hog) hog=0; shift ;;
	--target) target=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) echo "load-runs: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done
case "$runs" in ''|*[!0-9]*) echo "load-runs: --runs wants a number" >&2; exit 2 ;; esac
[ "$hog" -eq 0 ] || command -v stress-ng >/dev/null || { echo "load-runs: stress-ng not found (apt-get install stress-ng)" >&2; exit 2; }

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
mkdir -p "$dir"
hog_pid=
stop_hog() { [ -n "$hog_pid" ] && kill "$hog_pid" 2>/dev/null; wait "$hog_pid" 2>/dev/null; hog_pid=; }
trap stop_hog EXIT

pass=0
summary=()
for k in $(seq 1 "$runs"); do
	run=$dir/run$k
	rm -rf "$run"
	git clone -q "$repo" "$run" || exit 1
	if [ "$hog" -eq 1 ]; then
		stress-ng --cpu 1 --quiet &
		hog_pid=$!
	fi
	t0=$(date +%s)
	(cd "$run" && make "$target") >"$run.log" 2>&1
	rc=$?
	secs=$(( $(date +%s) - t0 ))
	stop_hog
	[ "$rc" -eq 0 ] && pass=$((pass + 1))
	tiers=$(sed -n '/== make test: time per tier ==/,$p' "$run.log" | grep -E '^(build|tests|total) +[0-9]|^  (unit|fuzz) ' |
		awk '{printf "%s %s s; ", $1, $2}')
	line=$(printf 'run %d (%s): %s in %d s (%dm%02ds)  %s' "$k" "$(git -C "$run" rev-parse --short HEAD)" \
		"$([ "$rc" -eq 0 ] && echo PASS || echo "FAIL (exit $rc)")" "$secs" $((secs / 60)) $((secs % 60)) "$tiers")
	summary+=("$line")
	echo "$line"
	[ "$rc" -eq 0 ] || grep -aE '^(FAILED|ERROR)|Failed|\*\*\*Failed' "$run.log" | head -n 20
done
echo
echo "== load runs: $([ "$hog" -eq 1 ] && echo "stress-ng --cpu 1" || echo "no hog"), make $target =="
printf '%s\n' "${summary[@]}"
echo "$pass of $runs passed; logs in $dir/runK.log"
[ "$pass" -eq "$runs" ]
