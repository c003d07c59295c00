package receipts_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rabbithole "github.com/michaelklishin/rabbit-hole/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/receipts"
)

// The network between the service and the broker drops its connection
// again and again while tabs send receipts: every receipt still reaches
// the Tracker (a batch whose channel was lost is delivered again, and
// the Tracker drops the receipts it has), and closing leaves no
// goroutine of the Subscriber behind. Runs under -race.
func TestSubscriber_RepeatedConnectionCutsLoseNoReceipt(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	require.NoError(t, receipts.DeclareQueue(b.Conn, receipts.Queue{Name: top.queue, Exchange: top.exchange}))
	before := subscriberGoroutines()

	var mu sync.Mutex
	seen := map[string]int{}
	onReceipt := func(r receipts.Receipt) {
		mu.Lock()
		seen[r.MessageUUID()]++
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // some work: batches wait unacked in the prefetch when a cut comes
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }

	proxy, proxied := brokertest.ProxiedAMQP(t)
	cfg := top.config()
	cfg.URL = proxied
	cfg.PrefetchCount = 20
	sub := subscriber(t, cfg)
	tr, err := receipts.NewTracker(receipts.TrackerConfig{Subscriber: sub, OnReceipt: onReceipt}, nil)
	require.NoError(t, err)

	// Bursts of batches, and a cut every 200 to 350 ms: most cuts find
	// batches handed out and not acked yet.
	const n = 600 // batches of two receipts
	var sending sync.WaitGroup
	var sent atomic.Int64
	sending.Add(1)
	go func() {
		defer sending.Done()
		for i := range n {
			top.send(t, "u", fmt.Sprint("tab", i%3), entry(fmt.Sprint("a", i)), entry(fmt.Sprint("b", i)))
			sent.Add(1)
			if i%40 == 39 {
				time.Sleep(150 * time.Millisecond)
			}
		}
	}()
	cuts := 0
	for sent.Load() < n || cuts < 10 {
		time.Sleep(200*time.Millisecond + time.Duration(cuts%4)*50*time.Millisecond)
		if proxy.CutAll() > 0 {
			cuts++
		}
	}
	sending.Wait()
	assert.Eventually(t, func() bool { return count() == 2*n }, 60*time.Second, 20*time.Millisecond, "receipts lost")
	// The batches delivered again are acked too: the queue empties.
	assert.Eventually(t, func() bool { return top.ready(t) == 0 }, 30*time.Second, 20*time.Millisecond)
	st := sub.Stats()
	t.Logf("%d connections cut; %d batches read for %d sent (%d receipts handed out, %d recorded)", cuts, st.Batches, n, st.Receipts, count())
	assert.GreaterOrEqual(t, cuts, 10)
	assert.Greater(t, st.Batches, uint64(n), "no batch was cut in flight and delivered again: the cuts proved nothing")
	assert.Zero(t, st.Refused)

	require.NoError(t, tr.Close())
	require.NoError(t, sub.Close())
	assert.Eventually(t, func() bool { return subscriberGoroutines() == before }, 10*time.Second, 20*time.Millisecond,
		"goroutines of the Subscriber or its connections are left after Close:\n%s", goroutineDump())
}

// Close returns at once while the broker is unreachable (the Subscriber
// is between reconnect attempts) or does not answer (an attempt waits
// for the handshake), and leaves no goroutine behind.
func TestSubscriber_CloseWhileBrokerIsDown(t *testing.T) {
	for _, fault := range []string{"refused", "stalled"} {
		t.Run(fault, func(t *testing.T) {
			b := newBroker(t)
			top := newTopology(t, b)
			before := subscriberGoroutines()
			proxy, proxied := brokertest.ProxiedAMQP(t)
			cfg := top.config()
			cfg.URL = proxied
			sub := subscriber(t, cfg)
			msgs, err := sub.Subscribe(brokertest.Ctx(t, time.Minute), "#")
			require.NoError(t, err)
			top.send(t, "u", "tab1", entry("m1"))
			held := next(t, msgs, 10*time.Second) // not acked

			switch fault {
			case "refused":
				proxy.SetRefuse(true)
			case "stalled":
				proxy.Stall(true) // a new connection is accepted and never answered
				t.Cleanup(func() { proxy.Stall(false) })
			}
			proxy.CutAll()
			time.Sleep(time.Second) // some reconnect attempts: refused, or one waiting for the handshake
			_, err = sub.Subscribe(brokertest.Ctx(t, time.Minute), "#")
			assert.ErrorContains(t, err, "not connected", "Subscribe while reconnecting fails")
			if fault == "refused" {
				assert.Greater(t, proxy.Stats().Refused, int64(0), "no reconnect attempt")
			}

			start := time.Now()
			require.NoError(t, sub.Close())
			assert.Less(t, time.Since(start), time.Second, "Close waited")
			_, open := <-msgs
			assert.False(t, open, "the subscription's channel is closed")
			_ = held
			assert.Eventually(t, func() bool { return subscriberGoroutines() == before }, 10*time.Second, 20*time.Millisecond,
				"goroutines of the Subscriber or its connections are left after Close:\n%s", goroutineDump())
			assert.Eventually(t, func() bool { return top.ready(t) == 1 }, 10*time.Second, 20*time.Millisecond,
				"the batch unacked when the connection was lost is back in the queue")
		})
	}
}

// The consumer has the configured prefetch and a consumer tag of its own,
// and its connection is named after the queue.
func TestSubscriber_PrefetchTagAndConnectionName(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	cfg := top.config()
	cfg.PrefetchCount = 7
	sub := subscriber(t, cfg)
	_, err := sub.Subscribe(brokertest.Ctx(t, time.Minute), "#")
	require.NoError(t, err)

	mc, err := rabbithole.NewClient(brokertest.ManagementURL(), "guest", "guest")
	require.NoError(t, err)
	var consumer rabbithole.ConsumerInfo
	require.Eventually(t, func() bool {
		cs, err := mc.ListConsumersIn("/")
		if err != nil {
			return false
		}
		for _, c := range cs {
			if c.Queue.Name == top.queue {
				consumer = c
				return true
			}
		}
		return false
	}, 20*time.Second, 100*time.Millisecond, "no consumer of %s in the management API", top.queue)
	assert.Equal(t, 7, consumer.PrefetchCount)
	assert.True(t, strings.HasPrefix(consumer.ConsumerTag, "durablews-receipts-"), consumer.ConsumerTag)
	conn, err := mc.GetConnection(consumer.ChannelDetails.ConnectionName)
	require.NoError(t, err)
	assert.Equal(t, "durablews receipts "+top.queue, conn.ClientProperties["connection_name"])
}

// subscriberGoroutines counts the goroutines of package receipts'
// Subscriber and of amqp091-go connections.
func subscriberGoroutines() int {
	n := 0
	for _, g := range strings.Split(goroutineDump(), "\n\n") {
		if strings.Contains(g, "durablews/receipts.(*") && !strings.Contains(g, "receipts.(*Tracker)") ||
			strings.Contains(g, "rabbitmq/amqp091-go.") {
			n++
		}
	}
	return n
}

func goroutineDump() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
