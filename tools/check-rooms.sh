#!/usr/bin/env bash
# Checks the doors between core/'s rooms: a file includes headers of its own room or of rooms below it only, every
# room header compiles on its own, and (given the built librmq_core.a) no object calls a function defined in a room
# above its own, except the calls still listed below, and every symbol the given libraries export is named rmq_*.
# Run by ctest (core_rooms); exits non-zero naming each wrong arrow and each unprefixed symbol.
# Usage: tools/check-rooms.sh [path/to/librmq_core.a [other libraries whose exports must be rmq_*, e.g. librmq_proto.a]]
set -euo pipefail
lib=${1:-}
[ -z "$lib" ] || lib=$(realpath "$lib")
prefixed=()
for l in "$@"; do prefixed+=("$(realpath "$l")"); done
cd "$(dirname "$0")/.."

# Lowest first; a room may include itself and the rooms before it. Every type lives in its room's headers: a header
# directly under core/ (outside every room, as core.h was) is refused.
rooms=(index io security store mqtt ops)
rank() { local i; for i in "${!rooms[@]}"; do [ "${rooms[$i]}" = "$1" ] && { echo "$i"; return; }; done; echo -1; }

bad=0
for f in core/*/*.[ch]; do
	room=$(basename "$(dirname "$f")")
	r=$(rank "$room")
	[ "$r" -ge 0 ] || { echo "check-rooms: $f is in core/$room, which is not a room (${rooms[*]})"; bad=1; continue; }
	while IFS= read -r inc; do
		if [ "${inc#*/}" = "$inc" ] && [ -e "core/$inc" ]; then
			echo "check-rooms: $f includes $inc, which is in no room"
			bad=1
			continue
		fi
		other=${inc%%/*}
		o=$(rank "$other")
		[ "$o" -ge 0 ] || continue          # not a core room (ringmq/..., system)
		if [ "$o" -gt "$r" ]; then
			echo "check-rooms: $f (room $room) includes $inc from room $other, above it"
			bad=1
		fi
	done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done

cc=${CC:-cc}
for h in core/*/*.h; do
	if ! printf '#include "%s"\n' "${h#core/}" | "$cc" -std=gnu11 -Wall -Wextra -Werror -fsyntax-only \
		-Icore -Iinclude $(pkg-config --cflags liburing 2>/dev/null) -x c - 2>/tmp/check-rooms.$$; then
		echo "check-rooms: $h does not compile on its own:"; sed 's/^/  /' /tmp/check-rooms.$$; bad=1
	fi
done
rm -f /tmp/check-rooms.$$

# Calls up allowed as exceptions, as "room symbol" (none: keep it so). io and store reach the rooms above only
# through the tables those fill (struct rmq_proto_ops and struct rmq_io_hooks in io/io.h, struct rmq_store_hooks in
# store/store.h): a direct call to a function of a room above fails here.
allowed_up=()
calls=0
if [ -n "$lib" ]; then
	declare -A member_room=() def_room=()   # archive member "conn.c.o" -> its room, by its source file
	for f in core/*/*.c; do
		m=$(basename "$f").o
		[ -z "${member_room[$m]:-}" ] || { echo "check-rooms: two rooms have a $(basename "$f")"; bad=1; }
		member_room[$m]=$(basename "$(dirname "$f")")
	done
	while read -r member sym; do
		r=${member_room[$member]:-} && [ -n "$r" ] && def_room[$sym]=$r
	done < <(nm -A --defined-only -g "$lib" | sed -n 's/^[^:]*:\([^:]*\):[0-9a-f]* [A-Z] \(.*\)$/\1 \2/p')
	while read -r member sym; do
		r=${member_room[$member]:-}
		[ -n "$r" ] || continue
		o=${def_room[$sym]:-}
		[ -n "$o" ] && [ "$(rank "$o")" -gt "$(rank "$r")" ] || continue
		case " ${allowed_up[*]/%/,} " in *" $r $sym,"*) continue ;; esac
		echo "check-rooms: core/$r/${member%.o} (room $r) calls $sym of room $o, above it"
		bad=1
	done < <(nm -A --undefined-only "$lib" | sed -n 's/^[^:]*:\([^:]*\): *U \(.*\)$/\1 \2/p')
	calls=1
fi

# Public symbols are rmq_<module>_<verb> (STYLE.md): a function or global another file can link to carries the
# prefix, so a name in a backtrace or profile says whose it is. __odr_asan.* are ASan's, not ours.
for l in "${prefixed[@]}"; do
	while read -r member sym; do
		echo "check-rooms: $(basename "$l") ($member) exports $sym, not named rmq_*"
		bad=1
	done < <(nm -A -g --defined-only "$l" | sed -n 's/^[^:]*:\([^:]*\):[0-9a-f]* [A-Z] \(.*\)$/\1 \2/p' |
		awk '$2 !~ /^(rmq_|__odr_asan)/')
done
if [ "$bad" -eq 0 ]; then
	msg="check-rooms: ${#rooms[@]} rooms, every include points down, every room header stands alone"
	[ "$calls" -eq 0 ] || msg+=", every call points down$([ ${#allowed_up[@]} -eq 0 ] || echo " but the ${#allowed_up[@]} listed")"
	[ ${#prefixed[@]} -eq 0 ] || msg+=", every export of ${#prefixed[@]} libraries is rmq_*"
	echo "$msg"
fi
exit "$bad"
