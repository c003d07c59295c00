package stomptab_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/faultproxy"
	"github.com/durablews/durablews/internal/stomptab"
)

// A tab reconnected many times — its connection cut while deliveries
// stream in and acks go out, dropped, or closed after a cut — leaves no
// goroutine behind and loses no message. The chaos tests reconnect tabs
// hundreds of times under goleak; with go-stomp's Conn this test left a
// reader goroutine blocked after a few rounds (the cluster soak saw two)
// and once hung in Ack. Not parallel, so goleak sees only this test.
func TestReconnectsLeaveNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	b := newBroker(t)
	ex := b.exchange()
	q := stomptab.RandomQueueName("leak")
	b.cleanupQueue(q)
	proxy, wsURL := brokertest.ProxiedWebSTOMP(t)
	spec := stomptab.Sub{Exchange: ex, BindingKey: "k.#", QueueName: q, Prefetch: 200}

	const rounds, perRound = 16, 300
	c := stomptab.NewCollector()
	for r := range rounds {
		done := make(chan struct{})
		go func() {
			defer close(done)
			reconnectRound(t, r, proxy, wsURL, spec, c, func() {
				b.publish(ex, seq("k.x", "m", r*perRound, perRound)...)
			})
		}()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("round %d did not finish within 60 s: a tab operation hangs", r)
		}
		if t.Failed() {
			return
		}
	}

	// A last tab collects what the rounds left in the queue.
	tab := brokertest.DialTab(t, stomptab.Options{})
	sub := brokertest.Subscribe(t, tab, spec)
	require.NoError(t, c.Receive(brokertest.Ctx(t, 30*time.Second), sub, rounds*perRound, true))
	require.NoError(t, tab.Sync(brokertest.Ctx(t, 10*time.Second)))
	require.NoError(t, tab.Close())
	st := c.Stats()
	t.Logf("%d rounds: %+v, proxy %+v", rounds, st, proxy.Stats())
	assert.Equal(t, rounds*perRound, st.Unique, "every message arrived")

	require.NoError(t, proxy.Close())
	b.conn.Close()
	goleak.VerifyNone(t, before)
}

// reconnectRound publishes a batch to a tab that acks from a second
// goroutine while the connection is cut, then ends the tab in the way
// round r picks: Drop, Close after the cut, or Close on a live tab.
func reconnectRound(t *testing.T, r int, proxy *faultproxy.Proxy, wsURL string, spec stomptab.Sub, c *stomptab.Collector, publish func()) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	tab, err := stomptab.Dial(ctx, stomptab.Options{URL: wsURL, Heartbeat: time.Second})
	if !assert.NoError(t, err) {
		return
	}
	defer tab.Drop()
	sub, err := tab.Subscribe(ctx, spec)
	if !assert.NoError(t, err) {
		return
	}
	publish()

	var wg sync.WaitGroup
	acks := make(chan stomptab.Message, 1024)
	wg.Add(1)
	go func() { // acks keep going out while the connection dies
		defer wg.Done()
		for m := range acks {
			if err := sub.Ack(m); err != nil {
				assert.True(t, errors.Is(err, stomptab.ErrBrokerClosed) || errors.Is(err, stomptab.ErrClosed),
					"Ack after the cut: %v", err)
			}
		}
	}()
	for n := 0; n < 50+r*7; n++ { // cut at a different point each round
		m, err := sub.Next(ctx)
		if !assert.NoError(t, err) {
			break
		}
		c.Add(m)
		acks <- m
	}
	// A receipt wait in flight when the connection dies ends with it.
	syncErr := make(chan error, 1)
	go func() { syncErr <- tab.Sync(ctx) }()

	switch r % 3 {
	case 0:
		proxy.CutAll()
		tab.Drop()
	case 1:
		proxy.CutAll()
		assert.NoError(t, tab.Close(), "Close after the broker went away")
	case 2:
		assert.NoError(t, tab.Close())
	}
	close(acks)
	wg.Wait()
	if err := <-syncErr; err != nil {
		assert.True(t, errors.Is(err, stomptab.ErrBrokerClosed) || errors.Is(err, stomptab.ErrClosed), "Sync: %v", err)
	}
	// Whatever was buffered is still handed out, then the end.
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			assert.ErrorIs(t, err, stomptab.ErrClosed)
			break
		}
		c.Add(m)
	}
	assert.ErrorIs(t, sub.Ack(stomptab.Message{}), stomptab.ErrStaleAck)
	_, err = tab.Subscribe(ctx, spec)
	assert.ErrorIs(t, err, stomptab.ErrClosed, "Subscribe after the end")
}

// A tab whose network stalls (no RST, no FIN) notices within twice the
// negotiated heart-beat interval, like stompjs, instead of waiting for ever.
func TestSilentNetworkEndsTheTab(t *testing.T) {
	t.Parallel()
	b := newBroker(t)
	ex := b.exchange()
	q := stomptab.RandomQueueName("stall")
	b.cleanupQueue(q)
	proxy, wsURL := brokertest.ProxiedWebSTOMP(t)

	tab, err := stomptab.Dial(brokertest.Ctx(t, 10*time.Second), stomptab.Options{URL: wsURL, Heartbeat: time.Second})
	require.NoError(t, err)
	t.Cleanup(tab.Drop)
	sub := brokertest.Subscribe(t, tab, stomptab.Sub{Exchange: ex, QueueName: q})

	proxy.Stall(true)
	t.Cleanup(func() { proxy.Stall(false) })
	start := time.Now()
	_, err = sub.Next(brokertest.Ctx(t, 30*time.Second))
	took := time.Since(start)
	require.ErrorIs(t, err, stomptab.ErrClosed)
	assert.ErrorIs(t, err, stomptab.ErrBrokerClosed, "the tab did not end it: the network did")
	t.Logf("stalled network noticed after %v: %v", took.Round(time.Millisecond), err)
	assert.ErrorIs(t, tab.Sync(brokertest.Ctx(t, 5*time.Second)), stomptab.ErrBrokerClosed)
}
