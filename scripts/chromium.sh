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

PKG_TOOL=chromium
PKG_NO_INSTALL=$NO_INSTALL
PKG_NO_INSTALL_VAR=DURABLEWS_CHROMIUM_NO_INSTALL
PKG_WHY=
PKG_NO_APT_HINT="install Chromium so that $CHROMIUM exists"
# shellcheck source=scripts/lib/debian-pkgs.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-pkgs.sh"

missing_pkgs() {
	local out=()
	[ -x "$CHROMIUM" ] || out+=(chromium)
	[ -x "$DRIVER" ] || out+=(chromium-driver)
	echo "${out[*]:-}"
}

# smoke — start it headless, as the e2e test does, and render a tiny page.
smoke() {
	[ "$SMOKE" != 0 ] || return 0
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

pkg_main "$@"
