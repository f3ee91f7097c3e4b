#!/usr/bin/env bash
# Installs the Debian packages ringmq builds and tests with, only those missing; idempotent.
# Called by `make run` / `make test` and by .ci/run on a clean Debian 12 machine.
set -euo pipefail

# clang's fuzzer and sanitizer runtimes are in libclang-rt-14-dev, which clang only recommends.
pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev
      liburing-dev librdkafka-dev libxxhash-dev libmimalloc-dev libcriterion-dev libssl-dev
      mosquitto mosquitto-clients kcat haproxy
      python3-paho-mqtt python3-confluent-kafka python3-xxhash python3-pytest
      openjdk-17-jdk-headless maven)   # Apache Kafka for the real-Kafka tests and `make kafka` (tools/kafka/)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run (an unattended upgrade) instead of failing at once.
apt=(apt-get -o DPkg::Lock::Timeout=600)
$sudo "${apt[@]}" update -q
$sudo "${apt[@]}" install -y -q --no-install-recommends "${missing[@]}"
