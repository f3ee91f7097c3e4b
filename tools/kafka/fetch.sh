#!/usr/bin/env bash
# Brings Apache Kafka's jars (tools/kafka/pom.xml) into build/kafka/lib with Maven, once: a stamp naming the pom's
# hash skips the fetch after that (offline); the Maven repository stays under build/kafka/m2, not in ~/.m2. Then,
# once, the brokers' class-data archive (tools/kafka-local.sh cds): every test broker starts 3x faster.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${KAFKA_BUILD_DIR:-$ROOT/build/kafka}
POM=$ROOT/tools/kafka/pom.xml
stamp="$OUT/lib/.fetched-$(sha256sum "$POM" | cut -c1-16)"
cds() {
  [ -f "$OUT/kafka-cds.jsa" ] || KAFKA_LIB="$OUT/lib" "$ROOT/tools/kafka-local.sh" cds ||
    echo "kafka fetch: no class-data archive: Kafka brokers start without it (slower)" >&2
}
if [ -f "$stamp" ]; then cds; exit 0; fi
command -v mvn >/dev/null || { echo "kafka fetch: mvn not found: run tools/install-deps.sh" >&2; exit 1; }
echo "kafka fetch: Apache Kafka jars into $OUT/lib (Maven Central, once)" >&2
rm -rf "$OUT/lib"
mkdir -p "$OUT"
mvn -f "$POM" -q -B -Dstyle.color=never -Dmaven.repo.local="$OUT/m2" -Dkafka.lib.dir="$OUT/lib" dependency:copy-dependencies
touch "$stamp"
cds
