package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/testbroker"
)

// setup -streams declares a broadcast stream with retention and its
// bindings, idempotently, refuses a stream without retention before it
// touches the broker, and reports (never deletes) a stream whose
// retention differs.
func TestSetupStreams(t *testing.T) {
	t.Parallel()
	node := testbroker.Start(t, testbroker.Options{})
	env := nodeEnv(node)
	env["DURABLEWS_EXCHANGES"] = "events"
	mc := mgmtClient(t, node)
	streams := []string{"-streams", "prices::price.#|fx.#,news", "-stream-max-age", "2h"}

	r := cli(t, env, append([]string{"setup", "-dry-run"}, streams...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `stream "prices" ({x-max-age: 2h, x-max-length-bytes: 1073741824, x-queue-type: stream}): missing, would create`)
	assert.Contains(t, r.stdout, `binding events -> stream prices, key "fx.#": missing, would create`)
	assert.Contains(t, r.stdout, "setup: 7 change(s) needed") // exchange, policy, 2 streams, 3 bindings
	_, err := mc.GetQueue("/", "prices")
	require.True(t, isNotFound(err), "dry run created the stream: %v", err)

	r = cli(t, env, append([]string{"setup"}, streams...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "setup: 7 change(s) applied")
	q, err := mc.GetQueue("/", "prices")
	require.NoError(t, err)
	assert.Equal(t, "stream", q.Type)
	assert.True(t, q.Durable)
	assert.Equal(t, "2h", q.Arguments["x-max-age"])
	assert.EqualValues(t, 1<<30, q.Arguments["x-max-length-bytes"])
	bs, err := mc.ListQueueBindings("/", "prices")
	require.NoError(t, err)
	var keys []string
	for _, b := range bs {
		if b.Source == "events" {
			keys = append(keys, b.RoutingKey)
		}
	}
	assert.ElementsMatch(t, []string{"price.#", "fx.#"}, keys)
	bs, err = mc.ListQueueBindings("/", "news")
	require.NoError(t, err)
	assert.Condition(t, func() bool {
		for _, b := range bs {
			if b.Source == "events" && b.RoutingKey == "#" {
				return true
			}
		}
		return false
	}, "news is bound with # by default: %+v", bs)

	r = cli(t, env, append([]string{"setup"}, streams...)...)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "setup: nothing to change")

	r = cli(t, env, "setup", "-streams", "prices", "-stream-max-age", "1h")
	require.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stdout, "cannot change them in place")
	assert.Contains(t, r.stdout, "policy")
	q, err = mc.GetQueue("/", "prices")
	require.NoError(t, err, "the stream is never deleted")
	assert.Equal(t, "2h", q.Arguments["x-max-age"])

	r = cli(t, env, "setup", "-streams", "forever", "-stream-max-age", "0", "-stream-max-length-bytes", "0")
	require.Equal(t, exitUsage, r.code)
	assert.Contains(t, r.stderr, "needs retention")
	_, err = mc.GetQueue("/", "forever")
	require.True(t, isNotFound(err), "nothing declared for a refused config: %v", err)

	env["DURABLEWS_EXCHANGES"] = "events,alerts"
	r = cli(t, env, "setup", "-streams", "prices")
	require.Equal(t, exitUsage, r.code)
	assert.True(t, strings.Contains(r.stderr, "name the exchange"), r.stderr)
}
