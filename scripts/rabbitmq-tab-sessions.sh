#!/usr/bin/env bash
# scripts/rabbitmq-tab-sessions.sh — configure a RabbitMQ node (3.10, 4.0 or 4.3) for durablews tab sessions
# (package tabsession): browser tabs log in over Web-STOMP with a short-lived JWT (the
# STOMP passcode) whose only scope is read on their own queue; the service's AMQP users stay
# on the internal backend.
#
#   bash scripts/rabbitmq-tab-sessions.sh [apply]   configure; restart the node ONLY if the
#                                                   config it runs differs from the wanted one
#   bash scripts/rabbitmq-tab-sessions.sh plan      (or --dry-run) say what apply would do;
#                                                   change nothing
#   bash scripts/rabbitmq-tab-sessions.sh check     change nothing; exit 0 if configured, 1 if not
#   bash scripts/rabbitmq-tab-sessions.sh key-path  print the signing key file's path
#   bash scripts/rabbitmq-tab-sessions.sh help
#
# "Configured" means:
#   1. $KEY_FILE (default /var/lib/durablews/dev-signing-key) holds an HS256 key: 32 random
#      bytes as base64url text. Generated once, never rewritten (delete it to rotate; every
#      token minted with the old key is then refused). The Go service reads it with
#      durablews.LoadSigningKey.
#   2. $CONF_DIR/advanced.config (default /etc/rabbitmq) is the file this script writes, in
#      full: auth_backends = [internal, oauth2], the oauth2 backend's resource_server_id and
#      key_config (default_key and signing key id $KEY_ID, algorithms [HS256]). A symmetric
#      key cannot be given in rabbitmq.conf on 3.10 (auth_oauth2.signing_keys.* takes PEM
#      files only). An advanced.config that this script did not write is never overwritten:
#      the script stops and prints the terms to merge by hand.
#      Not conf.d: internal/testbroker's private test nodes read /etc/rabbitmq/conf.d/*.conf
#      too (their RABBITMQ_CONFIG_FILES is the default), but not /etc/rabbitmq/advanced.config.
#   3. plugin rabbitmq_auth_backend_oauth2 is enabled (online, no restart needed for that).
#   4. operator policy "durablews-tab-sessions" on ^tab- queues caps expires and max-length
#      (operator policies take the minimum with the queue's arguments and cannot be
#      overridden by users; 3.10 operator policies cannot set overflow, so the queue
#      arguments of tabsession.Handler do: drop-head).
#   5. the running node has loaded 2 and 3 (checked with rabbitmqctl eval). Only if it has
#      not, apply restarts it (a restart drops every connection of every user of the node).
#
# Environment (defaults are for the shared node of the RabbitMQ version DURABLEWS_RABBITMQ names,
# 4.0 unless set: scripts/rabbitmq-versions.sh; for 3.10, the machine's broker rabbit@localhost):
#   DURABLEWS_RABBITMQ=4.0                         which version's shared node (4.0, 3.10, 4.3)
#   DURABLEWS_TABS_CONF_DIR=/etc/rabbitmq          where advanced.config and rabbitmq.conf are
#                                                  (4.x: the node directory in its root)
#   DURABLEWS_TABS_KEY_FILE=/var/lib/durablews/dev-signing-key
#   DURABLEWS_TABS_KEY_ID=durablews-dev            kid = tabsession.Config.KeyID ("" also works:
#                                                  it is the default_key)
#   DURABLEWS_TABS_RESOURCE_SERVER_ID=rabbitmq     = tabsession.Config.ResourceServerID
#   DURABLEWS_TABS_EXPIRES_MS=3600000              operator policy cap on expires (ms)
#   DURABLEWS_TABS_MAX_LENGTH=10000                operator policy cap on max-length
#   DURABLEWS_TABS_VHOST=/                         vhost of the policy
#   DURABLEWS_TABS_NODE=                           rabbitmqctl -n NODE (default: the CLI's)
#   DURABLEWS_TABS_CTL_DIR=                        directory of rabbitmqctl/rabbitmq-plugins
#                                                  (default: PATH; for private nodes use
#                                                  /usr/lib/rabbitmq/bin, with HOME holding
#                                                  their cookie)
#   DURABLEWS_TABS_OFFLINE=1                       files only: no node is asked or changed
#   DURABLEWS_TABS_RESTART=auto|never              auto (default): restart the shared node
#                                                  (3.10: rabbitmqctl stop, then scripts/rabbitmq.sh
#                                                  starts it; 4.x: scripts/rabbitmq-versions.sh stop
#                                                  and start); never: print "restart required"
#                                                  and leave the restart to the caller
#   DURABLEWS_TABS_QUIET=1                         print nothing when there is nothing to do
#
# Output: one line per action on stderr ("rabbitmq-tab-sessions: wrote ..."), and a summary
# line on stdout: "rabbitmq-tab-sessions: configured (...)", "... nothing to change",
# "... restart required: <why>" (RESTART=never) or, for plan, "would: ..." lines.
# Exit 1 with "rabbitmq-tab-sessions.sh: ERROR: ..." and what to do on failure.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=${DURABLEWS_RABBITMQ:-$(bash "$SCRIPT_DIR/rabbitmq-versions.sh" list | sed -n 1p)}  # sed reads to the end: head -n1 could SIGPIPE the list (pipefail: exit 141)
# The shared node of a version in a root: its directory, name and CLI wrappers come from
# scripts/rabbitmq-versions.sh. Explicit DURABLEWS_TABS_* settings (private nodes) win.
VERSION_NODE=
VERSION_DIR=
if [ "$VERSION" != 3.10 ] && [ -z "${DURABLEWS_TABS_NODE:-}" ] && [ "${DURABLEWS_TABS_OFFLINE:-0}" != 1 ]; then
	VERSION_DIR=$(bash "$SCRIPT_DIR/rabbitmq-versions.sh" node-dir "$VERSION") || exit 1
	VERSION_NODE=$(bash "$SCRIPT_DIR/rabbitmq-versions.sh" node "$VERSION")
fi
CONF_DIR=${DURABLEWS_TABS_CONF_DIR:-${VERSION_DIR:-/etc/rabbitmq}}
KEY_FILE=${DURABLEWS_TABS_KEY_FILE:-/var/lib/durablews/dev-signing-key}
KEY_ID=${DURABLEWS_TABS_KEY_ID:-durablews-dev}
RSID=${DURABLEWS_TABS_RESOURCE_SERVER_ID:-rabbitmq}
EXPIRES_MS=${DURABLEWS_TABS_EXPIRES_MS:-3600000}
MAX_LENGTH=${DURABLEWS_TABS_MAX_LENGTH:-10000}
VHOST=${DURABLEWS_TABS_VHOST:-/}
NODE=${DURABLEWS_TABS_NODE:-$VERSION_NODE}
CTL_DIR=${DURABLEWS_TABS_CTL_DIR:-${VERSION_DIR:+$VERSION_DIR/bin}}
OFFLINE=${DURABLEWS_TABS_OFFLINE:-0}
RESTART=${DURABLEWS_TABS_RESTART:-auto}
QUIET=${DURABLEWS_TABS_QUIET:-0}
readonly POLICY=durablews-tab-sessions
readonly PATTERN='^tab-'
readonly PLUGIN=rabbitmq_auth_backend_oauth2
readonly MARKER='%% Managed by durablews scripts/rabbitmq-tab-sessions.sh'
ADV="$CONF_DIR/advanced.config"
export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

note() { echo "rabbitmq-tab-sessions: $*" >&2; }
die() {
	local what=$1
	shift
	{
		echo
		echo "rabbitmq-tab-sessions.sh: ERROR: $what"
		local h
		for h in "$@"; do echo "  -> $h"; done
		echo
	} >&2
	exit 1
}

validate_env() {
	[[ $KEY_ID =~ ^[A-Za-z0-9._-]+$ ]] || die "DURABLEWS_TABS_KEY_ID '$KEY_ID': use letters, digits, . _ -"
	[[ $RSID =~ ^[A-Za-z0-9_-]+$ ]] || die "DURABLEWS_TABS_RESOURCE_SERVER_ID '$RSID': use letters, digits, _ -"
	[[ $EXPIRES_MS =~ ^[1-9][0-9]*$ ]] || die "DURABLEWS_TABS_EXPIRES_MS '$EXPIRES_MS' must be a positive integer"
	[[ $MAX_LENGTH =~ ^[1-9][0-9]*$ ]] || die "DURABLEWS_TABS_MAX_LENGTH '$MAX_LENGTH' must be a positive integer"
	case $RESTART in auto | never) ;; *) die "DURABLEWS_TABS_RESTART '$RESTART': auto or never" ;; esac
	if [ "$RESTART" = auto ] && [ -n "${DURABLEWS_TABS_NODE:-}" ] && [ "$OFFLINE" != 1 ]; then
		die "DURABLEWS_TABS_NODE=$NODE with DURABLEWS_TABS_RESTART=auto: this script can only restart the shared broker" \
			"set DURABLEWS_TABS_RESTART=never and restart the node yourself when told"
	fi
}

ctl() { "${CTL_DIR:+$CTL_DIR/}rabbitmqctl" ${NODE:+-n "$NODE"} "$@" </dev/null; }
plugins() { "${CTL_DIR:+$CTL_DIR/}rabbitmq-plugins" ${NODE:+-n "$NODE"} "$@" </dev/null; }

key_value() { tr -d ' \t\r\n' <"$KEY_FILE"; }

# advanced_config KEY — the whole managed advanced.config.
advanced_config() {
	cat <<EOF
$MARKER: do not edit, rerun the script.
%% Tab sessions (package tabsession): browser tabs connect with a JWT whose only scope is
%% read on their own queue; the service's users stay on the internal backend.
[
  {rabbit, [
    {auth_backends, [rabbit_auth_backend_internal, rabbit_auth_backend_oauth2]}
  ]},
  {rabbitmq_auth_backend_oauth2, [
    {resource_server_id, <<"$RSID">>},
    {key_config, [
      {default_key, <<"$KEY_ID">>},
      {algorithms, [<<"HS256">>]},
      {signing_keys, #{
        <<"$KEY_ID">> => {map, #{<<"kty">> => <<"oct">>, <<"alg">> => <<"HS256">>, <<"k">> => <<"$1">>}}
      }}
    ]}
  ]}
].
EOF
}

# conflicts — other config files that set what advanced.config sets would be a second source
# of truth (advanced.config wins silently); refuse instead.
conflicts() {
	local f
	for f in "$CONF_DIR/rabbitmq.conf" "$CONF_DIR"/conf.d/*.conf; do
		[ -f "$f" ] || continue
		if grep -Eq '^[[:space:]]*(auth_backends|auth_oauth2)\.' "$f"; then
			die "$f sets auth_backends.* or auth_oauth2.*, which this script manages in $ADV" \
				"remove those lines (the script sets auth_backends = [internal, oauth2]), then rerun"
		fi
	done
}

# --- state: what differs (filled by survey) ---
KEY_MISSING=0
ADV_WANT=
ADV_STATE=       # ok | missing | ours-differs | foreign
RUN_STATE=       # ok | differs:<why> | down | offline
PLUGIN_ON=       # true | false | ""
POLICY_STATE=    # ok | missing | differs | offline

policy_def() { printf '{"expires":%s,"max-length":%s}' "$EXPIRES_MS" "$MAX_LENGTH"; }

# running_config — the effective config of the running node, one line.
running_config() {
	ctl -q eval '
B = application:get_env(rabbit, auth_backends, []),
RS = application:get_env(rabbitmq_auth_backend_oauth2, resource_server_id, none),
KC = application:get_env(rabbitmq_auth_backend_oauth2, key_config, []),
Keys = proplists:get_value(signing_keys, KC, #{}),
KH = case maps:get(<<"'"$KEY_ID"'">>, Keys, none) of
  {map, #{<<"k">> := K, <<"kty">> := <<"oct">>}} -> string:lowercase(binary_to_list(binary:encode_hex(crypto:hash(sha256, K))));
  _ -> "none" end,
Algs = case proplists:get_value(algorithms, KC) of
  L when is_list(L) -> lists:join(",", [binary_to_list(A) || A <- L]);
  _ -> "none" end,
P = lists:keymember(rabbitmq_auth_backend_oauth2, 1, application:which_applications()),
list_to_binary(io_lib:format("backends=~w resource_server_id=~s default_key=~s algorithms=~s key_sha256=~s plugin=~w",
  [B, RS, proplists:get_value(default_key, KC, none), Algs, KH, P])).' 2>&1
}

want_running() {
	local kh
	kh=$(printf '%s' "$1" | sha256sum | cut -d' ' -f1)
	printf 'backends=[rabbit_auth_backend_internal,rabbit_auth_backend_oauth2] resource_server_id=%s default_key=%s algorithms=HS256 key_sha256=%s' "$RSID" "$KEY_ID" "$kh"
}

survey() {
	KEY_MISSING=0
	[ -s "$KEY_FILE" ] || KEY_MISSING=1
	local key=PLACEHOLDER
	[ "$KEY_MISSING" = 1 ] || key=$(key_value)
	ADV_WANT=$(advanced_config "$key")
	if [ ! -e "$ADV" ]; then
		ADV_STATE=missing
	elif ! head -n1 "$ADV" | grep -qF "$MARKER"; then
		ADV_STATE=foreign
	elif [ "$KEY_MISSING" = 0 ] && [ "$(cat "$ADV")" = "$ADV_WANT" ]; then
		ADV_STATE=ok
	else
		ADV_STATE=ours-differs
	fi
	if [ "$OFFLINE" = 1 ]; then
		RUN_STATE=offline POLICY_STATE=offline
		return
	fi
	local have
	if ! have=$(running_config); then
		RUN_STATE=down POLICY_STATE=down
		note "the node${NODE:+ $NODE} does not answer: $({ grep -m1 -iE 'error|unable|refused' <<<"$have" || head -n1 <<<"$have"; } | tr -s ' ')"
		return
	fi
	have=$(tail -n1 <<<"$have" | sed -e 's/^<<"//' -e 's/">>$//' -e 's/^"//' -e 's/"$//')
	PLUGIN_ON=${have##*plugin=}
	have=${have% plugin=*}
	if [ "$KEY_MISSING" = 0 ] && [ "$have" = "$(want_running "$key")" ]; then
		RUN_STATE=ok
	else
		RUN_STATE="differs: running node has '$have'"
	fi
	local line
	line=$(ctl -q list_operator_policies -p "$VHOST" --no-table-headers 2>&1) ||
		die "rabbitmqctl list_operator_policies failed: $line"
	line=$(awk -F'\t' -v n="$POLICY" '$2 == n' <<<"$line")
	if [ -z "$line" ]; then
		POLICY_STATE=missing
	elif [ "$(cut -f3,4,5 <<<"$line")" = "$(printf '%s\tqueues\t%s' "$PATTERN" "$(policy_def)")" ]; then
		POLICY_STATE=ok
	else
		POLICY_STATE="differs (now: $(cut -f3- <<<"$line" | tr '\t' ' '))"
	fi
}

foreign_advanced() {
	die "$ADV exists and was not written by this script; it is never overwritten" \
		"either move it aside and rerun (the script then owns advanced.config)," \
		"or merge these terms into it by hand and restart the broker yourself (the script keeps refusing to touch it):" \
		"$(advanced_config '<contents of '"$KEY_FILE"'>' | sed -n '4,$p')"
}

plan() {
	survey
	local todo=()
	[ "$KEY_MISSING" = 0 ] || todo+=("generate a 32-byte signing key into $KEY_FILE")
	case $ADV_STATE in
	missing) todo+=("write $ADV") ;;
	ours-differs) todo+=("rewrite $ADV") ;;
	foreign) todo+=("STOP: $ADV was not written by this script (apply would refuse)") ;;
	esac
	[ "$PLUGIN_ON" != false ] || todo+=("enable plugin $PLUGIN")
	case $POLICY_STATE in
	missing | differs*) todo+=("set operator policy $POLICY on $PATTERN queues: $(policy_def) ($POLICY_STATE)") ;;
	esac
	case $RUN_STATE in
	differs*) todo+=("restart the node ($RUN_STATE)") ;;
	down) todo+=("nothing on the node: it does not answer") ;;
	esac
	if [ ${#todo[@]} -eq 0 ]; then
		if [ "$OFFLINE" = 1 ]; then
			echo "rabbitmq-tab-sessions: nothing to change (files only)"
		else
			echo "rabbitmq-tab-sessions: nothing to change"
		fi
		return 0
	fi
	local t
	for t in "${todo[@]}"; do echo "rabbitmq-tab-sessions: would: $t"; done
}

check() {
	survey
	local bad=()
	[ "$KEY_MISSING" = 0 ] || bad+=("no signing key at $KEY_FILE")
	[ "$ADV_STATE" = ok ] || bad+=("$ADV: $ADV_STATE")
	[ "$OFFLINE" = 1 ] || [ "$RUN_STATE" = ok ] || bad+=("running node: $RUN_STATE")
	[ "$PLUGIN_ON" != false ] || bad+=("plugin $PLUGIN not running")
	[ "$OFFLINE" = 1 ] || [ "$POLICY_STATE" = ok ] || bad+=("operator policy $POLICY: $POLICY_STATE")
	if [ ${#bad[@]} -gt 0 ]; then
		local b
		for b in "${bad[@]}"; do echo "rabbitmq-tab-sessions: not configured: $b" >&2; done
		echo "  -> run: bash scripts/rabbitmq-tab-sessions.sh" >&2
		return 1
	fi
	[ "$QUIET" = 1 ] || echo "rabbitmq-tab-sessions: configured (key id $KEY_ID, resource server $RSID, policy $POLICY)"
}

write_file() { # write_file PATH MODE < content — atomic replace, group rabbitmq when it exists
	local tmp
	tmp=$(mktemp "$1.XXXXXX")
	cat >"$tmp"
	chmod "$2" "$tmp"
	if [ "$(id -u)" = 0 ] && getent group rabbitmq >/dev/null 2>&1; then chgrp rabbitmq "$tmp"; fi
	mv -f "$tmp" "$1"
}

apply() {
	conflicts
	local lockdir=/run/lock
	[ -w "$lockdir" ] || lockdir=${TMPDIR:-/tmp}
	exec 9>"$lockdir/durablews-rabbitmq-tab-sessions.lock"
	if command -v flock >/dev/null && ! flock -w 120 9; then
		die "another rabbitmq-tab-sessions.sh holds $lockdir/durablews-rabbitmq-tab-sessions.lock"
	fi
	survey
	[ "$ADV_STATE" != foreign ] || foreign_advanced
	[ "$OFFLINE" = 1 ] || [ "$RUN_STATE" != down ] ||
		die "the node does not answer (rabbitmqctl ${NODE:+-n $NODE }eval failed)" \
			"start it first: bash scripts/rabbitmq.sh; or write the files only: DURABLEWS_TABS_OFFLINE=1"
	local did=()
	if [ "$KEY_MISSING" = 1 ]; then
		mkdir -p "$(dirname "$KEY_FILE")"
		head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=' | write_file "$KEY_FILE" 0640
		note "generated a signing key: $KEY_FILE"
		did+=(key)
		survey
	fi
	if [ "$ADV_STATE" != ok ]; then
		mkdir -p "$CONF_DIR"
		write_file "$ADV" 0640 <<<"$ADV_WANT"
		note "wrote $ADV"
		did+=(advanced.config)
	fi
	if [ "$OFFLINE" = 1 ]; then
		if [ ${#did[@]} -eq 0 ]; then
			[ "$QUIET" = 1 ] || echo "rabbitmq-tab-sessions: nothing to change (files only)"
		else
			echo "rabbitmq-tab-sessions: restart required: wrote ${did[*]} (files only: enable $PLUGIN and set the operator policy online)"
		fi
		return 0
	fi
	if [ "$PLUGIN_ON" = false ]; then
		local out
		out=$(plugins -q enable "$PLUGIN" 2>&1) || die "rabbitmq-plugins enable $PLUGIN failed: $out"
		note "enabled plugin $PLUGIN"
		did+=(plugin)
	fi
	if [ "$POLICY_STATE" != ok ]; then
		local out
		out=$(ctl -q set_operator_policy -p "$VHOST" --priority 0 --apply-to queues "$POLICY" "$PATTERN" "$(policy_def)" 2>&1) ||
			die "rabbitmqctl set_operator_policy failed: $out"
		note "set operator policy $POLICY on $PATTERN queues: $(policy_def)"
		did+=(policy)
	fi
	survey
	if [ "$RUN_STATE" != ok ]; then
		if [ "$RESTART" = never ]; then
			echo "rabbitmq-tab-sessions: restart required: $RUN_STATE"
			return 0
		fi
		restart_shared_broker
		did+=(restart)
		survey
		[ "$RUN_STATE" = ok ] || die "after the restart the node still runs another config: $RUN_STATE" \
			"look at $ADV and the broker log (/var/log/rabbitmq)"
	fi
	[ "$POLICY_STATE" = ok ] || die "operator policy $POLICY still differs after setting it: $POLICY_STATE"
	if [ ${#did[@]} -eq 0 ]; then
		[ "$QUIET" = 1 ] || echo "rabbitmq-tab-sessions: nothing to change"
	else
		echo "rabbitmq-tab-sessions: configured (${did[*]}; key id $KEY_ID, resource server $RSID)"
	fi
}

restart_shared_broker() {
	[ "$(id -u)" = 0 ] || die "restarting the broker needs root" "run: sudo bash scripts/rabbitmq-tab-sessions.sh"
	note "restarting the broker (RabbitMQ $VERSION) to load $ADV (drops every connection to it)..."
	local out
	if [ -n "$VERSION_NODE" ]; then
		bash "$SCRIPT_DIR/rabbitmq-versions.sh" stop "$VERSION" 9>&- &&
			bash "$SCRIPT_DIR/rabbitmq-versions.sh" start "$VERSION" >/dev/null 9>&- ||
			die "scripts/rabbitmq-versions.sh could not restart RabbitMQ $VERSION" "look at its error above"
		note "broker restarted"
		return 0
	fi
	out=$(ctl stop 2>&1) || die "rabbitmqctl stop failed: $out"
	DURABLEWS_RABBITMQ_QUIET=1 bash "$SCRIPT_DIR/rabbitmq.sh" ensure 9>&- ||
		die "scripts/rabbitmq.sh could not start the broker again" "look at its error above"
	note "broker restarted"
}

cmd=${1:-apply}
case $cmd in
apply) validate_env && apply ;;
plan | --dry-run | dry-run) validate_env && plan ;;
check) validate_env && check ;;
key-path) echo "$KEY_FILE" ;;
help | -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' ;;
*)
	echo "rabbitmq-tab-sessions.sh: unknown command '$cmd' (apply|plan|check|key-path|help)" >&2
	exit 2
	;;
esac
