#!/usr/bin/env bash
# scripts/cgo_test.sh — checks scripts/cgo.sh's decisions without changing the machine:
# id, dpkg-query and apt-get are stubs on PATH (dpkg's view of gcc/libc6-dev comes from a
# state file the stub apt-get updates); the smoke build uses the real compiler and Go.
#
#   bash scripts/cgo_test.sh     prints one line per case, exit 1 if any failed
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/durablews-cgo-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"

cat >"$work/bin/id" <<'EOF'
#!/usr/bin/env bash
[ "${1:-}" = -u ] && { echo "${STUB_UID:-0}"; exit 0; }
exec /usr/bin/id "$@"
EOF
cat >"$work/bin/dpkg-query" <<'EOF'
#!/usr/bin/env bash
pkg=${!#}
grep -qx "$pkg" "$STUB_STATE" && { printf 'install ok installed'; exit 0; }
echo "dpkg-query: no packages found matching $pkg" >&2
exit 1
EOF
cat >"$work/bin/apt-get" <<'EOF'
#!/usr/bin/env bash
echo "apt-get $*" >>"$STUB_APT_LOG"
[ "${STUB_APT_FAIL:-0}" = 1 ] && [[ " $* " == *" install "* ]] && { echo "E: Unable to locate package gcc"; exit 100; }
if [[ " $* " == *" install "* ]]; then
	for a in "$@"; do case $a in gcc | libc6-dev) echo "$a" >>"$STUB_STATE" ;; esac; done
fi
EOF
chmod +x "$work/bin/"*

failed=0
# run NAME WANT_RC INSTALLED [ENV=VAL...] -- ARGS... ; sets $out, $err, $apt
run() {
	local name=$1 want=$2 installed=$3
	shift 3
	local envs=()
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	printf '%s\n' $installed >"$work/state"
	: >"$work/apt.log"
	local rc=0
	env PATH="$work/bin:$PATH" STUB_STATE="$work/state" STUB_APT_LOG="$work/apt.log" "${envs[@]}" \
		bash "$here/cgo.sh" "$@" >"$work/out" 2>"$work/err" </dev/null || rc=$?
	out=$(cat "$work/out") err=$(cat "$work/err") apt=$(cat "$work/apt.log")
	if [ "$rc" != "$want" ]; then
		fail "$name: exit $rc, want $want"
		return 1
	fi
}
fail() {
	echo "FAIL $*"
	echo "  stdout: $out" | head -5
	echo "  stderr: $err" | head -15
	echo "  apt: $apt"
	failed=1
}
has() { # has NAME TEXT WHAT
	grep -qF -- "$3" <<<"$2" || fail "$1: missing \"$3\""
}
no_apt() { [ -z "$apt" ] || fail "$1: apt-get was called: $apt"; }
ok() { echo "ok   $1"; }

c="fresh machine as root: installs gcc and libc6-dev, then ready"
if run "$c" 0 "" STUB_UID=0 -- ensure; then
	has "$c" "$apt" "install -y gcc libc6-dev"
	has "$c" "$err" "cgo: not installed: gcc libc6-dev: installing"
	has "$c" "$err" "cgo: installed gcc libc6-dev"
	has "$c" "$out" "cgo: ready (gcc:"
	ok "$c"
fi

c="second run: installs nothing (idempotent)"
if run "$c" 0 "gcc libc6-dev" STUB_UID=0 -- ensure; then
	no_apt "$c"
	[ -z "$err" ] || fail "$c: stderr not empty: $err"
	has "$c" "$out" "cgo: ready"
	ok "$c"
fi

c="gcc there, libc6-dev missing: installs only libc6-dev"
if run "$c" 0 "gcc" STUB_UID=0 -- ensure; then
	has "$c" "$apt" "install -y libc6-dev"
	grep -q "install.* gcc" <<<"$apt" && fail "$c: reinstalled gcc: $apt"
	ok "$c"
fi

c="not root: says what to run, installs nothing"
if run "$c" 1 "" STUB_UID=1000 -- ensure; then
	has "$c" "$err" "cgo.sh: ERROR: not installed: gcc libc6-dev; go test -race needs them, and installing needs root"
	has "$c" "$err" "sudo apt-get install -y gcc libc6-dev"
	no_apt "$c"
	ok "$c"
fi

c="DURABLEWS_CGO_NO_INSTALL=1: fails, names the packages"
if run "$c" 1 "gcc" STUB_UID=0 DURABLEWS_CGO_NO_INSTALL=1 -- ensure; then
	has "$c" "$err" "not installed: libc6-dev (and DURABLEWS_CGO_NO_INSTALL=1); go test -race needs them"
	no_apt "$c"
	ok "$c"
fi

c="check: reports, changes nothing"
if run "$c" 1 "" STUB_UID=0 -- check; then
	has "$c" "$err" "cgo.sh: not installed: gcc libc6-dev (go test -race needs them)"
	no_apt "$c"
	ok "$c"
fi

c="apt-get install fails: error with the log tail"
if run "$c" 1 "" STUB_UID=0 STUB_APT_FAIL=1 -- ensure; then
	has "$c" "$err" "cgo.sh: ERROR: apt-get install -y gcc libc6-dev failed"
	has "$c" "$err" "E: Unable to locate package gcc"
	ok "$c"
fi

c="CGO_ENABLED=0 with a working compiler: says how to turn cgo on"
if run "$c" 1 "gcc libc6-dev" STUB_UID=0 CGO_ENABLED=0 -- ensure; then
	has "$c" "$err" "Go has cgo turned off (CGO_ENABLED=0)"
	ok "$c"
fi

c="CC set to a compiler that does not exist: named, nothing installed"
if run "$c" 1 "" STUB_UID=0 CC=/nonexistent/cc -- ensure; then
	has "$c" "$err" "the C compiler '/nonexistent/cc' cannot build a program"
	[ -z "$apt" ] || fail "$c: apt-get was called for a compiler that is not gcc: $apt"
	ok "$c"
fi

if [ "$failed" != 0 ]; then
	echo "cgo_test.sh: FAILED"
	exit 1
fi
echo "cgo_test.sh: all cases passed"
