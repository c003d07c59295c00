package stomptab_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
)

// A tab subscribes durably, drops off the network, 1,000 messages are
// published while it is away, and the tab comes back with the same
// queue name: all 1,000 arrive, in order, exactly once.
func TestDurableQueueKeepsMessagesWhileTabIsAway(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	ex := b.exchange()
	q := stomptab.RandomQueueName("events")
	b.cleanupQueue(q)
	spec := stomptab.Sub{Exchange: ex, BindingKey: "user.42.#", QueueName: q, Prefetch: 50}

	tab := brokertest.DialTab(t, stomptab.Options{})
	brokertest.Subscribe(t, tab, spec)
	tab.Drop()

	info, ok := b.inspect(q)
	require.True(t, ok, "durable, non-auto-delete queue must survive the dropped connection")
	// RabbitMQ 4.x removes the consumer a moment after the socket closed.
	require.Eventually(t, func() bool { info, _ = b.inspect(q); return info.Consumers == 0 }, 10*time.Second, 20*time.Millisecond,
		"the dropped tab's consumer must go")

	want := seq("user.42.orders", "m", 0, 1000)
	start := time.Now()
	b.publish(ex, want...)
	t.Logf("published %d persistent messages with confirms in %v", len(want), time.Since(start))

	info, _ = b.inspect(q)
	require.Equal(t, 1000, info.Messages)

	tab2 := brokertest.DialTab(t, stomptab.Options{})
	sub := brokertest.Subscribe(t, tab2, spec) // identical headers: re-attaches
	start = time.Now()
	c, err := stomptab.ReceiveN(brokertest.Ctx(t, 30*time.Second), sub, len(want), true)
	require.NoError(t, err)
	t.Logf("received and acked %d messages in %v", c.Len(), time.Since(start))

	assert.Equal(t, ids(want), c.IDs(), "all messages, in publish order")
	st := c.Stats()
	assert.Equal(t, stomptab.Stats{Deliveries: 1000, Unique: 1000}, st, "no duplicates, nothing redelivered")
	for _, m := range c.Messages()[:3] {
		assert.Equal(t, "true", m.Headers["persistent"])
		assert.Equal(t, "/exchange/"+ex+"/user.42.orders", m.Headers["destination"])
		assert.Equal(t, q, m.Headers["subscription"])
		assert.JSONEq(t, `{"id":"`+m.ID+`"}`, string(m.Body))
	}

	require.NoError(t, tab2.Close())
	info, ok = b.inspect(q)
	require.True(t, ok)
	assert.Zero(t, info.Messages, "every message was acked")
}

// Messages delivered but not acked before the tab goes away come back
// first, in order, flagged redelivered:true — for an abrupt drop and
// for a graceful DISCONNECT alike. The browser's dedup (the Collector)
// sees them as duplicates of what it already displayed.
func TestUnackedMessagesAreRedelivered(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"drop", "close"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			b := newBroker(t)
			ex := b.exchange()
			q := stomptab.RandomQueueName("events")
			b.cleanupQueue(q)
			spec := stomptab.Sub{Exchange: ex, BindingKey: "user.42.#", QueueName: q, Prefetch: 10}
			ctx := brokertest.Ctx(t, 20*time.Second)
			seen := stomptab.NewCollector() // the page's memory, across reconnects

			tab := brokertest.DialTab(t, stomptab.Options{})
			sub := brokertest.Subscribe(t, tab, spec)
			b.publish(ex, seq("user.42.x", "m", 0, 5)...)
			for i := 0; i < 5; i++ {
				m, err := sub.Next(ctx)
				require.NoError(t, err)
				require.False(t, m.Redelivered)
				seen.Add(m)
				if i < 2 { // only m-0000 and m-0001 are acked
					require.NoError(t, sub.Ack(m))
				}
			}
			require.NoError(t, tab.Sync(ctx)) // the broker has processed both ACKs
			if mode == "drop" {
				tab.Drop()
			} else {
				require.NoError(t, tab.Close())
			}

			tab2 := brokertest.DialTab(t, stomptab.Options{})
			sub2 := brokertest.Subscribe(t, tab2, spec)
			var again []stomptab.Message
			for i := 0; i < 3; i++ {
				m, err := sub2.Next(ctx)
				require.NoError(t, err)
				again = append(again, m)
				assert.False(t, seen.Add(m), "%s is a duplicate for the page", m.ID)
				require.NoError(t, sub2.Ack(m))
			}
			for i, m := range again {
				assert.Equal(t, seq("", "m", 2, 3)[i].id, m.ID, "unacked messages come back in order")
				assert.True(t, m.Redelivered, "%s must carry redelivered:true", m.ID)
				assert.Equal(t, "true", m.Headers["redelivered"])
			}

			// A stale ack from the first connection is refused locally.
			assert.ErrorIs(t, sub2.Ack(seen.Messages()[4]), stomptab.ErrStaleAck)

			b.publish(ex, seq("user.42.x", "m", 5, 2)...)
			require.NoError(t, seen.Receive(ctx, sub2, 7, true))
			assert.Equal(t, ids(seq("", "m", 0, 7)), seen.IDs())
			log := seen.Log()
			assert.False(t, log[len(log)-1].Redelivered, "fresh messages are not flagged")
			assert.Equal(t, stomptab.Stats{Deliveries: 10, Unique: 7, Duplicates: 3, Redelivered: 3}, seen.Stats())

			require.NoError(t, tab2.Close())
			info, _ := b.inspect(q)
			assert.Zero(t, info.Messages)
		})
	}
}

// Two tabs with different queue names and the same binding each get
// every message (fan-out per tab, not competing consumers).
func TestTwoTabsEachGetEveryMessage(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	ex := b.exchange()
	const n = 200
	var subs []*stomptab.Subscription
	for _, name := range []string{"a", "b"} {
		q := stomptab.RandomQueueName(name)
		b.cleanupQueue(q)
		subs = append(subs, brokertest.Subscribe(t, brokertest.DialTab(t, stomptab.Options{}), stomptab.Sub{Exchange: ex, BindingKey: "user.42.#", QueueName: q, Prefetch: 20}))
	}
	want := seq("user.42.chat", "m", 0, n)
	b.publish(ex, want...)
	for i, sub := range subs {
		c, err := stomptab.ReceiveN(brokertest.Ctx(t, 20*time.Second), sub, n, true)
		require.NoError(t, err, "tab %d", i)
		assert.Equal(t, ids(want), c.IDs(), "tab %d", i)
		assert.Zero(t, c.Stats().Duplicates)
		assert.Equal(t, subs[i].ID(), c.Messages()[0].Headers["subscription"])
	}
}

// x-expires removes a tab's queue once it has had no consumer for that
// long. On 3.10.8 the timer is accurate to ~10 ms even for 200 ms.
func TestQueueExpiresAfterTabIsGone(t *testing.T) {
	t.Parallel()
	const expires = 2 * time.Second
	b := newBroker(t)
	ex := b.exchange()
	spec := func(q string) stomptab.Sub {
		return stomptab.Sub{Exchange: ex, BindingKey: "user.42.#", QueueName: q, Expires: expires}
	}
	// exists asks the management API: a passive declare would renew the lease.
	exists := func(t *testing.T, q string) bool {
		ok, err := stomptab.QueueExistsHTTP(context.Background(), stomptab.ManagementURL(), "", q)
		require.NoError(t, err)
		return ok
	}
	waitGone := func(t *testing.T, q string, since time.Time) time.Duration {
		for exists(t, q) {
			require.Less(t, time.Since(since), expires+5*time.Second, "queue %s never expired", q)
			time.Sleep(10 * time.Millisecond)
		}
		return time.Since(since)
	}

	subscribedTab := func(t *testing.T) (string, *stomptab.Tab) {
		q := stomptab.RandomQueueName("exp")
		b.cleanupQueue(q)
		tab := brokertest.DialTab(t, stomptab.Options{})
		brokertest.Subscribe(t, tab, spec(q))
		return q, tab
	}

	t.Run("dropped tab's queue is deleted after x-expires", func(t *testing.T) {
		t.Parallel()
		q, tab := subscribedTab(t)
		tab.Drop()
		dropped := time.Now()
		b.publish(ex, seq("user.42.x", "m", 0, 3)...) // messages do not keep it alive
		gone := waitGone(t, q, dropped)
		t.Logf("x-expires %v: queue gone %v after Drop", expires, gone)
		assert.GreaterOrEqual(t, gone, expires-50*time.Millisecond)
		assert.Less(t, gone, expires+3*time.Second, "expired, but late (the broker deletes at x-expires; slack for a loaded machine)")
	})

	t.Run("connected tab keeps its queue past x-expires", func(t *testing.T) {
		t.Parallel()
		q, tab := subscribedTab(t)
		time.Sleep(expires + time.Second)
		assert.True(t, exists(t, q))
		require.NoError(t, tab.Close())
		t.Logf("after Close: gone in %v", waitGone(t, q, time.Now()))
	})

	t.Run("re-subscribing within x-expires renews the lease", func(t *testing.T) {
		t.Parallel()
		q, tab := subscribedTab(t)
		tab.Drop()
		time.Sleep(expires * 6 / 10)
		tab2 := brokertest.DialTab(t, stomptab.Options{})
		brokertest.Subscribe(t, tab2, spec(q))
		tab2.Drop()
		last := time.Now()
		time.Sleep(expires * 6 / 10) // 1.2 s + 1.2 s > 2 s since the first drop
		assert.True(t, exists(t, q), "lease must have been renewed")
		gone := waitGone(t, q, last)
		assert.GreaterOrEqual(t, gone, expires-50*time.Millisecond)
		t.Logf("gone %v after the second Drop", gone)
	})

	t.Run("after expiry the tab gets a fresh empty queue", func(t *testing.T) {
		t.Parallel()
		q, tab := subscribedTab(t)
		tab.Drop()
		waitGone(t, q, time.Now())
		b.publish(ex, seq("user.42.x", "lost", 0, 5)...) // unroutable, yet confirmed
		tab2 := brokertest.DialTab(t, stomptab.Options{})
		sub := brokertest.Subscribe(t, tab2, spec(q))
		info, ok := b.inspect(q)
		require.True(t, ok)
		assert.Zero(t, info.Messages, "messages published while the queue was gone are lost")
		b.publish(ex, seq("user.42.x", "m", 0, 1)...)
		m, err := sub.Next(brokertest.Ctx(t, 5*time.Second))
		require.NoError(t, err)
		assert.Equal(t, "m-0000", m.ID)
	})
}

// A tab bound to customer.1.# never receives customer 2's messages, nor
// those of customer 12 (topic words, not string prefixes).
func TestCustomerIsolation(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	ex := b.exchange()
	subs := map[string]*stomptab.Subscription{}
	for _, cust := range []string{"1", "2"} {
		q := stomptab.RandomQueueName("customer" + cust)
		b.cleanupQueue(q)
		subs[cust] = brokertest.Subscribe(t, brokertest.DialTab(t, stomptab.Options{}), stomptab.Sub{Exchange: ex, BindingKey: "customer." + cust + ".#", QueueName: q, Prefetch: 100})
	}
	var out []outMsg
	want := map[string][]string{}
	for i := 0; i < 300; i++ {
		for _, m := range []outMsg{
			{key: "customer.1.orders", id: "c1-o-" + itoa(i)},
			{key: "customer.2.orders", id: "c2-o-" + itoa(i)},
			{key: "customer.12.orders", id: "c12-o-" + itoa(i)},
			{key: "customer.2.invoices.eu", id: "c2-i-" + itoa(i)},
			{key: "customer.1", id: "c1-bare-" + itoa(i)}, // # matches zero words
		} {
			out = append(out, m)
			cust := strings.SplitN(m.id, "-", 2)[0][1:]
			want[cust] = append(want[cust], m.id)
		}
	}
	// Sentinels published last: FIFO per queue, so anything misrouted
	// would have arrived before them.
	out = append(out, outMsg{key: "customer.1.end", id: "c1-end"}, outMsg{key: "customer.2.end", id: "c2-end"})
	want["1"] = append(want["1"], "c1-end")
	want["2"] = append(want["2"], "c2-end")
	b.publish(ex, out...)

	for cust, sub := range subs {
		c, err := stomptab.ReceiveN(brokertest.Ctx(t, 30*time.Second), sub, len(want[cust]), true)
		require.NoError(t, err)
		got := c.IDs()
		assert.Equal(t, want[cust], got, "customer %s gets exactly its own messages, in order", cust)
		foreign := 0
		for _, id := range got {
			if !strings.HasPrefix(id, "c"+cust+"-") {
				foreign++
			}
		}
		assert.Zero(t, foreign, "customer %s received foreign messages", cust)
		t.Logf("customer %s: %d messages, %d foreign", cust, len(got), foreign)
		info, _ := b.inspect(sub.ID())
		assert.Zero(t, info.Messages, "nothing left after the sentinel")
	}
}

// /amq/queue/<name> consumes a queue the backend declared and bound,
// without declaring anything.
func TestSubscribeExistingQueue(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	ex := b.exchange()
	q := stomptab.RandomQueueName("backend")
	b.cleanupQueue(q)
	require.NoError(t, b.do(func(ch *amqpChannel) error {
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			return err
		}
		return ch.QueueBind(q, "user.7.#", ex, false, nil)
	}))
	want := seq("user.7.x", "m", 0, 20)
	b.publish(ex, want...)
	tab := brokertest.DialTab(t, stomptab.Options{})
	sub, err := tab.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), q, 5)
	require.NoError(t, err)
	assert.Equal(t, "/amq/queue/"+q, sub.Destination())
	c, err := stomptab.ReceiveN(brokertest.Ctx(t, 10*time.Second), sub, len(want), true)
	require.NoError(t, err)
	assert.Equal(t, ids(want), c.IDs())
}

// A SUBSCRIBE to a missing exchange fails: the broker kills the session
// (3.10.8 loses the ERROR frame), Subscribe reports it, and the queue it
// declared is deleted again.
func TestSubscribeToMissingExchangeFails(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	q := stomptab.RandomQueueName("nope")
	b.cleanupQueue(q)
	tab := brokertest.DialTab(t, stomptab.Options{})
	start := time.Now()
	_, err := tab.Subscribe(brokertest.Ctx(t, 10*time.Second), stomptab.Sub{
		Exchange: stomptab.UniqueName("missing"), BindingKey: "#", QueueName: q,
	})
	require.Error(t, err)
	t.Logf("Subscribe failed after %v: %v", time.Since(start), err)
	_, ok := b.inspect(q)
	assert.False(t, ok)
	_, err = tab.Subscribe(brokertest.Ctx(t, 10*time.Second), stomptab.Sub{Exchange: "amq.topic", BindingKey: "#", QueueName: q})
	assert.Error(t, err, "the session is dead")
}
