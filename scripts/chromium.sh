#!/usr/bin/env bash
# scripts/chromium.sh — make sure Debian's headless-capable Chromium is on this machine
# for the browser end-to-end test (web/test/browser.e2e.test.js).
#
#   bash scripts/chromium.sh [ensure]   install chromium / chromium-driver if missing, then
#                                       check that it starts headless (default)
#   bash scripts/chromium.sh check      change nothing; exit 0 if ready, 1 if not
#
# Quiet when all is well: one line on stdout ("chromium: ready (...)"), or nothing with
# DURABLEWS_CHROMIUM_QUIET=1. On failure: "chromium.sh: ERROR: ..." on stderr, what to do,
# exit 1. Never reads stdin (CI=true, no tty is fine). Installing needs root.
#
# Environment:
#   DURABLEWS_CHROMIUM_QUIET=1    print nothing on success
#   DURABLEWS_CHROMIUM_SMOKE=0    skip the headless start (only check the binary)
#   DURABLEWS_CHROMIUM_NO_INSTALL=1  never apt-get install; fail instead
#
# Debian's packages only: a test tool's own browser download cannot work on this
# workplace's network. Chromium runs as root here only with --no-sandbox, and needs
# --disable-background-networking etc. or it keeps dialling out to a closed network.
set -euo pipefail

readonly CHROMIUM=/usr/bin/chromium
readonly DRIVER=/usr/bin/chromedriver
QUIET=${DURABLEWS_CHROMIUM_QUIET:-0}
SMOKE=${DURABLEWS_CHROMIUM_SMOKE:-1}
NO_INSTALL=${DURABLEWS_CHROMIUM_NO_INSTALL:-0}
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

die() {
	local what=$1
	shift
	{
		echo
		echo "chromium.sh: ERROR: $what"
		local h
		for h in "$@"; do echo "  -> $h"; done
		echo
	} >&2
	exit 1
}

missing_pkgs() {
	local out=()
	[ -x "$CHROMIUM" ] || out+=(chromium)
	[ -x "$DRIVER" ] || out+=(chromium-driver)
	echo "${out[*]:-}"
}

install() { # install PKG...
	[ "$NO_INSTALL" != 1 ] || die "not installed: $* (and DURABLEWS_CHROMIUM_NO_INSTALL=1)" \
		"install: apt-get update && apt-get install -y $*"
	[ "$(id -u)" = 0 ] || die "installing $* needs root" "run: sudo bash scripts/chromium.sh"
	command -v apt-get >/dev/null || die "not installed: $*, and there is no apt-get" \
		"install Chromium so that $CHROMIUM exists"
	echo "chromium: not installed: $*: installing Debian's packages (apt-get)..." >&2
	local log=/tmp/durablews-chromium-apt.log
	local apt=(apt-get -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confold)
	export DEBIAN_FRONTEND=noninteractive
	# One machine-wide lock with scripts/rabbitmq.sh is not needed: apt's own lock
	# (DPkg::Lock::Timeout) serialises concurrent installs.
	if ! "${apt[@]}" update >"$log" 2>&1; then
		echo "chromium: apt-get update failed (see $log); trying the install with the package lists there are" >&2
	fi
	if ! "${apt[@]}" install -y "$@" >>"$log" 2>&1; then
		tail -n 20 "$log" | sed 's/^/  | /' >&2
		die "apt-get install -y $* failed (full log: $log)" \
			"check the network to the Debian mirrors and the dpkg state (dpkg --configure -a), then rerun"
	fi
	echo "chromium: installed $*" >&2
}

# smoke — start it headless, as the e2e test does, and render a tiny page.
smoke() {
	local dir out rc=0
	dir=$(mktemp -d "${TMPDIR:-/tmp}/durablews-chromium.XXXXXX")
	out=$(timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
		--no-first-run --disable-background-networking --disable-component-update \
		--disable-sync --disable-dev-shm-usage --user-data-dir="$dir" \
		--dump-dom 'data:text/html,<p id="durablews">ok</p>' </dev/null 2>"$dir.err") || rc=$?
	if [ "$rc" != 0 ] || ! grep -q 'id="durablews">ok<' <<<"$out"; then
		local err
		err=$({ grep -v -e 'dbus' -e 'DBus' "$dir.err" || true; } | tail -n 15 | sed 's/^/  | /')
		rm -rf "$dir" "$dir.err"
		die "$CHROMIUM --headless --dump-dom did not render a page (exit $rc)${err:+:
$err}" \
			"run it by hand: $CHROMIUM --headless --no-sandbox --disable-gpu --dump-dom about:blank" \
			"reinstall: apt-get install --reinstall -y chromium"
	fi
	rm -rf "$dir" "$dir.err"
}

ready_line() {
	if [ "$QUIET" != 1 ]; then
		local v
		v=$("$CHROMIUM" --version 2>/dev/null | head -n1) || v="version unknown"
		echo "chromium: ready (${v% built on*})"
	fi
}

cmd=${1:-ensure}
case $cmd in
ensure | check)
	missing=$(missing_pkgs)
	if [ -n "$missing" ]; then
		if [ "$cmd" = check ]; then
			echo "chromium.sh: not installed: $missing" >&2
			echo "  -> run: bash scripts/chromium.sh" >&2
			exit 1
		fi
		# shellcheck disable=SC2086 # a list of package names
		install $missing
		missing=$(missing_pkgs)
		[ -z "$missing" ] || die "still missing after apt-get install: $missing" "see /tmp/durablews-chromium-apt.log"
	fi
	if [ "$SMOKE" != 0 ]; then smoke; fi
	ready_line
	;;
help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
*)
	echo "chromium.sh: unknown command '$cmd' (ensure|check|help)" >&2
	exit 2
	;;
esac
