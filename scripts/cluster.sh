#!/usr/bin/env bash
# The local cluster rig: scripts/cluster.sh up | down | status | drain NODE_PORT
#                        | stop replica | stop redis PORT | stop rabbit PORT | stop node PORT
#                        | kill node PORT
#
#   PostgreSQL streaming replica of the local server  127.0.0.1:5433 (pg_basebackup -R)
#   Redis Cluster, three primaries                     127.0.0.1:7000-7002
#   RabbitMQ cluster, three nodes, quorum queues       127.0.0.1:5673-5675 (hwrig<OFFSET>a..c)
#   Headwater nodes serving cluster_demo               127.0.0.1:3001, 127.0.0.1:3002
#   HAProxy in front (health checks on /-/ready)       127.0.0.1:8080
#
# Everything it starts is recorded in PID files under $HW_CLUSTER_STATE (default
# /tmp/headwater-cluster); `down` stops exactly those processes, never anything by name.
#
# The nodes share a settings file ($STATE/headwater.toml): JWT (HS256, the secret in
# $STATE/jwt-secret), the anonymous role `anon` and signed-in `member`s may read and write
# every table; events go to the rig's RabbitMQ cluster (all three nodes in HEADWATER_AMQP_URL:
# a relay that loses its node connects to the next; HEADWATER_AMQP_QUEUE_TYPE=quorum), or, when
# $HW_CLUSTER_AMQP_URL is set, to that broker instead and no RabbitMQ node is started (empty:
# in-process). The RabbitMQ nodes run as the rabbitmq user (its Erlang cookie, the machine's
# epmd), with their data, logs and PID files under $STATE/rabbit/<node>; the machine's own
# node (rabbit@localhost, 5672) is never touched. $HW_CLUSTER_PORT_OFFSET (default 0) moves every port of the rig, and
# $HW_CLUSTER_DB names its database, so a second rig can run beside the first; each worker of a
# node holds at most $HW_CLUSTER_POOL_MAX (default 5) connections to each server.
# The local PostgreSQL server itself is only touched to add, if missing, the pg_hba.conf line
# `host replication all 127.0.0.1/32 trust` (then reloaded; `down` removes it again), to create
# cluster_demo, and for the replica's physical replication slot (hwrig_<database>; `down`
# drops it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${HW_CLUSTER_STATE:-/tmp/headwater-cluster}
PG_PORT=${PG_PORT:-5432}
OFFSET=${HW_CLUSTER_PORT_OFFSET:-0}
REPLICA_PORT=$((5433 + OFFSET))
REDIS_PORTS=($((7000 + OFFSET)) $((7001 + OFFSET)) $((7002 + OFFSET)))
NODE_PORTS=($((3001 + OFFSET)) $((3002 + OFFSET)))
LB_PORT=$((8080 + OFFSET))
DB=${HW_CLUSTER_DB:-cluster_demo}
SLOT=$(printf 'hwrig_%s' "$DB" | tr -c 'a-z0-9_' '_')
RABBIT_PORTS=($((5673 + OFFSET)) $((5674 + OFFSET)) $((5675 + OFFSET)))
# Erlang distribution, well away from the AMQP ports (the machine's node has 25672).
RABBIT_DIST_PORTS=($((25673 + OFFSET)) $((25674 + OFFSET)) $((25675 + OFFSET)))
RABBIT_NODES=("hwrig${OFFSET}a@localhost" "hwrig${OFFSET}b@localhost" "hwrig${OFFSET}c@localhost")
RABBIT_BIN=${HW_CLUSTER_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
if [[ -n "${HW_CLUSTER_AMQP_URL+set}" ]]; then
  RIG_RABBIT=0
  AMQP_URL=$HW_CLUSTER_AMQP_URL
  QUEUE_TYPE=${HW_CLUSTER_AMQP_QUEUE_TYPE:-classic}
else
  RIG_RABBIT=1
  AMQP_URL=$(printf 'amqp://guest:guest@127.0.0.1:%s/,' "${RABBIT_PORTS[@]}")
  AMQP_URL=${AMQP_URL%,}
  QUEUE_TYPE=${HW_CLUSTER_AMQP_QUEUE_TYPE:-quorum}
fi
RIG_MARK="created by headwater scripts/cluster.sh"
HBA_MARK="# added by headwater scripts/cluster.sh"
# Connections per worker and database: rigs side by side share the local server's
# max_connections (100 by default), and with the replica down every read reaches the primary.
POOL_MAX=${HW_CLUSTER_POOL_MAX:-5}
PRIMARY_URL="postgresql://postgres@127.0.0.1:${PG_PORT}/${DB}"
REPLICA_URL="postgresql://postgres@127.0.0.1:${REPLICA_PORT}/${DB}"
REDIS_URL="redis+cluster://127.0.0.1:${REDIS_PORTS[0]},127.0.0.1:${REDIS_PORTS[1]},127.0.0.1:${REDIS_PORTS[2]}"
if [[ -z "${PYTHON:-}" ]]; then
  for candidate in "$ROOT/.venv/bin/python" /work/main/.venv/bin/python "$(command -v python3)"; do
    if [[ -x "$candidate" ]]; then PYTHON=$candidate; break; fi
  done
fi
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"

say() { printf '%s\n' "$*"; }
psql_primary() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atc "$1"; }
pg_bin() {
  local major
  major=$(( $(psql_primary "SHOW server_version_num") / 10000 ))
  echo "/usr/lib/postgresql/${major}/bin"
}
as_postgres() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# A process killed from outside (the OOM killer, a test) stays a zombie until its parent, often
# an init that reaps late, collects it: it answers kill -0 but is gone.
alive() {
  [[ -f "$1" ]] && kill -0 "$(head -1 "$1")" 2>/dev/null \
    && [[ $(ps -o stat= -p "$(head -1 "$1")" 2>/dev/null) != Z* ]]
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Before a part starts (its PID file names no live process): its port must be free. A process
# no PID file of the rig names (someone's, a rig whose state directory was lost, a worker that
# outlived its supervisor) would otherwise take part of the traffic unseen: HAProxy binds with
# SO_REUSEPORT, and a node or replica that cannot bind leaves the old one answering. A process
# of the rig's just killed may hold its port a moment longer: up to 5 s is allowed for that.
not_taken() {  # what port
  local tries=50
  while port_open "$2"; do
    if (( --tries == 0 )); then
      say "$1: 127.0.0.1:$2 is in use by a process no PID file of the rig names: stop it, or move the rig with HW_CLUSTER_PORT_OFFSET" >&2
      exit 1
    fi
    sleep 0.1
  done
}
wait_http() {  # url seconds
  local deadline=$((SECONDS + $2))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    (( SECONDS < deadline )) || return 1
    sleep 0.2
  done
}

# --- PostgreSQL ---------------------------------------------------------------------------

replication_hba() {
  if [[ $(psql_primary "SELECT count(*) FROM pg_hba_file_rules WHERE 'replication' = ANY(database) AND error IS NULL") == 0 ]]; then
    local hba
    hba=$(psql_primary "SHOW hba_file")
    if [[ -s "$hba" && -n $(tail -c1 "$hba") ]]; then echo >> "$hba"; fi  # ends its last line
    printf 'host replication all 127.0.0.1/32 trust  %s\n' "$HBA_MARK" >> "$hba"
    psql_primary "SELECT pg_reload_conf()" > /dev/null
    echo "$hba" > "$STATE/hba-added"
    say "postgres: added 'host replication all 127.0.0.1/32 trust' to $hba and reloaded (down removes it)"
  fi
}

# The line `up` added, taken out again once no rig streams from the server (another rig
# beside this one may still use it).
replication_hba_down() {
  [[ -f "$STATE/hba-added" ]] || return 0
  local hba
  hba=$(cat "$STATE/hba-added")
  if [[ $(psql_primary "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'hwrig\_%'") != 0 ]]; then
    say "postgres: the replication line in $hba is kept: another rig streams from this server"
    return 0
  fi
  if [[ -f "$hba" ]] && grep -qF "$HBA_MARK" "$hba"; then
    # rewritten in place, so the file keeps its owner and mode
    grep -vF "$HBA_MARK" "$hba" > "$STATE/hba.tmp" || true
    cat "$STATE/hba.tmp" > "$hba"
    rm -f "$STATE/hba.tmp"
    psql_primary "SELECT pg_reload_conf()" > /dev/null
    say "postgres: removed the replication line it added to $hba, and reloaded"
  fi
  rm -f "$STATE/hba-added"
}

demo_database() {
  local exists built
  # Assigned apart from the test: a psql that fails (the server full, say) stops the script
  # instead of reading as "no database" or "no tables" (which would rebuild them with --force).
  exists=$(psql_primary "SELECT count(*) FROM pg_database WHERE datname = '$DB'")
  if [[ $exists == 0 ]]; then
    psql_primary "CREATE DATABASE $DB" > /dev/null
    psql_primary "COMMENT ON DATABASE $DB IS '$RIG_MARK'" > /dev/null
  elif [[ $(psql_primary "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = '$DB'") != "$RIG_MARK" ]]; then
    # The rig writes into its database and may rebuild it: never one it did not create.
    say "database: $DB exists and was not created by the rig: set HW_CLUSTER_DB to another name" >&2
    exit 1
  fi
  built=$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$DB" -Atc "SELECT to_regclass('public.orders') IS NOT NULL")
  if [[ $built != t ]]; then
    say "database: building the demo data in $DB"
    # --force: the rig's own database only.
    "$PYTHON" -m headwater demo "$PRIMARY_URL" --force > /dev/null
  fi
}

replica_up() {
  local bin data="$STATE/replica/data"
  bin=$(pg_bin)
  if alive "$data/postmaster.pid"; then return; fi
  not_taken replica "$REPLICA_PORT"
  if [[ ! -d "$data" ]]; then
    mkdir -p "$STATE/replica"
    chown postgres "$STATE/replica" 2>/dev/null || true
    say "replica: pg_basebackup of 127.0.0.1:$PG_PORT into $data"
    # A slot of its own keeps the primary's WAL until the replica has it: a replica stopped for
    # a while (`stop replica`) streams again instead of finding its segments recycled.
    drop_slot
    as_postgres "$bin/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U postgres -D "$data" -R -c fast -X stream \
      -C -S "$SLOT"
    cat > "$data/postgresql.conf" <<EOF
port = $REPLICA_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$STATE/replica'
hot_standby = on
hba_file = '$data/pg_hba.conf'
ident_file = '$data/pg_ident.conf'
max_connections = 100
shared_buffers = 32MB
EOF
    printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' > "$data/pg_hba.conf"
    : > "$data/pg_ident.conf"
    chown postgres "$data/postgresql.conf" "$data/pg_hba.conf" "$data/pg_ident.conf" 2>/dev/null || true
  fi
  as_postgres "$bin/pg_ctl" -D "$data" -l "$STATE/replica/log" -w -t 60 start > /dev/null
  say "replica: streaming on 127.0.0.1:$REPLICA_PORT"
}

replica_down() {
  local data="$STATE/replica/data"
  if alive "$data/postmaster.pid"; then
    as_postgres "$(pg_bin)/pg_ctl" -D "$data" -m fast -w stop > /dev/null
    say "replica: stopped"
  fi
  rm -rf "$STATE/replica"
  drop_slot
}

drop_slot() {  # once its walsender has gone
  for _ in $(seq 50); do
    [[ $(psql_primary "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT' AND active") == 0 ]] && break
    sleep 0.1
  done
  psql_primary "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$SLOT'" > /dev/null
}

# --- Redis Cluster --------------------------------------------------------------------------

redis_up() {
  local port started=0
  for port in "${REDIS_PORTS[@]}"; do
    if alive "$STATE/redis-$port.pid"; then continue; fi
    if redis-cli -p "$port" ping > /dev/null 2>&1; then
      # Not ours (no PID file of the rig): someone's server, left alone.
      say "redis: a server the rig did not start answers on 127.0.0.1:$port: stop it, or move the rig with HW_CLUSTER_PORT_OFFSET" >&2
      exit 1
    fi
    not_taken redis "$port"
    # A node stopped by hand restarts with its nodes.conf: it rejoins with its slots.
    mkdir -p "$STATE/redis/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-node-timeout 2000 \
      --cluster-config-file "$STATE/redis/$port/nodes.conf" --dir "$STATE/redis/$port" \
      --save "" --appendonly no --daemonize yes --pidfile "$STATE/redis-$port.pid" \
      --logfile "$STATE/redis/$port/log"
    started=1
  done
  for port in "${REDIS_PORTS[@]}"; do
    until redis-cli -p "$port" ping > /dev/null 2>&1; do sleep 0.1; done
  done
  local first=${REDIS_PORTS[0]} deadline=$((SECONDS + 30))
  if [[ $started == 1 ]] && redis-cli -p "$first" cluster info | grep -q 'cluster_slots_assigned:0'; then
    redis-cli --cluster create "${REDIS_PORTS[@]/#/127.0.0.1:}" \
      --cluster-replicas 0 --cluster-yes > /dev/null
  fi
  until redis-cli -p "$first" cluster info | grep -q 'cluster_state:ok'; do
    (( SECONDS < deadline )) || { say "redis: cluster not ok, see $STATE/redis/*/log"; exit 1; }
    sleep 0.2
  done
  say "redis: cluster ok on ${REDIS_PORTS[*]}"
}

redis_down() {
  local port
  for port in "${REDIS_PORTS[@]}"; do
    if alive "$STATE/redis-$port.pid"; then
      # Waits for the exit: the directory is removed below, with nothing left writing in it.
      stop_pid "$STATE/redis-$port.pid" 10
      say "redis: $port stopped"
    fi
    rm -f "$STATE/redis-$port.pid"
  done
  rm -rf "$STATE/redis"
}

# --- RabbitMQ cluster -----------------------------------------------------------------------

rabbit_index() {  # AMQP port -> 0..2
  local i
  for i in 0 1 2; do [[ ${RABBIT_PORTS[$i]} == "$1" ]] && { echo "$i"; return 0; }; done
  say "rabbit: $1 is not one of the rig's AMQP ports (${RABBIT_PORTS[*]})" >&2
  return 1
}
rabbit_dir() { echo "$STATE/rabbit/${RABBIT_NODES[$1]}"; }
rabbit_pidfile() { echo "$(rabbit_dir "$1")/pid"; }
# As the rabbitmq user, with its home (the Erlang cookie every node it starts shares). The
# scripts under $RABBIT_BIN, not Debian's /usr/sbin wrappers: those send a server's output to
# /var/log/rabbitmq/startup_log, the machine's node's file.
as_rabbitmq() {
  local home
  home=$(getent passwd rabbitmq | cut -d: -f6)
  home=${home:-/var/lib/rabbitmq}
  # From its home: Erlang reads its working directory, and a checkout's (mktemp -d: 0700,
  # root's) refuses the rabbitmq user (eacces, and the node never joins).
  if [[ $EUID -eq 0 ]]; then (cd "$home" && runuser -u rabbitmq -- env HOME="$home" "$@")
  else "$@"; fi
}
rabbitmqctl_n() { as_rabbitmq "$RABBIT_BIN/rabbitmqctl" -n "$@"; }
rabbit_guard() {  # index of a node without a live PID file: nothing else may have its name or ports
  local node=${RABBIT_NODES[$1]} port=${RABBIT_PORTS[$1]} dist=${RABBIT_DIST_PORTS[$1]}
  if port_open "$port" || port_open "$dist" || epmd -names 2>/dev/null | grep -q "^name ${node%@*} at"; then
    # Not ours: someone's node, left alone.
    say "rabbit: $node or a port of it ($port, $dist) is in use and the rig did not start it: stop it, or move the rig with HW_CLUSTER_PORT_OFFSET" >&2
    exit 1
  fi
}

rabbit_start() {  # index: start the node (returns at once; rabbit_wait waits for it)
  local i=$1 dir node=${RABBIT_NODES[$1]} port=${RABBIT_PORTS[$1]} dist=${RABBIT_DIST_PORTS[$1]}
  dir=$(rabbit_dir "$i")
  mkdir -p "$dir"
  # Its own files, not /etc/rabbitmq's (the machine's node listens on 5672 by those).
  printf 'ERL_EPMD_ADDRESS=127.0.0.1\nexport ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"\n' > "$dir/env.conf"
  printf 'listeners.tcp.local = 127.0.0.1:%s\n' "$port" > "$dir/rabbitmq.conf"
  : > "$dir/enabled_plugins"  # no plugins: a node starts in about 3 s
  chown -R rabbitmq:rabbitmq "$STATE/rabbit"
  rm -f "$dir/pid"
  (cd "$dir" && as_rabbitmq RABBITMQ_NODENAME="$node" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$port" RABBITMQ_DIST_PORT="$dist" RABBITMQ_CONF_ENV_FILE="$dir/env.conf" \
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_PID_FILE="$dir/pid" "$RABBIT_BIN/rabbitmq-server" -detached) > "$dir/start.log" 2>&1
}

rabbit_wait() {  # index
  local node=${RABBIT_NODES[$1]}
  rabbitmqctl_n "$node" wait "$(rabbit_pidfile "$1")" --timeout 60 > /dev/null 2>&1 \
    || { say "rabbit: $node did not start, see $(rabbit_dir "$1")/log"; exit 1; }
}

rabbit_join() {  # index: a fresh node joins the first one's cluster
  local node=${RABBIT_NODES[$1]} dir try
  dir=$(rabbit_dir "$1")
  # Their output (the CLI logs a joining node's transient errors) in join.log. A failed join
  # (Mnesia can refuse a node that joins while the cluster's schema is still settling) is
  # retried once from a reset node: it is fresh, it holds nothing.
  for try in 1 2; do
    { [[ $try == 1 ]] || rabbitmqctl_n "$node" reset || true; } >> "$dir/join.log" 2>&1
    { rabbitmqctl_n "$node" stop_app && rabbitmqctl_n "$node" join_cluster "${RABBIT_NODES[0]}" \
        && rabbitmqctl_n "$node" start_app; } >> "$dir/join.log" 2>&1 && return 0
  done
  cat "$dir/join.log" >&2
  return 1
}

# Two halves, so that the nodes boot while the replica and Redis come up.
rabbit_up_begin() {  # start every node that is down (each returns at once)
  local i
  RABBIT_STARTED=() RABBIT_FRESH=()
  [[ $RIG_RABBIT == 1 ]] || return 0
  # All three checked before any starts: a refusal leaves nothing of the rig's running.
  for i in 0 1 2; do alive "$(rabbit_pidfile "$i")" || rabbit_guard "$i"; done
  for i in 0 1 2; do
    alive "$(rabbit_pidfile "$i")" && continue
    # A node stopped by hand keeps its data and, a member already, rejoins by itself.
    [[ -d "$(rabbit_dir "$i")/mnesia" ]] || RABBIT_FRESH+=("$i")
    rabbit_start "$i"
    RABBIT_STARTED+=("$i")
  done
}

rabbit_up_end() {  # wait for them; fresh ones join the first node's cluster
  local i pids=()
  [[ $RIG_RABBIT == 1 ]] || return 0
  # In parallel: each rabbitmqctl spends a second or two starting its own Erlang VM.
  for i in "${RABBIT_STARTED[@]}"; do
    rabbit_wait "$i" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || exit 1; done
  # One at a time, as RabbitMQ's clustering guide asks: two nodes joining at once race in
  # Mnesia's schema merge, and the second's start_app fails ({mnesia_app, start}).
  for i in "${RABBIT_FRESH[@]}"; do
    [[ $i == 0 ]] && continue
    rabbit_join "$i" || { say "rabbit: join_cluster failed, see $STATE/rabbit/*/log"; exit 1; }
  done
  say "rabbit: cluster of ${RABBIT_NODES[*]} on ${RABBIT_PORTS[*]}"
}

rabbit_stop() {  # index: rabbitmqctl stop (waits for the process), the PID as a fallback
  local pidfile node=${RABBIT_NODES[$1]}
  pidfile=$(rabbit_pidfile "$1")
  alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  rabbitmqctl_n "$node" stop "$pidfile" > /dev/null 2>&1 || stop_pid "$pidfile" 30
  rm -f "$pidfile"
}

rabbit_down() {
  local i pids=()
  for i in 0 1 2; do
    if alive "$(rabbit_pidfile "$i")"; then
      rabbit_stop "$i" &
      pids+=($!)
    fi
  done
  for i in "${pids[@]}"; do wait "$i" || true; done
  if [[ ${#pids[@]} -gt 0 ]]; then say "rabbit: ${RABBIT_NODES[*]} stopped"; fi
  rm -rf "$STATE/rabbit"
}

# --- Headwater nodes ------------------------------------------------------------------------

settings_file() {
  if [[ ! -s "$STATE/jwt-secret" ]]; then
    (umask 077; "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))' > "$STATE/jwt-secret")
  fi
  cat > "$STATE/headwater.toml" <<'EOF'
[auth]
jwt_secret = "env:HEADWATER_JWT_SECRET"
anonymous_role = "anon"

[http]
metrics_roles = ["operator"]

[[policy]]
role = "anon"
table = "*"
actions = ["select", "insert", "update", "delete"]

[[policy]]
role = "member"
table = "*"
actions = ["select", "insert", "update", "delete"]
EOF
}

nodes_up() {
  local port
  settings_file
  for port in "${NODE_PORTS[@]}"; do
    if alive "$STATE/node-$port.pid"; then continue; fi
    not_taken node "$port"
    # SIGTERM: /-/ready answers 503 for 2 s while the node still serves, longer than HAProxy
    # takes to see it (two failed checks 500 ms apart), and only then does it stop accepting.
    HEADWATER_REDIS_URL="$REDIS_URL" \
      HEADWATER_POOL_MAX_SIZE="$POOL_MAX" \
      HEADWATER_CONFIG="$STATE/headwater.toml" HEADWATER_JWT_SECRET="$(cat "$STATE/jwt-secret")" \
      HEADWATER_AMQP_URL="$AMQP_URL" HEADWATER_AMQP_QUEUE_TYPE="$QUEUE_TYPE" \
      HEADWATER_SHUTDOWN_DELAY=2 \
      setsid "$PYTHON" -m headwater serve "$PRIMARY_URL" --port "$port" \
      --replica "$REPLICA_URL" > "$STATE/node-$port.log" 2>&1 < /dev/null &
    echo $! > "$STATE/node-$port.pid"
  done
  for port in "${NODE_PORTS[@]}"; do
    wait_http "http://127.0.0.1:$port/-/ready" 60 || { say "node $port: not ready, see $STATE/node-$port.log"; exit 1; }
    say "node: Headwater on 127.0.0.1:$port"
  done
}

stop_pid() {  # pidfile seconds: SIGTERM, then SIGKILL past the grace period
  local pid deadline
  alive "$1" || { rm -f "$1"; return 0; }
  pid=$(cat "$1")
  kill -TERM "$pid"
  deadline=$((SECONDS + $2))
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
  # Past the grace period: the whole process group (the supervisor and its workers).
  if kill -0 "$pid" 2>/dev/null; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
  rm -f "$1"
}

nodes_down() {
  local port
  for port in "${NODE_PORTS[@]}"; do
    if alive "$STATE/node-$port.pid"; then
      drain "$port" || true
      stop_pid "$STATE/node-$port.pid" 15
      say "node: $port stopped"
    fi
    rm -f "$STATE/node-$port.pid"
  done
}

replica_in_use() {
  # Right after a start the replica may be "lagging" with no lag figure: an idle primary's
  # last WAL record can stay unreplayed until the next commit. One commit on the rig's own
  # database (an xid, no rows) ends that.
  local node="http://127.0.0.1:${NODE_PORTS[0]}/-/ready" deadline=$((SECONDS + 30))
  until curl -s -m 2 "$node" | grep -q '"replica1": *{"status": *"ok"'; do
    (( SECONDS < deadline )) || { say "replica: not in use yet, see scripts/cluster.sh status"; return 0; }
    psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$DB" -Atc "SELECT txid_current()" > /dev/null
    sleep 0.5
  done
}

# --- HAProxy --------------------------------------------------------------------------------

haproxy_cmd() {  # a runtime API command on the rig's socket
  "$PYTHON" - "$STATE/haproxy.sock" "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n")
print(s.recv(65536).decode(), end="")
EOF
}

drain() {  # stop sending new requests to a node; the ones it has finish
  [[ -S "$STATE/haproxy.sock" ]] || return 0
  haproxy_cmd "set server headwater/node$1 state drain" > /dev/null
  sleep 1
}

haproxy_up() {
  if alive "$STATE/haproxy.pid"; then return; fi
  not_taken haproxy "$LB_PORT"
  if ! command -v haproxy > /dev/null; then
    say "haproxy: installing the Debian package"
    apt-get update -qq && apt-get install -y -qq haproxy > /dev/null
  fi
  cat > "$STATE/haproxy.cfg" <<EOF
global
  stats socket $STATE/haproxy.sock mode 600 level admin
  maxconn 4096

defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch
  # A request whose node died before answering is sent to the other one.
  retry-on conn-failure empty-response response-timeout 503

frontend api
  bind 127.0.0.1:$LB_PORT
  default_backend headwater

backend headwater
  balance roundrobin
  option httpchk GET /-/ready
  http-check expect status 200
  default-server check inter 500ms fall 2 rise 2
  # A request sent to a node that then died may have committed before it died: only reads are
  # sent again (a connection that could not be made is retried for every method, as nothing
  # was sent).
  http-request disable-l7-retry unless METH_GET || METH_HEAD || METH_OPTIONS
EOF
  for port in "${NODE_PORTS[@]}"; do
    echo "  server node$port 127.0.0.1:$port" >> "$STATE/haproxy.cfg"
  done
  haproxy -f "$STATE/haproxy.cfg" -D -p "$STATE/haproxy.pid"
  wait_http "http://127.0.0.1:$LB_PORT/-/ready" 15
  say "haproxy: 127.0.0.1:$LB_PORT in front of ${NODE_PORTS[*]}"
}

haproxy_down() {
  if alive "$STATE/haproxy.pid"; then
    # SIGUSR1: soft stop, the connections it holds finish first.
    local pid
    pid=$(head -1 "$STATE/haproxy.pid")
    kill -USR1 "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid"
    say "haproxy: stopped"
  fi
  rm -f "$STATE/haproxy.pid" "$STATE/haproxy.sock"
}

# --- status ---------------------------------------------------------------------------------

status() {
  local port state kept
  if alive "$STATE/replica/data/postmaster.pid"; then
    state=$(psql -h 127.0.0.1 -p "$REPLICA_PORT" -U postgres -d postgres -Atc \
      "SELECT 'up, replayed ' || pg_last_wal_replay_lsn() || CASE WHEN pg_is_wal_replay_paused() THEN ' (replay paused)' ELSE '' END" 2>/dev/null || echo "not answering")
  else state="down"; fi
  # While the replica is down its slot keeps the primary's WAL: say how much, it grows.
  kept=$(psql_primary "SELECT pg_size_pretty(pg_current_wal_lsn() - restart_lsn) FROM pg_replication_slots WHERE slot_name = '$SLOT'" 2>/dev/null || true)
  [[ -n "$kept" ]] && state="$state; slot $SLOT keeps $kept of WAL on the primary"
  say "replica   127.0.0.1:$REPLICA_PORT  $state"
  for port in "${REDIS_PORTS[@]}"; do
    if alive "$STATE/redis-$port.pid"; then
      state="up, $(redis-cli -p "$port" cluster info 2>/dev/null | grep cluster_state | tr -d '\r')"
    else state="down"; fi
    say "redis     127.0.0.1:$port  $state"
  done
  local i running=""
  for i in 0 1 2; do
    if [[ -z $running ]] && alive "$(rabbit_pidfile "$i")"; then
      running=$(rabbitmqctl_n "${RABBIT_NODES[$i]}" cluster_status --formatter json 2>/dev/null \
        | "$PYTHON" -c 'import json,sys; print(" ".join(json.load(sys.stdin)["running_nodes"]))' 2>/dev/null || true)
    fi
  done
  for i in 0 1 2; do
    if alive "$(rabbit_pidfile "$i")"; then
      if [[ " $running " == *" ${RABBIT_NODES[$i]} "* ]]; then
        state="up, running in a cluster of $(wc -w <<< "$running")"
      else state="up, not running in the cluster"; fi
    elif [[ $RIG_RABBIT == 1 ]]; then state="down"
    else state="not started (HW_CLUSTER_AMQP_URL=$AMQP_URL)"; fi
    say "rabbit    127.0.0.1:${RABBIT_PORTS[$i]}  ${RABBIT_NODES[$i]}  $state"
  done
  for port in "${NODE_PORTS[@]}"; do
    if alive "$STATE/node-$port.pid"; then
      state="up, ready: $(curl -s -m 2 "http://127.0.0.1:$port/-/ready" | "$PYTHON" -c 'import json,sys; r=json.load(sys.stdin); print(r["status"], json.dumps(r["checks"].get("replicas", {})))' 2>/dev/null || echo "not answering")"
    else state="down"; fi
    say "node      127.0.0.1:$port  $state"
  done
  if alive "$STATE/haproxy.pid"; then
    state="up, $(haproxy_cmd "show servers state headwater" 2>/dev/null | awk 'NR>2 && NF {printf "%s=%s ", $4, ($6==2 ? "UP" : ($6==0 ? "DOWN" : "state" $6))}')"
  else state="down"; fi
  say "haproxy   127.0.0.1:$LB_PORT  $state"
}

case "${1:-}" in
  up)
    mkdir -p "$STATE"
    if [[ -f "$STATE/root" && "$(cat "$STATE/root")" != "$ROOT" ]] && { alive "$STATE/node-${NODE_PORTS[0]}.pid" || alive "$STATE/node-${NODE_PORTS[1]}.pid"; }; then
      # Its nodes serve another checkout's code: take that rig down first.
      say "a rig started from $(cat "$STATE/root") is up in $STATE: run its cluster.sh down first, or set HW_CLUSTER_STATE and HW_CLUSTER_PORT_OFFSET" >&2
      exit 1
    fi
    echo "$ROOT" > "$STATE/root"
    replication_hba
    demo_database
    rabbit_up_begin
    replica_up
    redis_up
    rabbit_up_end
    nodes_up
    haproxy_up
    replica_in_use
    say "up: http://127.0.0.1:$LB_PORT  (state in $STATE; scripts/cluster.sh status | down)"
    ;;
  down)
    haproxy_down
    nodes_down
    redis_down
    rabbit_down
    replica_down
    replication_hba_down
    ;;
  status) status ;;
  drain) drain "${2:?drain NODE_PORT}" ;;
  # One part down, to see the rest carry on; `up` starts again whatever is down.
  stop)
    case "${2:-}" in
      replica)
        alive "$STATE/replica/data/postmaster.pid" || exit 0
        as_postgres "$(pg_bin)/pg_ctl" -D "$STATE/replica/data" -m fast -w stop > /dev/null
        say "replica: stopped (its data kept)" ;;
      redis)
        alive "$STATE/redis-${3:?stop redis PORT}.pid" || exit 0
        stop_pid "$STATE/redis-$3.pid" 10
        say "redis: $3 stopped" ;;
      rabbit)
        i=$(rabbit_index "${3:?stop rabbit PORT}")
        alive "$(rabbit_pidfile "$i")" || exit 0
        rabbit_stop "$i"
        say "rabbit: ${RABBIT_NODES[$i]} on $3 stopped (its data kept: up brings it back into the cluster)" ;;
      node)
        alive "$STATE/node-${3:?stop node PORT}.pid" || exit 0
        stop_pid "$STATE/node-$3.pid" 15
        say "node: $3 stopped (SIGTERM)" ;;
      *) say "usage: $0 stop replica | stop redis PORT | stop rabbit PORT | stop node PORT" >&2; exit 2 ;;
    esac ;;
  kill)
    [[ "${2:-}" == node ]] || { say "usage: $0 kill node PORT" >&2; exit 2; }
    if alive "$STATE/node-${3:?kill node PORT}.pid"; then
      # A machine that dies: the supervisor and its workers at once, nothing drained.
      kill -KILL -- "-$(cat "$STATE/node-$3.pid")"
      rm -f "$STATE/node-$3.pid"
      say "node: $3 killed (SIGKILL)"
    fi ;;
  *) say "usage: $0 up | down | status | drain NODE_PORT | stop replica | stop redis PORT | stop rabbit PORT | stop node PORT | kill node PORT" >&2; exit 2 ;;
esac
