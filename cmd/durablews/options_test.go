package main

import (
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

func parseShared(t *testing.T, env map[string]string, args ...string) (*options, error) {
	t.Helper()
	fs, o := newFlagSet("test", "", "", io.Discard)
	err := parse(fs, o, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	return o, err
}

func TestOptions_Defaults(t *testing.T) {
	o, err := parseShared(t, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"amqp://guest:guest@127.0.0.1:5672/"}, []string(o.urls))
	assert.Equal(t, "/", o.vhost)
	assert.Equal(t, "http://127.0.0.1:15672", o.mgmt)
	assert.Equal(t, "ws://127.0.0.1:15674/ws", o.ws)
	assert.Equal(t, "guest", o.mgmtUser)
	assert.Equal(t, []durablews.Exchange{{Name: "events", Kind: "topic"}}, o.exchangeList)
	assert.Equal(t, map[string]any{"expires": float64(3600000), "max-length": float64(10000), "overflow": "drop-head"}, o.policyDefinition())
}

func TestOptions_EnvironmentAndFlags(t *testing.T) {
	env := map[string]string{
		"DURABLEWS_AMQP_URL":          "amqp://alice:secret@mq.example:5673/prod",
		"DURABLEWS_EXCHANGES":         "events, alerts:fanout",
		"DURABLEWS_TAB_QUEUE_EXPIRES": "30m",
		"DURABLEWS_MANAGEMENT_USER":   "ops",
		"DURABLEWS_POLICY_PRIORITY":   "5",
	}
	o, err := parseShared(t, env, "-tab-queue-expires", "2h", "-tab-queue-overflow", "")
	require.NoError(t, err)
	assert.Equal(t, "prod", o.vhost)
	assert.Equal(t, "http://mq.example:15672", o.mgmt, "management URL derived from the AMQP host")
	assert.Equal(t, "ws://mq.example:15674/ws", o.ws)
	assert.Equal(t, "ops", o.mgmtUser, "DURABLEWS_MANAGEMENT_USER")
	assert.Equal(t, "secret", o.mgmtPassword, "password from the AMQP URL")
	assert.Equal(t, 2*time.Hour, o.tabExpires, "the flag wins over DURABLEWS_TAB_QUEUE_EXPIRES")
	assert.Equal(t, 5, o.policyPriority)
	assert.Equal(t, []durablews.Exchange{{Name: "alerts", Kind: "fanout"}, {Name: "events", Kind: "topic"}}, o.exchangeList)
	assert.Equal(t, map[string]any{"expires": float64(7200000), "max-length": float64(10000)}, o.policyDefinition(), "empty overflow is left out")

	o, err = parseShared(t, map[string]string{"DURABLEWS_AMQP_URL": "amqps://u:p@h/", "DURABLEWS_URL_UNUSED": "x"}, "-amqp-url", "amqps://a:b@h1,amqps://a:b@h2")
	require.NoError(t, err)
	assert.Equal(t, []string{"amqps://a:b@h1", "amqps://a:b@h2"}, []string(o.urls))
	assert.Equal(t, "https://h1:15671", o.mgmt)
	assert.Equal(t, "wss://h1:15673/ws", o.ws)
	assert.Equal(t, []string{"wss://h1:15673/ws", "wss://h2:15673/ws"}, o.wsList, "one Web-STOMP URL per -amqp-url host")

	o, err = parseShared(t, nil, "-amqp-url", "amqp://a:b@h:5681/,amqp://a:b@h:5682/", "-web-stomp-url", "ws://h:15681/ws, ws://h:15682/ws")
	require.NoError(t, err)
	assert.Equal(t, []string{"ws://h:15681/ws", "ws://h:15682/ws"}, o.wsList)
	assert.Equal(t, "ws://h:15681/ws", o.ws)
}

func TestOptions_Errors(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"DURABLEWS_TIMEOUT": "soon"}, nil, "DURABLEWS_TIMEOUT"},
		{nil, []string{"-amqp-url", "http://x"}, "-amqp-url"},
		{nil, []string{"-exchanges", "events:queue"}, `kind "queue"`},
		{nil, []string{"-exchanges", "a,a"}, "listed twice"},
		{nil, []string{"-exchanges", ","}, "no exchange"},
		{nil, []string{"-tab-queue-overflow", "drop-tail"}, "-tab-queue-overflow"},
		{nil, []string{"-tab-queue-pattern", "tab-(["}, "-tab-queue-pattern"},
		{nil, []string{"-log-level", "loud"}, "-log-level"},
		{nil, []string{"-management-url", "15672"}, "-management-url"},
		{nil, []string{"-web-stomp-url", "http://h/ws"}, "-web-stomp-url"},
	} {
		_, err := parseShared(t, c.env, c.args...)
		if assert.Error(t, err, "%v %v", c.env, c.args) {
			assert.Contains(t, err.Error(), c.want)
		}
	}
}

func TestRun_UsageAndExitCodes(t *testing.T) {
	r := cli(t, nil)
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "Usage: durablews <command>")

	r = cli(t, nil, "help")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stdout, "doctor")

	r = cli(t, nil, "fix-everything")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, `unknown command "fix-everything"`)

	r = cli(t, nil, "setup", "-h")
	assert.Equal(t, exitOK, r.code)
	assert.Contains(t, r.stderr, "-dry-run")
	assert.Contains(t, r.stderr, "[DURABLEWS_AMQP_URL]", "the usage names each flag's environment variable")

	r = cli(t, nil, "publish", "events")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "<topic> <routing-key>")

	r = cli(t, map[string]string{"DURABLEWS_EXCHANGES": "x:nope"}, "doctor")
	assert.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "DURABLEWS_EXCHANGES")

	r = cli(t, nil, "setup", "extra")
	assert.Equal(t, exitUsage, r.code)
}
