#!/usr/bin/env bash
# Checks the doors between core/'s rooms: a file includes headers of its own room or of rooms below it only, and
# every room header compiles on its own. Run by ctest (core_rooms); exits non-zero naming each wrong arrow.
set -euo pipefail
cd "$(dirname "$0")/.."

# Lowest first; a room may include itself and the rooms before it. core.h (the shared types) is allowed everywhere
# until its structs move into their rooms.
rooms=(index io security store mqtt ops)
rank() { local i; for i in "${!rooms[@]}"; do [ "${rooms[$i]}" = "$1" ] && { echo "$i"; return; }; done; echo -1; }

bad=0
for f in core/*/*.[ch]; do
	room=$(basename "$(dirname "$f")")
	r=$(rank "$room")
	[ "$r" -ge 0 ] || { echo "check-rooms: $f is in core/$room, which is not a room (${rooms[*]})"; bad=1; continue; }
	while IFS= read -r inc; do
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
[ "$bad" -eq 0 ] && echo "check-rooms: ${#rooms[@]} rooms, every include points down, every room header stands alone"
exit "$bad"
