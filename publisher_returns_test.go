package durablews_test

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/faultproxy"
)

// copyWithKey returns a copy of m (same UUID) with another routing key.
func copyWithKey(m *message.Message, key string) *message.Message {
	c := m.Copy()
	c.Metadata.Set(durablews.RoutingKeyMetadataKey, key)
	return c
}

// A return names the message id, exchange and routing key. Two copies of
// one message (same UUID), one routed and one not, must each get their own
// outcome, whether published in one call or in two concurrent calls.
func TestPublish_MandatoryReturnMatchesTheRightCopy(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "copies")
	b.exchange(ex, "topic")
	bound := b.queue(ex, "bound.#", nil)
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex})
	cfg.Mandatory = true
	p := newPublisher(t, cfg)

	for _, routedFirst := range []bool{true, false} {
		routed := newMsg("bound.1")
		lost := copyWithKey(routed, "nobody.listens")
		batch, lostIdx := []*message.Message{routed, lost}, 1
		if !routedFirst {
			batch, lostIdx = []*message.Message{lost, routed}, 0
		}
		err := p.Publish(ex, batch...)
		var pe *durablews.PublishError
		require.ErrorAs(t, err, &pe, "routed first: %v", routedFirst)
		require.Len(t, pe.Failed, 1, "%v", err)
		assert.Equal(t, lostIdx, pe.Failed[0].Index, "the unroutable copy is the one reported: %v", err)
		assert.ErrorIs(t, pe.Failed[0].Err, durablews.ErrUnroutable)
		assert.Contains(t, pe.Failed[0].Err.Error(), "nobody.listens")
		assert.Equal(t, []string{routed.UUID}, pe.Confirmed)
	}
	assert.Len(t, b.drain(bound), 2)

	// Two concurrent calls, one copy each.
	for range 20 {
		routed := newMsg("bound.2")
		lost := copyWithKey(routed, "nobody.listens")
		var wg sync.WaitGroup
		var routedErr, lostErr error
		wg.Add(2)
		go func() { defer wg.Done(); routedErr = p.Publish(ex, routed) }()
		go func() { defer wg.Done(); lostErr = p.Publish(ex, lost) }()
		wg.Wait()
		require.NoError(t, routedErr, "the routed copy was confirmed")
		require.ErrorIs(t, lostErr, durablews.ErrUnroutable)
	}
	assert.Len(t, b.drain(bound), 20)
}

// proxied returns amqpURL() with its host replaced by addr.
func proxied(t *testing.T, addr string) string {
	u, err := url.Parse(amqpURL())
	require.NoError(t, err)
	u.Host = addr
	return u.String()
}

func brokerAddr(t *testing.T) string {
	u, err := url.Parse(amqpURL())
	require.NoError(t, err)
	return u.Host
}

// brokerProxy returns a fault proxy in front of the shared broker, closed
// when the test ends.
func brokerProxy(t *testing.T) *faultproxy.Proxy {
	proxy, err := faultproxy.New(brokerAddr(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })
	return proxy
}

// proxiedQueue declares a topic exchange named after prefix with one queue
// bound by key, and a fault proxy in front of the shared broker.
func proxiedQueue(t *testing.T, prefix, key string) (b *broker, ex, q string, proxy *faultproxy.Proxy) {
	b = newBroker(t)
	ex = uniqueName(t, prefix)
	b.exchange(ex, "topic")
	return b, ex, b.queue(ex, key, nil), brokerProxy(t)
}

// Returns of publishes given up (their context was cancelled before the
// confirm) arrive later. They must neither be blamed on a later publish of
// the same message nor fill a buffer and stall the connection's reader
// (amqp091-go then blocks 5 s per return and drops it).
func TestPublish_ReturnsOfAbandonedPublishesAreDropped(t *testing.T) {
	b, ex, bound, proxy := proxiedQueue(t, "abandoned", "bound.#")

	cfg := durablews.NewConfig(proxied(t, proxy.Addr()), durablews.Exchange{Name: ex})
	cfg.Mandatory = true
	cfg.MaxInFlight = 4
	cfg.ConfirmTimeout = 20 * time.Second
	p := newPublisher(t, cfg)
	require.NoError(t, p.Publish(ex, newMsg("bound.warmup")))

	// While the link is stalled, five calls each send four unroutable
	// messages and give up on them: 20 returns will arrive at once, far
	// more than MaxInFlight.
	proxy.Stall(true)
	reused := newMsg("nobody.listens")
	for call := range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		batch := make([]*message.Message, 4)
		for i := range batch {
			batch[i] = newMsg("nobody.listens")
			if call == 0 && i == 0 {
				batch[i] = reused
			}
			batch[i].SetContext(ctx)
		}
		done := make(chan error, 1)
		go func() { done <- p.Publish(ex, batch...) }()
		require.Eventually(t, func() bool { return p.InFlight() == 4 }, 5*time.Second, time.Millisecond)
		cancel()
		select {
		case err := <-done:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(5 * time.Second):
			t.Fatal("Publish did not return after its messages' context was cancelled")
		}
	}
	proxy.Stall(false)

	// The same message, now to a bound key: confirmed, not blamed for the
	// stale return of its abandoned copy.
	start := time.Now()
	require.NoError(t, p.Publish(ex, copyWithKey(reused, "bound.1")))
	t.Logf("publish after 20 abandoned returns took %v", time.Since(start).Round(time.Millisecond))
	// Returns are still attributed to the right messages afterwards.
	routed, lost := newMsg("bound.2"), newMsg("nobody.listens")
	err := p.Publish(ex, routed, lost)
	var pe *durablews.PublishError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, []string{routed.UUID}, pe.Confirmed)
	assert.Equal(t, []string{lost.UUID}, pe.NotConfirmed())
	assert.ErrorIs(t, err, durablews.ErrUnroutable)
	assert.Equal(t, 3, b.count(bound))
}

// RabbitMQ acks an unroutable message at once but a routed persistent one
// only after fsync (or a quorum commit). So when two copies of one message
// (same id, exchange and key) are in flight on one channel, the later
// copy's return can arrive while the earlier, routed copy is unconfirmed.
// Each copy must still get its own outcome: the return names exactly the
// publish it belongs to.
func TestPublish_ReturnOfALaterCopyIsNotBlamedOnAnEarlierOne(t *testing.T) {
	b := newFakeBroker(t)
	var acks sync.WaitGroup
	t.Cleanup(acks.Wait) // runs before the broker closes
	got := make(chan fakePublish, 2)
	var header []byte
	b.onPublish = func(c *fakeConn, p fakePublish) {
		switch p.Tag {
		case 1: // routed: confirmed after a (slow) fsync
			acks.Add(1)
			go func() {
				defer acks.Done()
				time.Sleep(700 * time.Millisecond)
				_ = c.Ack(p.Channel, p.Tag)
			}()
		default: // unroutable: returned and confirmed at once
			header = p.header
			_ = c.Return(p)
			_ = c.Ack(p.Channel, p.Tag)
		}
		got <- p
	}
	cfg := durablews.NewConfig(b.URL(), durablews.Exchange{Name: "events"})
	cfg.Mandatory = true
	cfg.ConfirmTimeout = 5 * time.Second
	p, err := durablews.NewPublisher(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })

	msg := newMsg("customer.1")
	routed := make(chan error, 1)
	go func() { routed <- p.Publish("events", msg) }()
	require.Equal(t, uint64(1), (<-got).Tag)
	returned := p.Publish("events", msg.Copy()) // the same message again, as a redelivered forward would
	require.Equal(t, uint64(2), (<-got).Tag)

	assert.ErrorIs(t, returned, durablews.ErrUnroutable, "the returned copy")
	assert.NoError(t, <-routed, "the routed copy")
	assert.Contains(t, string(header), durablews.PublishTokenHeader, "the return carries the publish token")
}
