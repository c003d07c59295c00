#!/usr/bin/env bash
# scripts/rabbitmq-versions.sh — RabbitMQ of several versions beside this machine's broker, from
# Debian's own packages: each version in a cached, debootstrapped root, started with chroot on
# its own ports.
#
#   bash scripts/rabbitmq-versions.sh install [VER...]   build the roots that are missing (default: all)
#   bash scripts/rabbitmq-versions.sh start VER          install if needed, start VER's node, wait, verify
#   bash scripts/rabbitmq-versions.sh stop VER|all       stop VER's node (data kept)
#   bash scripts/rabbitmq-versions.sh status             per version: root, package, node, ports
#   bash scripts/rabbitmq-versions.sh root VER           print VER's root ("/" for the machine's own)
#   bash scripts/rabbitmq-versions.sh env VER            print the DURABLEWS_* settings that point
#                                                        the tests at VER's node (eval-able)
#   bash scripts/rabbitmq-versions.sh node VER           print VER's node name
#   bash scripts/rabbitmq-versions.sh node-dir VER       print the host path of VER's node directory
#                                                        (config files; bin/ holds CLI wrappers)
#   bash scripts/rabbitmq-versions.sh list               the supported versions, default first
#
# Versions (VER): 3.10 is the machine's own broker (Debian 12's package; scripts/rabbitmq.sh),
# 4.0 is Debian 13 "trixie"'s package, 4.3 is Debian unstable "sid"'s. Each command is
# idempotent: install skips a root that is complete, start on a running node only verifies it.
#
#   VER   node               AMQP   management   STOMP   Web-STOMP (ws://127.0.0.1:PORT/ws)   dist
#   3.10  rabbit@localhost   5672   15672        61613   15674                                 25672
#   4.0   dws40@localhost    5640   15640        61640   15740                                 25640
#   4.3   dws43@localhost    5643   15643        61643   15743                                 25643
#
# All listeners bind 127.0.0.1; user guest/guest (loopback only). The roots live in
# $DURABLEWS_RABBITMQ_ROOTS (default /var/cache/durablews/rabbitmq), one directory per version;
# a node's data and logs are inside its root (/var/lib/durablews-node). internal/testbroker
# starts private nodes and clusters from the same roots (DURABLEWS_RABBITMQ=VER).
#
# Facts this script handles (measured here): sid's Release file in the mirror is past its
# validity date (apt needs Acquire::Check-Valid-Until=false); a root without the host's
# /etc/hosts kills the node at boot ("epmd error for host localhost: nxdomain"); /proc and /dev
# are bind-mounted into the root; the host's epmd (4369) serves every node.
#
# Needs root (debootstrap, chroot, mount). Never reads stdin.
# Environment:
#   DURABLEWS_RABBITMQ_ROOTS     where the roots are kept (default /var/cache/durablews/rabbitmq)
#   DURABLEWS_DEBIAN_MIRROR      Debian mirror (default: the machine's, from its apt sources)
#   DURABLEWS_RABBITMQ_TIMEOUT   seconds to wait for a node to boot (default 120)
set -euo pipefail

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
readonly ROOTS=${DURABLEWS_RABBITMQ_ROOTS:-/var/cache/durablews/rabbitmq}
readonly TIMEOUT=${DURABLEWS_RABBITMQ_TIMEOUT:-120}
readonly VERSIONS=(4.0 3.10 4.3) # the default first (see README "Supported RabbitMQ versions")
readonly ROOT_VERSIONS=(4.0 4.3)
readonly BIN=/usr/lib/rabbitmq/bin
readonly NODE_DIR=/var/lib/durablews-node # inside the root

die() {
	echo "rabbitmq-versions.sh: ERROR: $1" >&2
	shift
	local h
	for h in "$@"; do echo "  -> $h" >&2; done
	exit 1
}
note() { echo "rabbitmq-versions: $*" >&2; }

known() { # known VER — dies unless VER is a supported version
	case ${1:-} in
	3.10 | 4.0 | 4.3) ;;
	*) die "unknown RabbitMQ version '${1:-}' (supported: ${VERSIONS[*]})" "bash scripts/rabbitmq-versions.sh list" ;;
	esac
}

suite() { case $1 in 4.0) echo trixie ;; 4.3) echo sid ;; esac }
tag() { echo "${1//./}"; } # 4.0 -> 40
root() { if [ "$1" = 3.10 ]; then echo /; else echo "$ROOTS/$1"; fi; }
node() { if [ "$1" = 3.10 ]; then echo rabbit@localhost; else echo "dws$(tag "$1")@localhost"; fi; }
port_amqp() { if [ "$1" = 3.10 ]; then echo 5672; else echo "56$(tag "$1")"; fi; }
port_mgmt() { if [ "$1" = 3.10 ]; then echo 15672; else echo "156$(tag "$1")"; fi; }
port_stomp() { if [ "$1" = 3.10 ]; then echo 61613; else echo "616$(tag "$1")"; fi; }
port_ws() { if [ "$1" = 3.10 ]; then echo 15674; else echo "157$(tag "$1")"; fi; }
port_dist() { if [ "$1" = 3.10 ]; then echo 25672; else echo "256$(tag "$1")"; fi; }

mirror() {
	if [ -n "${DURABLEWS_DEBIAN_MIRROR:-}" ]; then
		echo "$DURABLEWS_DEBIAN_MIRROR"
		return
	fi
	local m
	m=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | awk 'NR==1{print $2}')
	[ -n "$m" ] || m=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | awk 'NR==1{print $2}')
	echo "${m:-http://deb.debian.org/debian}"
}

need_root() { [ "$(id -u)" = 0 ] || die "$1 needs root" "run it as root (sudo bash scripts/rabbitmq-versions.sh ...)"; }

# mounts VER — /proc and /dev of the host inside the root (again after a reboot), and the
# host's /etc/hosts (the node resolves localhost through it).
mounts() {
	local r
	r=$(root "$1")
	mountpoint -q "$r/proc" || mount -t proc proc "$r/proc"
	mountpoint -q "$r/dev" || mount --bind /dev "$r/dev"
	cmp -s /etc/hosts "$r/etc/hosts" || cp /etc/hosts "$r/etc/hosts"
}

installed() { [ -f "$(root "$1")/.durablews-complete" ]; }

# install_root VER — debootstrap (minbase) + apt-get install rabbitmq-server, once (with
# ca-certificates, as any production host has: without them 4.x's OAuth 2 backend crashes in
# pubkey_os_cacerts while refusing a token with an unknown key id, instead of refusing it plainly). A partial
# root (an interrupted run) is removed and built again; .durablews-complete marks a good one.
install_root() {
	local v=$1 r s log
	r=$(root "$v")
	installed "$v" && return 0
	need_root "building the RabbitMQ $v root"
	s=$(suite "$v")
	command -v debootstrap >/dev/null || {
		note "installing debootstrap (Debian's package)"
		DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 install -y debootstrap \
			>/tmp/durablews-debootstrap-apt.log 2>&1 || {
			DEBIAN_FRONTEND=noninteractive apt-get -q update >>/tmp/durablews-debootstrap-apt.log 2>&1 || true
			DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300 install -y debootstrap \
				>>/tmp/durablews-debootstrap-apt.log 2>&1 ||
				die "apt-get install debootstrap failed" "see /tmp/durablews-debootstrap-apt.log"
		}
	}
	# sid has no debootstrap script of its own on older hosts' debootstrap only under its name.
	[ -e "/usr/share/debootstrap/scripts/$s" ] || die "this debootstrap has no script for '$s'" \
		"update debootstrap (apt-get install debootstrap)"
	log=/tmp/durablews-rabbitmq-$v-root.log
	: >"$log"
	if [ -e "$r" ]; then
		note "removing the incomplete root $r"
		umount_root "$v"
		rm -rf "$r"
	fi
	mkdir -p "$ROOTS"
	note "building the RabbitMQ $v root ($s) in $r (once; a few minutes; log $log)"
	debootstrap --variant=minbase "$s" "$r" "$(mirror)" >>"$log" 2>&1 ||
		die "debootstrap $s failed" "see $log"
	mounts "$v"
	local apt=(apt-get -q -o DPkg::Lock::Timeout=300 -o Acquire::Check-Valid-Until=false)
	printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d" # no service starts inside
	chmod 755 "$r/usr/sbin/policy-rc.d"
	chroot "$r" env DEBIAN_FRONTEND=noninteractive "${apt[@]}" update >>"$log" 2>&1 ||
		die "apt-get update in the $v root failed" "see $log"
	chroot "$r" env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends \
		rabbitmq-server ca-certificates >>"$log" 2>&1 || die "apt-get install rabbitmq-server in the $v root failed" "see $log"
	chroot "$r" apt-get clean >>"$log" 2>&1 || true
	[ -x "$r$BIN/rabbitmq-server" ] || die "the $v root has no $BIN/rabbitmq-server after the install" "see $log"
	chroot "$r" dpkg-query -W -f '${Version}' rabbitmq-server >"$r/.durablews-complete"
	note "RabbitMQ $v root ready: rabbitmq-server $(cat "$r/.durablews-complete")"
}

umount_root() {
	local r
	r=$(root "$1")
	mountpoint -q "$r/proc" && umount -l "$r/proc" || true
	mountpoint -q "$r/dev" && umount -l "$r/dev" || true
}

# in_root VER CMD... — run CMD inside VER's root with a clean environment (the node's HOME).
in_root() {
	local v=$1
	shift
	chroot "$(root "$v")" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$NODE_DIR/home" \
		LANG=C.UTF-8 RABBITMQ_CONF_ENV_FILE="$NODE_DIR/rabbitmq-env.conf" \
		RABBITMQ_CTL_DIST_PORT_MIN=0 RABBITMQ_CTL_DIST_PORT_MAX=0 "$@"
}

ctl() { local v=$1; shift; in_root "$v" "$BIN/rabbitmqctl" -n "$(node "$v")" "$@"; }
running() { ctl "$1" -q ping >/dev/null 2>&1; }

prepare_node() {
	local v=$1 d
	d=$(root "$v")$NODE_DIR
	mkdir -p "$d/home" "$d/mnesia" "$d/log" "$d/conf.d"
	# Debian's default plugins path starts with /usr/lib/rabbitmq/plugins,
	# which the package does not create: rabbitmq-plugins then fails with
	# plugins_dir_does_not_exist (or, with it present, finds no plugin). The
	# package's own directory, for the server and the CLI alike; and the
	# node's enabled_plugins file, which the CLI must name as the node does.
	local pd
	pd=$(cd "$(root "$v")" && ls -d usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins | tail -n 1)
	printf 'PLUGINS_DIR=/%s\nENABLED_PLUGINS_FILE=%s/enabled_plugins\n' "$pd" "$NODE_DIR" >"$d/rabbitmq-env.conf"
	if [ ! -s "$d/home/.erlang.cookie" ]; then
		head -c 15 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F >"$d/home/.erlang.cookie"
		chmod 400 "$d/home/.erlang.cookie"
	fi
	cat >"$d/rabbitmq.conf" <<-EOF
		listeners.tcp.1 = 127.0.0.1:$(port_amqp "$v")
		management.tcp.ip = 127.0.0.1
		management.tcp.port = $(port_mgmt "$v")
		stomp.listeners.tcp.1 = 127.0.0.1:$(port_stomp "$v")
		web_stomp.tcp.ip = 127.0.0.1
		web_stomp.tcp.port = $(port_ws "$v")
	EOF
	[ -s "$d/enabled_plugins" ] || echo "[rabbitmq_management,rabbitmq_stomp,rabbitmq_web_stomp]." >"$d/enabled_plugins"
	write_wrappers "$v"
}

# write_wrappers VER — $NODE_DIR/bin/<tool> in VER's root: the root's CLI tool against VER's node
# with its cookie, runnable from the host (scripts/rabbitmq-tab-sessions.sh uses them).
write_wrappers() {
	local v=$1 d tool
	d=$(root "$v")$NODE_DIR/bin
	mkdir -p "$d"
	for tool in rabbitmqctl rabbitmq-plugins rabbitmq-diagnostics rabbitmq-queues rabbitmq-streams; do
		cat >"$d/$tool" <<-EOF
			#!/bin/sh
			# $tool of RabbitMQ $v (root $(root "$v")) against $(node "$v"); from scripts/rabbitmq-versions.sh
			exec chroot '$(root "$v")' /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME='$NODE_DIR/home' LANG=C.UTF-8 \\
			  RABBITMQ_CONF_ENV_FILE='$NODE_DIR/rabbitmq-env.conf' RABBITMQ_CTL_DIST_PORT_MIN=0 RABBITMQ_CTL_DIST_PORT_MAX=0 \\
			  '$BIN/$tool' -n '$(node "$v")' "\$@"
		EOF
		chmod 755 "$d/$tool"
	done
}

cmd_start() {
	local v=$1
	known "$v"
	if [ "$v" = 3.10 ]; then
		exec bash "$(dirname "${BASH_SOURCE[0]}")/rabbitmq.sh"
	fi
	need_root "starting the RabbitMQ $v node"
	install_root "$v"
	mounts "$v"
	if ! running "$v"; then
		prepare_node "$v"
		local p
		for p in $(port_amqp "$v") $(port_mgmt "$v") $(port_stomp "$v") $(port_ws "$v") $(port_dist "$v"); do
			if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
				die "port $p (for RabbitMQ $v) is taken by another process" "ss -ltnp 'sport = :$p'"
			fi
		done
		note "starting RabbitMQ $v ($(node "$v"), AMQP $(port_amqp "$v"))"
		in_root "$v" RABBITMQ_NODENAME="$(node "$v")" RABBITMQ_DIST_PORT="$(port_dist "$v")" \
			RABBITMQ_MNESIA_BASE="$NODE_DIR/mnesia" RABBITMQ_LOG_BASE="$NODE_DIR/log" \
			RABBITMQ_CONFIG_FILE="$NODE_DIR/rabbitmq.conf" \
			RABBITMQ_ADVANCED_CONFIG_FILE="$NODE_DIR/advanced.config" \
			RABBITMQ_CONFIG_FILES="$NODE_DIR/conf.d/*.conf" \
			RABBITMQ_ENABLED_PLUGINS_FILE="$NODE_DIR/enabled_plugins" \
			RABBITMQ_PID_FILE="$NODE_DIR/rabbitmq.pid" \
			RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
			setsid "$BIN/rabbitmq-server" >>"$(root "$v")$NODE_DIR/log/console.log" 2>&1 </dev/null 9>&- &
		local deadline=$((SECONDS + TIMEOUT))
		until ctl "$v" -q await_startup --timeout 5 >/dev/null 2>&1; do
			if [ $SECONDS -ge $deadline ]; then
				tail -n 20 "$(root "$v")$NODE_DIR/log/console.log" >&2 || true
				die "RabbitMQ $v did not start within ${TIMEOUT}s" "logs: $(root "$v")$NODE_DIR/log/"
			fi
			sleep 1
		done
	fi
	local deadline=$((SECONDS + 30)) ov
	until ov=$(curl -fsS --max-time 5 -u guest:guest "http://127.0.0.1:$(port_mgmt "$v")/api/overview" 2>/dev/null) &&
		grep -q '"protocol":"http/web-stomp"' <<<"$ov" && grep -q '"protocol":"stomp"' <<<"$ov"; do
		[ $SECONDS -lt $deadline ] || die "RabbitMQ $v runs but its management API or listeners are not there" \
			"logs: $(root "$v")$NODE_DIR/log/"
		sleep 1
	done
	echo "rabbitmq-versions: $v ready ($(grep -o '"rabbitmq_version":"[^"]*"' <<<"$ov" | head -n1 | cut -d'"' -f4); amqp://guest:guest@127.0.0.1:$(port_amqp "$v")/ ws://127.0.0.1:$(port_ws "$v")/ws)"
}

cmd_stop() {
	local v=$1
	if [ "$v" = all ]; then
		for v in "${ROOT_VERSIONS[@]}"; do installed "$v" && cmd_stop "$v"; done
		return 0
	fi
	known "$v"
	[ "$v" != 3.10 ] || die "3.10 is the machine's shared broker; this script does not stop it"
	installed "$v" || return 0
	mounts "$v"
	if running "$v"; then
		ctl "$v" -q stop "$NODE_DIR/rabbitmq.pid" >/dev/null 2>&1 || true
		note "stopped RabbitMQ $v (data kept in $(root "$v")$NODE_DIR)"
	fi
}

cmd_status() {
	local v
	for v in "${VERSIONS[@]}"; do
		if [ "$v" = 3.10 ]; then
			printf '%-5s machine broker   %s\n' "$v" "$(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null || echo 'not installed')"
			continue
		fi
		if ! installed "$v"; then
			printf '%-5s %s: not installed (bash scripts/rabbitmq-versions.sh install %s)\n' "$v" "$(root "$v")" "$v"
			continue
		fi
		mounts "$v"
		printf '%-5s %s: rabbitmq-server %s, node %s %s\n' "$v" "$(root "$v")" "$(cat "$(root "$v")/.durablews-complete")" \
			"$(node "$v")" "$(running "$v" && echo "running (AMQP $(port_amqp "$v"), Web-STOMP $(port_ws "$v"))" || echo 'not running')"
	done
}

# The settings that point the tests, the bench and the CLI at VER's node.
cmd_env() {
	local v=$1
	known "$v"
	echo "DURABLEWS_RABBITMQ=$v"
	echo "DURABLEWS_AMQP_URL=amqp://guest:guest@127.0.0.1:$(port_amqp "$v")/"
	echo "DURABLEWS_WEB_STOMP_URL=ws://127.0.0.1:$(port_ws "$v")/ws"
	echo "DURABLEWS_STOMP_ADDR=127.0.0.1:$(port_stomp "$v")"
	echo "DURABLEWS_MANAGEMENT_URL=http://127.0.0.1:$(port_mgmt "$v")"
}

case "${1:-help}" in
install)
	shift
	[ $# -gt 0 ] || set -- "${ROOT_VERSIONS[@]}"
	for v in "$@"; do
		known "$v"
		[ "$v" = 3.10 ] && { bash "$(dirname "${BASH_SOURCE[0]}")/rabbitmq.sh"; continue; }
		install_root "$v"
		mounts "$v"
	done
	;;
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:-}" ;;
status) cmd_status ;;
root)
	known "${2:-}"
	if [ "$2" != 3.10 ]; then installed "$2" || die "RabbitMQ $2 is not installed" "bash scripts/rabbitmq-versions.sh install $2"; mounts "$2"; fi
	root "$2"
	;;
env) cmd_env "${2:-}" ;;
node) known "${2:-}"; node "$2" ;;
node-dir)
	known "${2:-}"
	[ "$2" != 3.10 ] || die "3.10 is the machine's broker: its files are in /etc/rabbitmq"
	installed "$2" || die "RabbitMQ $2 is not installed" "bash scripts/rabbitmq-versions.sh install $2"
	prepare_node "$2" >/dev/null
	echo "$(root "$2")$NODE_DIR"
	;;
list) printf '%s\n' "${VERSIONS[@]}" ;;
help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*) die "unknown command '$1'" "bash scripts/rabbitmq-versions.sh help" ;;
esac
