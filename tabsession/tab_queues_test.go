package tabsession_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
	"github.com/durablews/durablews/tabsession"
)

// testLeaderTokens: a shared-mode leader's session request names the
// user's other tabs ("tabs"); its token reads exactly the queues of those
// that exist, derived from the authenticated user, and nothing of another
// user's. Run by TestTabSessions on its node.
func testLeaderTokens(t *testing.T, e *tabEnv, cfg tabsession.Config) {
	a1 := e.open(t, "c-alice", `{"tab_id":"aliceshared000001"}`)
	a2 := e.open(t, "c-alice", `{"tab_id":"aliceshared000002"}`)
	bob := e.open(t, "c-bob", `{"tab_id":"bobshared00000001"}`)
	// Alice also has a tab whose id is one of Bob's: it names her queue, not his.
	aliceSameID := e.open(t, "c-alice", `{"tab_id":"bobshared00000002"}`)
	bob2 := e.open(t, "c-bob", `{"tab_id":"bobshared00000002"}`)
	leaderBody := `{"tab_id":"aliceshared000000","tabs":["aliceshared000001","aliceshared000002","bobshared00000001","bobshared00000002","alicenever000000","aliceshared000001"]}`
	leader := e.open(t, "c-alice", leaderBody)
	t.Cleanup(func() {
		for _, s := range []tabsession.Session{a1, a2, bob, aliceSameID, bob2, leader} {
			e.deleteQueue(t, s.Queue)
		}
	})

	t.Run("the token reads the tabs' queues; missing ones are reported", func(t *testing.T) {
		byTab := map[string]tabsession.TabGrant{}
		for _, g := range leader.Tabs {
			byTab[g.TabID] = g
		}
		assert.Len(t, leader.Tabs, 3, "repeats and the leader's own id dropped; Bob's 00001 is not Alice's")
		assert.Equal(t, a1.Queue, byTab["aliceshared000001"].Queue)
		assert.Equal(t, "/amq/queue/"+a1.Queue, byTab["aliceshared000001"].Destination)
		assert.Equal(t, a2.Queue, byTab["aliceshared000002"].Queue)
		assert.Equal(t, aliceSameID.Queue, byTab["bobshared00000002"].Queue, "another user's tab id maps to this user's namespace")
		assert.NotEqual(t, bob2.Queue, byTab["bobshared00000002"].Queue)
		assert.ElementsMatch(t, []string{"bobshared00000001", "alicenever000000"}, leader.MissingTabs)
		assert.False(t, e.queueExists(t, strings.Replace(bob.Queue, bob.Queue[4:20], leader.Queue[4:20], 1)), "a missing tab's queue is not created")

		claims, _ := parseClaims(t, leader.Token, e.key)
		assert.ElementsMatch(t, []string{
			"rabbitmq.read:%2F/" + leader.Queue,
			"rabbitmq.read:%2F/" + a1.Queue,
			"rabbitmq.read:%2F/" + a2.Queue,
			"rabbitmq.read:%2F/" + aliceSameID.Queue,
		}, strings.Fields(claims["scope"].(string)), "read on exactly these queues, nothing else")
		assert.Equal(t, leader.Queue, claims["sub"])
	})

	t.Run("one connection consumes every joined tab's queue", func(t *testing.T) {
		tab := dialTab(t, leader)
		ctx := brokertest.Ctx(t, 10*time.Second)
		s1, err := tab.SubscribeQueue(ctx, a1.Queue, 10)
		require.NoError(t, err)
		s2, err := tab.SubscribeQueue(ctx, a2.Queue, 10)
		require.NoError(t, err)
		e.publish(t, "customer.alice.shared", `{"user":"alice","shared":1}`)
		assert.JSONEq(t, `{"user":"alice","shared":1}`, string(nextBody(t, s1, 10*time.Second).Body))
		assert.JSONEq(t, `{"user":"alice","shared":1}`, string(nextBody(t, s2, 10*time.Second).Body))
		require.NoError(t, tab.Close())
	})

	t.Run("refused: the leader's token consuming B's queues", func(t *testing.T) {
		e.publish(t, "customer.bob.secret_shared", `{"user":"bob"}`)
		for _, q := range []string{bob.Queue, bob2.Queue} {
			require.Equal(t, 1, e.ready(t, q))
			w := e.watchLog(t)
			tab := dialTab(t, leader)
			sub, err := tab.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), q, 10)
			require.Error(t, err, "SUBSCRIBE to B's queue %s must fail", q)
			assert.Nil(t, sub)
			t.Logf("broker: %s", w.wait(t, "access_refused", "access to queue '"+q+"'", "refused for user '"+leader.Queue+"'"))
			assert.Equal(t, 1, e.ready(t, q), "B's message still in B's queue")
			_ = tab.Close()
		}
	})

	t.Run("refused: a tampered leader token (B's queue in A's scope)", func(t *testing.T) {
		parts := strings.Split(leader.Token, ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		require.NoError(t, err)
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.ReplaceAll(payload, []byte(a1.Queue), []byte(bob.Queue))) + "." + parts[2]
		w := e.watchLog(t)
		_, err = stomptab.Dial(brokertest.Ctx(t, 10*time.Second), stomptab.Options{URL: leader.URL, Login: "", Passcode: tampered})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Bad CONNECT")
		t.Logf("broker: %s", w.wait(t, "OAuth 2/JWT token failed", "signature_invalid"))
	})

	t.Run("bad tabs lists: 400", func(t *testing.T) {
		limit := cfg.MaxQueuesPerUser
		if limit == 0 {
			limit = tabsession.DefaultMaxQueuesPerUser
		}
		over := make([]string, limit+1)
		for i := range over {
			over[i] = fmt.Sprintf("overlimit%08d", i)
		}
		overBody, _ := json.Marshal(map[string]any{"tab_id": "aliceshared000000", "tabs": over})
		for body, msg := range map[string]string{
			string(overBody): "at most",
			`{"tab_id":"aliceshared000000","tabs":["../tab-x"]}`:                        "is not a tab id",
			`{"tab_id":"aliceshared000000","tabs":["ABCDEFGHIJ"]}`:                      "is not a tab id",
			`{"tab_id":"aliceshared000000","tabs":["` + strings.Repeat("a", 65) + `"]}`: "is not a tab id",
			`{"tab_id":"aliceshared000000","tabs":"aliceshared000001"}`:                 "JSON object",
		} {
			r := e.request(t, http.MethodPost, "c-alice", "application/json", body)
			assert.Equal(t, http.StatusBadRequest, r.status, body)
			assert.Contains(t, r.errBody.Message, msg, body)
		}
	})
}
