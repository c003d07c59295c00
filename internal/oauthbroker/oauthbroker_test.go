package oauthbroker

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run scripts/rabbitmq-tab-sessions.sh in files-only mode
// against temporary directories: no node, no /etc/rabbitmq. The online
// part (operator policy, running-config check) is exercised against a
// private node by tabsession's TestTabSessions.

func run(t *testing.T, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return Run(ctx, env, args...)
}

func TestScriptOfflineApplyIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	env := OfflineEnv(dir)

	r := run(t, env, "plan")
	require.NoError(t, r.Err, r)
	assert.Contains(t, r.Stdout, "would: generate a 32-byte signing key")
	assert.Contains(t, r.Stdout, "would: write "+filepath.Join(dir, "advanced.config"))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "plan must not write anything")

	r = run(t, env, "check")
	assert.Error(t, r.Err, "check fails before apply")

	r = run(t, env, "apply")
	require.NoError(t, r.Err, r)
	assert.Contains(t, r.Stdout, "restart required: wrote key advanced.config")

	keyText, err := os.ReadFile(filepath.Join(dir, "dev-signing-key"))
	require.NoError(t, err)
	key, err := base64.RawURLEncoding.DecodeString(string(keyText))
	require.NoError(t, err)
	assert.Len(t, key, 32)
	st, err := os.Stat(filepath.Join(dir, "dev-signing-key"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), st.Mode().Perm())

	adv, err := os.ReadFile(filepath.Join(dir, "advanced.config"))
	require.NoError(t, err)
	for _, want := range []string{
		"%% Managed by durablews scripts/rabbitmq-tab-sessions.sh",
		"{auth_backends, [rabbit_auth_backend_internal, rabbit_auth_backend_oauth2]}",
		`{resource_server_id, <<"rabbitmq">>}`,
		`{default_key, <<"durablews-dev">>}`,
		`{algorithms, [<<"HS256">>]}`,
		`<<"durablews-dev">> => {map, #{<<"kty">> => <<"oct">>, <<"alg">> => <<"HS256">>, <<"k">> => <<"` + string(keyText) + `">>}}`,
	} {
		assert.Contains(t, string(adv), want)
	}

	for _, cmd := range []string{"apply", "plan"} {
		r = run(t, env, cmd)
		require.NoError(t, r.Err, r)
		assert.Equal(t, "rabbitmq-tab-sessions: nothing to change (files only)\n", r.Stdout, cmd)
	}
	r = run(t, env, "check")
	require.NoError(t, r.Err, r)
	again, err := os.ReadFile(filepath.Join(dir, "dev-signing-key"))
	require.NoError(t, err)
	assert.Equal(t, keyText, again, "the key is generated once")

	// A hand edit of the managed file is put back.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "advanced.config"), append(adv, []byte("%% edited\n")...), 0o640))
	r = run(t, env, "apply")
	require.NoError(t, r.Err, r)
	assert.Contains(t, r.Stdout, "restart required: wrote advanced.config")
	fixed, err := os.ReadFile(filepath.Join(dir, "advanced.config"))
	require.NoError(t, err)
	assert.Equal(t, string(adv), string(fixed))
}

func TestScriptRefusesForeignConfig(t *testing.T) {
	t.Run("foreign advanced.config", func(t *testing.T) {
		dir := t.TempDir()
		foreign := "[{rabbit, [{log_levels, [{connection, info}]}]}].\n"
		require.NoError(t, os.WriteFile(filepath.Join(dir, "advanced.config"), []byte(foreign), 0o644))
		r := run(t, OfflineEnv(dir), "apply")
		require.Error(t, r.Err)
		assert.Contains(t, r.Stderr, "was not written by this script; it is never overwritten")
		assert.Contains(t, r.Stderr, "{auth_backends, [rabbit_auth_backend_internal, rabbit_auth_backend_oauth2]}", "prints the terms to merge")
		got, err := os.ReadFile(filepath.Join(dir, "advanced.config"))
		require.NoError(t, err)
		assert.Equal(t, foreign, string(got))
		r = run(t, OfflineEnv(dir), "plan")
		require.NoError(t, r.Err, r)
		assert.Contains(t, r.Stdout, "STOP:")
	})
	for _, line := range []string{"auth_backends.1 = ldap", "auth_oauth2.resource_server_id = other"} {
		t.Run(line, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte("listeners.tcp.1 = 5672\n"+line+"\n"), 0o644))
			r := run(t, OfflineEnv(dir), "apply")
			require.Error(t, r.Err)
			assert.Contains(t, r.Stderr, "sets auth_backends.* or auth_oauth2.*")
			_, err := os.Stat(filepath.Join(dir, "advanced.config"))
			assert.True(t, os.IsNotExist(err))
		})
	}
}

func TestScriptValidatesSettings(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		env []string
		msg string
	}{
		{[]string{`DURABLEWS_TABS_KEY_ID=a"b`}, "DURABLEWS_TABS_KEY_ID"},
		{[]string{"DURABLEWS_TABS_RESOURCE_SERVER_ID=a.b"}, "DURABLEWS_TABS_RESOURCE_SERVER_ID"},
		{[]string{"DURABLEWS_TABS_MAX_LENGTH=0"}, "DURABLEWS_TABS_MAX_LENGTH"},
		{[]string{"DURABLEWS_TABS_EXPIRES_MS=1h"}, "DURABLEWS_TABS_EXPIRES_MS"},
		{[]string{"DURABLEWS_TABS_RESTART=sometimes"}, "DURABLEWS_TABS_RESTART"},
		// Online against a named node with RESTART=auto is refused before
		// anything is asked of the node: only the shared broker can be
		// restarted by the script.
		{[]string{"DURABLEWS_TABS_OFFLINE=0", "DURABLEWS_TABS_NODE=nobody@localhost"}, "can only restart the shared broker"},
	} {
		r := run(t, append(OfflineEnv(dir), tc.env...), "apply")
		require.Error(t, r.Err, tc.env)
		assert.Contains(t, r.Stderr, tc.msg, tc.env)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)

	r := run(t, nil, "key-path")
	require.NoError(t, r.Err)
	assert.Equal(t, "/var/lib/durablews/dev-signing-key\n", r.Stdout)
	r = run(t, nil, "bogus")
	assert.Error(t, r.Err)
}
