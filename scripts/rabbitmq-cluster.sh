#!/usr/bin/env bash
# scripts/rabbitmq-cluster.sh — a local 3-node RabbitMQ cluster beside this machine's broker,
# to try durablews's failover yourself (run the demo against it, kill a node, watch the page).
#
#   bash scripts/rabbitmq-cluster.sh start    boot the missing nodes, join them, wait, print URLs
#   bash scripts/rabbitmq-cluster.sh status   per node: running?, cluster view, partitions, alarms
#   bash scripts/rabbitmq-cluster.sh stop     stop every node gracefully (data kept for the next start)
#   bash scripts/rabbitmq-cluster.sh clean    stop, then delete the cluster's directory
#   bash scripts/rabbitmq-cluster.sh kill N   kill -9 node N (1-3), for failover experiments
#
# Every command is idempotent: start on a running cluster only checks it, stop on a stopped one
# does nothing. The nodes run the installed RabbitMQ (/usr/lib/rabbitmq/bin/rabbitmq-server) as
# the calling user, with their own names, ports, data directories and Erlang cookie; the
# machine's broker (rabbit@localhost on 5672/15672/15674/61613) is not touched.
#
#   node             AMQP   Web-STOMP (ws://127.0.0.1:PORT/ws)   STOMP   management   Erlang dist
#   dws1@localhost   5681   15681                                61681   15691        25681
#   dws2@localhost   5682   15682                                61682   15692        25682
#   dws3@localhost   5683   15683                                61683   15693        25683
#
# All listeners bind 127.0.0.1; user guest/guest. Logs: $DIR/dwsN/log/.
#
# Environment:
#   DURABLEWS_CLUSTER_DIR      where nodes keep data and logs
#                              (default ${XDG_STATE_HOME:-$HOME/.local/state}/durablews-cluster)
#   DURABLEWS_CLUSTER_TIMEOUT  seconds to wait for a node to boot (default 180)
set -euo pipefail

readonly BIN=/usr/lib/rabbitmq/bin
readonly DIR=${DURABLEWS_CLUSTER_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/durablews-cluster}
readonly TIMEOUT=${DURABLEWS_CLUSTER_TIMEOUT:-180}
readonly NODES=(1 2 3)

die() {
	echo "rabbitmq-cluster.sh: ERROR: $1" >&2
	shift
	local h
	for h in "$@"; do echo "  -> $h" >&2; done
	exit 1
}

name() { echo "dws$1@localhost"; }
ndir() { echo "$DIR/dws$1"; }

# Environment shared by the server and the CLI: the cluster's HOME holds the one cookie; the
# machine's /etc/rabbitmq files (env, conf.d, advanced.config) are kept out.
common_env() {
	echo HOME="$DIR/home" RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf" \
		RABBITMQ_CTL_DIST_PORT_MIN=0 RABBITMQ_CTL_DIST_PORT_MAX=0
}

ctl() { # ctl N args... — rabbitmqctl against node N
	local n=$1
	shift
	env -u RABBITMQ_NODENAME $(common_env) "$BIN/rabbitmqctl" -n "$(name "$n")" "$@"
}

running() { ctl "$1" -q ping >/dev/null 2>&1; }

prepare() {
	mkdir -p "$DIR/home"
	: >"$DIR/rabbitmq-env.conf"
	if [ ! -s "$DIR/home/.erlang.cookie" ]; then
		head -c 15 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F >"$DIR/home/.erlang.cookie"
		chmod 400 "$DIR/home/.erlang.cookie"
	fi
	local n d
	for n in "${NODES[@]}"; do
		d=$(ndir "$n")
		mkdir -p "$d/mnesia" "$d/log" "$d/conf.d"
		cat >"$d/rabbitmq.conf" <<-EOF
			listeners.tcp.1 = 127.0.0.1:568$n
			loopback_users = none
			management.tcp.ip = 127.0.0.1
			management.tcp.port = 1569$n
			stomp.listeners.tcp.1 = 127.0.0.1:6168$n
			web_stomp.tcp.ip = 127.0.0.1
			web_stomp.tcp.port = 1568$n
		EOF
		echo "[rabbitmq_management,rabbitmq_stomp,rabbitmq_web_stomp]." >"$d/enabled_plugins"
		# Never created: an empty advanced.config does not parse; the variable only keeps
		# /etc/rabbitmq/advanced.config out.
	done
}

boot() { # boot N — start node N in the background (own session, survives this shell)
	local n=$1 d
	d=$(ndir "$n")
	for p in "568$n" "1568$n" "6168$n" "1569$n" "2568$n"; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			die "port $p (for $(name "$n")) is taken by another process" \
				"free it, or stop whatever listens there (ss -ltnp 'sport = :$p')"
		fi
	done
	echo "rabbitmq-cluster: starting $(name "$n")" >&2
	(cd "$d" && exec env -u RABBITMQ_NODENAME $(common_env) \
		RABBITMQ_NODENAME="$(name "$n")" RABBITMQ_DIST_PORT="2568$n" \
		RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" \
		RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
		RABBITMQ_CONFIG_FILES="$d/conf.d/*.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
		RABBITMQ_PID_FILE="$d/rabbitmq.pid" \
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
		setsid "$BIN/rabbitmq-server" >>"$d/log/console.log" 2>&1 </dev/null) &
	echo $! >"$d/server.pid"
}

await() { # await N — until node N's RabbitMQ application runs
	local n=$1 deadline=$((SECONDS + TIMEOUT))
	local pidf
	pidf="$(ndir "$n")/server.pid"
	until ctl "$n" -q await_startup >/dev/null 2>&1; do
		if [ -s "$pidf" ] && ! kill -0 "$(cat "$pidf")" 2>/dev/null; then
			tail -n 20 "$(ndir "$n")/log/console.log" >&2 || true
			die "$(name "$n") exited while booting" "see $(ndir "$n")/log/"
		fi
		if [ $SECONDS -ge $deadline ]; then
			tail -n 20 "$(ndir "$n")/log/console.log" >&2 || true
			die "$(name "$n") did not start within ${TIMEOUT}s" "see $(ndir "$n")/log/"
		fi
		sleep 1
	done
}

members() { ctl 1 -q cluster_status --formatter json 2>/dev/null || true; }

cmd_start() {
	command -v "$BIN/rabbitmq-server" >/dev/null || die "RabbitMQ is not installed" "run: make broker"
	prepare
	local n
	for n in "${NODES[@]}"; do running "$n" || boot "$n"; done
	for n in "${NODES[@]}"; do await "$n"; done
	for n in 2 3; do
		if ! members | grep -q "\"$(name "$n")\""; then
			echo "rabbitmq-cluster: joining $(name "$n") to $(name 1)" >&2
			local step out
			for step in stop_app "join_cluster $(name 1)" start_app; do
				# shellcheck disable=SC2086 # step is a command and its argument
				out=$(ctl "$n" -q $step 2>&1) || die "rabbitmqctl -n $(name "$n") $step failed: $out" \
					"see $(ndir "$n")/log/; 'bash scripts/rabbitmq-cluster.sh clean' starts over"
			done
			await "$n"
		fi
	done
	local st
	st=$(members)
	for n in "${NODES[@]}"; do
		grep -q "\"running_nodes\":\[[^]]*\"$(name "$n")\"" <<<"$st" ||
			die "$(name "$n") is not running in the cluster" "bash scripts/rabbitmq-cluster.sh status"
	done
	echo "rabbitmq-cluster: ready: 3 nodes (guest/guest)"
	echo "  AMQP:      amqp://guest:guest@127.0.0.1:5681/ amqp://guest:guest@127.0.0.1:5682/ amqp://guest:guest@127.0.0.1:5683/"
	echo "  Web-STOMP: ws://127.0.0.1:15681/ws ws://127.0.0.1:15682/ws ws://127.0.0.1:15683/ws"
	echo "  management: http://127.0.0.1:15691/ (and 15692, 15693)"
}

cmd_status() {
	local n up=0
	for n in "${NODES[@]}"; do
		if running "$n"; then
			echo "$(name "$n"): running (amqp 568$n, web-stomp 1568$n, management 1569$n)"
			up=$((up + 1))
		else
			echo "$(name "$n"): not running"
		fi
	done
	[ $up -gt 0 ] || { echo "cluster: down (start it: bash scripts/rabbitmq-cluster.sh start)"; return 3; }
	for n in "${NODES[@]}"; do
		if running "$n"; then
			echo "cluster view of $(name "$n"):"
			ctl "$n" -q cluster_status | sed 's/\x1b\[[0-9;]*m//g' |
				sed -n '/^Running Nodes/,/^Versions/p; /^Alarms/,/^Listeners/p' |
				grep -v -e '^Versions' -e '^Listeners' -e '^$' | sed 's/^/  /' || true
			break
		fi
	done
	[ $up -eq ${#NODES[@]} ]
}

cmd_stop() {
	local n pids=()
	for n in "${NODES[@]}"; do
		if running "$n"; then
			echo "rabbitmq-cluster: stopping $(name "$n")" >&2
			ctl "$n" -q stop "$(ndir "$n")/rabbitmq.pid" &
			pids+=($!)
		fi
	done
	local p
	for p in "${pids[@]}"; do wait "$p" || true; done
	echo "rabbitmq-cluster: stopped (data kept in $DIR)"
}

cmd_kill() {
	local n=${1:-}
	[[ $n =~ ^[123]$ ]] || die "kill needs a node number 1-3"
	local pidf
	pidf="$(ndir "$n")/rabbitmq.pid"
	[ -s "$pidf" ] && running "$n" || { echo "$(name "$n") is not running"; return 0; }
	kill -9 "$(cat "$pidf")"
	echo "rabbitmq-cluster: killed $(name "$n") (-9); bring it back with: bash scripts/rabbitmq-cluster.sh start"
}

case "${1:-help}" in
start) cmd_start ;;
status) cmd_status ;;
stop) cmd_stop ;;
clean)
	cmd_stop
	rm -rf "$DIR"
	echo "rabbitmq-cluster: removed $DIR"
	;;
kill) cmd_kill "${2:-}" ;;
help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*) die "unknown command '$1'" "bash scripts/rabbitmq-cluster.sh help" ;;
esac
