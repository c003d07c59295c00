package receipts_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/receipts"
)

// newBroker connects to the shared test broker (brokerversion's
// SharedAMQPURL, `make broker`). A missing broker fails the test; only
// -short, which runs the pure-logic tests, skips the broker's.
func newBroker(t *testing.T) *brokertest.Broker {
	t.Helper()
	if testing.Short() {
		t.Skip("needs RabbitMQ (`make broker`); -short runs only the tests without a broker")
	}
	return brokertest.New(t)
}

// receiptsTopology is an exchange and queue of the test's own on the
// shared broker, deleted at cleanup.
type receiptsTopology struct {
	b               *brokertest.Broker
	exchange, queue string
}

func newTopology(t *testing.T, b *brokertest.Broker) receiptsTopology {
	t.Helper()
	top := receiptsTopology{b: b, exchange: brokertest.UniqueName("receipts"), queue: brokertest.UniqueName("svc-receipts")}
	t.Cleanup(func() {
		if ch, err := b.Conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(top.queue, false, false, false)
			_ = ch.ExchangeDelete(top.exchange, false, false)
			_ = ch.Close()
		}
	})
	return top
}

func (top receiptsTopology) config() receipts.Config {
	return receipts.Config{URL: brokertest.AMQPURL(), Exchange: top.exchange, Queue: top.queue}
}

// subscriber is a Subscriber of top (cfg as given, or top.config()),
// closed at cleanup.
func subscriber(t *testing.T, cfg receipts.Config) *receipts.Subscriber {
	t.Helper()
	s, err := receipts.NewSubscriber(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// send publishes a batch of entries as tab (userKey, tabID) would, through
// the STOMP plugin: routing key <userKey>.<tabID>, persistent, JSON, the
// x-durablews-receipts header, no message id; and waits for the confirm.
func (top receiptsTopology) send(t *testing.T, userKey, tabID string, entries ...receipts.Entry) {
	t.Helper()
	p, err := receipts.NewPublishing(tabID, entries)
	require.NoError(t, err)
	key, err := receipts.RoutingKey(userKey, tabID)
	require.NoError(t, err)
	top.publish(t, key, p)
}

// publish sends p with routing key key and waits for the confirm.
func (top receiptsTopology) publish(t *testing.T, key string, p amqp.Publishing) {
	t.Helper()
	ch, err := top.b.Conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	require.NoError(t, ch.Confirm(false))
	c, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), top.exchange, key, true, false, p)
	require.NoError(t, err)
	ok, err := c.WaitContext(brokertest.Ctx(t, 10*time.Second))
	require.NoError(t, err)
	require.True(t, ok, "the broker nacked the batch")
}

// ready returns the ready messages of top's queue.
func (top receiptsTopology) ready(t *testing.T) int {
	t.Helper()
	return top.inspect(t).Messages
}

// inspect returns the state of top's queue, which must exist.
func (top receiptsTopology) inspect(t *testing.T) amqp.Queue {
	t.Helper()
	q, ok := brokertest.Inspect(t, top.b.Conn, top.queue)
	require.True(t, ok, "queue %s does not exist", top.queue)
	return q
}

// next reads one message of msgs within d.
func next(t *testing.T, msgs <-chan *message.Message, d time.Duration) *message.Message {
	t.Helper()
	select {
	case m, ok := <-msgs:
		require.True(t, ok, "the subscription's channel closed")
		return m
	case <-time.After(d):
		t.Fatalf("no receipt message within %v", d)
		return nil
	}
}

func entry(id string) receipts.Entry {
	return receipts.Entry{ID: id, Subscription: "orders", HandledAt: time.UnixMilli(1718000000000)}
}
