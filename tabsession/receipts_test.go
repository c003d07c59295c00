package tabsession_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
	"github.com/durablews/durablews/tabsession"
)

// testReceiptGrants: a session of a Handler with Receipts lets its tab send
// receipts to the receipts exchange with exactly its own routing key
// (<user key>.<tab id>), and nothing else; a session without Receipts
// writes nowhere. Run by TestTabSessions on its node.
func testReceiptGrants(t *testing.T, e *tabEnv, cfg tabsession.Config) {
	rcfg := cfg
	rcfg.Receipts = true
	re := e.withHandler(t, rcfg, nil)
	alice := re.open(t, "c-alice", `{"tab_id":"alicereceipts00001"}`)
	bob := re.open(t, "c-bob", `{"tab_id":"bobreceipts0000001"}`)
	plain := e.open(t, "c-alice", `{"tab_id":"alicereceipts00002"}`) // the handler without Receipts
	t.Cleanup(func() {
		for _, q := range []string{alice.Queue, bob.Queue, plain.Queue} {
			e.deleteQueue(t, q)
		}
	})

	// The service's receipts queue, bound to every routing key.
	ach, err := e.admin.Channel()
	require.NoError(t, err)
	defer func() { _ = ach.Close() }()
	const rq = "receipts-test-service"
	_, err = ach.QueueDeclare(rq, true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ach.QueueBind(rq, "#", tabsession.DefaultReceiptsExchange, false, nil))
	t.Cleanup(func() { _, _ = ach.QueueDelete(rq, false, false, false) })

	aliceKey := re.sessions.UserKey("alice")
	bobKey := re.sessions.UserKey("bob")
	body := func(tab string) []byte {
		return []byte(`{"v":1,"tab":"` + tab + `","receipts":[{"id":"m-1","sub":"events","at":1}]}`)
	}
	send := func(conn *stomp.Conn, dest string, b []byte) error {
		return conn.Send(dest, "application/json", b, stomp.SendOpt.Receipt,
			stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Header("x-durablews-receipts", "1"))
	}

	t.Run("the session names the destination; the token writes only there", func(t *testing.T) {
		require.NotNil(t, alice.Receipts)
		assert.Equal(t, "/exchange/durablews.receipts/"+aliceKey+".alicereceipts00001", alice.Receipts.Destination)
		assert.Equal(t, aliceKey, alice.Receipts.UserKey)
		assert.Regexp(t, `^[0-9a-f]{16}$`, aliceKey)
		assert.Equal(t, "tab-"+aliceKey+"-alicereceipts00001", alice.Queue, "the user key is the queue name's user part")
		assert.NotEqual(t, aliceKey, bobKey)
		claims, _ := parseClaims(t, alice.Token, e.key)
		assert.ElementsMatch(t, []string{
			"rabbitmq.read:%2F/" + alice.Queue,
			"rabbitmq.write:%2F/durablews.receipts/" + aliceKey + ".alicereceipts00001",
		}, strings.Fields(claims["scope"].(string)))

		assert.Nil(t, plain.Receipts, "no receipts without Config.Receipts")
		pclaims, _ := parseClaims(t, plain.Token, e.key)
		assert.NotContains(t, pclaims["scope"], ".write:", "a token without receipts writes nowhere")
	})

	t.Run("positive: the tab's receipt reaches the service's queue", func(t *testing.T) {
		conn, err := rawSTOMP(t, alice.URL, alice.Vhost, alice.Token)
		require.NoError(t, err)
		require.NoError(t, send(conn, alice.Receipts.Destination, body(alice.TabID)), "SEND with receipt: RECEIPT after the broker confirmed")
		d := getOne(t, e, rq)
		assert.Equal(t, tabsession.DefaultReceiptsExchange, d.Exchange)
		assert.Equal(t, aliceKey+".alicereceipts00001", d.RoutingKey)
		assert.Equal(t, uint8(2), d.DeliveryMode, "persistent")
		assert.JSONEq(t, string(body(alice.TabID)), string(d.Body))
	})

	for _, tc := range []struct{ name, token, dest, refused string }{
		{"another user's key", alice.Token, "/exchange/durablews.receipts/" + bobKey + ".alicereceipts00001", "topic"},
		{"bob's own destination", alice.Token, bob.Receipts.Destination, "topic"},
		{"another tab of the same user", alice.Token, "/exchange/durablews.receipts/" + aliceKey + ".alicereceipts00009", "topic"},
		{"a longer key", alice.Token, alice.Receipts.Destination + ".x", "topic"},
		{"a wildcard key", alice.Token, "/exchange/durablews.receipts/#", "topic"},
		{"another exchange, the tab's key", alice.Token, "/exchange/events/" + aliceKey + ".alicereceipts00001", "exchange 'events'"},
		{"the default exchange", alice.Token, "/amq/queue/" + rq, "exchange 'amq.default'"},
		{"a token without receipts (read only)", plain.Token, "/exchange/durablews.receipts/" + aliceKey + ".alicereceipts00002", "exchange 'durablews.receipts'"},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			w := e.watchLog(t)
			conn, err := rawSTOMP(t, alice.URL, alice.Vhost, tc.token)
			require.NoError(t, err)
			err = send(conn, tc.dest, body(alice.TabID))
			require.Error(t, err, "SEND with receipt to %s must fail", tc.dest)
			t.Logf("client observed: %v", err)
			t.Logf("broker: %s", w.wait(t, "access_refused", tc.refused))
			assert.Equal(t, 0, e.ready(t, rq), "nothing reached the receipts queue")
		})
	}

	t.Run("refused: CONNECT with the routing key widened in the token", func(t *testing.T) {
		parts := strings.Split(alice.Token, ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		require.NoError(t, err)
		wide := bytes.ReplaceAll(payload, []byte(aliceKey+".alicereceipts00001"), []byte("*"))
		require.NotEqual(t, payload, wide)
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(wide) + "." + parts[2]
		w := e.watchLog(t)
		_, err = stomptab.Dial(brokertest.Ctx(t, 10*time.Second), stomptab.Options{URL: alice.URL, Login: "", Passcode: tampered})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Bad CONNECT")
		t.Logf("broker: %s", w.wait(t, "OAuth 2/JWT token failed", "signature_invalid"))
	})

	t.Run("a receipts exchange that is not a topic exchange fails every session request", func(t *testing.T) {
		require.NoError(t, ach.ExchangeDeclare("receipts-direct", "direct", true, false, false, false, nil))
		t.Cleanup(func() { _ = ach.ExchangeDelete("receipts-direct", false, false) })
		dcfg := rcfg
		dcfg.ReceiptsExchange = "receipts-direct"
		de := e.withHandler(t, dcfg, nil)
		r := de.request(t, http.MethodPost, "c-alice", "application/json", `{"tab_id":"alicereceipts00003"}`)
		assert.Equal(t, http.StatusInternalServerError, r.status, r.raw)
		assert.False(t, e.queueExists(t, "tab-"+aliceKey+"-alicereceipts00003"), "no queue made before the check")
	})
}

// getOne takes one message from queue (admin connection), failing after 10 s.
func getOne(t *testing.T, e *tabEnv, queue string) struct {
	Exchange, RoutingKey string
	DeliveryMode         uint8
	Body                 []byte
} {
	t.Helper()
	ch, err := e.admin.Channel()
	require.NoError(t, err)
	defer func() { _ = ch.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, ok, err := ch.Get(queue, true)
		require.NoError(t, err)
		if ok {
			var v any
			require.NoError(t, json.Unmarshal(d.Body, &v), "the receipt body is JSON")
			return struct {
				Exchange, RoutingKey string
				DeliveryMode         uint8
				Body                 []byte
			}{d.Exchange, d.RoutingKey, d.DeliveryMode, d.Body}
		}
		require.True(t, time.Now().Before(deadline), "no message in %s within 10 s", queue)
		time.Sleep(50 * time.Millisecond)
	}
}
