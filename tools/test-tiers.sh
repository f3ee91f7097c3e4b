#!/usr/bin/env bash
# `make test`'s driver: runs each tier (NAME=make-target, in order), stops at the first that fails, and always
# ends with how long each tier took and the unit tests' summary. Called by GNUmakefile from the repo root.
set -uo pipefail
make_cmd=${MAKE:-make}
names=() secs=() results=()
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
rm -f build-asan/unit.log   # quoted below only if this run wrote it
start=$(date +%s.%N)
status=0
for tier in "$@"; do
	name=${tier%%=*} target=${tier#*=}
	t0=$(date +%s.%N)
	"$make_cmd" --no-print-directory "$target"
	rc=$?
	names+=("$name")
	secs+=("$(since "$t0")")
	if [ "$rc" -ne 0 ]; then
		results+=("FAILED (exit $rc)")
		status=$rc
		break
	fi
	results+=(ok)
done
echo
echo "== make test: time per tier =="
for i in "${!names[@]}"; do
	printf '%-12s %7s s  %s\n' "${names[$i]}" "${secs[$i]}" "${results[$i]}"
done
printf '%-12s %7s s  %s\n' total "$(since "$start")" "$([ "$status" -eq 0 ] && echo passed || echo FAILED)"
[ -f build-asan/unit.log ] && grep -a 'Synthesis:' build-asan/unit.log | tail -n 1
exit "$status"
