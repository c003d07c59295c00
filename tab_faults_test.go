package durablews_test

// The tab side under faults: a Web-STOMP tab (internal/stomptab, which
// speaks exactly like the browser client) behind a TCP fault proxy in front
// of the shared broker's Web-STOMP port.

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
)

func dialVia(t *testing.T, wsURL string, heartbeat time.Duration) *stomptab.Tab {
	t.Helper()
	tab, err := stomptab.Dial(brokertest.Ctx(t, 10*time.Second), stomptab.Options{URL: wsURL, Heartbeat: heartbeat})
	require.NoError(t, err)
	t.Cleanup(tab.Drop)
	return tab
}

// The tab's connection is cut while messages are being delivered, with
// some received but not yet acked. After reconnecting the tab has every
// message; the ones it saw twice were flagged redelivered and dropped by id.
func TestTabFaults_CutDuringDelivery(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, nil)
	proxy, wsURL := brokertest.ProxiedWebSTOMP(t)
	spec := stomptab.Sub{Exchange: e.ex, BindingKey: "customer.7.#", QueueName: e.queueName("cut"), Prefetch: 100}

	tab := dialVia(t, wsURL, 0)
	sub := brokertest.Subscribe(t, tab, spec)
	msgs := wsMessages("customer.7.evt", 600)
	e.publish(msgs...)

	c := stomptab.NewCollector()
	acked := 0
	ctx := brokertest.Ctx(t, 30*time.Second)
	for c.Len() < 250 { // handle 250; ack only the first 200
		m, err := sub.Next(ctx)
		require.NoError(t, err)
		c.Add(m)
		if acked < 200 {
			require.NoError(t, sub.Ack(m))
			acked++
		}
	}
	require.NoError(t, tab.Sync(ctx), "acks reached the broker before the cut")
	require.Equal(t, 1, proxy.CutAll(), "the tab's connection was cut")

	tab2 := dialVia(t, wsURL, 0)
	sub2 := brokertest.Subscribe(t, tab2, spec)
	require.NoError(t, c.Receive(ctx, sub2, len(msgs), true))

	st := c.Stats()
	t.Logf("cut during delivery: %+v", st)
	assert.Equal(t, len(msgs), st.Unique, "every message arrived")
	assert.Equal(t, wsUUIDs(msgs), c.IDs(), "in publish order")
	assert.GreaterOrEqual(t, st.Duplicates, 50, "the 50 handled-but-unacked messages came again")
	for _, d := range c.Log() {
		if d.Duplicate {
			assert.True(t, d.Redelivered, "a duplicate must be marked redelivered: %s", d.ID)
		}
	}
}

// A tab that freezes (stops reading and sending, socket still open): the
// broker misses its heartbeats, closes the session and requeues the unacked
// messages; the tab gets them all on its return.
func TestTabFaults_FrozenTabGetsMessagesBack(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, nil)
	proxy, wsURL := brokertest.ProxiedWebSTOMP(t)
	spec := stomptab.Sub{Exchange: e.ex, BindingKey: "customer.8.#", QueueName: e.queueName("frozen"), Prefetch: 40}
	b := newBroker(t)

	tab := dialVia(t, wsURL, time.Second)
	sub := brokertest.Subscribe(t, tab, spec)
	msgs := wsMessages("customer.8.evt", 100)
	e.publish(msgs...)
	ctx := brokertest.Ctx(t, 60*time.Second)
	first, err := stomptab.ReceiveN(ctx, sub, 40, false) // hold the whole prefetch, unacked
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.count(spec.QueueName) == 60 }, 10*time.Second, 50*time.Millisecond)

	proxy.Stall(true)
	frozenAt := time.Now()
	require.Eventually(t, func() bool { return b.count(spec.QueueName) == 100 }, 30*time.Second, 100*time.Millisecond,
		"the broker must requeue a frozen tab's unacked messages after its heartbeat timeout")
	t.Logf("frozen tab (1 s heartbeats): its 40 unacked messages were requeued after %v", time.Since(frozenAt).Round(100*time.Millisecond))
	proxy.Stall(false)
	tab.Drop()

	tab2 := dialVia(t, wsURL, time.Second)
	sub2 := brokertest.Subscribe(t, tab2, spec)
	all := stomptab.NewCollector()
	for _, m := range first.Messages() {
		all.Add(m)
	}
	require.NoError(t, all.Receive(ctx, sub2, len(msgs), true))
	st := all.Stats()
	t.Logf("frozen tab after return: %+v", st)
	assert.Equal(t, len(msgs), st.Unique)
	assert.Equal(t, 40, st.Duplicates)
	assert.Equal(t, 40, st.Redelivered)
	assert.Equal(t, wsUUIDs(msgs), all.IDs())
}
