# scripts/lib/debian-pkgs.sh — sourced (not run) by the scripts that make sure a tool from
# Debian's packages is on this machine: scripts/chromium.sh, scripts/cgo.sh. They differ in
# what they look for and how they prove it works; installing, failing and the
# ensure|check|help commands are the same, and live here.
#
# The sourcing script sets, before calling anything here:
#   PKG_TOOL        its name in messages ("chromium", "cgo")
#   PKG_NO_INSTALL  1 = never install, fail instead; PKG_NO_INSTALL_VAR names its variable
#   PKG_WHY         why the packages are needed, appended to errors ("" for nothing)
#   PKG_NO_APT_HINT what to do where there is no apt-get
# and defines missing_pkgs (prints the missing packages, space separated), smoke (proves
# the tool works; calls die otherwise) and ready_line (the one line printed on success).

# die WHAT [HINT...] — "<tool>.sh: ERROR: WHAT" and one "-> HINT" line each, on stderr; exit 1.
die() {
	local what=$1
	shift
	{
		echo
		echo "$PKG_TOOL.sh: ERROR: $what"
		local h
		for h in "$@"; do echo "  -> $h"; done
		echo
	} >&2
	exit 1
}

# pkg_install PKG... — apt-get install as root, non-interactively, log in /tmp.
pkg_install() {
	local why=${PKG_WHY:+; $PKG_WHY}
	[ "$PKG_NO_INSTALL" != 1 ] || die "not installed: $* (and $PKG_NO_INSTALL_VAR=1)$why" \
		"install: apt-get update && apt-get install -y $*"
	[ "$(id -u)" = 0 ] || die "not installed: $*$why, and installing needs root" \
		"run: sudo bash scripts/$PKG_TOOL.sh   (or: sudo apt-get install -y $*)"
	command -v apt-get >/dev/null || die "not installed: $*, and there is no apt-get" "$PKG_NO_APT_HINT"
	echo "$PKG_TOOL: not installed: $*: installing Debian's packages (apt-get)..." >&2
	local log=/tmp/durablews-$PKG_TOOL-apt.log
	local apt=(apt-get -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confold)
	export DEBIAN_FRONTEND=noninteractive
	# apt's own lock (DPkg::Lock::Timeout) serialises concurrent installs of these scripts.
	if ! "${apt[@]}" update >"$log" 2>&1; then
		echo "$PKG_TOOL: apt-get update failed (see $log); trying the install with the package lists there are" >&2
	fi
	if ! "${apt[@]}" install -y "$@" >>"$log" 2>&1; then
		tail -n 20 "$log" | sed 's/^/  | /' >&2
		die "apt-get install -y $* failed (full log: $log)" \
			"check the network to the Debian mirrors and the dpkg state (dpkg --configure -a), then rerun"
	fi
	echo "$PKG_TOOL: installed $*" >&2
}

# pkg_main [ensure|check|help] — the scripts' command line.
pkg_main() {
	local cmd=${1:-ensure} missing
	case $cmd in
	ensure | check)
		missing=$(missing_pkgs)
		if [ -n "$missing" ]; then
			if [ "$cmd" = check ]; then
				echo "$PKG_TOOL.sh: not installed: $missing${PKG_WHY:+ ($PKG_WHY)}" >&2
				echo "  -> run: bash scripts/$PKG_TOOL.sh" >&2
				exit 1
			fi
			# shellcheck disable=SC2086 # a list of package names
			pkg_install $missing
			missing=$(missing_pkgs)
			[ -z "$missing" ] || die "still missing after apt-get install: $missing" "see /tmp/durablews-$PKG_TOOL-apt.log"
		fi
		smoke
		ready_line
		;;
	help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
	*)
		echo "$PKG_TOOL.sh: unknown command '$cmd' (ensure|check|help)" >&2
		exit 2
		;;
	esac
}
