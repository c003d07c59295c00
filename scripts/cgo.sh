#!/usr/bin/env bash
# scripts/cgo.sh — make sure `go test -race` can build here: the race detector needs cgo,
# and cgo needs a C compiler and the C library headers (Debian: gcc, libc6-dev). A fresh
# Debian with Go from the official tarball has neither, and go test -race then fails with
# "-race requires cgo" (Go quietly turns cgo off when it finds no C compiler).
#
#   bash scripts/cgo.sh [ensure]   install gcc / libc6-dev if missing, then check that Go
#                                  builds a -race binary (default)
#   bash scripts/cgo.sh check      change nothing; exit 0 if ready, 1 if not
#   bash scripts/cgo.sh help
#
# Quiet when all is well: one line on stdout ("cgo: ready (...)"), or nothing with
# DURABLEWS_CGO_QUIET=1. On failure: "cgo.sh: ERROR: ..." on stderr, what to do, exit 1.
# Never reads stdin (CI=true, no tty is fine). Installing needs root. Running it again
# changes nothing once the packages are there.
#
# Environment:
#   GO=go                       the go command (the Makefile puts /usr/local/go/bin on PATH)
#   DURABLEWS_CGO_QUIET=1       print nothing on success
#   DURABLEWS_CGO_NO_INSTALL=1  never apt-get install; fail instead
#
# Only Go's default compiler (CC unset, i.e. gcc) is installed from Debian's packages; with
# CC set to another compiler the script checks it but installs nothing.
set -euo pipefail

GO=${GO:-go}
QUIET=${DURABLEWS_CGO_QUIET:-0}
NO_INSTALL=${DURABLEWS_CGO_NO_INSTALL:-0}
readonly PKGS=(gcc libc6-dev)
export PATH="$PATH:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PKG_TOOL=cgo
PKG_NO_INSTALL=$NO_INSTALL
PKG_NO_INSTALL_VAR=DURABLEWS_CGO_NO_INSTALL
PKG_WHY="go test -race needs them"
PKG_NO_APT_HINT="install a C compiler and the C library headers so that Go's CC can build a program"
# shellcheck source=scripts/lib/debian-pkgs.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian-pkgs.sh"

command -v "$GO" >/dev/null || die "no go command ($GO) on PATH" \
	"install Go (https://go.dev/dl/, into /usr/local/go) or set GO=/path/to/go"

CC_CMD=$("$GO" env CC)
CC_CMD=${CC_CMD:-gcc}
CC_BIN=${CC_CMD%% *} # CC may carry flags

# missing_pkgs — the Debian packages of Go's default compiler that are not installed.
missing_pkgs() {
	[ "$CC_BIN" = gcc ] || return 0 # a compiler of the user's choosing: not ours to install
	local out=() p
	for p in "${PKGS[@]}"; do
		if command -v dpkg-query >/dev/null; then
			[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || out+=("$p")
		elif [ "$p" = gcc ]; then
			command -v gcc >/dev/null || out+=(gcc)
		fi
	done
	echo "${out[*]:-}"
}

# smoke — what go test -race needs: the compiler builds a C program against libc, cgo is
# on, and Go links a -race binary with a cgo call.
smoke() {
	local dir
	dir=$(mktemp -d "${TMPDIR:-/tmp}/durablews-cgo.XXXXXX")
	SMOKE_DIR=$dir # removed on exit, also when die exits
	printf '#include <stdlib.h>\n#include <stdio.h>\nint main(void) { puts("ok"); return EXIT_SUCCESS; }\n' >"$dir/t.c"
	# shellcheck disable=SC2086 # CC may carry flags
	if ! $CC_CMD -o "$dir/t" "$dir/t.c" >"$dir/cc.log" 2>&1; then
		die "the C compiler '$CC_CMD' cannot build a program against the C library:
$(tail -n 10 "$dir/cc.log" | sed 's/^/  | /')" \
			"on Debian: apt-get install -y ${PKGS[*]}" \
			"with CC set, make sure that compiler and its libc headers work"
	fi
	local cgo
	cgo=$(CC="$CC_CMD" "$GO" env CGO_ENABLED)
	[ "$cgo" = 1 ] || die "Go has cgo turned off (CGO_ENABLED=$cgo) although '$CC_CMD' works; go test -race needs cgo" \
		"unset CGO_ENABLED in the environment, or: $GO env -u CGO_ENABLED"
	mkdir "$dir/gomod"
	printf 'package main\n\n// int two(void) { return 2; }\nimport "C"\n\nfunc main() { println(int(C.two())) }\n' >"$dir/gomod/main.go"
	printf 'module cgocheck\n' >"$dir/gomod/go.mod"
	if ! (cd "$dir/gomod" && GOFLAGS= "$GO" build -race -o "$dir/race" . >"$dir/go.log" 2>&1); then
		die "$GO build -race of a cgo program failed:
$(tail -n 10 "$dir/go.log" | sed 's/^/  | /')" \
			"on Debian: apt-get install -y ${PKGS[*]}"
	fi
}

ready_line() {
	if [ "$QUIET" != 1 ]; then
		local v
		v=$($CC_CMD --version 2>/dev/null | head -n1) || v="version unknown"
		echo "cgo: ready ($CC_BIN: $v; $("$GO" env GOVERSION) builds -race)"
	fi
}

SMOKE_DIR=
trap 'if [ -n "$SMOKE_DIR" ]; then rm -rf "$SMOKE_DIR"; fi' EXIT

pkg_main "$@"
