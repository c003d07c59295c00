#!/usr/bin/env bash
# scripts/rabbitmq.sh — make this machine's shared RabbitMQ broker ready for durablews.
#
#   bash scripts/rabbitmq.sh [ensure]   install if missing, start if stopped, enable the
#                                       plugins, wait for the ports, verify (default)
#   bash scripts/rabbitmq.sh check      verify only, change nothing (exit 0 ready, 1 not)
#   bash scripts/rabbitmq.sh help
#
# "Ready" means, on 127.0.0.1:
#   5672  AMQP                 (listener reported by the management API)
#   61613 STOMP                (port answers; listener reported)
#   15674 Web-STOMP at /ws     (a real WebSocket upgrade + STOMP CONNECT as guest gets CONNECTED)
#   15672 management API       (GET /api/overview as guest:guest)
#   and no memory/disk alarm   (GET /api/health/checks/alarms), which would block publishers.
#
# Quiet when all is well: one line on stdout ("rabbitmq: ready (...)"), or nothing with
# DURABLEWS_RABBITMQ_QUIET=1. Anything it had to fix is reported on stderr, one line per
# action. On failure: "rabbitmq.sh: ERROR: ..." on stderr, what to do, a log tail, exit 1.
#
# Never reads stdin and never prompts (apt runs with DEBIAN_FRONTEND=noninteractive), so it
# runs as is under CI (CI=true, no tty). Installing and starting need root (or the rabbitmq
# user, for starting). Concurrent runs are serialised with flock.
#
# Environment:
#   DURABLEWS_RABBITMQ_TIMEOUT=60   seconds to wait for the node to boot and the ports to answer
#   DURABLEWS_RABBITMQ_QUIET=1      print nothing on success
#   DURABLEWS_RABBITMQ_VERBOSE=1    narrate every step on stderr
#   DURABLEWS_RABBITMQ_NO_INSTALL=1 never apt-get install; fail instead
#
# This script manages the machine's default node (rabbit@localhost on this machine, started
# with `rabbitmq-server -detached` as the machine does; there is no systemd). Extra test nodes
# are internal/testbroker's business, not this script's.
set -euo pipefail

readonly HOST=127.0.0.1
readonly PLUGINS=(rabbitmq_stomp rabbitmq_web_stomp rabbitmq_management)
readonly PORTS=(5672 61613 15674 15672)
readonly MGMT="http://$HOST:15672"
readonly CREDS=guest:guest
TIMEOUT=${DURABLEWS_RABBITMQ_TIMEOUT:-60}
QUIET=${DURABLEWS_RABBITMQ_QUIET:-0}
VERBOSE=${DURABLEWS_RABBITMQ_VERBOSE:-0}
NO_INSTALL=${DURABLEWS_RABBITMQ_NO_INSTALL:-0}
LOGDIR=/var/log/rabbitmq
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

note() { echo "rabbitmq: $*" >&2; }                              # an action we took
debug() { if [ "$VERBOSE" = 1 ]; then echo "rabbitmq: [debug] $*" >&2; fi; }

# die WHAT [HINT...] — loud failure: what failed, what to do, recent logs.
die() {
	local what=$1
	shift
	{
		echo
		echo "rabbitmq.sh: ERROR: $what"
		local h
		for h in "$@"; do echo "  -> $h"; done
		show_logs
		echo
	} >&2
	exit 1
}

show_logs() {
	local f
	for f in "${START_LOG:-}" "$LOGDIR/startup_err" "$LOGDIR/startup_log" "$LOGDIR"/rabbit@*.log; do
		[ -n "$f" ] && [ -s "$f" ] || continue
		echo "  --- last lines of $f:"
		tail -n 15 "$f" | sed 's/^/  | /'
	done
}

# port_open PORT — does 127.0.0.1:PORT accept a TCP connection (1 s budget)?
port_open() {
	timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

closed_ports() {
	local p out=()
	for p in "${PORTS[@]}"; do port_open "$p" || out+=("$p"); done
	echo "${out[*]:-}"
}

mgmt_get() { # mgmt_get PATH — body on stdout; fails on connection error or HTTP >= 400
	curl -fsS --max-time 5 -u "$CREDS" "$MGMT$1"
}

# ws_probe — speak Web-STOMP for real: WebSocket upgrade on /ws with subprotocol v12.stomp,
# then a STOMP CONNECT as guest in one masked text frame (mask key 0, so the payload goes
# as is); succeed iff the first frame back is CONNECTED. Prints the reason when it fails.
# Runs in its own bash under `timeout` (see webstomp_connect).
ws_probe() {
	set -u
	local status line frame len reply
	exec 3<>"/dev/tcp/$WS_HOST/15674" || { echo "connection to :15674 refused"; return 1; }
	printf 'GET /ws HTTP/1.1\r\nHost: %s:15674\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n' "$WS_HOST" >&3
	IFS= read -r -t 3 status <&3 || { echo "no HTTP answer to GET /ws"; return 1; }
	status=${status%$'\r'}
	case $status in
	"HTTP/1.1 101 "*) ;;
	*) echo "GET /ws with a WebSocket upgrade answered '$status', not 101"; return 1 ;;
	esac
	while IFS= read -r -t 3 line <&3; do [ "$line" = $'\r' ] && break; done
	frame=$'CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:0,0\n\n'
	len=$((${#frame} + 1)) # + the NUL that ends a STOMP frame; < 126, so a 1-byte length
	printf "\\x81\\x$(printf %02x $((128 + len)))\\x00\\x00\\x00\\x00%s\\x00" "$frame" >&3
	IFS= read -r -t 3 -d '' reply <&3 || true # up to the NUL ending the STOMP frame
	printf '\x88\x80\x00\x00\x00\x00' >&3 2>/dev/null || true # WebSocket close
	case $reply in
	*CONNECTED*) return 0 ;; # after the 2-byte WebSocket frame header
	"") echo "WebSocket upgraded, but no STOMP reply to CONNECT"; return 1 ;;
	*) echo "STOMP CONNECT as guest answered: $(LC_ALL=C tr -cd '[:print:]\n' <<<"$reply" | sed '1s/^[^A-Z]*//' | tr '\n' ' ' | cut -c1-160)"; return 1 ;;
	esac
}

webstomp_connect() {
	local out rc=0
	out=$(WS_HOST=$HOST timeout 6 bash -c "$(declare -f ws_probe); ws_probe" 2>&1) || rc=$?
	[ "$rc" = 124 ] && out="no complete answer within 6s${out:+ ($out)}"
	[ -n "$out" ] && echo "$out"
	return "$rc"
}

# ready — the whole readiness check; on failure sets WHY. On success sets VERSION.
WHY=
VERSION=
ready() {
	local closed overview proto missing=() alarms reason
	closed=$(closed_ports)
	if [ -n "$closed" ]; then WHY="ports not answering on $HOST: $closed"; return 1; fi
	if ! overview=$(mgmt_get /api/overview 2>&1); then
		WHY="management API GET $MGMT/api/overview failed: $overview"
		return 1
	fi
	for proto in amqp stomp http/web-stomp http; do
		grep -q "\"protocol\":\"$proto\"" <<<"$overview" || missing+=("$proto")
	done
	if [ ${#missing[@]} -gt 0 ]; then WHY="broker reports no listener for: ${missing[*]}"; return 1; fi
	VERSION=$(grep -o '"rabbitmq_version":"[^"]*"' <<<"$overview" | head -n1 | cut -d'"' -f4)
	if ! reason=$(webstomp_connect); then
		WHY="Web-STOMP ws://$HOST:15674/ws does not speak STOMP: $reason"
		return 1
	fi
	if ! alarms=$(curl -sS --max-time 5 -u "$CREDS" "$MGMT/api/health/checks/alarms" 2>&1) ||
		! grep -q '"status":"ok"' <<<"$alarms"; then
		WHY="resource alarm in effect (publishers would block): $alarms"
		ALARM=1
		return 1
	fi
	return 0
}

say_ready() {
	if [ "$QUIET" != 1 ]; then
		echo "rabbitmq: ready (${VERSION:-?}; stomp, web_stomp, management)"
	fi
}

have_rabbitmq() { [ -x /usr/sbin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1; }

need_root() {
	[ "$(id -u)" = 0 ] || die "$1 needs root" "run: sudo bash scripts/rabbitmq.sh"
}

# install_missing — Debian's packages for whatever is missing: rabbitmq-server, and the
# tools this script uses (curl, pgrep). A temporary policy-rc.d keeps rabbitmq-server's
# postinst from starting the service itself (with no systemd its init script may fail,
# and that fails the postinst); we start the node ourselves right after.
install_missing() {
	local pkgs=()
	have_rabbitmq || pkgs+=(rabbitmq-server)
	command -v curl >/dev/null || pkgs+=(curl)
	command -v pgrep >/dev/null || pkgs+=(procps)
	command -v flock >/dev/null || pkgs+=(util-linux)
	[ ${#pkgs[@]} -gt 0 ] || return 0
	[ "$NO_INSTALL" != 1 ] || die "not installed: ${pkgs[*]} (and DURABLEWS_RABBITMQ_NO_INSTALL=1)" \
		"install: apt-get update && apt-get install -y ${pkgs[*]}"
	need_root "installing ${pkgs[*]}"
	command -v apt-get >/dev/null || die "not installed: ${pkgs[*]}, and there is no apt-get" \
		"install RabbitMQ 3.10 with the plugins rabbitmq_stomp, rabbitmq_web_stomp, rabbitmq_management, and curl"
	note "not installed: ${pkgs[*]}: installing Debian's packages (apt-get)..."
	local log=/tmp/durablews-rabbitmq-apt.log prc=/usr/sbin/policy-rc.d made_prc=0
	if [ ! -e "$prc" ]; then
		printf '#!/bin/sh\n# temporary, from durablews scripts/rabbitmq.sh\nexit 101\n' >"$prc"
		chmod 755 "$prc"
		made_prc=1
		trap 'rm -f /usr/sbin/policy-rc.d' EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	local apt=(apt-get -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confold)
	if ! "${apt[@]}" update >"$log" 2>&1; then
		note "apt-get update failed (see $log); trying the install with the package lists there are"
	fi
	if ! "${apt[@]}" install -y --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1; then
		tail -n 20 "$log" | sed 's/^/  | /' >&2
		die "apt-get install -y ${pkgs[*]} failed (full log: $log)" \
			"check the network to the Debian mirrors and the dpkg state (dpkg --configure -a), then rerun"
	fi
	if [ "$made_prc" = 1 ]; then
		rm -f "$prc"
		trap - EXIT
	fi
	have_rabbitmq || die "apt-get said rabbitmq-server was installed, but rabbitmq-server is not there" \
		"see $log"
	note "installed ${pkgs[*]} ($(dpkg-query -W -f '${Package} ${Version}' rabbitmq-server 2>/dev/null))"
}

node_answers() { rabbitmq-diagnostics -q ping --timeout 5 >/dev/null 2>&1; }

# node_beam_running — is there a live beam.smp of the machine's default node (user
# rabbitmq, started through /usr/sbin/rabbitmq-server, so no RABBITMQ_NODENAME in its
# environment; internal/testbroker's extra nodes all carry one)? Zombies don't count: a
# node just stopped can linger as one until its parent reaps it.
node_beam_running() {
	local pid stat env
	for pid in $(pgrep -u rabbitmq -x beam.smp 2>/dev/null); do
		stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
		stat=${stat##*) }
		case $stat in Z* | X*) continue ;; esac
		env=$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null) || continue
		grep -q '^RABBITMQ_NODENAME=' <<<"$env" || return 0
	done
	return 1
}

# start_node — `rabbitmq-server -detached`, as this machine starts it; then wait until the
# node answers and the rabbit app has booted.
start_node() {
	[ "$(id -u)" = 0 ] || [ "$(id -un)" = rabbitmq ] || die "starting the broker needs root" \
		"run: sudo bash scripts/rabbitmq.sh   (or as root: rabbitmq-server -detached)"
	note "broker not running: starting it (rabbitmq-server -detached)..."
	START_LOG=/tmp/durablews-rabbitmq-start.log
	# 9>&-: the daemon must not inherit our flock, or it would hold it for ever.
	rabbitmq-server -detached </dev/null >"$START_LOG" 2>&1 9>&- ||
		die "rabbitmq-server -detached exited $?" "see the logs below; try running it by hand"
	wait_booted "the node started with rabbitmq-server -detached"
}

# wait_booted WHAT — wait for the Erlang node to answer, then for the rabbit app.
wait_booted() {
	local deadline=$((SECONDS + TIMEOUT)) left
	until node_answers; do
		[ $SECONDS -lt $deadline ] || die "$1 did not answer within ${TIMEOUT}s (rabbitmq-diagnostics ping)" \
			"look at the logs below and in $LOGDIR; a stale node may hold the ports: ps aux | grep beam" \
			"raise the wait with DURABLEWS_RABBITMQ_TIMEOUT=120"
		sleep 1
	done
	left=$((deadline - SECONDS))
	[ $left -ge 5 ] || left=5
	debug "node answers; rabbitmqctl await_startup --timeout $left"
	rabbitmqctl -q await_startup --timeout "$left" >/dev/null 2>&1 ||
		die "$1 answers but RabbitMQ did not finish booting within ${TIMEOUT}s" \
			"see: rabbitmqctl status; the logs below"
}

enabled_plugins_ok() { # explicit set (-E) as the node (or the file) has it
	local have p
	have=$(rabbitmq-plugins -q list -E -m 2>/dev/null) || return 1
	for p in "${PLUGINS[@]}"; do grep -qx "$p" <<<"$have" || return 1; done
}

enable_plugins() { # enable_plugins [--offline]
	if enabled_plugins_ok; then
		debug "plugins already enabled: ${PLUGINS[*]}"
		return 0
	fi
	note "enabling plugins ${PLUGINS[*]}${1:+ ($1)}..."
	local out
	out=$(rabbitmq-plugins enable ${1:+"$1"} "${PLUGINS[@]}" </dev/null 2>&1 9>&-) ||
		die "rabbitmq-plugins enable ${PLUGINS[*]} failed:
$(sed 's/^/  | /' <<<"$out")" "run it by hand as root and read its error"
}

wait_ready() {
	local deadline=$((SECONDS + TIMEOUT))
	until ready; do
		if [ "${ALARM:-0}" = 1 ]; then
			die "$WHY" "free disk space / memory, or clear a watermark a test left set:" \
				"rabbitmqctl set_disk_free_limit 50MB; rabbitmqctl set_vm_memory_high_watermark 0.4" \
				"then rerun this script"
		fi
		if [ $SECONDS -ge $deadline ]; then
			die "broker not ready after ${TIMEOUT}s: $WHY" \
				"Web-STOMP must listen on 15674 at /ws, management on 15672, STOMP on 61613, AMQP on 127.0.0.1:5672" \
				"check /etc/rabbitmq/rabbitmq.conf for web_stomp.*/management.*/stomp.* overrides and 'rabbitmq-plugins list -e'" \
				"is another process holding a port? ss -ltnp | grep -E ':(5672|61613|15672|15674) '"
		fi
		debug "not ready yet: $WHY"
		sleep 1
	done
}

ensure() {
	# Fast path: nothing to do.
	if ready; then
		say_ready
		return 0
	fi
	debug "not ready: $WHY"
	if [ "${ALARM:-0}" = 1 ]; then wait_ready; fi # dies with advice

	# Slow path, one at a time per machine.
	local lockdir=/run/lock
	[ -w "$lockdir" ] || lockdir=${TMPDIR:-/tmp}
	exec 9>"$lockdir/durablews-rabbitmq.lock"
	if command -v flock >/dev/null && ! flock -w $((TIMEOUT * 3)) 9; then
		die "another scripts/rabbitmq.sh held $lockdir/durablews-rabbitmq.lock for $((TIMEOUT * 3))s" \
			"see: ps aux | grep rabbitmq.sh"
	fi
	if ready; then # someone else fixed it while we waited
		say_ready
		return 0
	fi

	install_missing

	if node_answers; then
		debug "node answers"
		rabbitmqctl -q await_startup --timeout "$TIMEOUT" >/dev/null 2>&1 || wait_booted "the running node"
		enable_plugins
	else
		if node_beam_running; then
			# A beam of the default node that does not answer: booting, stopping, or
			# unreachable (cookie, node name). Wait for it to answer or to go away.
			note "a RabbitMQ node process exists but does not answer yet; waiting up to ${TIMEOUT}s..."
			local deadline=$((SECONDS + TIMEOUT))
			while ! node_answers && node_beam_running; do
				[ $SECONDS -lt $deadline ] || die "a beam.smp of user rabbitmq runs but the node did not answer within ${TIMEOUT}s" \
					"is it the default node? ps -o pid,user,lstart,args -u rabbitmq" \
					"stop it (rabbitmqctl stop, or kill that pid) and rerun; or raise DURABLEWS_RABBITMQ_TIMEOUT"
				sleep 1
			done
		fi
		if node_answers; then
			wait_booted "the running node"
		else
			# Enable offline first, so the node boots with the plugins.
			enable_plugins --offline
			start_node
		fi
		enable_plugins
	fi

	wait_ready
	note "fixed: broker is ready"
	say_ready
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

case "${1:-ensure}" in
ensure | "") ensure ;;
check)
	if ready; then
		say_ready
	else
		echo "rabbitmq.sh: not ready: $WHY" >&2
		echo "  -> run: bash scripts/rabbitmq.sh   (or: make broker)" >&2
		exit 1
	fi
	;;
help | -h | --help) usage ;;
*)
	echo "rabbitmq.sh: unknown command '$1'" >&2
	usage >&2
	exit 2
	;;
esac
