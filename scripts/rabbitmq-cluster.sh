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
# does nothing. The nodes run the RabbitMQ version DURABLEWS_RABBITMQ names (4.0 unless set; 3.10
# is the machine's own /usr/lib/rabbitmq, 4.x runs chroot'ed in scripts/rabbitmq-versions.sh's
# root) as the calling user, with their own names, ports, data directories and Erlang cookie;
# the shared brokers (rabbitmq-versions.sh) are not touched. One cluster at a time: the ports
# and node names are the same for every version.
#
# Tab sessions are configured as on a production cluster: every node loads the advanced.config
# of scripts/rabbitmq-tab-sessions.sh (OAuth 2 backend, the signing key it keeps in
# /var/lib/durablews/dev-signing-key) with rabbitmq_auth_backend_oauth2 enabled, and the
# operator policy is set once the cluster formed; so `make demo-cluster` runs the demo with tab
# sessions and quorum tab queues.
#
#   node             AMQP   Web-STOMP (ws://127.0.0.1:PORT/ws)   STOMP   management   Erlang dist
#   dws1@localhost   5681   15681                                61681   15691        25681
#   dws2@localhost   5682   15682                                61682   15692        25682
#   dws3@localhost   5683   15683                                61683   15693        25683
#
# All listeners bind 127.0.0.1; user guest/guest. Logs: $DIR/dwsN/log/.
#
# Environment:
#   DURABLEWS_RABBITMQ         the RabbitMQ version (4.0, 3.10, 4.3; default: rabbitmq-versions.sh's)
#   DURABLEWS_CLUSTER_DIR      where nodes keep data and logs, as the nodes see it (default, 3.10:
#                              ${XDG_STATE_HOME:-$HOME/.local/state}/durablews-cluster; 4.x:
#                              /var/lib/durablews-cluster inside the version's root)
#   DURABLEWS_CLUSTER_TIMEOUT  seconds to wait for a node to boot (default 180)
set -euo pipefail

readonly BIN=/usr/lib/rabbitmq/bin
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly VERSION=${DURABLEWS_RABBITMQ:-$(bash "$SCRIPT_DIR/rabbitmq-versions.sh" list | sed -n 1p)}
if [ "$VERSION" = 3.10 ]; then
	ROOT=/
	DIR=${DURABLEWS_CLUSTER_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/durablews-cluster}
else
	ROOT=$(bash "$SCRIPT_DIR/rabbitmq-versions.sh" root "$VERSION") || exit 1
	DIR=${DURABLEWS_CLUSTER_DIR:-/var/lib/durablews-cluster}
fi
readonly ROOT DIR
readonly HDIR=${ROOT%/}$DIR # DIR as this script sees it
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
ndir() { echo "$DIR/dws$1"; }   # as the node sees it
hndir() { echo "$HDIR/dws$1"; } # as this script sees it

# in_root CMD... — CMD of the version's RabbitMQ (chroot'ed into its root for 4.x).
in_root() {
	if [ "$ROOT" = / ]; then
		"$@"
	else
		chroot "$ROOT" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
	fi
}

# Environment shared by the server and the CLI: the cluster's HOME holds the one cookie; the
# machine's /etc/rabbitmq files (env, conf.d, advanced.config) are kept out.
common_env() {
	echo HOME="$DIR/home" RABBITMQ_CONF_ENV_FILE="$DIR/rabbitmq-env.conf" \
		RABBITMQ_CTL_DIST_PORT_MIN=0 RABBITMQ_CTL_DIST_PORT_MAX=0
}

ctl() { # ctl N args... — rabbitmqctl against node N
	local n=$1
	shift
	in_root env -u RABBITMQ_NODENAME $(common_env) "$BIN/rabbitmqctl" -n "$(name "$n")" "$@"
}

running() { ctl "$1" -q ping >/dev/null 2>&1; }

prepare() {
	mkdir -p "$HDIR/home" "$HDIR/bin"
	: >"$HDIR/rabbitmq-env.conf"
	if [ ! -s "$HDIR/home/.erlang.cookie" ]; then
		head -c 15 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F >"$HDIR/home/.erlang.cookie"
		chmod 400 "$HDIR/home/.erlang.cookie"
	fi
	# Tab sessions: the advanced.config every node loads (OAuth 2 backend and signing key).
	DURABLEWS_TABS_OFFLINE=1 DURABLEWS_TABS_QUIET=1 DURABLEWS_TABS_CONF_DIR="$HDIR" \
		bash "$SCRIPT_DIR/rabbitmq-tab-sessions.sh" apply >/dev/null ||
		die "scripts/rabbitmq-tab-sessions.sh could not write the cluster's tab-session config" "see its error above"
	# CLI wrappers against node 1 (for rabbitmq-tab-sessions.sh, and by hand).
	local tool
	for tool in rabbitmqctl rabbitmq-plugins rabbitmq-diagnostics rabbitmq-queues; do
		if [ "$ROOT" = / ]; then
			printf '#!/bin/sh\nexec env -u RABBITMQ_NODENAME %s %q -n %q "$@"\n' "$(common_env)" "$BIN/$tool" "$(name 1)"
		else
			printf '#!/bin/sh\nexec chroot %q /usr/bin/env -u RABBITMQ_NODENAME PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 %s %q -n %q "$@"\n' \
				"$ROOT" "$(common_env)" "$BIN/$tool" "$(name 1)"
		fi >"$HDIR/bin/$tool"
		chmod 755 "$HDIR/bin/$tool"
	done
	local n d
	for n in "${NODES[@]}"; do
		d=$(hndir "$n")
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
		# Where the version has it (4.3): return a dead node's consumer's unacked messages after
		# 10 s, not the default 60 s, so a tab that moved to another node is not kept waiting
		# (single active consumer) a minute (README "Supported RabbitMQ versions").
		if grep -qs '"consumer_disconnected_timeout"' "${ROOT%/}"/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbit-*/priv/schema/rabbit.schema; then
			echo "consumer_disconnected_timeout = 10000" >>"$d/rabbitmq.conf"
		fi
		echo "[rabbitmq_management,rabbitmq_stomp,rabbitmq_web_stomp,rabbitmq_auth_backend_oauth2]." >"$d/enabled_plugins"
	done
}

boot() { # boot N — start node N in the background (own session, survives this shell)
	local n=$1 d hd
	d=$(ndir "$n")
	hd=$(hndir "$n")
	for p in "568$n" "1568$n" "6168$n" "1569$n" "2568$n"; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			die "port $p (for $(name "$n")) is taken by another process" \
				"free it, or stop whatever listens there (ss -ltnp 'sport = :$p')"
		fi
	done
	echo "rabbitmq-cluster: starting $(name "$n")" >&2
	(cd "$hd" && in_root env -u RABBITMQ_NODENAME $(common_env) \
		RABBITMQ_NODENAME="$(name "$n")" RABBITMQ_DIST_PORT="2568$n" \
		RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" \
		RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$DIR/advanced.config" \
		RABBITMQ_CONFIG_FILES="$d/conf.d/*.conf" RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
		RABBITMQ_PID_FILE="$d/rabbitmq.pid" \
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
		setsid "$BIN/rabbitmq-server") >>"$hd/log/console.log" 2>&1 </dev/null &
	echo $! >"$hd/server.pid"
}

await() { # await N — until node N's RabbitMQ application runs
	local n=$1 deadline=$((SECONDS + TIMEOUT))
	local pidf
	pidf="$(hndir "$n")/server.pid"
	until ctl "$n" -q await_startup >/dev/null 2>&1; do
		if [ -s "$pidf" ] && ! kill -0 "$(cat "$pidf")" 2>/dev/null; then
			tail -n 20 "$(hndir "$n")/log/console.log" >&2 || true
			die "$(name "$n") exited while booting" "see $(hndir "$n")/log/"
		fi
		if [ $SECONDS -ge $deadline ]; then
			tail -n 20 "$(hndir "$n")/log/console.log" >&2 || true
			die "$(name "$n") did not start within ${TIMEOUT}s" "see $(hndir "$n")/log/"
		fi
		sleep 1
	done
}

members() { ctl 1 -q cluster_status --formatter json 2>/dev/null || true; }

cmd_start() {
	[ -x "${ROOT%/}$BIN/rabbitmq-server" ] || die "RabbitMQ $VERSION is not installed" "run: make broker RABBITMQ=$VERSION"
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
					"see $(hndir "$n")/log/; 'bash scripts/rabbitmq-cluster.sh clean' starts over"
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
	# The operator policy of tab sessions, once for the cluster; and a check that every node
	# runs the tab-session config (the script compares node 1's running config with the file).
	local tabs
	tabs=$(DURABLEWS_TABS_CONF_DIR="$HDIR" DURABLEWS_TABS_NODE="$(name 1)" DURABLEWS_TABS_CTL_DIR="$HDIR/bin" \
		DURABLEWS_TABS_RESTART=never DURABLEWS_TABS_QUIET=1 bash "$SCRIPT_DIR/rabbitmq-tab-sessions.sh" apply) ||
		die "scripts/rabbitmq-tab-sessions.sh could not configure the cluster for tab sessions" "see its error above"
	case $tabs in *"restart required"*) die "the cluster's nodes do not run the tab-session config: $tabs" \
		"bash scripts/rabbitmq-cluster.sh stop, then start (the nodes load $HDIR/advanced.config at boot)" ;; esac
	echo "rabbitmq-cluster: ready: 3 nodes of RabbitMQ $VERSION (guest/guest; tab sessions: signing key $(bash "$SCRIPT_DIR/rabbitmq-tab-sessions.sh" key-path))"
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
	echo "rabbitmq-cluster: stopped (data kept in $HDIR)"
}

cmd_kill() {
	local n=${1:-}
	[[ $n =~ ^[123]$ ]] || die "kill needs a node number 1-3"
	local pidf
	pidf="$(hndir "$n")/rabbitmq.pid"
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
	rm -rf "$HDIR"
	echo "rabbitmq-cluster: removed $HDIR"
	;;
kill) cmd_kill "${2:-}" ;;
help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*) die "unknown command '$1'" "bash scripts/rabbitmq-cluster.sh help" ;;
esac
