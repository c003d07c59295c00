//go:build !race

package receipts_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/receipts"
)

// Not under -race (`make gotest-norace` runs it): the first instance's
// watermill-amqp connection notices the cut and starts reconnecting, and
// watermill-amqp v2.1.3's ConnectionWrapper reassigns its connected
// channel without the lock it takes elsewhere (ThreeDotsLabs/watermill#693,
// open; see TestWatermillAMQPSubscriberAcrossRestarts), so the race
// detector fails any test whose watermill-amqp subscriber reconnects.

// A service whose connection dies mid-stream (a crash, a network cut)
// loses no receipt either: the batches it had received but not acked go
// back to the queue and reach the next instance.
func TestTracker_CrashedServiceLosesNoReceipt(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	var mu sync.Mutex
	seen := map[string]int{}
	onReceipt := func(r receipts.Receipt) {
		mu.Lock()
		seen[r.MessageID]++
		mu.Unlock()
		time.Sleep(time.Millisecond) // a service doing some work: batches queue up in the prefetch
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }

	proxy, proxied := brokertest.ProxiedAMQP(t)
	cfg := top.config()
	cfg.URL = proxied
	sub1 := subscriber(t, cfg)
	tr1, err := receipts.NewTracker(receipts.TrackerConfig{Subscriber: sub1, OnReceipt: onReceipt}, nil)
	require.NoError(t, err)
	const n = 300
	for i := range n {
		top.send(t, "u", "tab1", entry(fmt.Sprint("m", i)))
		if i == n/3 {
			require.Eventually(t, func() bool { return count() > 10 }, 10*time.Second, time.Millisecond)
			proxy.SetRefuse(true) // the service is gone for good
			proxy.CutAll()
		}
	}
	crashed := count()
	t.Logf("the first instance recorded %d receipts before its connection died; %d batches wait in the queue", crashed, top.ready(t))

	svc2 := startService(t, top, onReceipt)
	assert.Eventually(t, func() bool { return count() == n }, 30*time.Second, 20*time.Millisecond, "receipts lost")
	svc2.stop(t)

	// Let the first instance come back before closing it: watermill-amqp
	// v2.1.3 closed while it cannot reconnect leaves its connection
	// goroutine waiting for a connection forever (goleak would fail).
	proxy.SetRefuse(false)
	assert.Eventually(t, func() bool { return consumers(t, top) == 1 }, 20*time.Second, 20*time.Millisecond, "the first instance did not reconnect")
	require.NoError(t, tr1.Close())
	require.NoError(t, sub1.Close())
	assert.Less(t, crashed, n, "the cut came too late to prove anything")
}

func consumers(t *testing.T, top receiptsTopology) int {
	t.Helper()
	ch, err := top.b.Conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(top.queue, true, false, false, false, nil)
	require.NoError(t, err)
	return q.Consumers
}
