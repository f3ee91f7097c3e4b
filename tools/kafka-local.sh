#!/usr/bin/env bash
# A local Apache Kafka (KRaft, combined broker+controller, loopback, free ports) for tests and for `make kafka`:
# start/stop/resume 1 or 3 brokers under one directory; every process it starts is tracked by pid in that directory.
set -euo pipefail

usage() {
  cat >&2 <<'EOF'
usage: tools/kafka-local.sh start  [--brokers 1|3] [--dir DIR] [--topic NAME:PARTITIONS[:key=value,...]]...
                                   [--sasl] [--user NAME:PASSWORD]... [--tls PEM] [--authorizer] [--auto-create]
                                   [--config key=value]...
       tools/kafka-local.sh stop   [--dir DIR] [--node N] [--kill]
       tools/kafka-local.sh resume [--dir DIR] [--node N]
       tools/kafka-local.sh topics [--dir DIR] --topic NAME:PARTITIONS[:key=value,...]...
       tools/kafka-local.sh cds

start     formats KRaft storage under DIR (default build/kafka-local; wiped first) and starts the brokers, creates
          the topics (replication factor min(3, brokers), min.insync.replicas=2 with 3 brokers), waits until
          every partition has a leader and prints BOOTSTRAP=host:port,... as its last line.
          --sasl        adds a SASL_PLAINTEXT listener (SCRAM-SHA-512 and PLAIN); user admin/admin-secret is a
                        super user; its address is printed as SASL_BOOTSTRAP=... before BOOTSTRAP
          --user N:P    one more SCRAM-SHA-512 and PLAIN user (with --sasl)
          --tls PEM     (with --sasl) a SASL_SSL listener too, its key and certificate chain in the PEM file
                        (unencrypted PKCS#8 key first); its address is printed as TLS_BOOTSTRAP=...
          --authorizer  StandardAuthorizer on; super users: admin and the PLAINTEXT listeners' ANONYMOUS
          --auto-create auto.create.topics.enable=true (off by default, as on production clusters)
          --config k=v  any broker setting, appended to every broker's server.properties
stop      SIGTERM (SIGKILL with --kill) to every broker (or node N) by pid, and waits for it to exit
resume    starts again stopped brokers (or node N) with their data, and waits until every broker is back
topics    creates more topics on the running cluster and waits until they are served
cds       writes the class-data archive (build/kafka/kafka-cds.jsa: the classes a broker loads, parsed and
          verified once) that every later JVM maps instead: a broker starts in ~3 s rather than ~9 s on 2 cores.
          tools/kafka/fetch.sh runs it once; a stale archive (other JDK or jars) is ignored by the JVM.

Environment: KAFKA_HEAP_OPTS (default -Xms256m -Xmx768m), KAFKA_JVM_OPTS (default: serial GC, C1 only, the
class-data archive if there: the fastest start on 2 cores), KAFKA_READY_TIMEOUT (seconds, default 180), PYTHON
(default /usr/bin/python3), KAFKA_ATTACHED=1 (brokers stay in the caller's process group).
EOF
  exit 2
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
LIB=${KAFKA_LIB:-$ROOT/build/kafka/lib}
PYTHON=${PYTHON:-/usr/bin/python3}
ADMIN="$ROOT/tools/kafka/kafka_admin.py"
HEAP=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
JVM_BASE="-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -Djava.awt.headless=true"
CDS=$(dirname "$LIB")/kafka-cds.jsa
JVM=$JVM_BASE
[ -f "$CDS" ] && JVM+=" -XX:SharedArchiveFile=$CDS"
JVM=${KAFKA_JVM_OPTS:-$JVM}
READY_TIMEOUT=${KAFKA_READY_TIMEOUT:-180}
STOP_TIMEOUT=60
# Own session (a Ctrl-C in the shell that ran `make kafka` does not reach the brokers); KAFKA_ATTACHED=1 keeps them
# in the caller's process group, so a test runner that kills its group on a timeout takes them along.
DETACH=setsid
[ "${KAFKA_ATTACHED:-0}" = 1 ] && DETACH=""
ADMIN_USER=admin
ADMIN_PASSWORD=admin-secret

die() { echo "kafka-local: $*" >&2; exit 1; }

[ $# -ge 1 ] || usage
cmd=$1; shift
dir=$ROOT/build/kafka-local brokers=1 sasl=0 tls="" authorizer=0 autocreate=0 node="" kill=0
topics=() users=() configs=()
while [ $# -gt 0 ]; do
  case $1 in
    --brokers) brokers=${2:?}; shift ;;
    --dir) dir=${2:?}; shift ;;
    --topic) topics+=("${2:?}"); shift ;;
    --user) users+=("${2:?}"); shift ;;
    --tls) tls=$(cd "$(dirname "${2:?}")" && pwd)/$(basename "$2"); shift ;;
    --config) configs+=("${2:?}"); shift ;;
    --node) node=${2:?}; shift ;;
    --sasl) sasl=1 ;;
    --authorizer) authorizer=1 ;;
    --auto-create) autocreate=1 ;;
    --kill) kill=1 ;;
    -h|--help) usage ;;
    *) echo "kafka-local: unknown argument $1" >&2; usage ;;
  esac
  shift
done
case $brokers in 1|3) ;; *) die "--brokers must be 1 or 3, not $brokers" ;; esac
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
node_pid() { cat "$dir/node$1/pid" 2>/dev/null || true; }
nodes() { if [ -n "$node" ]; then echo "$node"; else cat "$dir/nodes" 2>/dev/null || true; fi; }

launch() {   # launch N: the broker JVM in the background, its pid in DIR/nodeN/pid
  local n=$1 d=$dir/node$1
  # shellcheck disable=SC2086  # HEAP and JVM are word lists
  $DETACH java $HEAP $JVM -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$d/logs" \
    -cp "$LIB/*" kafka.Kafka "$d/server.properties" >>"$d/server.log" 2>&1 </dev/null &
  echo $! >"$d/pid"
  disown
}

wait_ready() {   # wait_ready [TOPIC_SPEC...]: every broker registered, the topics created and led
  [ -f "$dir/bootstrap" ] || die "no cluster in $dir"
  "$PYTHON" "$ADMIN" ready "$(cat "$dir/bootstrap")" "$(wc -w <"$dir/nodes")" "$READY_TIMEOUT" \
    -- "$@" || {
    for n in $(cat "$dir/nodes"); do
      alive "$(node_pid "$n")" || { echo "kafka-local: broker $n exited; its log:" >&2; tail -n 40 "$dir/node$n/server.log" >&2; }
    done
    return 1
  }
}

stop_nodes() {
  local sig=TERM pids=() n p
  [ "$kill" = 1 ] && sig=KILL
  for n in $(nodes); do
    p=$(node_pid "$n")
    if alive "$p"; then kill -s "$sig" "$p"; pids+=("$p"); fi
  done
  local deadline=$((SECONDS + STOP_TIMEOUT))
  for p in "${pids[@]}"; do
    while alive "$p"; do
      if [ $SECONDS -ge $deadline ]; then
        echo "kafka-local: broker pid $p still running ${STOP_TIMEOUT}s after SIG$sig: SIGKILL" >&2
        kill -s KILL "$p" 2>/dev/null || true
      fi
      sleep 0.1   # polling the exit of a process that is not our child: no event to wait on
    done
  done
  for n in $(nodes); do rm -f "$dir/node$n/pid"; done
}

write_configs() {
  local ports voters="" listeners sasl_boot="" tls_boot="" boot="" n i=0 rf=$((brokers < 3 ? brokers : 3)) isr=1
  [ "$brokers" -ge 3 ] && isr=2
  local per=2; [ "$sasl" = 1 ] && per=3; [ -n "$tls" ] && per=4
  read -r -a ports <<<"$("$PYTHON" "$ADMIN" ports $((brokers * per)))"
  for n in $(seq 1 "$brokers"); do
    voters+="${voters:+,}$n@127.0.0.1:${ports[$(( (n - 1) * per + 1 ))]}"
  done
  cat >"$dir/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = OUT
logger.server.name = kafka.server
logger.server.level = INFO
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = INFO
EOF
  for n in $(seq 1 "$brokers"); do
    local bp=${ports[i]} cp=${ports[i + 1]} sp="" tp=""
    [ "$sasl" = 1 ] && sp=${ports[i + 2]}
    [ -n "$tls" ] && tp=${ports[i + 3]}
    i=$((i + per))
    mkdir -p "$dir/node$n/data" "$dir/node$n/logs"
    listeners="PLAINTEXT://127.0.0.1:$bp,CONTROLLER://127.0.0.1:$cp"
    local adv="PLAINTEXT://127.0.0.1:$bp"
    if [ -n "$sp" ]; then
      listeners+=",SASL_PLAINTEXT://127.0.0.1:$sp"
      adv+=",SASL_PLAINTEXT://127.0.0.1:$sp"
      sasl_boot+="${sasl_boot:+,}127.0.0.1:$sp"
    fi
    if [ -n "$tp" ]; then
      listeners+=",SASL_SSL://127.0.0.1:$tp"
      adv+=",SASL_SSL://127.0.0.1:$tp"
      tls_boot+="${tls_boot:+,}127.0.0.1:$tp"
    fi
    boot+="${boot:+,}127.0.0.1:$bp"
    {
      echo "process.roles=broker,controller"
      echo "node.id=$n"
      echo "controller.quorum.voters=$voters"
      echo "listeners=$listeners"
      echo "advertised.listeners=$adv"
      echo "controller.listener.names=CONTROLLER"
      echo "inter.broker.listener.name=PLAINTEXT"
      echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL"
      echo "log.dirs=$dir/node$n/data"
      echo "num.partitions=1"
      echo "default.replication.factor=$rf"
      echo "min.insync.replicas=$isr"
      echo "offsets.topic.replication.factor=$rf"
      echo "offsets.topic.num.partitions=4"
      echo "transaction.state.log.replication.factor=$rf"
      echo "transaction.state.log.min.isr=$isr"
      echo "share.coordinator.state.topic.replication.factor=$rf"
      echo "share.coordinator.state.topic.min.isr=$isr"
      echo "auto.create.topics.enable=$([ "$autocreate" = 1 ] && echo true || echo false)"
      echo "group.initial.rebalance.delay.ms=0"
      # a 2-core machine: few threads per broker
      echo "num.network.threads=2"
      echo "num.io.threads=2"
      echo "background.threads=2"
      echo "num.recovery.threads.per.data.dir=1"
      echo "num.replica.fetchers=1"
      echo "log.cleaner.threads=1"
      echo "log.cleaner.dedupe.buffer.size=8388608"
      if [ "$sasl" = 1 ]; then
        echo "sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN"
        echo "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
        local plain="org.apache.kafka.common.security.plain.PlainLoginModule required user_$ADMIN_USER=\"$ADMIN_PASSWORD\""
        local u
        for u in "${users[@]}"; do plain+=" user_${u%%:*}=\"${u#*:}\""; done
        echo "listener.name.sasl_plaintext.plain.sasl.jaas.config=$plain;"
        if [ -n "$tls" ]; then
          echo "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
          echo "listener.name.sasl_ssl.plain.sasl.jaas.config=$plain;"
          echo "listener.name.sasl_ssl.ssl.keystore.type=PEM"
          echo "listener.name.sasl_ssl.ssl.keystore.location=$tls"
        fi
      fi
      if [ "$authorizer" = 1 ]; then
        echo "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        echo "super.users=User:$ADMIN_USER;User:ANONYMOUS"
        echo "allow.everyone.if.no.acl.found=false"
      fi
      local c
      for c in "${configs[@]}"; do echo "$c"; done
    } >"$dir/node$n/server.properties"
  done
  echo "$boot" >"$dir/bootstrap"
  if [ -n "$sasl_boot" ]; then echo "$sasl_boot" >"$dir/sasl_bootstrap"; else rm -f "$dir/sasl_bootstrap"; fi
  if [ -n "$tls_boot" ]; then echo "$tls_boot" >"$dir/tls_bootstrap"; else rm -f "$dir/tls_bootstrap"; fi
  seq 1 "$brokers" | tr '\n' ' ' >"$dir/nodes"
}

format_nodes() {
  local id n pids=() scram=()
  id=$("$PYTHON" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))')
  if [ "$sasl" = 1 ]; then
    scram+=(--add-scram "SCRAM-SHA-512=[name=$ADMIN_USER,password=$ADMIN_PASSWORD]")
    local u
    for u in "${users[@]}"; do scram+=(--add-scram "SCRAM-SHA-512=[name=${u%%:*},password=${u#*:}]"); done
  fi
  for n in $(cat "$dir/nodes"); do
    # shellcheck disable=SC2086
    java $JVM -Xmx256m -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$LIB/*" kafka.tools.StorageTool \
      format --cluster-id="$id" -c "$dir/node$n/server.properties" "${scram[@]}" >"$dir/node$n/format.log" 2>&1 &
    pids+=($!)
  done
  for n in "${!pids[@]}"; do
    wait "${pids[n]}" || { cat "$dir/node$((n + 1))/format.log" >&2; die "formatting node $((n + 1)) failed"; }
  done
}

case $cmd in
  start)
    ls "$LIB"/kafka_2.13-*.jar >/dev/null 2>&1 ||
      die "no Kafka jars in $LIB: run tools/kafka/fetch.sh (make kafka does)"
    [ "$sasl" = 1 ] || [ ${#users[@]} -eq 0 ] || die "--user needs --sasl"
    [ "$sasl" = 1 ] || [ -z "$tls" ] || die "--tls needs --sasl"
    [ -z "$tls" ] || [ -r "$tls" ] || die "--tls $tls: not readable"
    for t in "${topics[@]}"; do
      [[ $t =~ ^[A-Za-z0-9._-]+:[1-9][0-9]*(:.*)?$ ]] || die "topic '$t': expected NAME:PARTITIONS[:key=value,...]"
    done
    for n in $(cat "$dir/nodes" 2>/dev/null || true); do
      alive "$(node_pid "$n")" && die "a cluster is already running in $dir: tools/kafka-local.sh stop --dir $dir"
    done
    rm -rf "${dir:?}"/node* "$dir/bootstrap" "$dir/sasl_bootstrap" "$dir/tls_bootstrap" "$dir/nodes"
    write_configs
    format_nodes
    for n in $(cat "$dir/nodes"); do launch "$n"; done
    wait_ready "${topics[@]}" || { kill=1; stop_nodes; die "start failed; brokers stopped (logs in $dir)"; }
    [ -f "$dir/sasl_bootstrap" ] && echo "SASL_BOOTSTRAP=$(cat "$dir/sasl_bootstrap")"
    [ -f "$dir/tls_bootstrap" ] && echo "TLS_BOOTSTRAP=$(cat "$dir/tls_bootstrap")"
    echo "BOOTSTRAP=$(cat "$dir/bootstrap")"
    ;;
  stop)
    stop_nodes
    ;;
  resume)
    for n in $(nodes); do alive "$(node_pid "$n")" || launch "$n"; done
    wait_ready || exit 1
    echo "BOOTSTRAP=$(cat "$dir/bootstrap")"
    ;;
  topics)
    wait_ready "${topics[@]}" || exit 1
    ;;
  cds)
    # A broker started and stopped (SIGTERM: a normal exit) with ArchiveClassesAtExit dumps what it loaded; the
    # archive is renamed into place whole, so a JVM never maps a half-written one.
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    KAFKA_JVM_OPTS="$JVM_BASE -XX:ArchiveClassesAtExit=$tmp/kafka.jsa" "$0" start --dir "$tmp/cluster" >/dev/null
    "$0" stop --dir "$tmp/cluster"
    [ -s "$tmp/kafka.jsa" ] || die "no class-data archive written (logs in $tmp/cluster)"
    mv -f "$tmp/kafka.jsa" "$CDS"
    echo "kafka-local: class-data archive $CDS" >&2
    ;;
  *) usage ;;
esac
