package tabsession_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/testbroker"
	"github.com/durablews/durablews/tabsession"
)

// tabBody is a session request for tab id prefix+n (padded to 8+ chars).
func tabBody(prefix string, n int) string {
	return fmt.Sprintf(`{"tab_id": "%s%08d"}`, prefix, n)
}

// TestTabQueueLimits: one user cannot hold more than MaxQueuesPerUser tab
// queues nor create them faster than the rate limit, other users are not
// affected, and a broker at its vhost's max-queues gives a clear 503.
func TestTabQueueLimits(t *testing.T) {
	e, cfg, _ := newOAuthEnv(t, testbroker.Options{})
	e.app.sessions["c-carol"] = "carol"
	e.app.allowed["carol"] = []tabsession.Binding{{Exchange: "events", Key: "customer.carol.#"}}

	t.Run("per-user cap: the least recently used tab queue goes, other users keep theirs", func(t *testing.T) {
		capped := cfg
		capped.MaxQueuesPerUser = 3
		capped.QueueCreateBurst = -1 // the cap alone
		c := e.withHandler(t, capped, nil)

		bob := []tabsession.Session{c.open(t, "c-bob", tabBody("bobcap", 1)), c.open(t, "c-bob", tabBody("bobcap", 2))}
		var alice []tabsession.Session
		aliceLive := func() (live []int) {
			for i, s := range alice {
				if c.queueExists(t, s.Queue) {
					live = append(live, i)
				}
			}
			return live
		}
		for i := range 3 {
			alice = append(alice, c.open(t, "c-alice", tabBody("alicecap", i)))
		}
		assert.Equal(t, []int{0, 1, 2}, aliceLive())
		// Tab 0 renews: tab 1 is now the least recently used.
		assert.False(t, c.open(t, "c-alice", tabBody("alicecap", 0)).QueueCreated)
		alice = append(alice, c.open(t, "c-alice", tabBody("alicecap", 3)))
		assert.Equal(t, []int{0, 2, 3}, aliceLive(), "the least recently used tab queue (1) was deleted")
		// Many more tabs: never more than 3 live.
		for i := 4; i < 12; i++ {
			s := c.open(t, "c-alice", tabBody("alicecap", i))
			assert.True(t, s.QueueCreated)
			alice = append(alice, s)
			assert.Len(t, aliceLive(), 3, "after tab %d", i)
		}
		assert.Equal(t, []int{9, 10, 11}, aliceLive())
		// An evicted tab that comes back gets a new, empty queue and is told.
		back := c.open(t, "c-alice", tabBody("alicecap", 1))
		assert.True(t, back.QueueCreated, "the page must learn that its queue was lost")
		assert.Equal(t, []int{1, 10, 11}, aliceLive())

		// The whole vhost, not only the names this test knows: alice holds
		// exactly 3 queues of this handler's run.
		out, err := e.node.Ctl("list_queues", "-q", "--no-table-headers", "name")
		require.NoError(t, err)
		prefix := strings.TrimSuffix(alice[0].Queue, alice[0].TabID)
		n := 0
		for _, q := range strings.Fields(out) {
			if strings.HasPrefix(q, prefix) && strings.Contains(q, "alicecap") {
				n++
			}
		}
		assert.Equal(t, 3, n, "alice's tab queues on the broker:\n%s", out)

		// Bob was not touched, and is served as before.
		for _, s := range bob {
			assert.True(t, c.queueExists(t, s.Queue), "bob's queue %s", s.Queue)
		}
		assert.True(t, c.open(t, "c-bob", tabBody("bobcap", 3)).QueueCreated)
		for _, s := range bob {
			assert.True(t, c.queueExists(t, s.Queue))
		}
	})

	t.Run("per-user cap: a queue a tab is reading stays over idle ones; the cap holds when all are read", func(t *testing.T) {
		capped := cfg
		capped.MaxQueuesPerUser = 2
		capped.QueueCreateBurst = -1
		c := e.withHandler(t, capped, nil)
		reading := func(s tabsession.Session) {
			t.Helper()
			tab := dialTab(t, s)
			t.Cleanup(tab.Drop)
			_, err := tab.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), s.Queue, 10)
			require.NoError(t, err)
		}
		var carol []tabsession.Session
		exists := func() (live []int) {
			for i, s := range carol {
				if c.queueExists(t, s.Queue) {
					live = append(live, i)
				}
			}
			return live
		}
		carol = append(carol, c.open(t, "c-carol", tabBody("carolread", 0)))
		reading(carol[0]) // a tab open for hours: no session request since
		carol = append(carol, c.open(t, "c-carol", tabBody("carolread", 1)))
		carol = append(carol, c.open(t, "c-carol", tabBody("carolread", 2)))
		assert.Equal(t, []int{0, 2}, exists(), "the least recently used queue (0) has a consumer: the idle one (1) went")

		reading(carol[2])
		carol = append(carol, c.open(t, "c-carol", tabBody("carolread", 3)))
		assert.Len(t, exists(), 2, "every queue is read: the cap still holds")
		assert.Equal(t, []int{0, 3}, exists(), "the least recently used of the read ones (2; 0 was seen in use later) went")
	})

	t.Run("rate limit: 429 for a new queue over the budget; renewals and other users served", func(t *testing.T) {
		limited := cfg
		limited.QueueCreateBurst = 2
		limited.QueueCreateInterval = time.Hour // no refill during the test
		c := e.withHandler(t, limited, nil)

		first := c.open(t, "c-alice", tabBody("aliceburst", 1))
		c.open(t, "c-alice", tabBody("aliceburst", 2))
		r := c.request(t, http.MethodPost, "c-alice", "application/json", tabBody("aliceburst", 3))
		assert.Equal(t, http.StatusTooManyRequests, r.status, r.raw)
		assert.Equal(t, "too_many_requests", r.errBody.Error)
		assert.Contains(t, r.errBody.Message, "too many new tabs for this user")
		retry, err := strconv.Atoi(r.header.Get("Retry-After"))
		require.NoError(t, err, "Retry-After %q", r.header.Get("Retry-After"))
		assert.InDelta(t, 3600, retry, 5, "a token comes back after QueueCreateInterval")
		t.Logf("over the budget: %d %s (Retry-After %d)", r.status, strings.TrimSpace(r.raw), retry)
		assert.False(t, c.queueExists(t, strings.Replace(first.Queue, first.TabID, "aliceburst00000003", 1)), "no queue was declared")

		page := httptest.NewRequest(http.MethodGet, "/", nil)
		page.AddCookie(&http.Cookie{Name: sessionCookie, Value: "c-alice"})
		_, err = c.sessions.Prepare(page)
		assert.ErrorIs(t, err, tabsession.ErrRateLimited, "Prepare makes a new queue too")

		assert.False(t, c.open(t, "c-alice", tabBody("aliceburst", 1)).QueueCreated, "a renewal creates nothing and is served")
		assert.True(t, c.open(t, "c-bob", tabBody("bobburst", 1)).QueueCreated, "another user has a budget of their own")
	})

	t.Run("vhost max-queues: 503 queue limit reached, existing tabs served", func(t *testing.T) {
		logs := watermill.NewCaptureLogger()
		c := e.withHandler(t, cfg, logs)
		existing := c.open(t, "c-carol", tabBody("carolmax", 1))

		out, err := e.node.Ctl("list_queues", "-q", "--no-table-headers", "name")
		require.NoError(t, err)
		count := len(strings.Fields(out))
		_, err = e.node.Ctl("set_vhost_limits", "-p", "/", fmt.Sprintf(`{"max-queues": %d}`, count))
		require.NoError(t, err)
		t.Cleanup(func() {
			_, err := e.node.Ctl("set_vhost_limits", "-p", "/", `{"max-queues": -1}`)
			assert.NoError(t, err)
		})

		r := c.request(t, http.MethodPost, "c-carol", "application/json", tabBody("carolmax", 2))
		t.Logf("at max-queues %d: %d %s (Retry-After %s)", count, r.status, strings.TrimSpace(r.raw), r.header.Get("Retry-After"))
		assert.Equal(t, http.StatusServiceUnavailable, r.status)
		assert.Equal(t, "queue_limit_reached", r.errBody.Error)
		assert.Contains(t, r.errBody.Message, "queue limit reached")
		assert.Equal(t, "10", r.header.Get("Retry-After"))
		logged := ""
		for _, m := range logs.Captured()[watermill.ErrorLogLevel] {
			if cause, _ := m.Fields["cause"].(string); strings.Contains(cause, "queue limit") {
				logged = cause
			}
		}
		assert.Contains(t, logged, "set_vhost_limits", "the log says what the operator can do")
		t.Logf("logged cause: %s", logged)

		page := httptest.NewRequest(http.MethodGet, "/", nil)
		page.AddCookie(&http.Cookie{Name: sessionCookie, Value: "c-carol"})
		_, err = c.sessions.Prepare(page)
		assert.ErrorIs(t, err, tabsession.ErrQueueLimitReached)
		assert.ErrorIs(t, err, tabsession.ErrUnavailable)

		renewed := c.open(t, "c-carol", tabBody("carolmax", 1))
		assert.Equal(t, existing.Queue, renewed.Queue, "an existing tab is served at the limit")
		assert.False(t, renewed.QueueCreated)
	})
}
