#!/usr/bin/env bash
# `make test`'s driver: runs each tier (NAME=make-target, in order), stops at the first that fails, and always
# ends with how long each tier took, the time of the ctest run's entries that compute (unit, fuzz) and of each
# label, and the unit tests' summary. Called by GNUmakefile from the repo root.
set -uo pipefail
make_cmd=${MAKE:-make}
names=() secs=() results=()
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
rm -f build-asan/unit.log build-asan/ctest.log   # quoted below only if this run wrote them
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
if [ -f build-asan/ctest.log ]; then
	# "12/55 Test #52: unit ....   Passed   43.21 sec": the tiers that run as ctest entries
	sed -nE 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: (unit|fuzz) +\.*[ *]*([A-Za-z* ]+[a-z]) +([0-9.]+) sec$/  \1 \3 \2/p' \
		build-asan/ctest.log | awk '{ r = $3; for (i = 4; i <= NF; i++) r = r " " $i; printf "  %-10s %7s s  %s\n", $1, $2, r }'
	sed -n '/^Label Time Summary:/,/^$/p' build-asan/ctest.log | sed '/^$/d'
fi
[ -f build-asan/unit.log ] && grep -a 'Synthesis:' build-asan/unit.log | tail -n 1
exit "$status"
