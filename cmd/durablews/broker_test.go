package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	rabbithole "github.com/michaelklishin/rabbit-hole/v3"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/stomptab"
	"github.com/durablews/durablews/internal/testbroker"
)

// nodeEnv points the CLI at a private node only: every URL explicitly,
// because the defaults (127.0.0.1:5672/15672/15674) are the shared broker.
func nodeEnv(n *testbroker.Node) map[string]string {
	return map[string]string{
		"DURABLEWS_AMQP_URL":       n.AMQPURL(),
		"DURABLEWS_MANAGEMENT_URL": "http://127.0.0.1:" + strconv.Itoa(n.Ports().Management),
		// The reserved port even when web_stomp is disabled, never the shared 15674.
		"DURABLEWS_WEB_STOMP_URL": "ws://127.0.0.1:" + strconv.Itoa(n.Ports().WebSTOMP) + "/ws",
		"DURABLEWS_EXCHANGES":     "events,alerts:fanout",
		"DURABLEWS_TIMEOUT":       "5s",
	}
}

func mgmtClient(t *testing.T, n *testbroker.Node) *rabbithole.Client {
	t.Helper()
	c, err := rabbithole.NewClient(n.ManagementURL(), n.Username(), n.Password())
	require.NoError(t, err)
	c.SetTimeout(10 * time.Second)
	return c
}

// tabQueues declares browser-like tab queues (durable, not auto-delete,
// x-expires, bound to events) and returns their names.
func declareTabQueues(t *testing.T, ch *amqp.Channel, n int) []string {
	t.Helper()
	var names []string
	for i := range n {
		q := stomptab.RandomQueueName("events")
		_, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-expires": int32(900000)})
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind(q, fmt.Sprintf("user.%d.#", i), "events", false, nil))
		names = append(names, q)
	}
	return names
}

func TestSetupDoctorPublish_HealthyNode(t *testing.T) {
	t.Parallel()
	node := testbroker.Start(t, testbroker.Options{})
	env := nodeEnv(node)
	mc := mgmtClient(t, node)

	// dry run on an empty node: says what it would do, does nothing.
	r := cli(t, env, "setup", "-dry-run")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `exchange "events" (topic, durable): missing, would create`)
	assert.Contains(t, r.stdout, `exchange "alerts" (fanout, durable): missing, would create`)
	assert.Contains(t, r.stdout, `policy "durablews-tab-queues" (queues matching "^tab-", priority 0): {expires: 3600000, max-length: 10000, overflow: drop-head}: would create`)
	assert.Contains(t, r.stdout, "setup: 3 change(s) needed")
	_, err := mc.GetExchange("/", "events")
	require.True(t, isNotFound(err), "dry run created the exchange: %v", err)
	_, err = mc.GetPolicy("/", "durablews-tab-queues")
	require.True(t, isNotFound(err), "dry run created the policy: %v", err)

	// doctor before setup: exchanges and policy missing, named with the fix.
	r = cli(t, env, "doctor")
	require.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stdout, `"events" does not exist`)
	assert.Contains(t, r.stdout, "fix: `durablews setup`")

	r = cli(t, env, "setup")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, `exchange "events" (topic, durable): created`)
	assert.Contains(t, r.stdout, "setup: 3 change(s) applied")
	assert.Contains(t, r.stderr, `msg="Connected to management API"`, "connection events are logged at info")
	ex, err := mc.GetExchange("/", "alerts")
	require.NoError(t, err)
	assert.Equal(t, "fanout", ex.Type)
	assert.True(t, ex.Durable)
	pol, err := mc.GetPolicy("/", "durablews-tab-queues")
	require.NoError(t, err)
	assert.Equal(t, "^tab-", pol.Pattern)
	assert.Equal(t, "queues", pol.ApplyTo)

	// The second run changes nothing, and says so.
	r = cli(t, env, "setup")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Equal(t, 3, strings.Count(r.stdout, "exists, unchanged"))
	assert.Contains(t, r.stdout, "setup: nothing to change")
	r = cli(t, env, "setup", "-dry-run")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "setup: nothing to change")

	// Tab queues as browsers make them; one has a consumer (an open tab).
	conn, err := amqp.Dial(node.AMQPURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	tabs := declareTabQueues(t, ch, 3)
	_, err = ch.Consume(tabs[2], "open-tab", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.PublishWithContext(t.Context(), "events", "user.0.hello", false, false, amqp.Publishing{Body: []byte("{}"), DeliveryMode: 2}))
	require.Eventually(t, func() bool { // the policy reaches new queues asynchronously
		q, err := mc.GetQueue("/", tabs[0])
		return err == nil && q.Policy == "durablews-tab-queues" && q.Messages == 1
	}, 10*time.Second, 100*time.Millisecond)

	r = cli(t, env, "doctor")
	require.Equal(t, exitOK, r.code, "doctor on a node setup configured:\n%s", r.stdout)
	for _, want := range []string{
		"ok    broker ", "ok    management API ", "ok    plugins ", "rabbitmq_web_stomp",
		"WebSocket + STOMP CONNECT ok", "ok    resource alarms ",
		`ok    exchange          "events" exists (topic, durable)`,
		`ok    exchange          "alerts" exists (fanout, durable)`,
		`ok    tab-queue policy  "durablews-tab-queues" applies {expires: 3600000, max-length: 10000, overflow: drop-head}`,
		`3 matching "^tab-", 2 without consumers; oldest idle: tab-`,
		"expires after 15m0s unused",
		"ok    broker version    RabbitMQ " + node.Version().Name + ".",
		"ok    delivery limit    no policy limits deliveries of tab queues",
		"doctor: everything looks fine",
	} {
		assert.Contains(t, r.stdout, want)
	}

	// An operator policy that limits deliveries of tab queues: a quorum tab
	// queue would drop a message after that many cuts, so doctor warns.
	_, err = mc.PutOperatorPolicy("/", "limits", rabbithole.OperatorPolicy{Pattern: "^tab-", ApplyTo: "queues",
		Definition: rabbithole.PolicyDefinition{"delivery-limit": 5}})
	require.NoError(t, err)
	r = cli(t, env, "doctor")
	require.Equal(t, exitOK, r.code, "a warning is not a failure:\n%s", r.stdout)
	assert.Contains(t, r.stdout, `WARN  delivery limit    operator policy "limits" (pattern "^tab-") sets delivery-limit 5: a quorum tab queue drops a message`)
	assert.Contains(t, r.stdout, "fix: remove delivery-limit from the policy")
	_, err = mc.DeleteOperatorPolicy("/", "limits")
	require.NoError(t, err)
	assert.NotContains(t, r.stdout, "FAIL")
	assert.Regexp(t, regexp.MustCompile(`oldest idle: (`+regexp.QuoteMeta(tabs[0])+`|`+regexp.QuoteMeta(tabs[1])+`), idle \d+s`), r.stdout,
		"the oldest idle queue is one without a consumer")

	// Someone changes the policy: doctor fails naming setup, setup repairs it once.
	_, err = mc.PutPolicy("/", "durablews-tab-queues", rabbithole.Policy{Pattern: "^tab-", ApplyTo: "queues",
		Definition: rabbithole.PolicyDefinition{"max-length": 5}})
	require.NoError(t, err)
	r = cli(t, env, "doctor")
	require.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stdout, `FAIL  tab-queue policy  policy "durablews-tab-queues" differs from the configured one: definition {max-length: 5} -> {expires: 3600000, max-length: 10000, overflow: drop-head}`)
	r = cli(t, env, "setup")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "updated: definition {max-length: 5} -> {expires: 3600000, max-length: 10000, overflow: drop-head}")
	assert.Contains(t, r.stdout, "setup: 1 change(s) applied")
	r = cli(t, env, "setup")
	assert.Contains(t, r.stdout, "setup: nothing to change")

	// An exchange of another kind is reported, never deleted.
	_, err = mc.DeclareExchange("/", "legacy", rabbithole.ExchangeSettings{Type: "direct", Durable: false})
	require.NoError(t, err)
	r = cli(t, env, "setup", "-exchanges", "events,legacy")
	require.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stdout, `exchange "legacy" (topic, durable): exists as direct, transient (not durable); setup does not change`)
	assert.Contains(t, r.stderr, "delete it")
	ex, err = mc.GetExchange("/", "legacy")
	require.NoError(t, err, "setup must not delete an exchange")
	assert.Equal(t, "direct", ex.Type)
	r = cli(t, env, "doctor", "-exchanges", "events,legacy")
	require.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stdout, `FAIL  exchange          "legacy" is direct, transient (not durable), configured as topic`)

	// publish: confirmed; returned with -mandatory; missing exchange.
	r = cli(t, env, "publish", "events", "user.1.order_paid", `{"order":1001}`)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Regexp(t, `^confirmed: topic "events" -> exchange "events" \(topic\), routing key "user.1.order_paid", message [0-9a-f-]{36}, 14 bytes, in [0-9.]+(µs|ms|s)\n$`, r.stdout)
	assert.Contains(t, r.stderr, `msg="Connected to broker"`)
	assert.Eventually(t, func() bool {
		q, err := mc.GetQueue("/", tabs[1])
		return err == nil && q.Messages == 1
	}, 10*time.Second, 100*time.Millisecond, "the message reached user 1's tab queue")

	r = cli(t, env, "publish", "-mandatory", "-uuid", "11111111-2222-3333-4444-555555555555", "events", "user.99.nobody", "{}")
	require.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stdout, `NOT confirmed (returned): topic "events" -> exchange "events" (topic), routing key "user.99.nobody", message 11111111-2222-3333-4444-555555555555`)
	assert.Contains(t, r.stdout, "fix: no queue is bound")

	r = cli(t, env, "publish", "-confirm-timeout", "3s", "nosuch", "k", "{}")
	require.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stdout, "NOT confirmed")
	assert.Contains(t, r.stdout, "run `durablews setup`")
	_, err = mc.GetExchange("/", "nosuch")
	assert.True(t, isNotFound(err), "publish must not declare exchanges")
}

func TestDoctor_WebSTOMPDisabled(t *testing.T) {
	t.Parallel()
	node := testbroker.Start(t, testbroker.Options{Plugins: []string{testbroker.PluginManagement, testbroker.PluginSTOMP}})
	env := nodeEnv(node)
	r := cli(t, env, "setup")
	require.Equal(t, exitOK, r.code, r.stderr)

	r = cli(t, env, "doctor")
	require.Equal(t, exitFail, r.code)
	assert.Regexp(t, `FAIL  plugins +dwstest-[0-9a-z]+@localhost lacks rabbitmq_web_stomp`, r.stdout)
	assert.Contains(t, r.stdout, "fix: `rabbitmq-plugins enable rabbitmq_web_stomp` on every node")
	assert.Contains(t, r.stdout, "FAIL  web-stomp ")
	assert.Contains(t, r.stdout, "connection refused")
	assert.Contains(t, r.stdout, "(the broker reports no Web-STOMP listener)")
	assert.Contains(t, r.stdout, "ok    exchange ", "the other checks still run")
	assert.Contains(t, r.stdout, "doctor: 2 problem(s)")
}

func TestDoctor_NothingReachable(t *testing.T) {
	t.Parallel()
	// Port 1 refuses connections; never fall back to the shared broker's ports.
	r := cli(t, map[string]string{
		"DURABLEWS_AMQP_URL":       "amqp://guest:guest@127.0.0.1:1/",
		"DURABLEWS_MANAGEMENT_URL": "http://127.0.0.1:1",
		"DURABLEWS_WEB_STOMP_URL":  "ws://127.0.0.1:1/ws",
	}, "doctor")
	require.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stdout, "FAIL  broker ")
	assert.Contains(t, r.stdout, "fix: start RabbitMQ (`make broker`")
	assert.Contains(t, r.stdout, "FAIL  management API ")
	assert.Contains(t, r.stdout, "rabbitmq-plugins enable rabbitmq_management")
	assert.Contains(t, r.stdout, "skip  exchanges ")
	assert.Contains(t, r.stdout, "doctor: 3 problem(s)")

	r = cli(t, map[string]string{"DURABLEWS_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/", "DURABLEWS_TIMEOUT": "2s"}, "publish", "events", "k", "{}")
	require.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stderr, "cannot connect to any broker")
}
