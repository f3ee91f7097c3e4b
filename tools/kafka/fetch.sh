#!/usr/bin/env bash
# Brings Apache Kafka's jars (tools/kafka/pom.xml) into build/kafka/lib with Maven, once: a stamp naming the pom's
# hash skips the fetch after that (offline); the Maven repository stays under build/kafka/m2, not in ~/.m2. The
# jars are also kept in a machine cache per pom hash ($RINGMQ_KAFKA_CACHE, default ~/.cache/ringmq/kafka-HASH):
# the next clone copies them from there instead of running Maven (25 CPU-seconds, and the network). Then, once,
# the brokers' class-data archive (tools/kafka-local.sh cds): every test broker starts 3x faster.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${KAFKA_BUILD_DIR:-$ROOT/build/kafka}
POM=$ROOT/tools/kafka/pom.xml
hash=$(sha256sum "$POM" | cut -c1-16)
stamp="$OUT/lib/.fetched-$hash"
CACHE=${RINGMQ_KAFKA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ringmq/kafka-$hash}
cds() {
  [ -f "$OUT/kafka-cds.jsa" ] || KAFKA_LIB="$OUT/lib" "$ROOT/tools/kafka-local.sh" cds ||
    echo "kafka fetch: no class-data archive: Kafka brokers start without it (slower)" >&2
}
if [ -f "$stamp" ]; then cds; exit 0; fi
rm -rf "$OUT/lib"
mkdir -p "$OUT"
if [ -f "$CACHE/lib/.fetched-$hash" ]; then
  echo "kafka fetch: Apache Kafka jars into $OUT/lib (from $CACHE)" >&2
  rm -rf "$OUT/lib.tmp"
  cp -r "$CACHE/lib" "$OUT/lib.tmp" && mv "$OUT/lib.tmp" "$OUT/lib"
  cds
  exit 0
fi
command -v mvn >/dev/null || { echo "kafka fetch: mvn not found: run tools/install-deps.sh" >&2; exit 1; }
echo "kafka fetch: Apache Kafka jars into $OUT/lib (Maven Central, once)" >&2
mvn -f "$POM" -q -B -Dstyle.color=never -Dmaven.repo.local="$OUT/m2" -Dkafka.lib.dir="$OUT/lib" dependency:copy-dependencies
touch "$stamp"
# into the machine cache whole (a directory renamed into place), for the next clone; a failure here costs only that
if mkdir -p "$(dirname "$CACHE")" 2>/dev/null && tmp=$(mktemp -d "$(dirname "$CACHE")/.kafka-XXXXXX"); then
  if cp -r "$OUT/lib" "$tmp/lib" && mv -T "$tmp" "$CACHE" 2>/dev/null; then :; else rm -rf "$tmp"; fi
fi
cds
